"""Key-encryption keys (KEKs): wrap each record's data key, rotate, crypto-shred.

Every protected record is sealed under its own 32-byte data key (see
:mod:`safepassage.enrolment.record_cipher`); only the data key *wrapped* by a KEK is
stored. That indirection is what makes two things cheap:

* **Rotation** re-wraps 65-byte data keys under a new KEK version; no record is
  re-encrypted. Old versions stay usable until destroyed.
* **Erasure by crypto-shredding.** Deleting a record's wrapped key is not enough,
  because backups taken earlier still hold it. So erasure also rotates the KEK,
  re-wraps every *other* data key under the new version and destroys the old
  one: a backup from before the erasure then holds only keys wrapped under a
  version that no longer exists anywhere, and cannot be opened.

Wrapped key blob (:class:`FileKeyring`'s format; integers little-endian)::

    offset  size  field
    0       1     format version, 0x01
    1       4     KEK version (u32)
    5       12    random nonce
    17      32    AES-256-GCM ciphertext of the data key
    49      16    GCM tag

Associated data binds the blob to its KEK version and record (a wrapped key copied
to another record fails to open); the record id is last, so it needs no length::

    b"safepassage/enrolment/data-key/v1\\0" || blob[0:5] || record_id (utf-8)

It is an instance of the one envelope (:mod:`safepassage.core.sealing`) whose key id is the
KEK version.

Where the KEK lives is pluggable (:class:`KeyEncryptionKeys`); each backend
defines its own blob after a different first byte:

* **File** (:class:`FileKeyring`, the embedded default): a JSON file, mode 0600.
* **KMS** (envelope encryption): one KMS key version per KEK version (a Google
  Cloud KMS CryptoKeyVersion; with AWS KMS one key per version behind an alias,
  as AWS cannot destroy one rotated backing key). ``wrap``/``unwrap`` =
  Encrypt/Decrypt of the data key with encryption context ``{"record_id": id}``
  (AWS) or the record id as AAD (GCP); ``destroy`` = DestroyCryptoKeyVersion /
  ScheduleKeyDeletion. KMS destruction is scheduled (24 h to 30 days), so an
  erasure is complete only once it has run.
* **HSM via PKCS#11**: one non-extractable, sensitive AES-256 key object per
  version (``CKA_LABEL`` "safepassage-kek-v<n>"); ``wrap``/``unwrap`` =
  C_Encrypt/C_Decrypt with CKM_AES_GCM and the AAD above (CKM_AES_KEY_WRAP cannot
  bind the record id); ``destroy`` = C_DestroyObject, destroyed numbers kept aside.

Whatever the backend, ``unwrap`` never returns garbage: it raises KeyDestroyed,
RecordIntegrityError or KeyringError. Key bytes never appear in messages or logs.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from safepassage.core.keyring import Keyring, KeyringFormat
from safepassage.core.sealing import NONCE_SIZE, TAG_SIZE, Envelope, SealingKey
from safepassage.enrolment.errors import (
    InvalidRecord,
    KeyDestroyed,
    KeyringError,
    RecordIntegrityError,
    WrongKey,
)

__all__ = [
    "DATA_KEY_SIZE",
    "WRAPPED_KEY_SIZE",
    "WRAP_FORMAT_VERSION",
    "FileKeyring",
    "KeyEncryptionKeys",
    "WrappedKey",
]

log = logging.getLogger(__name__)

DATA_KEY_SIZE = 32
WRAP_FORMAT_VERSION = 0x01
_HEADER = struct.Struct("<BI")  # format version, KEK version
WRAPPED_KEY_SIZE = _HEADER.size + NONCE_SIZE + DATA_KEY_SIZE + TAG_SIZE
_ENVELOPE = Envelope(
    version=WRAP_FORMAT_VERSION,
    key_id_size=_HEADER.size - 1,
    damaged=RecordIntegrityError,
    wrong_key=RecordIntegrityError,
    label=b"safepassage/enrolment/data-key/v1\x00",
    binding="record, or wrapped by another keyring's version",
)


@dataclass(frozen=True)
class WrappedKey:
    """A data key wrapped by one KEK version (``repr`` omits the blob). ``kek_version`` repeats
    the blob's, so a store can index keys left to re-wrap; ``unwrap`` checks that they agree."""

    kek_version: int
    blob: bytes = field(repr=False)

    @classmethod
    def from_blob(cls, blob: bytes) -> WrappedKey:
        """Rebuild a WrappedKey from its stored blob; RecordIntegrityError if malformed."""
        if not isinstance(blob, bytes) or len(blob) != WRAPPED_KEY_SIZE:
            raise RecordIntegrityError("wrapped data key is not a blob of the expected size")
        fmt, version = _HEADER.unpack_from(blob)
        if fmt != WRAP_FORMAT_VERSION:
            raise RecordIntegrityError(f"wrapped data key has unknown format version {fmt}")
        return cls(kek_version=version, blob=blob)


@runtime_checkable
class KeyEncryptionKeys(Protocol):
    """The pluggable KEK: a file keyring here; a KMS or an HSM (PKCS#11) later.

    Implementations must be thread-safe, must never reuse a destroyed version
    number, and must raise rather than return on every failed check.
    """

    def current_version(self) -> int:
        """The version ``wrap`` uses now."""

    def versions(self) -> tuple[int, ...]:
        """Live (not destroyed) versions, ascending."""

    def wrap(self, data_key: bytes, record_id: str) -> WrappedKey:
        """Wrap a 32-byte data key for ``record_id`` under the current version."""

    def unwrap(self, wrapped: WrappedKey, record_id: str) -> bytes:
        """The data key; KeyDestroyed (destroyed or unknown version) or RecordIntegrityError."""

    def rotate(self) -> int:
        """Make a new current version and return it; older versions stay until destroyed."""

    def destroy(self, version: int) -> None:
        """Forget ``version`` for good; KeyringError for the current version."""


def _sealing_key(version: int, key: bytes) -> SealingKey:
    return SealingKey(_ENVELOPE, key, _HEADER.pack(WRAP_FORMAT_VERSION, version)[1:])


def _check_record_id(record_id: str) -> None:
    if not isinstance(record_id, str) or not record_id:
        raise InvalidRecord("a wrapped data key needs a non-empty record id")


# The file's format string, the key size, then the words messages use (kept as operators know them).
_FORMAT = KeyringFormat("safepassage-kek-keyring", DATA_KEY_SIZE, "KEK keyring", "KEK version", KeyringError)


class FileKeyring(Keyring, KeyEncryptionKeys):
    """KEK versions kept in one JSON file (mode 0600); the embedded default. File format::

        {"format": "safepassage-kek-keyring", "format_version": 1, "current_version": 3,
         "keys": {"2": "<base64 of 32 bytes>", "3": "..."}, "destroyed": [1]}

    Every change is written atomically (see ``safepassage.core.keyring``) before memory changes, so
    a failed write leaves both as they were. Destroyed version numbers are kept,
    so a backup's wrapped key is reported as KeyDestroyed and no number is reused.

    Honest limits of a plain file: destroying rewrites the file without the key,
    but the old file's blocks may persist on journaling or copy-on-write
    filesystems and on SSDs (wear levelling), and Python cannot wipe key bytes
    from memory. Production should keep the KEK in a KMS or HSM, or this file on
    an encrypted volume, and must keep it out of the record store's backups (or
    the backup carries the very key that shredding destroyed). One process owns
    the file: a lock serialises its threads, not two processes rotating it.
    """

    __slots__ = ()

    @classmethod
    def open(cls, path: Path, create: bool = False) -> FileKeyring:
        """Load the keyring at ``path``; with ``create``, make one (version 1) if there is none.

        KeyringError if the file is missing (and not ``create``), unreadable or
        malformed. Creating never overwrites a keyring another process made first.
        """
        return cls.create_file(path, _FORMAT) if create else cls.load_file(path, _FORMAT)

    def current_version(self) -> int:
        return self.current()

    def wrap(self, data_key: bytes, record_id: str) -> WrappedKey:
        if not isinstance(data_key, bytes) or len(data_key) != DATA_KEY_SIZE:
            raise WrongKey(f"a data key must be {DATA_KEY_SIZE} bytes")
        _check_record_id(record_id)
        version, key = self.current_key()
        blob = _sealing_key(version, key).seal(data_key, record_id.encode("utf-8"))
        return WrappedKey(kek_version=version, blob=blob)

    def unwrap(self, wrapped: WrappedKey, record_id: str) -> bytes:
        _check_record_id(record_id)
        where = f"wrapped data key of record {record_id!r}"
        parsed = WrappedKey.from_blob(wrapped.blob)  # size and format version
        if parsed.kek_version != wrapped.kek_version:
            raise RecordIntegrityError(f"{where}: the KEK version does not match the blob's")
        version = parsed.kek_version
        key, destroyed = self.lookup(version)
        if key is None:
            if destroyed:
                raise KeyDestroyed(f"{where}: KEK version {version} was destroyed")
            raise KeyDestroyed(
                f"{where}: KEK version {version} is unknown to this keyring"
                " (a backup from another deployment, or a keyring restored from before it)"
            )
        return _sealing_key(version, key).open(wrapped.blob, record_id.encode("utf-8"), where=where)

    def rotate(self) -> int:
        version = self.add_version()
        log.info("rotated KEK keyring %s to version %d", self.path, version)
        return version

    def destroy(self, version: int) -> None:
        if self.destroy_version(version):
            log.info("destroyed KEK version %d of keyring %s", version, self.path)
