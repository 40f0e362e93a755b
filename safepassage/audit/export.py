"""Writing the log out as plain files an outside auditor can take away and check offline.

Files of an export folder (all UTF-8, lines end in ``\\n``):

``entries.jsonl``
    Line i (0-based) is the leaf data of entry i, byte for byte: one event as
    compact sorted-key JSON (see :mod:`safepassage.audit.entry`). Its leaf hash is
    ``SHA-256(0x00 || line without its newline)``.
``tree_heads.jsonl``
    Every signed tree head the log stored, oldest first, one JSON object per
    line (see :mod:`safepassage.audit.tree_head`).
``log_public_key.pem``
    The Ed25519 public key that signs the tree heads (SubjectPublicKeyInfo PEM).
``cosignatures.jsonl``
    Every witness cosignature the server received for a published tree head,
    one JSON object per line (see :mod:`safepassage.audit.cosignature`); empty
    without a witness.
``leaf_hashes.txt``
    Line i is the log's stored leaf hash of entry i, hex. Redundant and
    unauthenticated on its own: the auditor trusts it only where it
    reproduces a signed root, and then uses it to name exactly which entry
    of a tampered ``entries.jsonl`` differs.
``README.txt``
    This description, for whoever opens the folder.

Everything is read in one SQLite read transaction, so the files describe one
state of the log even while the service keeps appending.
"""

from __future__ import annotations

import functools
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from safepassage.audit import database
from safepassage.audit.cosignature import Cosignature
from safepassage.audit.errors import LogCorrupted
from safepassage.audit.keys import load_public_key, public_key_pem
from safepassage.audit.tree_head import SignedTreeHead
from safepassage.core import atomic_file
from safepassage.core.signing import VerifyingKey

__all__ = [
    "COSIGNATURES_FILE",
    "ENTRIES_FILE",
    "LEAF_HASHES_FILE",
    "PUBLIC_KEY_FILE",
    "TREE_HEADS_FILE",
    "ExportSummary",
    "export_log",
    "read_cosignatures",
    "read_public_key",
    "read_tree_heads",
    "write_export",
]

ENTRIES_FILE = "entries.jsonl"
TREE_HEADS_FILE = "tree_heads.jsonl"
PUBLIC_KEY_FILE = "log_public_key.pem"
LEAF_HASHES_FILE = "leaf_hashes.txt"
COSIGNATURES_FILE = "cosignatures.jsonl"
README_FILE = "README.txt"

_README = """SafePassage transparency log export
===================================

Verify with:  safepassage audit verify <this folder> --key <the operator's published public key>
                --state <your own file of the heads you saw before>
                [--witness-key <a witness's public key> --require-cosigned]

entries.jsonl     line i = leaf data of entry i (compact sorted-key JSON);
                  leaf hash = SHA-256(0x00 || line bytes without the newline)
tree_heads.jsonl  signed tree heads, oldest first:
                  {"version","tree_size","timestamp" (ms),"sha256_root_hash" (base64),
                   "tree_head_signature" (base64, Ed25519)}
                  signed bytes = b"safepassage-audit-log-tree-head\\n" || version (1 byte)
                                 || tree_size (8, big-endian) || timestamp (8, big-endian) || root (32)
log_public_key.pem  the Ed25519 key that signs the tree heads
cosignatures.jsonl  witnesses' cosignatures of tree heads (C2SP tlog-cosignature v1 messages):
                  {"witness","witness_key_id","timestamp" (s),"tree_size","sha256_root_hash","signature"}
                  check them with --witness-key <the witness's public key>
leaf_hashes.txt   line i = hex leaf hash of entry i as the log stored it (a locating aid only)

Tree hashing follows RFC 9162 section 2.1: node = SHA-256(0x01 || left || right),
split at the largest power of two below the number of leaves.
The entries hold hashes, counts and ids of accounts and devices; never biometric or personal data.
"""


@dataclass(frozen=True)
class ExportSummary:
    folder: Path
    entries: int
    tree_heads: int
    tree_size: int  # the size of the newest tree head, 0 if none


def read_public_key(conn: sqlite3.Connection) -> VerifyingKey | None:
    """The public key recorded when the log was created, or None for a log never opened to write."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'public_key_pem'").fetchone()
    return None if row is None else load_public_key(bytes(row[0]))


def read_tree_heads(conn: sqlite3.Connection) -> list[SignedTreeHead]:
    rows = conn.execute(
        "SELECT tree_size, timestamp, root_hash, signature, version FROM tree_heads ORDER BY id"
    ).fetchall()
    return [
        SignedTreeHead(
            int(r[0]),
            int(r[1]),
            database.blob(r[2], "a root hash"),
            database.blob(r[3], "a signature"),
            int(r[4]),
        )
        for r in rows
    ]


def read_cosignatures(conn: sqlite3.Connection) -> list[Cosignature]:
    """Every stored cosignature, oldest first; none in a file from before witnesses."""
    known = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cosignatures'")
    if known.fetchone() is None:
        return []
    rows = conn.execute("SELECT body FROM cosignatures ORDER BY id").fetchall()
    try:
        return [Cosignature.from_line(str(row[0])) for row in rows]
    except ValueError as error:
        raise LogCorrupted(f"a stored cosignature is malformed: {error}") from None


# Each file is written under a temporary name, fsynced, then renamed over the old one; the export is
# for publishing, so the umask decides its mode.
_replacing = functools.partial(atomic_file.replacing, mode=None)


def write_export(conn: sqlite3.Connection, folder: Path, public_key: VerifyingKey) -> ExportSummary:
    """Write the export files for the log open on ``conn`` into ``folder`` (created if missing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with database.read(conn, "export the transparency log"):
        heads = read_tree_heads(conn)
        cosignatures = read_cosignatures(conn)
        count = 0
        with _replacing(folder / ENTRIES_FILE) as entries, _replacing(folder / LEAF_HASHES_FILE) as hashes:
            rows = conn.execute("SELECT leaf_index, data, leaf_hash FROM leaves ORDER BY leaf_index")
            for index, data, stored_hash in rows:
                data = database.blob(data, f"entry {index}")
                if index != count:
                    raise LogCorrupted(f"the log has no entry {count} (next stored index is {index})")
                if b"\n" in data:
                    raise LogCorrupted(f"entry {index} contains a newline; it is not canonical leaf data")
                entries.write(data + b"\n")
                stored_hash = database.blob(stored_hash, f"the leaf hash of entry {index}")
                hashes.write(stored_hash.hex().encode("ascii") + b"\n")
                count += 1
    with _replacing(folder / TREE_HEADS_FILE) as file:
        file.writelines(head.to_line().encode("ascii") + b"\n" for head in heads)
    with _replacing(folder / COSIGNATURES_FILE) as file:
        file.writelines(cosignature.to_line().encode("utf-8") + b"\n" for cosignature in cosignatures)
    with _replacing(folder / PUBLIC_KEY_FILE) as file:
        file.write(public_key_pem(public_key))
    with _replacing(folder / README_FILE) as file:
        file.write(_README.encode("utf-8"))
    return ExportSummary(folder, count, len(heads), heads[-1].tree_size if heads else 0)


def export_log(path: Path, folder: Path, *, busy_timeout: float = 5.0) -> ExportSummary:
    """Export the log file at ``path`` read-only, without its signing key.

    Entries appended after the newest tree head are exported too but no
    signature covers them; :meth:`TransparencyLog.export` signs a fresh
    tree head first.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no transparency log at {path}")
    conn = database.connect(Path(path), read_only=True, busy_timeout=busy_timeout)
    try:
        with database.sqlite_errors("read the log's public key"):
            public_key = read_public_key(conn)
        if public_key is None:
            raise LogCorrupted(f"{path} records no public key")
        return write_export(conn, folder, public_key)
    finally:
        conn.close()
