"""The edge outbox and device key, on real SQLite files with real encryption."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.camera_edge.device_key import DeviceKey
from safepassage.camera_edge.errors import DeviceKeyError, OutboxCorrupt, OutboxError, OutboxFull
from safepassage.camera_edge.outbox import EntryState, Outbox
from tests.conftest import REPO

INVALID_ARGUMENT, NOT_FOUND = 3, 5


def probe(size: int = 2048) -> pb.IdentifyRequest:
    """A request with a random image: its bytes cannot occur in the file by chance."""
    return pb.IdentifyRequest(gallery_id="watchlist", probe=pb.Probe(image=os.urandom(size)), top_k=3)


def result(
    query_id: str, decision: pb.Decision.ValueType = pb.NO_MATCH, probe_id: int = 0
) -> pb.IdentifyStreamResponse:
    return pb.IdentifyStreamResponse(
        request_id=query_id,
        result=pb.IdentifyResponse(request_id=query_id, gallery_id="watchlist", decision=decision),
        probe_id=probe_id,
    )


def error(query_id: str, code: int) -> pb.IdentifyStreamResponse:
    return pb.IdentifyStreamResponse(request_id=query_id, error=pb.Error(code=code, message="no"))


def raw(path: Path, query_id: str, column: str = "request") -> bytes:
    with closing(sqlite3.connect(path)) as conn:
        return bytes(
            conn.execute(f"SELECT {column} FROM entries WHERE query_id = ?", (query_id,)).fetchone()[0]
        )


def set_raw(path: Path, query_id: str, blob: bytes) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE entries SET request = ? WHERE query_id = ?", (blob, query_id))


def file_bytes(path: Path) -> bytes:
    """The database file and its WAL, where a payload could still linger."""
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "device.key"


@pytest.fixture
def key(key_path: Path) -> DeviceKey:
    return DeviceKey.load_or_create(key_path)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "queue" / "outbox.db"


@pytest.fixture
def outbox(db: Path, key: DeviceKey) -> Iterator[Outbox]:
    with Outbox.open(db, key) as box:
        yield box


# -- round trip and durability ---------------------------------------------------


def test_round_trip_is_encrypted_and_sets_the_request_id(outbox: Outbox, db: Path) -> None:
    request = probe()
    entry = outbox.enqueue(request, track_id=7, frame_time=12.5)
    assert len(entry.query_id) == 32 and request.request_id == entry.query_id
    assert (entry.state, entry.attempts, entry.is_hit) == (EntryState.PENDING, 0, False)
    [pending] = outbox.pending()
    assert pending.request == request and (pending.track_id, pending.frame_time) == (7, 12.5)
    assert outbox.get(entry.query_id) == pending
    assert request.probe.image not in file_bytes(db)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert outbox.stats().total_enqueued == 1


def test_connection_is_durable_and_scrubbing(outbox: Outbox, db: Path) -> None:
    conn = outbox._conn
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    with closing(sqlite3.connect(db)) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("PRAGMA user_version").fetchone()[0] == 1


def test_survives_close_and_reopen_with_counters(db: Path, key: DeviceKey) -> None:
    with Outbox.open(db, key) as box:
        first, second, third = (box.enqueue(probe(), track_id=i, frame_time=i) for i in range(3))
        box.mark_sent(first.query_id)
        box.mark_sent(first.query_id)
        box.record_answer(second.query_id, result(second.query_id, pb.MATCH, probe_id=9))
    with Outbox.open(db, key) as box:
        assert [e.query_id for e in box.pending()] == [first.query_id, third.query_id]
        assert box.get(first.query_id).attempts == 2
        [hit] = box.answered()
        assert hit.query_id == second.query_id and hit.is_hit and hit.request is None
        stats = box.stats()
        assert (stats.pending, stats.answered, stats.hits, stats.total_enqueued) == (2, 1, 1, 3)


def test_enqueued_entry_survives_sigkill(db: Path, key_path: Path, key: DeviceKey) -> None:
    # SIGKILL shows the commit reached the OS before enqueue returned; surviving power loss
    # rests on synchronous=FULL, checked in test_connection_is_durable_and_scrubbing.
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from safepassage.camera_edge.device_key import DeviceKey\n"
        "from safepassage.camera_edge.outbox import Outbox\n"
        "from safepassage.api.v1 import matching_pb2 as pb\n"
        "box = Outbox.open(Path(sys.argv[1]), DeviceKey.load(Path(sys.argv[2])))\n"
        "entry = box.enqueue(pb.IdentifyRequest(gallery_id='watchlist'), track_id=3, frame_time=1.5)\n"
        "print(entry.query_id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, str(db), str(key_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -9, child.stderr
    query_id = child.stdout.strip()
    with Outbox.open(db, key) as box:
        [entry] = box.pending()
        assert entry.query_id == query_id and entry.request is not None
        assert entry.request.request_id == query_id and entry.track_id == 3


def test_enqueue_of_a_known_id_returns_the_stored_entry(outbox: Outbox) -> None:
    first = outbox.enqueue(probe(), track_id=1, frame_time=0.0, query_id="abc-1")
    again = outbox.enqueue(probe(), track_id=2, frame_time=9.0, query_id="abc-1")
    assert again == first and outbox.stats().total_enqueued == 1
    with pytest.raises(OutboxError, match="query id"):
        outbox.enqueue(probe(), track_id=1, frame_time=0.0, query_id="no spaces")


# -- answers ---------------------------------------------------------------------


def test_record_answer_is_idempotent(outbox: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    qid = outbox.enqueue(probe(), track_id=1, frame_time=0.0).query_id
    first = outbox.record_answer(qid, result(qid, pb.MATCH))
    assert first.state is EntryState.ANSWERED and first.is_hit and first.request is None
    with caplog.at_level(logging.INFO, logger="safepassage.camera_edge.outbox"):
        second = outbox.record_answer(qid, result(qid, pb.NO_MATCH))
    assert second == outbox.get(qid) and second.is_hit and second.response == first.response
    assert qid in caplog.text and "second answer" in caplog.text
    assert outbox.stats().duplicate_answers == 1 and outbox.pending() == []
    with pytest.raises(OutboxError, match="no entry"):
        outbox.record_answer("unknown", result("unknown"))


@pytest.mark.parametrize(
    ("decision", "probe_id", "hit"), [(pb.MATCH, 0, True), (pb.NO_MATCH, 4, True), (pb.NO_MATCH, 0, False)]
)
def test_a_hit_is_a_match_or_a_kept_probe(
    outbox: Outbox, decision: pb.Decision.ValueType, probe_id: int, hit: bool
) -> None:
    qid = outbox.enqueue(probe(), track_id=1, frame_time=0.0).query_id
    assert outbox.record_answer(qid, result(qid, decision, probe_id)).is_hit is hit
    assert outbox.stats().hits == int(hit)


@pytest.mark.parametrize("code", [4, 8, 10, 14])
def test_a_retryable_error_leaves_the_entry_pending(outbox: Outbox, code: int) -> None:
    qid = outbox.enqueue(probe(), track_id=1, frame_time=0.0).query_id
    assert outbox.record_answer(qid, error(qid, code)).state is EntryState.PENDING
    assert [e.query_id for e in outbox.pending()] == [qid]
    assert outbox.record_answer(qid, result(qid)).state is EntryState.ANSWERED


@pytest.mark.parametrize("code", [INVALID_ARGUMENT, NOT_FOUND])
def test_a_permanent_error_fails_the_entry(outbox: Outbox, code: int) -> None:
    qid = outbox.enqueue(probe(), track_id=1, frame_time=0.0).query_id
    failed = outbox.record_answer(qid, error(qid, code))
    assert failed.state is EntryState.FAILED and failed.request is None
    assert outbox.pending() == [] and outbox.answered() == []
    stored = outbox.get(qid)
    assert stored.response is not None and stored.response.error.code == code
    assert outbox.stats().failed == 1


def test_answered_since_and_prune_keep_hits(db: Path, key: DeviceKey) -> None:
    now = [100.0]
    with Outbox.open(db, key, clock=lambda: now[0]) as box:
        old, hit, recent = (box.enqueue(probe(), track_id=i, frame_time=i).query_id for i in range(3))
        box.record_answer(old, result(old))
        box.record_answer(hit, result(hit, pb.MATCH))
        now[0] = 200.0
        box.record_answer(recent, result(recent))
        assert [e.query_id for e in box.answered(since=150.0)] == [recent]
        assert box.prune_answered(older_than=150.0) == 1
        assert [e.query_id for e in box.answered()] == [hit, recent]
        box.remove(hit)
        assert box.stats().hits == 0


# -- full queue ------------------------------------------------------------------


def fill(box: Outbox, kinds: str) -> list[str]:
    """One entry per letter, oldest first: a answered non-hit, h hit, f failed, p pending."""
    ids: list[str] = []
    for kind in kinds:
        qid = box.enqueue(probe(), track_id=len(ids), frame_time=0.0).query_id
        if kind == "a":
            box.record_answer(qid, result(qid))
        elif kind == "h":
            box.record_answer(qid, result(qid, pb.MATCH))
        elif kind == "f":
            box.record_answer(qid, error(qid, INVALID_ARGUMENT))
        ids.append(qid)
    return ids


@pytest.mark.parametrize(
    ("kinds", "victim", "counter"),
    [
        ("fhpa", 3, "evicted"),  # an answered non-hit goes first, even before an older failed one
        ("phfp", 2, "evicted"),  # then the oldest failed
        ("hpp", 1, "dropped_when_full"),  # then the oldest pending, never sent
    ],
)
def test_full_queue_evicts_by_policy(
    db: Path, key: DeviceKey, caplog: pytest.LogCaptureFixture, kinds: str, victim: int, counter: str
) -> None:
    with Outbox.open(db, key, max_entries=len(kinds)) as box:
        ids = fill(box, kinds)
        with caplog.at_level(logging.INFO, logger="safepassage.camera_edge.outbox"):
            new = box.enqueue(probe(), track_id=99, frame_time=0.0).query_id
        with pytest.raises(OutboxError, match="no entry"):
            box.get(ids[victim])
        assert ids[victim] in caplog.text
        kept = {e.query_id for e in box.pending()} | {e.query_id for e in box.answered()}
        assert new in kept and len(kept) + box.stats().failed == len(kinds)
    with Outbox.open(db, key, max_entries=len(kinds)) as box:
        stats = box.stats()
        assert getattr(stats, counter) == 1 and stats.total_enqueued == len(kinds) + 1
    if counter == "dropped_when_full":
        assert any(r.levelno == logging.WARNING and ids[victim] in r.getMessage() for r in caplog.records)


def test_full_queue_evicts_a_quarantined_entry_before_a_pending_one(db: Path, key: DeviceKey) -> None:
    with Outbox.open(db, key, max_entries=3) as box:
        hit, damaged, pending = fill(box, "hpp")
        set_raw(db, damaged, raw(db, pending))  # sealed for another entry: fails to open
        assert [e.query_id for e in box.pending()] == [pending]
        box.enqueue(probe(), track_id=9, frame_time=0.0)
        with pytest.raises(OutboxError, match="no entry"):
            box.get(damaged)
        assert box.get(pending).state is EntryState.PENDING and box.get(hit).is_hit
        stats = box.stats()
        assert (stats.quarantined, stats.evicted, stats.dropped_when_full) == (0, 1, 0)


def test_a_queue_full_of_hits_refuses_and_counts(db: Path, key: DeviceKey) -> None:
    with Outbox.open(db, key, max_entries=2) as box:
        hits = fill(box, "hh")
        with pytest.raises(OutboxFull, match="refused"):
            box.enqueue(probe(), track_id=5, frame_time=0.0)
        assert all(box.get(q).is_hit for q in hits)
    with Outbox.open(db, key, max_entries=2) as box:
        stats = box.stats()
        assert (stats.hits, stats.refused_when_full, stats.total_enqueued) == (2, 1, 2)


def test_evicted_payloads_leave_the_file_and_its_wal(db: Path, key: DeviceKey) -> None:
    with Outbox.open(db, key, max_entries=2) as box:
        answered, pending = fill(box, "ap")
        response_blob, request_blob = raw(db, answered, "response"), raw(db, pending)
        assert response_blob in file_bytes(db) and request_blob in file_bytes(db)
        box.enqueue(probe(), track_id=3, frame_time=0.0)  # evicts the answered entry
        assert response_blob not in file_bytes(db)
        box.enqueue(probe(), track_id=4, frame_time=0.0)  # drops the pending one
        assert request_blob not in file_bytes(db)
        assert box.stats().dropped_when_full == 1


# -- damage ----------------------------------------------------------------------


def test_a_tampered_payload_is_quarantined(
    outbox: Outbox, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [outbox.enqueue(probe(), track_id=i, frame_time=0.0).query_id for i in range(3)]
    blob = bytearray(raw(db, ids[1]))
    blob[len(blob) // 2] ^= 0x01
    set_raw(db, ids[1], bytes(blob))
    with caplog.at_level(logging.WARNING, logger="safepassage.camera_edge.outbox"):
        assert [e.query_id for e in outbox.pending(limit=2)] == [ids[0], ids[2]]
    assert ids[1] in caplog.text
    assert [e.query_id for e in outbox.pending()] == [ids[0], ids[2]]
    quarantined = outbox.get(ids[1])
    assert quarantined.state is EntryState.QUARANTINED and quarantined.request is None
    assert outbox.stats().quarantined == 1


def test_swapped_payloads_are_detected(outbox: Outbox, db: Path) -> None:
    ids = [outbox.enqueue(probe(), track_id=i, frame_time=0.0).query_id for i in range(3)]
    first, second = raw(db, ids[0]), raw(db, ids[1])
    set_raw(db, ids[0], second)
    set_raw(db, ids[1], first)
    with pytest.raises(OutboxCorrupt, match=ids[0]):
        outbox.get(ids[0])
    assert [e.query_id for e in outbox.pending()] == [ids[2]]
    assert outbox.stats().quarantined == 2


def test_a_wrong_device_key_is_refused(db: Path, key: DeviceKey) -> None:
    Outbox.open(db, key).close()
    before = db.read_bytes()
    with pytest.raises(DeviceKeyError, match=key.fingerprint.hex()):
        Outbox.open(db, DeviceKey.generate())
    assert db.read_bytes() == before


def other_sqlite(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE photos (name TEXT)")
        conn.execute("INSERT INTO photos VALUES ('x')")


def newer_outbox(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 2")


@pytest.mark.parametrize(
    "damage", ["garbage", "half", "one_page_short", "torn_tail", "other_sqlite", "newer_schema"]
)
def test_a_file_that_is_not_a_valid_outbox_is_left_untouched(db: Path, key: DeviceKey, damage: str) -> None:
    db.parent.mkdir(mode=0o700)
    if damage == "garbage":
        db.write_bytes(os.urandom(5000))
    elif damage == "other_sqlite":
        other_sqlite(db)
    else:
        with Outbox.open(db, key) as box:
            for i in range(20):
                box.enqueue(probe(3000), track_id=i, frame_time=0.0)
        if damage == "newer_schema":
            newer_outbox(db)
        else:
            size = db.stat().st_size
            with open(db, "r+b") as handle:
                handle.truncate(
                    {"half": size // 2, "one_page_short": size - 4096, "torn_tail": size - 100}[damage]
                )
    before = db.read_bytes()
    with pytest.raises(OutboxCorrupt, match=str(db)):
        Outbox.open(db, key)
    assert db.read_bytes() == before


# -- threads ---------------------------------------------------------------------


def test_capture_and_sender_threads_share_one_outbox(outbox: Outbox) -> None:
    failures: list[BaseException] = []
    done = threading.Event()

    def capture() -> None:
        try:
            for i in range(100):
                outbox.enqueue(probe(256), track_id=i, frame_time=float(i))
        except BaseException as exc:
            failures.append(exc)

    def sender() -> None:
        try:
            while not done.is_set() or outbox.stats().pending:
                for entry in outbox.pending(limit=10):
                    outbox.mark_sent(entry.query_id)
                    outbox.record_answer(entry.query_id, result(entry.query_id))
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=capture),
        threading.Thread(target=capture),
        threading.Thread(target=sender),
    ]
    for thread in threads:
        thread.start()
    for thread in threads[:2]:
        thread.join(30)
    done.set()
    threads[2].join(30)
    assert failures == []
    stats = outbox.stats()
    assert (stats.pending, stats.answered, stats.total_enqueued) == (0, 200, 200)


# -- device key ------------------------------------------------------------------


def test_key_file_is_created_owner_only_and_reloaded(key_path: Path, key: DeviceKey) -> None:
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    assert key_path.stat().st_size == 32
    assert DeviceKey.load_or_create(key_path).fingerprint == key.fingerprint
    assert key_path.read_bytes().hex() not in repr(key)
    assert list(key_path.parent.iterdir()) == [key_path]


@pytest.mark.parametrize("problem", ["world_readable", "group_readable", "short", "missing"])
def test_a_bad_key_file_is_refused(key_path: Path, key: DeviceKey, problem: str) -> None:
    if problem == "world_readable":
        key_path.chmod(0o644)
    elif problem == "group_readable":
        key_path.chmod(0o640)
    elif problem == "short":
        key_path.write_bytes(b"x" * 31)
    else:
        key_path.unlink()
    with pytest.raises(DeviceKeyError, match=str(key_path)):
        DeviceKey.load(key_path)
    if problem != "missing":
        with pytest.raises(DeviceKeyError, match=str(key_path)):
            DeviceKey.load_or_create(key_path)


def test_sealed_blobs_name_their_key_and_detect_changes(key: DeviceKey) -> None:
    blob = key.seal(b"payload", b"aad")
    assert blob[0] == 1 and blob[1:9] == key.fingerprint and len(blob) == 1 + 8 + 12 + len(b"payload") + 16
    assert key.open(blob, b"aad") == b"payload"
    with pytest.raises(OutboxCorrupt, match="authentication"):
        key.open(blob, b"other aad")
    with pytest.raises(OutboxCorrupt, match="authentication"):
        key.open(blob[:-1] + bytes([blob[-1] ^ 1]), b"aad")
    with pytest.raises(OutboxCorrupt, match="version"):
        key.open(b"\x02" + blob[1:], b"aad")
    with pytest.raises(DeviceKeyError, match="another device key"):
        DeviceKey.generate().open(blob, b"aad")
