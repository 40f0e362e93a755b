"""Per-record data keys and the AES-256-GCM sealing of a record's parts.

Each protected record gets its own random 32-byte data key, stored only wrapped
by the key-encryption keys (:mod:`safepassage.enrolment.kek`). One key per record is what
makes erasure a matter of destroying a key rather than finding every copy of
the ciphertext: once the wrapped key is gone from the store and from every live
KEK version, the record's sealed parts (and their backups) are noise.

Sealed blob format, version 1::

    offset  size  field
    0       1     format version, 0x01
    1       8     key check: HKDF-SHA256(data key, info "safepassage/enrolment/key-check/v1")[:8]
    9       12    random nonce
    21      n     AES-256-GCM ciphertext of the part
    21+n    16    GCM tag

The GCM key is not the data key itself but an HKDF-SHA256 subkey of it (info
"safepassage/enrolment/record-seal/v1"), so the key check and the encryption key
are independent outputs and the check reveals nothing usable about the other.
The key check lets a wrong data key be reported as WrongKey, distinct from
tampering (RecordIntegrityError). Associated data binds a blob to its record and
its part ("record", "secrets", "referral", ...), so a blob moved to another
record id or part fails to open (integers little-endian)::

    b"safepassage/enrolment/record/v1\\0" || 0x01 || len(record_id) u16 || record_id
        || len(part) u16 || part                                   (both utf-8)

The layout is an instance of the one envelope (:mod:`safepassage.core.sealing`; the key check
is its key id, the header is not in the associated data, the version is, after the label).
Random 96-bit nonces keep AES-GCM within its bounds for 2**32 seals per key, far beyond the
handful of parts and updates one record has.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass, field

from safepassage.core.key_derivation import derive_key
from safepassage.core.sealing import Envelope, SealingKey
from safepassage.enrolment.errors import InvalidRecord, RecordIntegrityError, WrongKey
from safepassage.enrolment.kek import DATA_KEY_SIZE, KeyEncryptionKeys, WrappedKey

__all__ = ["KEY_CHECK_SIZE", "SEALED_OVERHEAD", "SEAL_VERSION", "DataKey", "RecordCipher"]

log = logging.getLogger(__name__)

SEAL_VERSION = 0x01
KEY_CHECK_SIZE = 8
_MAX_FIELD_BYTES = 0xFFFF

# Domain-separation labels: part of the on-disk format.
_AAD_LABEL = b"safepassage/enrolment/record/v1\x00"
_KEY_CHECK_INFO = b"safepassage/enrolment/key-check/v1"
_SEAL_KEY_INFO = b"safepassage/enrolment/record-seal/v1"

_ENVELOPE = Envelope(
    version=SEAL_VERSION,
    key_id_size=KEY_CHECK_SIZE,
    damaged=RecordIntegrityError,
    wrong_key=WrongKey,
    label=_AAD_LABEL + bytes([SEAL_VERSION]),
    bind_header=False,
    key_name="data key",
    binding="record or part",
    show_key_ids=False,  # a key check in a message would travel further than the blob
)
SEALED_OVERHEAD = _ENVELOPE.overhead


def _field(name: str, value: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise InvalidRecord(f"{name} must be a non-empty string")
    encoded = value.encode("utf-8")
    if len(encoded) > _MAX_FIELD_BYTES:
        raise InvalidRecord(f"{name} is too long to seal")
    return struct.pack("<H", len(encoded)) + encoded


@dataclass(frozen=True)
class DataKey:
    """One record's 32-byte data key. ``repr`` never shows the key.

    The record id travels with the key so that a key cannot be used to seal or
    open another record's parts by mistake: the id goes into the associated data.
    """

    record_id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _field("record id", self.record_id)
        if not isinstance(self.key, bytes) or len(self.key) != DATA_KEY_SIZE:
            raise WrongKey(f"the data key of record {self.record_id!r} must be {DATA_KEY_SIZE} bytes")

    @property
    def key_check(self) -> bytes:
        """8 bytes naming this key without revealing it; written into every sealed blob."""
        return derive_key(self.key, _KEY_CHECK_INFO, length=KEY_CHECK_SIZE)


def _sealing_key(key: DataKey) -> SealingKey:
    """AES-256-GCM under the sealing subkey (never the data key itself)."""
    return SealingKey(_ENVELOPE, derive_key(key.key, _SEAL_KEY_INFO), key.key_check)


def _context(record_id: str, part: str) -> bytes:
    return _field("record id", record_id) + _field("part", part)


class RecordCipher:
    """Creates, unwraps and re-wraps data keys, and seals and opens record parts.

    Thread-safe as far as its KEK is (it holds nothing else). ``seal``/``open``
    are static: they need only the data key, never the KEK.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: KeyEncryptionKeys) -> None:
        self._keys = keys

    @property
    def keys(self) -> KeyEncryptionKeys:
        """The key-encryption keys that wrap the data keys."""
        return self._keys

    def new_key(self, record_id: str) -> tuple[DataKey, WrappedKey]:
        """A fresh random data key for ``record_id`` and its wrapping under the current KEK."""
        key = DataKey(record_id=record_id, key=os.urandom(DATA_KEY_SIZE))
        return key, self._keys.wrap(key.key, record_id)

    def data_key(self, record_id: str, wrapped: WrappedKey) -> DataKey:
        """Unwrap a record's data key; KeyDestroyed / RecordIntegrityError from the keyring."""
        return DataKey(record_id=record_id, key=self._keys.unwrap(wrapped, record_id))

    def rewrap(self, record_id: str, wrapped: WrappedKey) -> WrappedKey:
        """The same data key wrapped under the current KEK version (for rotation and erasure).

        Always unwraps first, so a damaged wrapped key is found now, while the
        version that wrapped it still exists, not after it has been destroyed.
        """
        return self._keys.wrap(self._keys.unwrap(wrapped, record_id), record_id)

    @staticmethod
    def seal(key: DataKey, part: str, plaintext: bytes) -> bytes:
        """Encrypt one part of ``key.record_id``'s record; the layout is in the module docstring."""
        if not isinstance(plaintext, (bytes, bytearray, memoryview)):
            raise InvalidRecord(f"part {part!r} of record {key.record_id!r} must be bytes to seal")
        return _sealing_key(key).seal(bytes(plaintext), _context(key.record_id, part))

    @staticmethod
    def open(key: DataKey, part: str, blob: bytes) -> bytes:
        """Decrypt a blob sealed by ``seal`` for the same record and part.

        Raises WrongKey if another data key sealed it, RecordIntegrityError if it
        is truncated, of an unknown version, altered, or sealed for another
        record or part. Never returns unauthenticated bytes.
        """
        where = f"part {part!r} of record {key.record_id!r}"
        return _sealing_key(key).open(blob, _context(key.record_id, part), where=where)
