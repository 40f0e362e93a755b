"""TransparencyLog: the append-only, Merkle-hashed record of what the service did.

Every enrolment, search, disclosure, erasure, certificate change and
authorisation is appended as a :class:`LogEvent`; the operator signs tree
heads; auditors take an export away and check it with :func:`audit`.

Concurrency: appends in this process are serialised by a lock, and each is a
``BEGIN IMMEDIATE`` transaction that reads the next index from the file
while holding SQLite's write lock, so several processes can append to one
file without two events ever getting the same index.

Cache: the leaf hashes and every complete subtree are kept in memory
(:class:`MerkleTree`, 64 bytes per entry) and only ever extended: rows that
other processes appended are read when a caller asks about a size beyond
the cache, or for the current tree head. Each row read is rehashed and
checked against its stored leaf hash and index, and at open the newest
stored tree head is checked against the recomputed root, so a file edited
behind the log's back is refused (:class:`LogCorrupted`) rather than signed.

Publication (with a :class:`TreeHeadPublisher`): a file cut back together
with its tree heads still agrees with itself, so at open the log is also
checked against the heads it published outside the file (a head file, a
witness), with a consistency proof from each to the log as it is; a log
shorter than one of them, or not extending it, is refused
(:class:`LogRolledBack`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

from safepassage.audit import database
from safepassage.audit.cosignature import Cosignature
from safepassage.audit.entry import LogEntry, LogEvent
from safepassage.audit.errors import (
    InvalidRange,
    LogClosed,
    LogCorrupted,
    LogKeyMismatch,
    LogRolledBack,
    ProofError,
    SignatureError,
)
from safepassage.audit.export import (
    ExportSummary,
    read_cosignatures,
    read_public_key,
    read_tree_heads,
    write_export,
)
from safepassage.audit.keys import key_id, public_key_bytes, public_key_pem
from safepassage.audit.merkle import MerkleTree, leaf_hash, verify_consistency
from safepassage.audit.publisher import TreeHeadPublisher
from safepassage.audit.tree_head import SignedTreeHead, verify_tree_head
from safepassage.core.signing import SigningKey, VerifyingKey

__all__ = ["TransparencyLog"]

_log = logging.getLogger(__name__)

Clock = Callable[[], int]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TransparencyLog:
    """An RFC 9162-style Merkle log of LogEvents in one SQLite file, signed with Ed25519."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        signing_key: SigningKey,
        clock: Clock,
        publisher: TreeHeadPublisher | None = None,
    ) -> None:
        """Use :meth:`open`."""
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._key = signing_key
        self._public_key = signing_key.public_key()
        self._clock = clock
        self._lock = threading.Lock()
        self._tree = MerkleTree()
        self._publisher = publisher
        # Signing and publishing one head at a time keeps published heads in order;
        # appends only need self._lock and go on meanwhile.
        self._publishing = threading.Lock()

    @classmethod
    def open(
        cls,
        path: Path,
        signing_key: SigningKey,
        *,
        busy_timeout: float = 5.0,
        clock: Clock | None = None,
        publisher: TreeHeadPublisher | None = None,
    ) -> TransparencyLog:
        """Open or create the log at ``path``; the first open binds the file to ``signing_key``.

        Raises LogKeyMismatch if the file was created with another key, and
        LogCorrupted if its rows or its newest tree head do not check out.
        With a ``publisher``, raises LogRolledBack if the log is shorter than,
        or inconsistent with, a head it published (see :mod:`safepassage.audit.publisher`).
        """
        path = Path(path)
        conn = database.connect(path, busy_timeout=busy_timeout)
        log = cls(conn, path, signing_key, clock or _now_ms, publisher)
        try:
            log._bind_key()
            with log._lock:
                log._refresh()
                log._check_latest_head()
            if publisher is not None:
                for source, head in publisher.published_heads(log._public_key):
                    log._check_published(source, head)
        except BaseException:
            log.close()
            raise
        _log.info("opened transparency log %s (%d entries, key %s)", path, log._tree.size, log.key_id)
        return log

    def _bind_key(self) -> None:
        ours = public_key_pem(self._public_key)
        with database.write(self._connection(), "bind the signing key") as conn:
            try:
                stored = read_public_key(conn)
            except ValueError:
                raise LogCorrupted(f"{self._path} records an unreadable public key") from None
            if stored is None:
                conn.execute("INSERT INTO meta (key, value) VALUES ('public_key_pem', ?)", (ours,))
            elif public_key_bytes(stored) != public_key_bytes(self._public_key):
                raise LogKeyMismatch(
                    f"{self._path} is signed by key {key_id(stored)}, not {key_id(self._public_key)}"
                )

    def close(self) -> None:
        """Close the file; later calls raise LogClosed. Idempotent."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> TransparencyLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def public_key(self) -> VerifyingKey:
        return self._public_key

    @property
    def key_id(self) -> str:
        """Hex SHA-256 of the raw public key, for auditors to pin."""
        return key_id(self._public_key)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LogClosed("the transparency log is closed")
        return self._conn

    # -- the cache ------------------------------------------------------------

    def _refresh(self) -> None:
        """Extend the cached tree with rows appended since it was last read. Hold the lock."""
        tree = self._tree
        with database.sqlite_errors("read the transparency log"):
            rows = self._connection().execute(
                "SELECT leaf_index, data, leaf_hash FROM leaves WHERE leaf_index >= ? ORDER BY leaf_index",
                (tree.size,),
            )
            for index, data, stored in rows:
                if index != tree.size:
                    raise LogCorrupted(f"the log has no entry {tree.size} (next stored index is {index})")
                hashed = leaf_hash(database.blob(data, f"entry {index}"))
                if hashed != database.blob(stored, f"the leaf hash of entry {index}"):
                    raise LogCorrupted(f"entry {index} does not match its stored leaf hash")
                tree.append(hashed)

    def _size(self) -> int:
        with database.sqlite_errors("read the log size"):
            row = self._connection().execute("SELECT coalesce(max(leaf_index) + 1, 0) FROM leaves").fetchone()
        return int(row[0])

    def _ensure(self, size: int) -> None:
        """Make the cache cover ``size`` leaves if the file has them. Hold the lock."""
        if size > self._tree.size:
            self._refresh()

    def _check_latest_head(self) -> None:
        with database.sqlite_errors("read tree heads"):
            heads = read_tree_heads(self._connection())
        if not heads:
            return
        latest = heads[-1]
        try:
            verify_tree_head(latest, self._public_key)
        except SignatureError as error:
            raise LogCorrupted(f"the newest stored tree head: {error}") from None
        if latest.tree_size > self._tree.size or self._tree.root(latest.tree_size) != latest.root_hash:
            raise LogCorrupted(
                f"the entries no longer match the newest stored tree head (size {latest.tree_size})"
            )

    def _check_published(self, source: str, head: SignedTreeHead) -> None:
        """The log must still hold what ``head`` (published at ``source``) said it held."""
        try:
            verify_tree_head(head, self._public_key)
        except SignatureError as error:
            raise LogKeyMismatch(f"{source} holds a tree head of another log: {error}") from None
        with self._lock:
            self._ensure(self._size())
            size = self._tree.size
            if head.tree_size > size:
                raise LogRolledBack(
                    f"{self._path} holds {size} entries but {source} published a tree head of size"
                    f" {head.tree_size}: entries were removed (a truncated or older copy of the log)"
                )
            root = self._tree.root(size)
            proof = self._tree.consistency_proof(head.tree_size, size)
        try:
            verify_consistency(head.tree_size, size, proof, head.root_hash, root)
        except ProofError as error:
            raise LogRolledBack(
                f"{self._path} is not consistent with the tree head of size {head.tree_size} that {source}"
                f" published: entries were rewritten since ({error})"
            ) from None
        _log.info("the log extends the tree head of size %d published at %s", head.tree_size, source)

    # -- writing --------------------------------------------------------------

    def append(self, event: LogEvent) -> int:
        """Durably append one event; returns its index once the commit is fsynced."""
        return self.append_many([event])[0]

    def append_many(self, events: Iterable[LogEvent]) -> list[int]:
        """Append events in one transaction, all or none; returns their indices in order."""
        leaves = [event.to_leaf() for event in events]
        hashes = [leaf_hash(data) for data in leaves]
        if not leaves:
            return []
        with self._lock:
            with database.write(self._connection(), "append to the transparency log") as conn:
                first = int(conn.execute("SELECT coalesce(max(leaf_index) + 1, 0) FROM leaves").fetchone()[0])
                conn.executemany(
                    "INSERT INTO leaves (leaf_index, data, leaf_hash) VALUES (?, ?, ?)",
                    zip(range(first, first + len(leaves)), leaves, hashes, strict=True),
                )
            # Extend the cache directly only if no other process wrote in between.
            if self._tree.size == first:
                self._tree.extend(hashes)
        return list(range(first, first + len(leaves)))

    def tree_head(self) -> SignedTreeHead:
        """A freshly signed head for the log as it is now (not stored)."""
        with self._lock:
            self._ensure(self._size())
            size = self._tree.size
            return SignedTreeHead.sign(self._key, size, self._clock(), self._tree.root(size))

    def sign_tree_head(self) -> SignedTreeHead:
        """Sign the current tree and store the head; timestamps never go back between stored heads.

        With a publisher, the head is also written to its head file.
        """
        with self._publishing:
            return self._sign_and_record()

    def publish_tree_head(self) -> SignedTreeHead:
        """:meth:`sign_tree_head`, then send the head to the publisher's witness and store its cosignature.

        Raises WitnessUnavailable (the head stays stored and recorded; the
        next publication proves consistency from the witness's size, so
        nothing is skipped) or WitnessRefused (the log does not extend what
        the witness cosigned).
        """
        with self._publishing:
            head = self._sign_and_record()
            if self._publisher is not None:
                cosignature = self._publisher.publish(self.key_id, head, self.consistency_proof)
                if cosignature is not None:
                    self._store_cosignature(cosignature)
        return head

    def _sign_and_record(self) -> SignedTreeHead:
        head = self._sign_and_store()
        if self._publisher is not None:
            self._publisher.record(head)
        return head

    def _store_cosignature(self, cosignature: Cosignature) -> None:
        with self._lock, database.write(self._connection(), "store a cosignature") as conn:
            conn.execute(
                "INSERT INTO cosignatures (tree_size, witness_key_id, body) VALUES (?, ?, ?)",
                (cosignature.tree_size, cosignature.witness_key_id, cosignature.to_line()),
            )
        _log.debug(
            "stored the cosignature of witness key %s at size %d",
            cosignature.witness_key_id,
            cosignature.tree_size,
        )

    def _sign_and_store(self) -> SignedTreeHead:
        with self._lock, database.write(self._connection(), "sign a tree head") as conn:
            self._refresh()
            size = self._tree.size
            newest = conn.execute("SELECT coalesce(max(timestamp), 0) FROM tree_heads").fetchone()[0]
            head = SignedTreeHead.sign(
                self._key, size, max(self._clock(), int(newest)), self._tree.root(size)
            )
            conn.execute(
                "INSERT INTO tree_heads (version, tree_size, timestamp, root_hash, signature)"
                " VALUES (?, ?, ?, ?, ?)",
                (head.version, head.tree_size, head.timestamp, head.root_hash, head.signature),
            )
        _log.debug("signed tree head of size %d", head.tree_size)
        return head

    # -- reading --------------------------------------------------------------

    def size(self) -> int:
        """Number of entries in the file now (including other processes' appends)."""
        with self._lock:
            return self._size()

    def tree_heads(self) -> list[SignedTreeHead]:
        """Every stored tree head, oldest first."""
        with self._lock, database.sqlite_errors("read tree heads"):
            return read_tree_heads(self._connection())

    def latest_tree_head(self) -> SignedTreeHead | None:
        heads = self.tree_heads()
        return heads[-1] if heads else None

    def cosignatures(self) -> list[Cosignature]:
        """Every witness cosignature stored, oldest first."""
        with self._lock, database.sqlite_errors("read cosignatures"):
            return read_cosignatures(self._connection())

    def root_hash(self, tree_size: int) -> bytes:
        """MTH of the first ``tree_size`` entries."""
        with self._lock:
            self._ensure(tree_size)
            return self._tree.root(tree_size)

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """Audit path of entry ``index`` in the tree of ``tree_size`` (RFC 9162 2.1.3.1)."""
        with self._lock:
            self._ensure(tree_size)
            return self._tree.inclusion_proof(index, tree_size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """Proof that the tree of size ``second`` extends that of ``first`` (RFC 9162 2.1.4.1)."""
        with self._lock:
            self._ensure(second)
            return self._tree.consistency_proof(first, second)

    def entries(self, start: int, end: int) -> list[LogEntry]:
        """Entries ``[start, end)``; ``end`` is clamped to the log's size."""
        if not 0 <= start <= end:
            raise InvalidRange(f"no entries [{start}, {end})")
        with self._lock:
            self._ensure(end)
            end = min(end, self._tree.size)
            with database.sqlite_errors("read entries"):
                rows = (
                    self._connection()
                    .execute(
                        "SELECT leaf_index, data FROM leaves WHERE leaf_index >= ? AND leaf_index < ?"
                        " ORDER BY leaf_index",
                        (start, end),
                    )
                    .fetchall()
                )
            found = [LogEntry(int(index), database.blob(data, f"entry {index}")) for index, data in rows]
            for entry in found:
                if entry.leaf_hash != self._tree.leaf(entry.index):
                    raise LogCorrupted(f"entry {entry.index} changed after it was appended")
        return found

    def export(self, folder: Path, *, sign: bool = True) -> ExportSummary:
        """Write the log as files for an auditor (see :mod:`safepassage.audit.export`).

        With ``sign`` (the default) a fresh tree head is signed and stored first,
        so the export ends with a signature over everything in it, unless
        another process appends in between.
        """
        if sign:
            self.sign_tree_head()
        self._connection()  # LogClosed rather than a fresh connection to a closed log
        # Its own read-only connection: appends in this process go on meanwhile.
        conn = database.connect(self._path, read_only=True)
        try:
            return write_export(conn, Path(folder), self._public_key)
        finally:
            conn.close()
