"""The edge device's own key: seals what the device keeps on disk (the outbox) with AES-256-GCM.

The key is 32 random bytes in a file of its own, created owner-only (0600, in
a 0700 folder when the folder is new) on first use and refused afterwards if
group or others may access it. Sealed blob format, version 1::

    offset  size  field
    0       1     version, 0x01
    1       8     key fingerprint
    9       12    random nonce
    21      n+16  AES-256-GCM ciphertext of the n plaintext bytes, then the tag

The header is part of the associated data, so it cannot be altered either;
callers add their own associated data to bind a blob to its row. The
fingerprint (first 8 bytes of SHA-256 over a label and the key) lets a blob of
another key be reported as a wrong key rather than as tampering. The AEAD key
is HKDF-derived from the file's key so that a later use of the device key
(e.g. signing) can take its own subkey without the two interacting.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from safepassage.camera_edge.errors import DeviceKeyError, OutboxCorrupt
from safepassage.core.private_files import check_owner_only, make_private_folder

__all__ = [
    "FINGERPRINT_SIZE",
    "KEY_SIZE",
    "SEALED_OVERHEAD",
    "SEAL_VERSION",
    "DeviceKey",
    "open_queue_key",
]

log = logging.getLogger(__name__)

KEY_SIZE = 32
FINGERPRINT_SIZE = 8
SEAL_VERSION = 0x01
_NONCE_SIZE = 12
_TAG_SIZE = 16
_HEADER_SIZE = 1 + FINGERPRINT_SIZE
SEALED_OVERHEAD = _HEADER_SIZE + _NONCE_SIZE + _TAG_SIZE

# Domain-separation labels: part of the on-disk format.
_FINGERPRINT_LABEL = b"safepassage/edge/device-key-fingerprint/v1\x00"
_SEAL_INFO = b"safepassage/edge/device-seal/v1"


class DeviceKey:
    """One device key, able to seal and open blobs. Thread-safe: it holds only immutable state.

    ``repr`` shows the fingerprint only; the key bytes are never formatted anywhere.
    """

    __slots__ = ("_aead", "_fingerprint", "_header", "_source")

    def __init__(self, key: bytes, *, source: str = "memory") -> None:
        """Use :meth:`load` or :meth:`load_or_create`; direct use is for tests and tools."""
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise DeviceKeyError(f"device key from {source} must be {KEY_SIZE} bytes")
        self._fingerprint = hashlib.sha256(_FINGERPRINT_LABEL + key).digest()[:FINGERPRINT_SIZE]
        seal_key = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=_SEAL_INFO).derive(key)
        self._aead = AESGCM(seal_key)
        self._header = bytes([SEAL_VERSION]) + self._fingerprint
        self._source = source

    @classmethod
    def generate(cls) -> DeviceKey:
        """A fresh random key held in memory only."""
        return cls(os.urandom(KEY_SIZE))

    @classmethod
    def load(cls, path: Path) -> DeviceKey:
        """Read the key file at ``path``.

        Raises DeviceKeyError naming the path if it is missing, unreadable, not a
        regular file, not exactly 32 bytes, or accessible to group or others.
        """
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise DeviceKeyError(f"cannot read the device key file {str(path)!r}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise DeviceKeyError(f"the device key file {str(path)!r} is not a regular file")
            # Refused, not warned about: whoever can read it can read every queued probe.
            check_owner_only(path, info.st_mode, "device key", DeviceKeyError)
            if info.st_size != KEY_SIZE:
                raise DeviceKeyError(
                    f"the device key file {str(path)!r} holds {info.st_size} bytes, expected {KEY_SIZE}"
                )
            data = os.read(fd, KEY_SIZE + 1)
        except OSError as exc:
            raise DeviceKeyError(f"cannot read the device key file {str(path)!r}: {exc.strerror}") from None
        finally:
            os.close(fd)
        if len(data) != KEY_SIZE:
            raise DeviceKeyError(f"the device key file {str(path)!r} changed while it was read")
        return cls(data, source=repr(str(path)))

    @classmethod
    def load_or_create(cls, path: Path) -> DeviceKey:
        """Load the key at ``path``, creating it (0600, folder 0700 if new) when there is none.

        The new key is written to a temporary file, fsynced, then linked into
        place, so a crash never leaves a short key file and two processes
        racing to create it end up with the same key.
        """
        if path.exists():
            return cls.load(path)
        try:
            make_private_folder(path.parent)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
            try:
                try:
                    os.fchmod(fd, 0o600)  # the umask may have taken more bits; never fewer
                    os.write(fd, os.urandom(KEY_SIZE))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                try:
                    os.link(tmp, path)
                    created = True
                except FileExistsError:
                    created = False  # another process won the race: use its key
            finally:
                tmp.unlink()
            if created:
                _fsync_dir(path.parent)
                log.info("created a new device key at %s", path)
        except OSError as exc:
            raise DeviceKeyError(f"cannot create the device key file {str(path)!r}: {exc.strerror}") from None
        return cls.load(path)

    @property
    def fingerprint(self) -> bytes:
        """8-byte identifier of the key; safe to store and log."""
        return self._fingerprint

    def __repr__(self) -> str:
        return f"DeviceKey(source={self._source}, fingerprint={self._fingerprint.hex()})"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``aad``: version | fingerprint | nonce | ciphertext+tag."""
        nonce = os.urandom(_NONCE_SIZE)
        return self._header + nonce + self._aead.encrypt(nonce, plaintext, self._header + aad)

    def open(self, blob: bytes, aad: bytes, *, what: str = "sealed blob") -> bytes:
        """Decrypt a blob sealed with ``aad``; ``what`` names it in error messages.

        Raises OutboxCorrupt if it is truncated, of an unknown version, altered or
        sealed for other associated data; DeviceKeyError if another key sealed it.
        """
        if not isinstance(blob, bytes) or len(blob) < SEALED_OVERHEAD:
            raise OutboxCorrupt(f"{what}: sealed value is missing or truncated")
        if blob[0] != SEAL_VERSION:
            raise OutboxCorrupt(f"{what}: unknown sealing version {blob[0]}")
        if blob[1:_HEADER_SIZE] != self._fingerprint:
            raise DeviceKeyError(
                f"{what}: sealed by another device key (fingerprint {blob[1:_HEADER_SIZE].hex()},"
                f" this key {self._fingerprint.hex()})"
            )
        nonce = blob[_HEADER_SIZE : _HEADER_SIZE + _NONCE_SIZE]
        try:
            return self._aead.decrypt(nonce, blob[_HEADER_SIZE + _NONCE_SIZE :], self._header + aad)
        except InvalidTag:
            raise OutboxCorrupt(
                f"{what}: authentication failed (altered, or moved from another entry)"
            ) from None


def open_queue_key(
    key_path: Path, queue_path: Path, *, old_key_files: Sequence[Path] = (), create: bool = True
) -> DeviceKey:
    """The device key of the queue at ``queue_path``, kept at ``key_path``.

    A new key is made only for a new device: never while a key sits in one of
    ``old_key_files`` (where an earlier layout kept it; the error gives the
    command that moves it), and never for a queue that already exists (a new
    key could not read what is queued, which would be stranded). ``create=False``
    (a read-only look at the queue) never makes one.
    """
    if key_path.exists():
        return DeviceKey.load(key_path)
    old = [path for path in old_key_files if path != key_path and path.is_file()]
    if old:
        raise DeviceKeyError(
            f"no device key at {str(key_path)!r}, but there is one at {str(old[0])!r} (where earlier versions"
            f" kept it, relative to the working directory): the key now lives beside the queue. Move it with"
            f" `{_move_command(old[0], key_path, queue_path)}` (or set queue.key_file to its path)"
        )
    if queue_path.exists():
        raise DeviceKeyError(
            f"the offline queue {str(queue_path)!r} exists but its device key {str(key_path)!r} is missing:"
            f" restore the key to that path (a new key could not read the queued queries)"
        )
    if not create:
        raise DeviceKeyError(
            f"no device key at {str(key_path)!r} and no offline queue at {str(queue_path)!r}:"
            " nothing has been queued with this configuration"
        )
    return DeviceKey.load_or_create(key_path)


def _move_command(old_key: Path, key_path: Path, queue_path: Path) -> str:
    """The shell command that moves an old-layout key (and its queue, if that was beside it) into place."""
    moves = [(old_key, key_path)]
    if not queue_path.exists():
        # The old default kept the queue beside the key: move its files too, WAL and shared memory included.
        for suffix in ("", "-wal", "-shm"):
            old_queue = old_key.with_name(queue_path.name + suffix)
            if old_queue.is_file():
                moves.append((old_queue, queue_path.with_name(queue_path.name + suffix)))
    folder = shlex.quote(str(key_path.parent))
    steps = [f"mkdir -p -m 700 {folder}"]
    steps += [f"mv {shlex.quote(str(a))} {shlex.quote(str(b))}" for a, b in moves]
    return " && ".join(steps)


def _fsync_dir(folder: Path) -> None:
    """Make a new directory entry durable; best effort where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
