"""The reply ledger: sealed answers per (client, request id), durable, purged, tamper-evident."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from safepassage.core import errors as core
from safepassage.store import (
    InvalidRequestId,
    ReplyIntegrityError,
    ReplyLedger,
    TemplateIntegrityError,
    TemplateSealer,
    check_request_id,
)

UUID = "3f2a9c1e-7b4d-4e8a-9f10-2c3d4e5f6a7b"
ANSWER = b"\x0a\x24" + UUID.encode() + b"\x12\x05cams!"  # any bytes: the ledger never parses them
QUERY = hashlib.sha256(b"the query").digest()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "stream_replies.sqlite3"


@pytest.fixture
def ledger(path: Path, sealer: TemplateSealer) -> Iterator[ReplyLedger]:
    opened = ReplyLedger.open(path, sealer)
    yield opened
    opened.close()


def _sealed(path: Path, client_id: str, request_id: str) -> bytes:
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT sealed FROM replies WHERE client_id = ? AND request_id = ?", (client_id, request_id)
        ).fetchone()
    return bytes(row[0])


def test_round_trip_and_unknown_keys(ledger: ReplyLedger) -> None:
    assert ledger.get("cam-1", UUID) is None
    before = time.time()
    ledger.put("cam-1", UUID, QUERY, ANSWER)
    stored = ledger.get("cam-1", UUID)
    assert stored is not None
    assert (stored.answer, stored.query_sha256) == (ANSWER, QUERY)
    assert before <= stored.answered_at <= time.time()
    # Keys are per client: another client's same id, or another id, has no answer.
    assert ledger.get("cam-2", UUID) is None and ledger.get("cam-1", UUID + "x") is None
    assert ledger.count() == 1


def test_a_second_put_replaces_the_answer(ledger: ReplyLedger) -> None:
    ledger.put("cam-1", "q1", QUERY, b"first")
    other = hashlib.sha256(b"another query").digest()
    ledger.put("cam-1", "q1", other, b"second")
    stored = ledger.get("cam-1", "q1")
    assert stored is not None and (stored.answer, stored.query_sha256) == (b"second", other)
    assert ledger.count() == 1


def test_answers_survive_reopening(path: Path, sealer: TemplateSealer, key: bytes) -> None:
    first = ReplyLedger.open(path, sealer)
    first.put("kiosk-1", UUID, QUERY, ANSWER)
    first.close()
    again = ReplyLedger.open(path, TemplateSealer(key))
    try:
        stored = again.get("kiosk-1", UUID)
        assert stored is not None and stored.answer == ANSWER
    finally:
        again.close()


def test_answers_are_sealed_at_rest(ledger: ReplyLedger, path: Path) -> None:
    ledger.put("cam-1", UUID, QUERY, ANSWER)
    files = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert ANSWER not in files and b"cams!" not in files and QUERY not in files


def test_request_ids_are_checked() -> None:
    assert check_request_id(UUID) == UUID
    assert check_request_id("a" * 128) == "a" * 128
    for bad in ("", "a" * 129, "a b", "q\x00", "../x", "q/1", "é", "q\n"):
        with pytest.raises(InvalidRequestId, match="request_id must be"):
            check_request_id(bad)
    assert issubclass(InvalidRequestId, core.InvalidInput)


def test_bad_keys_are_refused(ledger: ReplyLedger) -> None:
    with pytest.raises(InvalidRequestId):
        ledger.put("cam-1", "a b", QUERY, ANSWER)
    with pytest.raises(InvalidRequestId):
        ledger.put("", UUID, QUERY, ANSWER)
    with pytest.raises(InvalidRequestId):
        ledger.put("cam-1", UUID, b"short", ANSWER)
    with pytest.raises(InvalidRequestId):
        ledger.get("cam-1", "x" * 200)
    assert ledger.count() == 0


def test_a_tampered_blob_fails_to_open(ledger: ReplyLedger, path: Path) -> None:
    ledger.put("cam-1", UUID, QUERY, ANSWER)
    blob = bytearray(_sealed(path, "cam-1", UUID))
    blob[-20] ^= 0x01
    with sqlite3.connect(path) as db:
        db.execute("UPDATE replies SET sealed = ? WHERE request_id = ?", (bytes(blob), UUID))
    with pytest.raises(ReplyIntegrityError, match="authentication failed") as info:
        ledger.get("cam-1", UUID)
    assert isinstance(info.value, core.DataIntegrityError)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE replies SET sealed = ? WHERE request_id = ?", (bytes(blob[:20]), UUID))
    with pytest.raises(ReplyIntegrityError, match="truncated"):
        ledger.get("cam-1", UUID)


def test_swapped_keys_are_detected(ledger: ReplyLedger, path: Path) -> None:
    """A blob moved to another client's or another request's row does not open there."""
    ledger.put("cam-1", "q1", QUERY, b"answer for cam-1 q1")
    ledger.put("cam-2", "q1", QUERY, b"answer for cam-2 q1")
    ledger.put("cam-1", "q2", QUERY, b"answer for cam-1 q2")
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE replies SET sealed = ? WHERE client_id = 'cam-2' AND request_id = 'q1'",
            (_sealed(path, "cam-1", "q1"),),
        )
        db.execute("UPDATE replies SET client_id = 'cam-9' WHERE client_id = 'cam-1' AND request_id = 'q2'")
    with pytest.raises(ReplyIntegrityError):
        ledger.get("cam-2", "q1")
    with pytest.raises(ReplyIntegrityError):
        ledger.get("cam-9", "q2")
    stored = ledger.get("cam-1", "q1")
    assert stored is not None and stored.answer == b"answer for cam-1 q1"


def test_another_key_is_reported(ledger: ReplyLedger, path: Path) -> None:
    ledger.put("cam-1", UUID, QUERY, ANSWER)
    stranger = ReplyLedger.open(path, TemplateSealer(TemplateSealer.generate_key()))
    try:
        with pytest.raises(ReplyIntegrityError, match="does not match"):
            stranger.get("cam-1", UUID)
    finally:
        stranger.close()


def test_a_reply_never_opens_as_a_template(ledger: ReplyLedger, path: Path, sealer: TemplateSealer) -> None:
    ledger.put("g", "7", QUERY, bytes(32))  # 64 bytes sealed: the length of a sealed 16-d template
    blob = _sealed(path, "g", "7")
    with pytest.raises(TemplateIntegrityError):
        sealer.open(blob, gallery_id="g", template_id=7, dimension=(len(blob) - 37) // 4)
    with pytest.raises(TemplateIntegrityError):
        sealer.open_bytes(blob, context=("camera-probe:g", "7"))


def test_purge_erases_old_answers_and_their_bytes(ledger: ReplyLedger, path: Path) -> None:
    now = time.time()
    ledger.put("cam-1", "old", QUERY, ANSWER, answered_at=now - 8 * 86400)
    ledger.put("cam-1", "recent", QUERY, ANSWER, answered_at=now - 3600)
    old_blob = _sealed(path, "cam-1", "old")
    assert ledger.purge(7 * 86400, now=now) == 1
    assert ledger.get("cam-1", "old") is None
    assert ledger.get("cam-1", "recent") is not None
    files = [p.read_bytes() for p in path.parent.glob(path.name + "*")]
    assert not any(old_blob in data or old_blob[-32:] in data for data in files)
    assert ledger.purge(7 * 86400, now=now) == 0
    assert ledger.count() == 1
