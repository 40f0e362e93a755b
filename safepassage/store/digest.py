"""The order-independent content digest of a gallery.

Public definition (the matcher recomputes it from an index snapshot, so it is
part of the API and of the on-disk format)::

    digest_key          = HKDF-SHA256(master key, salt=None,
                                      info=b"safepassage/store/template-digest/v1", length=32)
    template_digest(t)  = HMAC-SHA256(digest_key, u64le(template_id) || float32le(vector))
    gallery digest      = XOR of template_digest(t) over the gallery's templates
                          (32 zero bytes when it is empty)

XOR makes the digest independent of order and updatable in O(1): an insert
XORs a template in, a delete XORs it out. Keying it (HMAC, not bare SHA-256)
means the per-row values kept beside the sealed blobs cannot be used to test
guesses of a vector without the key.

It is a consistency check between the store and an index built from it, not a
defence against someone who can write the database file: such a person could
remove a row and XOR its stored per-row value out of the gallery digest.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from safepassage.store.errors import InvalidTemplate
from safepassage.store.keys import derive_keys
from safepassage.store.sealing import TemplateSealer

__all__ = [
    "DIGEST_SIZE",
    "EMPTY_DIGEST",
    "SealerOrKey",
    "gallery_digest",
    "template_digest",
    "xor_digests",
]

DIGEST_SIZE = 32
EMPTY_DIGEST = bytes(DIGEST_SIZE)

SealerOrKey: TypeAlias = TemplateSealer | bytes


def _digest_key(sealer_or_key: SealerOrKey) -> bytes:
    if isinstance(sealer_or_key, TemplateSealer):
        return sealer_or_key.digest_key
    return derive_keys(sealer_or_key).digest_key


def _message(template_id: int, vector_le: bytes) -> bytes:
    return int(template_id).to_bytes(8, "little", signed=False) + vector_le


def row_digest(digest_key: bytes, template_id: int, vector_le: bytes) -> bytes:
    """Per-template digest from the derived key and the raw float32-le bytes (store internal)."""
    return hmac.digest(digest_key, _message(template_id, vector_le), "sha256")


def row_digests(
    digest_key: bytes, template_ids: Sequence[int], vectors: npt.NDArray[np.float32]
) -> list[bytes]:
    """row_digest of each row of an (n, d) array; same values, about twice as fast.

    Copying a keyed HMAC state skips re-deriving the pads for every row, and
    slicing one buffer avoids a bytes object per row (store internal).
    """
    le = np.ascontiguousarray(vectors, dtype="<f4")
    if le.ndim != 2 or le.shape[0] != len(template_ids):
        raise InvalidTemplate("row_digests needs an (n, d) array and n template ids")
    base = hmac.new(digest_key, digestmod=hashlib.sha256)
    buffer = memoryview(le.tobytes())
    step = 4 * le.shape[1]
    out: list[bytes] = []
    for row, template_id in enumerate(template_ids):
        mac = base.copy()
        mac.update(int(template_id).to_bytes(8, "little", signed=False))
        mac.update(buffer[row * step : (row + 1) * step])
        out.append(mac.digest())
    return out


def template_digest(sealer_or_key: SealerOrKey, template_id: int, vector: npt.ArrayLike) -> bytes:
    """HMAC-SHA256(digest_key, u64le(template_id) || float32le(vector)): 32 bytes.

    ``sealer_or_key`` is the store's TemplateSealer or its 32-byte master key.
    """
    data = np.asarray(vector)
    if data.ndim != 1:
        raise InvalidTemplate("template_digest needs a 1-D vector")
    vector_le = np.ascontiguousarray(data, dtype="<f4").tobytes()
    return row_digest(_digest_key(sealer_or_key), template_id, vector_le)


def xor_digests(digests: Iterable[bytes], start: bytes = EMPTY_DIGEST) -> bytes:
    """XOR 32-byte digests together, starting from ``start``."""
    acc = int.from_bytes(start, "little")
    for item in digests:
        if len(item) != DIGEST_SIZE:
            raise InvalidTemplate(f"a digest is {DIGEST_SIZE} bytes, got {len(item)}")
        acc ^= int.from_bytes(item, "little")
    return acc.to_bytes(DIGEST_SIZE, "little")


def gallery_digest(
    sealer_or_key: SealerOrKey,
    template_ids: npt.ArrayLike,
    vectors: npt.ArrayLike,
    start: bytes = EMPTY_DIGEST,
) -> bytes:
    """XOR of template_digest over matching rows of ``template_ids`` (n,) and ``vectors`` (n, d).

    Pass a previous result as ``start`` to fold in an index snapshot batch by batch.
    """
    ids = np.asarray(template_ids)
    rows = np.asarray(vectors)
    if ids.ndim != 1 or rows.ndim != 2 or rows.shape[0] != ids.shape[0]:
        raise InvalidTemplate("gallery_digest needs ids of shape (n,) and vectors of shape (n, d)")
    return xor_digests(row_digests(_digest_key(sealer_or_key), ids.tolist(), rows), start)
