"""TransparencyLog: appends, signed tree heads, proofs, persistence and self-checks."""

from __future__ import annotations

import base64
import itertools
import json
import sqlite3
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safepassage.audit import (
    InvalidRange,
    LogClosed,
    LogCorrupted,
    LogKeyMismatch,
    LogUnavailable,
    SignatureError,
    SignedTreeHead,
    TransparencyLog,
    export_log,
    leaf_hash,
    load_or_create_signing_key,
    load_public_key,
    root_hash,
    verify_consistency,
    verify_inclusion,
    verify_tree_head,
)
from safepassage.audit.merkle import EMPTY_ROOT
from safepassage.core.errors import DataIntegrityError, FailedPrecondition, InvalidInput, Unavailable
from tests.audit_log.conftest import make_event


def test_append_returns_consecutive_indices(log: TransparencyLog) -> None:
    assert log.size() == 0
    assert [log.append(make_event(i)) for i in range(3)] == [0, 1, 2]
    assert log.append_many([make_event(i) for i in range(3, 7)]) == [3, 4, 5, 6]
    assert log.append_many([]) == []
    assert log.size() == 7
    entries = log.entries(2, 5)
    assert [e.index for e in entries] == [2, 3, 4]
    assert [e.event() for e in entries] == [make_event(i) for i in range(2, 5)]
    assert len(log.entries(5, 100)) == 2
    with pytest.raises(InvalidRange):
        log.entries(4, 3)


def test_tree_heads_sign_the_merkle_root(log: TransparencyLog) -> None:
    empty = log.tree_head()
    assert (empty.tree_size, empty.root_hash) == (0, EMPTY_ROOT)
    verify_tree_head(empty, log.public_key)
    events = [make_event(i) for i in range(10)]
    log.append_many(events)
    head = log.sign_tree_head()
    assert head.tree_size == 10
    assert head.root_hash == root_hash([leaf_hash(e.to_leaf()) for e in events])
    verify_tree_head(head, log.public_key)
    assert log.tree_heads() == [head] and log.latest_tree_head() == head
    assert log.tree_head().tree_size == 10  # not stored
    assert len(log.tree_heads()) == 1


def test_forged_tree_heads_raise_signature_error(log: TransparencyLog) -> None:
    log.append(make_event(0))
    head = log.sign_tree_head()
    forgeries = [
        SignedTreeHead(head.tree_size + 1, head.timestamp, head.root_hash, head.signature),
        SignedTreeHead(head.tree_size, head.timestamp + 1, head.root_hash, head.signature),
        SignedTreeHead(head.tree_size, head.timestamp, EMPTY_ROOT, head.signature),
        # Flip a bit: an Ed25519 signature's last byte is often already zero (S < L).
        SignedTreeHead(
            head.tree_size,
            head.timestamp,
            head.root_hash,
            head.signature[:-1] + bytes([head.signature[-1] ^ 1]),
        ),
        SignedTreeHead(head.tree_size, head.timestamp, head.root_hash, head.signature[:10]),
        SignedTreeHead(head.tree_size, head.timestamp, head.root_hash, head.signature, version=2),
        SignedTreeHead.sign(Ed25519PrivateKey.generate(), head.tree_size, head.timestamp, head.root_hash),
    ]
    for forged in forgeries:
        with pytest.raises(SignatureError):
            verify_tree_head(forged, log.public_key)
    assert isinstance(SignatureError("x"), DataIntegrityError)


def test_tree_head_json_round_trip(log: TransparencyLog) -> None:
    log.append(make_event(0))
    head = log.sign_tree_head()
    line = head.to_line()
    obj = json.loads(line)
    assert set(obj) == {"version", "tree_size", "timestamp", "sha256_root_hash", "tree_head_signature"}
    assert base64.b64decode(obj["sha256_root_hash"]) == head.root_hash
    assert SignedTreeHead.from_line(line) == head
    for bad in ({**obj, "tree_size": -1}, {**obj, "extra": 1}, {**obj, "sha256_root_hash": "!!"}):
        with pytest.raises(ValueError):
            SignedTreeHead.from_json(bad)


def test_proofs_from_the_log_verify(log: TransparencyLog) -> None:
    events = [make_event(i) for i in range(37)]
    log.append_many(events[:20])
    small = log.sign_tree_head()
    log.append_many(events[20:])
    big = log.sign_tree_head()
    for index in (0, 5, 19):
        verify_inclusion(
            leaf_hash(events[index].to_leaf()), index, 20, log.inclusion_proof(index, 20), small.root_hash
        )
    for index in (0, 19, 20, 36):
        verify_inclusion(
            leaf_hash(events[index].to_leaf()), index, 37, log.inclusion_proof(index, 37), big.root_hash
        )
    verify_consistency(20, 37, log.consistency_proof(20, 37), small.root_hash, big.root_hash)
    assert log.root_hash(20) == small.root_hash
    with pytest.raises(InvalidRange):
        log.inclusion_proof(37, 37)
    with pytest.raises(InvalidRange):
        log.consistency_proof(20, 38)
    assert isinstance(InvalidRange("x"), InvalidInput)


def test_reopen_keeps_entries_and_key(log_path: Path, key: Ed25519PrivateKey) -> None:
    with TransparencyLog.open(log_path, key) as log:
        log.append_many([make_event(i) for i in range(5)])
        head = log.sign_tree_head()
    with TransparencyLog.open(log_path, key) as log:
        assert log.size() == 5
        assert log.root_hash(5) == head.root_hash
        assert log.append(make_event(5)) == 5
    with pytest.raises(LogKeyMismatch) as mismatch:
        TransparencyLog.open(log_path, Ed25519PrivateKey.generate())
    assert isinstance(mismatch.value, FailedPrecondition)
    assert log_path.stat().st_mode & 0o777 == 0o600


def test_closed_log_refuses(log: TransparencyLog) -> None:
    log.close()
    log.close()
    with pytest.raises(LogClosed):
        log.append(make_event(0))


def test_two_handles_share_one_tree(log_path: Path, key: Ed25519PrivateKey) -> None:
    """A second handle on the file stands in for another process: caches catch up by size."""
    with TransparencyLog.open(log_path, key) as first, TransparencyLog.open(log_path, key) as second:
        first.append_many([make_event(i) for i in range(4)])
        assert second.append(make_event(4)) == 4  # the index came from the file, not memory
        assert first.append(make_event(5)) == 5
        assert first.root_hash(6) == second.root_hash(6)
        head = second.sign_tree_head()
        verify_inclusion(
            leaf_hash(make_event(4).to_leaf()), 4, 6, first.inclusion_proof(4, 6), head.root_hash
        )
        assert first.tree_head().root_hash == head.root_hash


def test_threads_append_without_collisions(log: TransparencyLog) -> None:
    indices: list[int] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        for i in range(50):
            index = log.append(make_event(i, actor=f"kiosk:kiosk-{worker}"))
            with lock:
                indices.append(index)
            if i % 10 == 0:
                log.sign_tree_head()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(indices) == list(range(200))
    heads = log.tree_heads()
    for older, newer in itertools.pairwise(heads):
        assert older.tree_size <= newer.tree_size and older.timestamp <= newer.timestamp
        verify_consistency(
            older.tree_size,
            newer.tree_size,
            log.consistency_proof(older.tree_size, newer.tree_size),
            older.root_hash,
            newer.root_hash,
        )


def test_tree_head_timestamps_never_go_back(log_path: Path, key: Ed25519PrivateKey) -> None:
    times = iter([1000, 500, 2000])
    with TransparencyLog.open(log_path, key, clock=lambda: next(times)) as log:
        assert [log.sign_tree_head().timestamp for _ in range(3)] == [1000, 1000, 2000]


def test_the_file_is_append_only(log: TransparencyLog, log_path: Path) -> None:
    log.append(make_event(0))
    log.sign_tree_head()
    conn = sqlite3.connect(log_path)
    try:
        for statement in (
            "UPDATE leaves SET data = x'00'",
            "DELETE FROM leaves",
            "UPDATE tree_heads SET tree_size = 5",
            "DELETE FROM tree_heads",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()


def _tamper(path: Path, *statements: str | tuple[str, tuple[object, ...]]) -> None:
    """What someone with the file can do: drop the guards and rewrite rows."""
    conn = sqlite3.connect(path)
    try:
        for name in ("leaves", "tree_heads"):
            for verb in ("update", "delete"):
                conn.execute(f"DROP TRIGGER IF EXISTS {name}_append_only_{verb}")
        for statement in statements:
            if isinstance(statement, str):
                conn.execute(statement)
            else:
                conn.execute(*statement)
        conn.commit()
    finally:
        conn.close()


_FORGED = make_event(3, actor="officer:officer-0043").to_leaf()


@pytest.mark.parametrize(
    "statements",
    [
        # data rewritten, stored hash left alone
        [("UPDATE leaves SET data = ? WHERE leaf_index = 3", (_FORGED,))],
        # the same as TEXT, which SQLite's string functions produce
        ["UPDATE leaves SET data = replace(data, 'officer-0042', 'officer-0043') WHERE leaf_index = 3"],
        # a row removed
        ["DELETE FROM leaves WHERE leaf_index = 3"],
        # data and hash rewritten consistently: only the signed tree head notices
        [
            (
                "UPDATE leaves SET data = ?, leaf_hash = ? WHERE leaf_index = 3",
                (_FORGED, leaf_hash(_FORGED)),
            )
        ],
        # the newest tree head altered
        ["UPDATE tree_heads SET tree_size = 4 WHERE id = (SELECT max(id) FROM tree_heads)"],
    ],
    ids=["data", "data-as-text", "delete", "data-and-hash", "tree-head"],
)
def test_tampered_file_is_refused_at_open(
    log_path: Path, key: Ed25519PrivateKey, statements: list[str | tuple[str, tuple[object, ...]]]
) -> None:
    with TransparencyLog.open(log_path, key) as log:
        log.append_many([make_event(i) for i in range(8)])
        log.sign_tree_head()
    _tamper(log_path, *statements)
    with pytest.raises(LogCorrupted) as refused:
        TransparencyLog.open(log_path, key)
    assert isinstance(refused.value, DataIntegrityError)


def test_export_writes_the_documented_files(log: TransparencyLog, tmp_path: Path) -> None:
    events = [make_event(i) for i in range(12)]
    log.append_many(events[:5])
    log.sign_tree_head()
    log.append_many(events[5:])
    summary = log.export(tmp_path / "out")
    out = tmp_path / "out"
    assert (summary.entries, summary.tree_heads, summary.tree_size) == (12, 2, 12)
    assert (out / "entries.jsonl").read_bytes() == b"".join(e.to_leaf() + b"\n" for e in events)
    assert (out / "leaf_hashes.txt").read_text().split() == [leaf_hash(e.to_leaf()).hex() for e in events]
    heads = [SignedTreeHead.from_line(line) for line in (out / "tree_heads.jsonl").read_text().splitlines()]
    assert heads == log.tree_heads()
    public = load_public_key((out / "log_public_key.pem").read_bytes())
    for head in heads:
        verify_tree_head(head, public)
    assert "RFC 9162" in (out / "README.txt").read_text()


def test_read_only_export_needs_no_key(log: TransparencyLog, log_path: Path, tmp_path: Path) -> None:
    log.append_many([make_event(i) for i in range(3)])
    log.sign_tree_head()
    log.append(make_event(3))
    summary = export_log(log_path, tmp_path / "ro")
    assert (summary.entries, summary.tree_heads, summary.tree_size) == (4, 1, 3)
    with pytest.raises(FileNotFoundError):
        export_log(tmp_path / "missing.db", tmp_path / "x")


def test_signing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "log_key.pem"
    first = load_or_create_signing_key(path)
    again = load_or_create_signing_key(path)
    assert first.public_key() == again.public_key()
    assert path.stat().st_mode & 0o777 == 0o600
    assert list(path.parent.iterdir()) == [path]


def test_busy_file_maps_to_unavailable(log_path: Path, key: Ed25519PrivateKey) -> None:
    with TransparencyLog.open(log_path, key, busy_timeout=0.05) as log:
        blocker = sqlite3.connect(log_path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(LogUnavailable) as busy:
                log.append(make_event(0))
            assert isinstance(busy.value, Unavailable)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert log.append(make_event(0)) == 0
