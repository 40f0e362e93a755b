"""Answers already given on identify streams, so a replayed query is answered once.

Edge clients (CCTV units, kiosks) queue queries offline and replay them after a
reconnection or a crash; each query carries a client-chosen ``request_id``. The
ledger keeps, per (authenticated client id, request id), the serialized answer
and a digest of the query it answered, so a replay gets the same answer (the
same candidates, the same kept probe id) without a second search. Blobs are
sealed like templates, with associated data binding the client and request ids
under a namespace of their own: a blob moved to another key, or opened as a
template or probe, fails to open. Answers name candidates' reference ids, so
they live in a file of their own, erased by `purge` after the retention (7 days
by default); a replay later than that gets a fresh search.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from safepassage.core.errors import DataIntegrityError, InvalidInput
from safepassage.core.sqlite import Database
from safepassage.store.connections import STORE_ERRORS
from safepassage.store.errors import StoreError, TemplateIntegrityError
from safepassage.store.sealing import TemplateSealer

__all__ = [
    "QUERY_DIGEST_SIZE",
    "REQUEST_ID",
    "InvalidRequestId",
    "ReplyIntegrityError",
    "ReplyLedger",
    "StoredReply",
    "check_request_id",
]

log = logging.getLogger(__name__)

# A UUID fits; so do the ids of clients that count or prefix their queries.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
QUERY_DIGEST_SIZE = 32  # SHA-256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    client_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    answered_at REAL NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (client_id, request_id)
);
CREATE INDEX IF NOT EXISTS replies_by_age ON replies (answered_at);
"""
# The first associated-data part; the ':' keeps it apart from gallery ids and "camera-probe:".
_NAMESPACE = "stream-reply:"


class InvalidRequestId(StoreError, InvalidInput):
    """A request id is not 1 to 128 letters, digits and . _ : -, or the client id is empty."""


class ReplyIntegrityError(StoreError, DataIntegrityError):
    """A stored answer failed to open: altered, truncated, moved to another key, or another key's."""


def _prepare(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)


def check_request_id(request_id: str) -> str:
    """Return the id if it may key the ledger; InvalidRequestId (naming the field, not the value) if not."""
    if not REQUEST_ID.fullmatch(request_id):
        # The value is not echoed: it is whatever the client sent, of any length.
        raise InvalidRequestId("request_id must be 1 to 128 characters of letters, digits and . _ : -")
    return request_id


def _check_key(client_id: str, request_id: str) -> None:
    if not client_id:
        raise InvalidRequestId("a stored answer needs the client id of the caller")
    check_request_id(request_id)


@dataclass(frozen=True)
class StoredReply:
    """An answer given before: its serialized bytes, the digest of the query, and when."""

    answer: bytes
    query_sha256: bytes
    answered_at: float


class ReplyLedger:
    """The sealed answers of one server; thread-safe (one connection behind a lock)."""

    def __init__(self, database: Database, sealer: TemplateSealer) -> None:
        """Use :meth:`open`."""
        self._db, self._sealer = database, sealer

    @classmethod
    def open(cls, path: Path, sealer: TemplateSealer) -> ReplyLedger:
        return cls(Database.open(path, STORE_ERRORS, _prepare, action="prepare the reply ledger"), sealer)

    def close(self) -> None:
        self._db.close()

    def put(
        self,
        client_id: str,
        request_id: str,
        query_sha256: bytes,
        answer: bytes,
        answered_at: float | None = None,
    ) -> None:
        """Keep (or replace) the answer to one query; committed and fsynced before it returns."""
        _check_key(client_id, request_id)
        if len(query_sha256) != QUERY_DIGEST_SIZE:
            raise InvalidRequestId(f"a query digest is {QUERY_DIGEST_SIZE} bytes")
        moment = time.time() if answered_at is None else answered_at
        sealed = self._sealer.seal_bytes(
            bytes(query_sha256) + bytes(answer), context=(_NAMESPACE + client_id, request_id)
        )
        with self._db.write("keep a stream answer") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO replies (client_id, request_id, answered_at, sealed)"
                " VALUES (?, ?, ?, ?)",
                (client_id, request_id, moment, sealed),
            )

    def get(self, client_id: str, request_id: str) -> StoredReply | None:
        """The answer given to this client for this request id; None if none is kept (or purged)."""
        _check_key(client_id, request_id)
        with self._db.read("read a stream answer") as conn:
            row = conn.execute(
                "SELECT answered_at, sealed FROM replies WHERE client_id = ? AND request_id = ?",
                (client_id, request_id),
            ).fetchone()
        if row is None:
            return None
        where = f"the answer to request {request_id} of client {client_id}"
        try:
            plain = self._sealer.open_bytes(row[1], context=(_NAMESPACE + client_id, request_id))
        except TemplateIntegrityError as error:
            raise ReplyIntegrityError(f"{where} failed to open: {error}") from None
        if len(plain) < QUERY_DIGEST_SIZE:
            raise ReplyIntegrityError(f"{where} is truncated")
        return StoredReply(plain[QUERY_DIGEST_SIZE:], plain[:QUERY_DIGEST_SIZE], float(row[0]))

    def count(self) -> int:
        return self._db.count("count stream answers", "SELECT count(*) FROM replies")

    def purge(self, retention_s: float, now: float | None = None) -> int:
        """Erase answers older than the retention; their bytes leave the file too. Returns the count."""
        return self._db.purge("stream answers", "DELETE FROM replies WHERE answered_at < ?", retention_s, now)
