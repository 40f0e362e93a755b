"""Authenticated encryption of face templates at rest (AES-256-GCM).

Sealed blob format, version 1 (all integers little-endian)::

    offset  size  field
    0       1     version, 0x01
    1       8     key fingerprint (safepassage.store.keys.key_fingerprint of the master key)
    9       12    random nonce
    21      4*d   AES-256-GCM ciphertext of the float32 vector
    21+4*d  16    GCM tag

The GCM key is HKDF-derived from the master key (see safepassage.store.keys). Associated
data binds the blob to its row, so a blob copied to another template id or
gallery fails to open::

    version (1) || fingerprint (8) || len(gallery_id utf-8) (u16) || gallery_id || template_id (u64)

Other sealed byte strings (``seal_bytes``: stream answers) use the same layout
with any plaintext; their associated data is the header followed by each
context string as ``len (u16) || utf-8``, the first a namespace holding ':'
(which no gallery id does; each namespace other than the probes'
"camera-probe:"), so such a blob never opens as a template or a probe.

The layout is an instance of the one envelope (:mod:`safepassage.core.sealing`): ``open``
either returns the plaintext or raises TemplateIntegrityError, never a sentinel, and the
fingerprint lets a wrong key be reported as such, distinct from tampering.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from safepassage.core.sealing import Envelope, SealingKey
from safepassage.store.errors import InvalidTemplate, TemplateIntegrityError
from safepassage.store.keys import FINGERPRINT_SIZE, derive_keys, generate_key, load_key

__all__ = ["SEALED_OVERHEAD", "SEAL_VERSION", "TemplateSealer"]

SEAL_VERSION = 0x01
# A wrong key and a damaged blob are both TemplateIntegrityError; the message tells them apart.
_ENVELOPE = Envelope(
    SEAL_VERSION, FINGERPRINT_SIZE, TemplateIntegrityError, TemplateIntegrityError, binding="row or gallery"
)
SEALED_OVERHEAD = _ENVELOPE.overhead
_MAX_TEMPLATE_ID = 2**63 - 1
_MAX_GALLERY_ID_BYTES = 0xFFFF


def _gallery_part(gallery_id: str) -> bytes:
    encoded = gallery_id.encode("utf-8")
    if len(encoded) > _MAX_GALLERY_ID_BYTES:
        raise InvalidTemplate("gallery id is too long to seal")
    return struct.pack("<H", len(encoded)) + encoded


def _context_part(context: Sequence[str]) -> bytes:
    if not context or ":" not in context[0]:
        raise InvalidTemplate("sealed bytes need a context whose first part is a namespace with ':'")
    return b"".join(_gallery_part(part) for part in context)


def _id_part(template_id: int) -> bytes:
    if not 0 <= template_id <= _MAX_TEMPLATE_ID:
        raise InvalidTemplate(f"template id {template_id} is out of range")
    return int(template_id).to_bytes(8, "little")


class TemplateSealer:
    """Seals and opens template vectors under one 32-byte master key.

    Thread-safe: it holds only immutable key material.
    """

    __slots__ = ("_digest_key", "_fingerprint", "_key")

    def __init__(self, key: bytes) -> None:
        keys = derive_keys(key)  # raises InvalidKey
        self._fingerprint = keys.fingerprint
        self._digest_key = keys.digest_key
        self._key = SealingKey(_ENVELOPE, keys.seal_key, keys.fingerprint)

    @staticmethod
    def generate_key() -> bytes:
        """A fresh random 32-byte master key (os.urandom)."""
        return generate_key()

    @staticmethod
    def load_key(path: Path) -> bytes:
        """Read a key file: 32 raw bytes or base64 text. Raises InvalidKey."""
        return load_key(path)

    @classmethod
    def from_key_file(cls, path: Path) -> TemplateSealer:
        """A sealer for the key stored in ``path``. Raises InvalidKey."""
        return cls(load_key(path))

    @property
    def fingerprint(self) -> bytes:
        """8-byte identifier of the master key; safe to store and log."""
        return self._fingerprint

    @property
    def digest_key(self) -> bytes:
        """HMAC key for safepassage.store.digest. Derived, so it cannot open sealed blobs."""
        return self._digest_key

    def __repr__(self) -> str:
        return f"TemplateSealer(fingerprint={self._fingerprint.hex()})"

    # -- sealing -------------------------------------------------------------

    def seal(self, vector: npt.ArrayLike, *, gallery_id: str, template_id: int) -> bytes:
        """Seal one 1-D finite vector as little-endian float32 for one row."""
        data = np.asarray(vector)
        if data.ndim != 1 or data.size == 0 or data.dtype.kind not in "fiu":
            raise InvalidTemplate("a template must be a non-empty 1-D numeric vector")
        with np.errstate(over="ignore"):
            le = np.ascontiguousarray(data, dtype="<f4")
        if not np.isfinite(le).all():
            raise InvalidTemplate("a template must be finite in float32")
        return self._key.seal(le.tobytes(), _gallery_part(gallery_id) + _id_part(template_id))

    def seal_batch(
        self,
        vectors: npt.NDArray[np.float32],
        *,
        gallery_id: str,
        template_ids: Sequence[int],
    ) -> list[bytes]:
        """Seal the rows of an already validated (n, d) array, one per template id."""
        if vectors.ndim != 2 or vectors.shape[0] != len(template_ids):
            raise InvalidTemplate("seal_batch needs an (n, d) array and n template ids")
        le = np.ascontiguousarray(vectors, dtype="<f4")
        prefix = _gallery_part(gallery_id)
        return [
            self._key.seal(row.tobytes(), prefix + _id_part(tid))
            for row, tid in zip(le, template_ids, strict=True)
        ]

    def seal_bytes(self, plaintext: bytes, *, context: Sequence[str]) -> bytes:
        """Seal a byte string bound to ``context`` (a namespace with ':', then ids)."""
        return self._key.seal(bytes(plaintext), _context_part(context))

    # -- opening -------------------------------------------------------------

    def open(
        self, blob: bytes, *, gallery_id: str, template_id: int, dimension: int
    ) -> npt.NDArray[np.float32]:
        """Open one sealed blob into a writable float32 vector of shape (dimension,).

        Raises TemplateIntegrityError on any failure.
        """
        plain = self._open_raw(blob, _gallery_part(gallery_id), gallery_id, template_id, dimension)
        return np.frombuffer(plain, dtype="<f4").astype(np.float32)

    def open_batch(
        self,
        blobs: Sequence[bytes],
        *,
        gallery_id: str,
        template_ids: Sequence[int],
        dimension: int,
    ) -> npt.NDArray[np.float32]:
        """Open many blobs of one gallery into a writable (n, dimension) float32 array."""
        if len(blobs) != len(template_ids):
            raise InvalidTemplate("open_batch needs one template id per blob")
        prefix = _gallery_part(gallery_id)
        plain = b"".join(
            self._open_raw(blob, prefix, gallery_id, tid, dimension)
            for blob, tid in zip(blobs, template_ids, strict=True)
        )
        flat = np.frombuffer(plain, dtype="<f4").astype(np.float32)
        return flat.reshape(len(blobs), dimension)

    def open_bytes(self, blob: bytes, *, context: Sequence[str]) -> bytes:
        """Open a blob of `seal_bytes` under the same context; raises TemplateIntegrityError."""
        where = f"sealed value of {context[0]!r}" if context else "sealed value"
        self._key.check(blob, where)  # before the context is checked: the blob's fault comes first
        return self._key.open(blob, _context_part(context), where=where)

    def _open_raw(
        self, blob: bytes, prefix: bytes, gallery_id: str, template_id: int, dimension: int
    ) -> bytes:
        where = f"template {template_id} of gallery {gallery_id!r}"
        self._key.check(blob, where)
        if len(blob) != SEALED_OVERHEAD + 4 * dimension:
            raise TemplateIntegrityError(
                f"{where}: sealed length {len(blob)} does not fit dimension {dimension}"
            )
        if not 0 <= template_id <= _MAX_TEMPLATE_ID:
            raise TemplateIntegrityError(f"{where}: template id is out of range")
        return self._key.open(blob, prefix + int(template_id).to_bytes(8, "little"), where=where)
