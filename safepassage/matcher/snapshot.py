"""Encrypted, authenticated snapshots of a gallery's index.

A snapshot spares the server a full decrypt-and-rebuild at start-up, but it
is never trusted on its own: `load` returns an index only when the file
decrypts and authenticates, and its generation, size and content digest equal
the store's. Anything else raises SnapshotRejected and the caller rebuilds.

Snapshots hold templates, so they are encrypted like the store (AES-256-GCM,
:class:`safepassage.core.sealing.Aead`). The body is split into chunks, each
sealed with its index and a last-chunk flag in the associated data (so chunks
cannot be dropped, reordered or truncated) along with a hash of the header. A
stream of chunks has a framing of its own, not the one-blob envelope: the
header names no key (the snapshot key is one per deployment) and is
authenticated through every chunk's associated data instead. Written through
:func:`safepassage.core.atomic_file.replacing`.

The body is a serialised `GalleryIndex` (its plan, measured recall and the
flat or approximate index); the header's `index_kind` names the index kind.
Version 1 snapshots (a bare flat index) are refused, and the caller rebuilds.

Nothing is left behind: a failed write removes its partial file and the
stale snapshot it was replacing (the gallery changed since it was taken, so
it would be rejected anyway, and it may hold erased templates). At start-up
`remove_stale` deletes what a crash left: snapshots of galleries the store no
longer has (a DeleteGallery killed between its commit and the unlink) and
partial ``.tmp`` files.

File layout::

    b"SPSNAP" version(1 byte) header_length(u32 LE) header(JSON)
    then per chunk: length(u32 LE) nonce(12) ciphertext+tag
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from safepassage.core import atomic_file
from safepassage.core.sealing import NONCE_SIZE, Aead, AuthenticationFailed
from safepassage.matcher.errors import SnapshotRejected
from safepassage.matcher.gallery_index import BuiltIndex, GalleryIndex
from safepassage.matcher.index_policy import IndexPolicy
from safepassage.matcher.metric import Metric
from safepassage.matcher.rwlock import ReadWriteLock
from safepassage.store.errors import StoreUnavailable

log = logging.getLogger(__name__)

MAGIC = b"SPSNAP"
VERSION = 2
CHUNK_BYTES = 64 * 1024 * 1024
SUFFIX = ".snapshot"  # <gallery id>.snapshot (safepassage.matcher.index_loader names them)
PARTIAL = ".tmp"  # a snapshot being written
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class SnapshotHeader:
    gallery_id: str
    generation: int
    size: int
    digest: str  # hex of the store's content digest when the snapshot was taken
    dimension: int
    metric: str
    index_kind: str = "flat"  # GalleryIndex.kind: "flat", "ivf_hnsw_sq8", ...


def _chunk_aad(header_hash: bytes, position: int, last: bool) -> bytes:
    return header_hash + _U32.pack(position) + (b"\x01" if last else b"\x00")


def _chunks(body: bytes) -> Iterator[tuple[int, bytes, bool]]:
    count = max(1, -(-len(body) // CHUNK_BYTES))
    for position in range(count):
        yield position, body[position * CHUNK_BYTES : (position + 1) * CHUNK_BYTES], position == count - 1


def save(path: Path, header: SnapshotHeader, index: GalleryIndex | BuiltIndex, key: bytes) -> None:
    """Write the snapshot atomically: a crash leaves the old file or the new one.

    Callers hold the gallery's read lock, so the index cannot change meanwhile.
    """
    gallery = index if isinstance(index, GalleryIndex) else GalleryIndex(index)
    if header.index_kind != gallery.kind:
        raise ValueError(f"header names a {header.index_kind} index; this one is {gallery.kind}")
    aead = Aead(key)
    header_bytes = json.dumps(asdict(header), sort_keys=True).encode()
    prefix = MAGIC + bytes([VERSION]) + _U32.pack(len(header_bytes)) + header_bytes
    header_hash = hashlib.sha256(prefix).digest()
    # A fixed temporary name: remove_stale clears what a crash leaves. snapshots/ is made 0700.
    temporary = path.with_suffix(path.suffix + PARTIAL)
    try:
        with atomic_file.replacing(path, temporary=temporary) as out:
            out.write(prefix)
            for position, chunk, last in _chunks(gallery.to_bytes()):
                sealed = aead.seal(chunk, _chunk_aad(header_hash, position, last))  # nonce || ciphertext
                out.write(_U32.pack(len(sealed) - NONCE_SIZE) + sealed)
    except OSError as error:
        # A full or read-only disk: the store still holds everything, the next start rebuilds.
        _remove(path)
        raise StoreUnavailable(
            f"cannot write the index snapshot of gallery {header.gallery_id}: {error.strerror}"
        ) from error
    log.info("saved index snapshot of gallery %s: %d templates", header.gallery_id, header.size)


def remove_stale(folder: Path, galleries: Collection[str]) -> int:
    """Delete snapshots of galleries not in ``galleries``, and partial files; returns how many went.

    Run at start-up, before any snapshot is written. A file that cannot be
    removed (a read-only disk) is logged and left for the next start.
    """
    try:
        names = sorted(entry.name for entry in folder.iterdir() if entry.is_file())
    except FileNotFoundError:
        return 0
    except OSError as error:
        log.warning("cannot list the snapshot folder %s: %s", folder, error.strerror)
        return 0
    removed = 0
    for name in names:
        partial = name.endswith(PARTIAL)
        orphan = name.endswith(SUFFIX) and name[: -len(SUFFIX)] not in galleries
        if (partial or orphan) and _remove(folder / name):
            removed += 1
    if removed:
        log.info("removed %d stale snapshot files (deleted galleries, interrupted writes)", removed)
    return removed


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as error:
        log.warning("cannot remove %s: %s", path, error.strerror)
        return False
    return True


def _read_exact(data: bytes, offset: int, length: int) -> bytes:
    if offset + length > len(data):
        raise SnapshotRejected("snapshot is truncated")
    return data[offset : offset + length]


def load(
    path: Path,
    key: bytes,
    expected: SnapshotHeader,
    digest_of: Callable[[GalleryIndex], bytes],
    policy: IndexPolicy | None = None,
    lock: ReadWriteLock | None = None,
) -> GalleryIndex:
    """Return the snapshot's index if it matches `expected` in every respect but its kind.

    `digest_of` recomputes the store's content digest from the loaded index,
    so a snapshot whose vectors differ from the store's is rejected even when
    its counters agree. The index may be of any kind (`expected.index_kind`
    is not compared): the returned GalleryIndex gets `policy` and `lock`, and
    rebuilds itself if the policy now wants another kind.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SnapshotRejected(f"snapshot cannot be read: {error.strerror}") from None
    if data[: len(MAGIC)] != MAGIC or len(data) < len(MAGIC) + 5:
        raise SnapshotRejected("not a SafePassage index snapshot")
    if data[len(MAGIC)] != VERSION:
        raise SnapshotRejected(
            f"snapshot version {data[len(MAGIC)]} is not supported (this server writes version {VERSION})"
        )
    offset = len(MAGIC) + 1
    (header_length,) = _U32.unpack(_read_exact(data, offset, 4))
    offset += 4
    header_bytes = _read_exact(data, offset, header_length)
    offset += header_length
    header_hash = hashlib.sha256(data[:offset]).digest()
    try:
        header = SnapshotHeader(**json.loads(header_bytes))
    except (ValueError, TypeError) as error:
        raise SnapshotRejected(f"snapshot header is unreadable: {error}") from None
    if replace(header, index_kind=expected.index_kind) != expected:
        raise SnapshotRejected(
            f"snapshot is of generation {header.generation} with {header.size} templates;"
            f" the store is at generation {expected.generation} with {expected.size}"
        )
    aead = Aead(key)
    body = bytearray()
    position = 0
    while True:
        (length,) = _U32.unpack(_read_exact(data, offset, 4))
        nonce = _read_exact(data, offset + 4, 12)
        sealed = _read_exact(data, offset + 16, length)
        offset += 16 + length
        last = offset == len(data)
        try:
            body += aead.decrypt(nonce, sealed, _chunk_aad(header_hash, position, last))
        except AuthenticationFailed:
            raise SnapshotRejected(f"snapshot chunk {position} failed authentication") from None
        position += 1
        if last:
            break
    try:
        index = GalleryIndex.from_bytes(
            bytes(body), expected.dimension, Metric(expected.metric), policy, lock, expected.gallery_id
        )
    except (RuntimeError, ValueError) as error:
        raise SnapshotRejected(f"snapshot index is unreadable: {error}") from None
    if index.kind != header.index_kind:
        raise SnapshotRejected(f"snapshot header names a {header.index_kind} index; it holds {index.kind}")
    if index.size != expected.size:
        raise SnapshotRejected(f"snapshot holds {index.size} templates; the store {expected.size}")
    if digest_of(index).hex() != expected.digest:
        raise SnapshotRejected("snapshot vectors differ from the store's")
    return index
