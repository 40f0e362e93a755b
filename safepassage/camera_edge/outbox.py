"""The durable offline queue ("outbox") of an edge client.

While the matching server cannot be reached, identification queries wait in a
local SQLite file and are replayed once it can. Each has a client-generated id
(``query_id``, sent as ``request_id``) so replay is idempotent: the server
dedupes by it, and a second answer is ignored here.

On disk, payloads are protobuf sealed with the device key (safepassage.camera_edge.device_key)
under associated data naming their entry, so a blob moved to another row fails
to open; track id, frame time and state are in clear (no personal data). A
request is erased once answered. WAL, ``synchronous=FULL`` (an enqueue is
fsynced before it returns), ``secure_delete=ON`` and a TRUNCATE checkpoint after
an eviction or prune: a removed payload leaves both the file and its -wal.

When full (``max_entries`` counts every kept row), an enqueue first evicts the
oldest answered non-hit, else failed, else quarantined, else pending query (that
one was never answered: counted as ``dropped_when_full``, logged at warning).
Hits are never evicted; if every row is one, the query is refused with
OutboxFull and counted. A pending entry whose payload fails to open is
quarantined (kept, counted, logged with its id) and skipped, so one damaged row
never stops the sender. One connection behind a lock serves every thread.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf.message import DecodeError

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.camera_edge.device_key import DeviceKey
from safepassage.camera_edge.errors import (
    DeviceKeyError,
    OutboxCorrupt,
    OutboxEntryMissing,
    OutboxFull,
    OutboxMisuse,
    OutboxUnusable,
)
from safepassage.camera_edge.outbox_file import (
    COUNTERS,
    SCHEMA_VERSION,
    check_existing,
    initialise,
    prepare_file,
    sqlite_errors,
)
from safepassage.core.sqlite import write_transaction

__all__ = ["RETRYABLE_CODES", "SCHEMA_VERSION", "EntryState", "Outbox", "OutboxEntry", "OutboxStats"]

log = logging.getLogger(__name__)

# gRPC codes after which the same request may succeed later: DEADLINE_EXCEEDED,
# RESOURCE_EXHAUSTED, ABORTED, UNAVAILABLE (numbers: no grpc import needed here).
RETRYABLE_CODES = frozenset({4, 8, 10, 14})

_QUERY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REQUEST_AAD = b"outbox-request:"
_RESPONSE_AAD = b"outbox-response:"
_SELECT = (
    "SELECT seq, query_id, created_at, track_id, frame_time, state, attempts, is_hit, answered_at,"
    " request, response FROM entries"
)
_M = TypeVar("_M", pb.IdentifyRequest, pb.IdentifyStreamResponse)
# Eviction order when full; hits are never candidates.
_VICTIM_STATES = ("answered", "failed", "quarantined", "pending")


class EntryState(StrEnum):
    PENDING = "pending"
    ANSWERED = "answered"
    FAILED = "failed"  # the server answered with a permanent in-band error (e.g. INVALID_ARGUMENT)
    QUARANTINED = "quarantined"  # its payload failed to open (altered, moved); kept, never sent


@dataclass(frozen=True)
class OutboxEntry:
    query_id: str
    created_at: float
    track_id: int
    frame_time: float
    state: EntryState
    attempts: int
    request: pb.IdentifyRequest | None
    response: pb.IdentifyStreamResponse | None
    is_hit: bool
    answered_at: float | None = None


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    answered: int
    failed: int
    hits: int
    dropped_when_full: int
    total_enqueued: int
    quarantined: int = 0
    refused_when_full: int = 0
    evicted: int = 0  # answered, failed or quarantined entries removed to make room
    duplicate_answers: int = 0


class Outbox:
    """The queue file; open with :meth:`open`. Every method is thread-safe."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        key: DeviceKey,
        max_entries: int,
        clock: Callable[[], float],
    ) -> None:
        """Use :meth:`open`."""
        self.path = path
        self.max_entries = max_entries
        self._conn = conn
        self._key = key
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(
        cls, path: Path, key: DeviceKey, *, max_entries: int = 10_000, clock: Callable[[], float] = time.time
    ) -> Outbox:
        """Create (0600) or open the queue file.

        Raises OutboxCorrupt naming the file, and leaves it untouched, if an existing file is
        not a readable outbox of this schema; DeviceKeyError if another device key made it.
        """
        if max_entries < 1:
            raise OutboxMisuse(f"outbox {path}: max_entries must be at least 1, got {max_entries}")
        empty = prepare_file(path)
        with sqlite_errors(f"open the outbox {path}"):
            conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
            try:
                for pragma in ("synchronous=FULL", "secure_delete=ON", "trusted_schema=OFF"):
                    conn.execute(f"PRAGMA {pragma}")
                if empty or check_existing(conn, key, path):
                    initialise(conn, key, path)
                if str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower() != "wal":
                    raise OutboxUnusable(f"outbox {path}: cannot enable the WAL journal")
            except BaseException:
                conn.close()
                raise
        return cls(path, conn, key, max_entries, clock)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Outbox(path={str(self.path)!r}, max_entries={self.max_entries})"

    # -- writing -------------------------------------------------------------

    def enqueue(
        self, request: pb.IdentifyRequest, *, track_id: int, frame_time: float, query_id: str | None = None
    ) -> OutboxEntry:
        """Queue a query durably (fsynced before returning); sets ``request.request_id``.

        Enqueueing an id already queued returns the stored entry unchanged. Raises
        OutboxFull (after counting it) if the queue is full of hits.
        """
        qid = uuid.uuid4().hex if query_id is None else query_id
        if not isinstance(qid, str) or not _QUERY_ID.fullmatch(qid):
            raise OutboxMisuse(f"outbox {self.path}: a query id must be 1-64 letters, digits, '_' or '-'")
        request.request_id = qid
        sealed = self._key.seal(request.SerializeToString(), _REQUEST_AAD + qid.encode())
        now = self._clock()
        evicted: list[tuple[str, str]] = []
        with self._lock:
            with self._write("enqueue a query") as conn:
                existing = conn.execute(f"{_SELECT} WHERE query_id = ?", (qid,)).fetchone()
                if existing is not None:
                    log.info("outbox entry %s is already queued; enqueue ignored", qid)
                    return self._decode(existing)
                count = int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])
                while count >= self.max_entries and (victim := _pick_victim(conn)) is not None:
                    conn.execute("DELETE FROM entries WHERE seq = ?", (victim[0],))
                    _bump(conn, "dropped_when_full" if victim[2] == "pending" else "evicted")
                    evicted.append(victim[1:])
                    count -= 1
                refused = count >= self.max_entries
                if not refused:
                    conn.execute(
                        "INSERT INTO entries (query_id, created_at, track_id, frame_time, state, request)"
                        " VALUES (?, ?, ?, ?, 'pending', ?)",
                        (qid, now, int(track_id), float(frame_time), sealed),
                    )
                _bump(conn, "refused_when_full" if refused else "total_enqueued")
            if evicted:
                self._checkpoint()
        for victim_id, state in evicted:
            level = logging.WARNING if state == "pending" else logging.INFO
            log.log(level, "outbox full: evicted %s entry %s", state, victim_id)
        if refused:
            log.warning("outbox full of %d hits: refused query %s", count, qid)
            raise OutboxFull(f"outbox {self.path} holds {count} hits, never evicted: query {qid} refused")
        stored = pb.IdentifyRequest()
        stored.CopyFrom(request)
        return OutboxEntry(
            qid, now, int(track_id), float(frame_time), EntryState.PENDING, 0, stored, None, False
        )

    def mark_sent(self, query_id: str) -> None:
        """Count one more send attempt of an entry."""
        with self._lock, self._write("mark a query sent") as conn:
            if conn.execute(
                "UPDATE entries SET attempts = attempts + 1 WHERE query_id = ?", (query_id,)
            ).rowcount:
                return
            raise OutboxEntryMissing(f"outbox {self.path} has no entry {query_id}")

    def record_answer(self, query_id: str, response: pb.IdentifyStreamResponse) -> OutboxEntry:
        """Store the server's answer and return the entry.

        A result makes it ANSWERED (a hit if its decision is MATCH or the server kept the
        probe); an in-band error with a retryable code leaves it as it was, another code
        makes it FAILED. A second answer for an entry already answered or failed is
        ignored, counted and logged, and the stored entry returned. Raises OutboxError
        for an unknown entry (e.g. evicted while in flight) or a malformed answer.
        """
        if response.request_id and response.request_id != query_id:
            raise OutboxMisuse(
                f"the answer to request {response.request_id} was recorded for entry {query_id}"
            )
        outcome = response.WhichOneof("outcome")
        if outcome is None:
            raise OutboxMisuse(f"the answer for outbox entry {query_id} has neither a result nor an error")
        with self._lock, self._write("record an answer") as conn:
            row = conn.execute(f"{_SELECT} WHERE query_id = ?", (query_id,)).fetchone()
            if row is None:
                raise OutboxEntryMissing(f"outbox {self.path} has no entry {query_id} (evicted or removed?)")
            if row[5] in (EntryState.ANSWERED, EntryState.FAILED):
                _bump(conn, "duplicate_answers")
                log.info("ignored a second answer for outbox entry %s (already %s)", query_id, row[5])
                return self._decode(row)
            if outcome == "error" and response.error.code in RETRYABLE_CODES:
                log.info("outbox entry %s: retryable error code %d, kept", query_id, response.error.code)
                return self._decode(row)
            state = EntryState.FAILED if outcome == "error" else EntryState.ANSWERED
            is_hit = outcome == "result" and (response.result.decision == pb.MATCH or response.probe_id != 0)
            now = self._clock()
            sealed = self._key.seal(response.SerializeToString(), _RESPONSE_AAD + query_id.encode())
            # The probe has served its purpose once answered: erase it (secure_delete zeroes it).
            conn.execute(
                "UPDATE entries SET state = ?, is_hit = ?, answered_at = ?, response = ?, request = NULL"
                " WHERE seq = ?",
                (state.value, int(is_hit), now, sealed, row[0]),
            )
        if state is EntryState.FAILED:
            log.warning("outbox entry %s failed permanently: error code %d", query_id, response.error.code)
        stored = pb.IdentifyStreamResponse()
        stored.CopyFrom(response)
        return OutboxEntry(query_id, row[2], row[3], row[4], state, row[6], None, stored, is_hit, now)

    def prune_answered(self, older_than: float) -> int:
        """Delete the answered and failed non-hits answered before ``older_than`` (wall clock).

        Returns how many were deleted.
        """
        removed = self._delete(
            "is_hit = 0 AND state IN ('answered', 'failed') AND answered_at < ?", older_than
        )
        log.info("pruned %d answered outbox entries", removed)
        return removed

    def remove(self, query_id: str) -> None:
        """Delete one entry whatever its state: the only way a hit leaves the queue."""
        if not self._delete("query_id = ?", query_id):
            raise OutboxEntryMissing(f"outbox {self.path} has no entry {query_id}")
        log.info("removed outbox entry %s", query_id)

    # -- reading -------------------------------------------------------------

    def pending(self, limit: int = 100) -> list[OutboxEntry]:
        """Up to ``limit`` pending entries, oldest first, decrypted; damaged ones are quarantined."""
        return self._decoded_rows("state = 'pending'", (), "seq", limit)

    def answered(self, since: float | None = None) -> list[OutboxEntry]:
        """Answered entries (not failed) in answer order; ``since``: answered at or after (wall clock)."""
        where = "state = 'answered'" + ("" if since is None else " AND answered_at >= ?")
        return self._decoded_rows(where, () if since is None else (since,), "answered_at, seq", -1)

    def get(self, query_id: str) -> OutboxEntry:
        """One entry. Raises OutboxError if there is none, OutboxCorrupt if its payload fails to open."""
        with self._lock, self._read("read an entry") as conn:
            row = conn.execute(f"{_SELECT} WHERE query_id = ?", (query_id,)).fetchone()
            if row is None:
                raise OutboxEntryMissing(f"outbox {self.path} has no entry {query_id}")
            return self._decode(row)

    def stats(self) -> OutboxStats:
        with self._lock, self._read("read the statistics") as conn:
            rows = conn.execute("SELECT state, count(*), sum(is_hit) FROM entries GROUP BY state").fetchall()
            counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
        count = {str(state): int(n) for state, n, _ in rows}
        return OutboxStats(
            **{state.value: count.get(state.value, 0) for state in EntryState},
            hits=sum(int(hits or 0) for _, _, hits in rows),
            **{name: int(counters.get(name, 0)) for name in COUNTERS},
        )

    # -- internals -----------------------------------------------------------

    def _decoded_rows(self, where: str, args: tuple[Any, ...], order: str, limit: int) -> list[OutboxEntry]:
        """Decrypt matching rows (``limit`` -1: all); quarantine damaged ones and read on past them."""
        entries: list[OutboxEntry] = []
        with self._lock:
            while True:
                with self._read("read entries") as conn:
                    # Rows returned keep their state and quarantined ones drop out: OFFSET skips the former.
                    rows = conn.execute(
                        f"{_SELECT} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                        (*args, limit - len(entries) if limit >= 0 else -1, len(entries)),
                    ).fetchall()
                damaged = 0
                for row in rows:
                    try:
                        entries.append(self._decode(row))
                    except (OutboxCorrupt, DeviceKeyError) as exc:
                        damaged += 1
                        with self._write("quarantine an entry") as conn:
                            conn.execute("UPDATE entries SET state = 'quarantined' WHERE seq = ?", (row[0],))
                        log.warning("quarantined outbox entry %s: %s", row[1], exc)
                if not damaged or limit < 0:
                    return entries

    def _decode(self, row: tuple[Any, ...]) -> OutboxEntry:
        query_id, state, request, response = row[1], EntryState(row[5]), None, None
        if state is not EntryState.QUARANTINED:  # known damaged: not opened again
            if row[9] is not None:
                request = _parse(pb.IdentifyRequest(), self._key, row[9], _REQUEST_AAD, query_id, "request")
            if row[10] is not None:
                response = _parse(
                    pb.IdentifyStreamResponse(), self._key, row[10], _RESPONSE_AAD, query_id, "answer"
                )
        return OutboxEntry(
            query_id, row[2], row[3], row[4], state, row[6], request, response, bool(row[7]), row[8]
        )

    def _delete(self, where: str, arg: object) -> int:
        """Delete rows, then checkpoint so their payloads leave the -wal as well as the file."""
        with self._lock:
            with self._write("delete entries") as conn:
                removed = int(conn.execute(f"DELETE FROM entries WHERE {where}", (arg,)).rowcount)
            if removed:
                self._checkpoint()
        return removed

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE ... COMMIT (fsynced); the caller holds the lock."""
        with self._read(action) as conn, write_transaction(conn):
            yield conn

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise OutboxUnusable(f"outbox {self.path} is closed")
        with sqlite_errors(f"{action} in outbox {self.path}"):
            yield self._conn

    def _checkpoint(self) -> None:
        with sqlite_errors(f"checkpoint outbox {self.path}"):
            if self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                log.info("outbox %s: WAL checkpoint deferred by another reader", self.path)


def _parse(message: _M, key: DeviceKey, blob: object, aad: bytes, query_id: str, what: str) -> _M:
    where = f"{what} of outbox entry {query_id}"
    plain = key.open(blob if isinstance(blob, bytes) else b"", aad + query_id.encode(), what=where)
    try:
        message.ParseFromString(plain)
    except DecodeError:
        raise OutboxCorrupt(f"{where}: not a valid protobuf message") from None
    return message


def _pick_victim(conn: sqlite3.Connection) -> tuple[int, str, str] | None:
    for state in _VICTIM_STATES:
        row = conn.execute(
            "SELECT seq, query_id FROM entries WHERE state = ? AND is_hit = 0 ORDER BY seq LIMIT 1", (state,)
        ).fetchone()
        if row is not None:
            return int(row[0]), str(row[1]), state
    return None


def _bump(conn: sqlite3.Connection, counter: str) -> None:
    conn.execute("UPDATE counters SET value = value + 1 WHERE name = ?", (counter,))
