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
(e.g. signing) can take its own subkey without the two interacting. The layout
is an instance of the one envelope (:mod:`safepassage.core.sealing`), the file
one of the key files of :mod:`safepassage.core.key_files` (raw bytes only).
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from safepassage.camera_edge.errors import DeviceKeyError, OutboxCorrupt
from safepassage.core import key_files
from safepassage.core.key_derivation import FINGERPRINT_SIZE, derive_key, fingerprint
from safepassage.core.sealing import Envelope, SealingKey

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
SEAL_VERSION = 0x01

# Domain-separation labels: part of the on-disk format.
_FINGERPRINT_LABEL = b"safepassage/edge/device-key-fingerprint/v1\x00"
_SEAL_INFO = b"safepassage/edge/device-seal/v1"
_WHAT = "device key"

_ENVELOPE = Envelope(
    SEAL_VERSION, FINGERPRINT_SIZE, OutboxCorrupt, DeviceKeyError, key_name=_WHAT, binding="entry"
)
SEALED_OVERHEAD = _ENVELOPE.overhead


class DeviceKey:
    """One device key, able to seal and open blobs. Thread-safe: it holds only immutable state.

    ``repr`` shows the fingerprint only; the key bytes are never formatted anywhere.
    """

    __slots__ = ("_key", "_source")

    def __init__(self, key: bytes, *, source: str = "memory") -> None:
        """Use :meth:`load` or :meth:`load_or_create`; direct use is for tests and tools."""
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise DeviceKeyError(f"device key from {source} must be {KEY_SIZE} bytes")
        self._key = SealingKey(_ENVELOPE, derive_key(key, _SEAL_INFO), fingerprint(key, _FINGERPRINT_LABEL))
        self._source = source

    @classmethod
    def generate(cls) -> DeviceKey:
        """A fresh random key held in memory only."""
        return cls(os.urandom(KEY_SIZE))

    @classmethod
    def load(cls, path: Path) -> DeviceKey:
        """Read the key file at ``path``.

        Raises DeviceKeyError naming the path if it is missing, unreadable, not a
        regular file, not exactly 32 bytes, or accessible to group or others
        (refused, not warned about: whoever can read it can read every queued probe).
        """
        return cls(
            key_files.load_key(path, _WHAT, DeviceKeyError, size=KEY_SIZE, text=False), source=repr(str(path))
        )

    @classmethod
    def load_or_create(cls, path: Path) -> DeviceKey:
        """Load the key at ``path``, creating it (0600, folder 0700 if new) when there is none.

        Created atomically (:func:`safepassage.core.key_files.create_key`): a crash never leaves a
        short key file and two processes racing to create it end up with the same key.
        """
        if not path.exists() and key_files.create_key(path, _WHAT, DeviceKeyError, size=KEY_SIZE):
            log.info("created a new device key at %s", path)
        return cls.load(path)

    @property
    def fingerprint(self) -> bytes:
        """8-byte identifier of the key; safe to store and log."""
        return self._key.key_id

    def __repr__(self) -> str:
        return f"DeviceKey(source={self._source}, fingerprint={self.fingerprint.hex()})"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``aad``: version | fingerprint | nonce | ciphertext+tag."""
        return self._key.seal(plaintext, aad)

    def open(self, blob: bytes, aad: bytes, *, what: str = "sealed blob") -> bytes:
        """Decrypt a blob sealed with ``aad``; ``what`` names it in error messages.

        Raises OutboxCorrupt if it is truncated, of an unknown version, altered or
        sealed for other associated data; DeviceKeyError if another key sealed it.
        """
        return self._key.open(blob, aad, where=what)


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
