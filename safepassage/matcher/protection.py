"""Template protection: a keyed, secret orthonormal transform of templates (a cancelable template).

A protected gallery stores ``y = Q x`` instead of the model's embedding ``x``, where ``Q`` is a
d x d orthonormal matrix derived from a 32-byte secret key; probes are transformed the same way
before search. As ``Q`` is orthonormal, ``|Qx - Qy| = |x - y|`` and ``<Qx, Qy> = <x, y>``: L2
distances and cosine similarities are unchanged (up to float32 rounding, about 1e-7), so rankings,
thresholds, calibration and accuracy are too. Unit vectors stay unit vectors, so a cosine gallery
may normalise before or after transforming.

What it protects against
    * **Direct comparison across deployments or keys.** The same face under two keys lies as far
      apart as two unrelated vectors of its norm: for the dlib model about 2.0 in L2, beyond real
      impostors (about 0.8) and far beyond the 0.6 threshold. A stolen protected gallery cannot be
      searched with embeddings computed from photos by the public model, nor joined with another
      deployment's gallery by matching templates against each other.
    * **Renewal.** A suspected leak is answered by re-keying: a new key, every template rewritten
      (``TemplateTransform.rekey``, in the store and snapshots), then the old key destroyed. New and
      old templates do not match each other directly.

What it does not protect against (it is not encryption)
    * **The geometry is public.** A transformed gallery reveals exactly its Gram matrix (all norms,
      distances and angles) and nothing else, since ``X`` is fixed by ``X X^T`` up to an
      orthogonal map. Anyone holding it can still find duplicates, cluster it and measure every
      pairwise distance.
    * **Alignment of two galleries of the same people.** Two deployments (or a gallery before and
      after re-keying) are related by one orthogonal map ``R = Q2 Q1^T``. With d or more known
      pairs (128 for dlib) orthogonal Procrustes (one SVD) recovers ``R`` exactly; without known
      pairs, the identical pairwise-distance profiles of the people in both can be matched to
      produce such pairs. So "cannot be linked" holds against comparison, not against an adversary
      who holds both galleries and computes; an old backup is linkable to the re-keyed gallery in
      the same way.
    * **Known-pair attack on the key.** Whoever learns the raw embeddings of d enrolled templates
      (photos of d enrolled people run through the public model, or their own enrolments) together
      with their stored rows recovers ``Q`` by Procrustes, and with it every raw template (which
      template-inversion attacks can turn back into face images). Fewer pairs leak ``Q`` on the
      subspace they span.
    * **The server holds the key.** Every probe is transformed on the server, so the key and ``Q``
      sit in the server's memory and the keyring on its disk; a compromised server yields both. A KMS
      or HSM cannot keep the key, since the server needs ``Q`` itself. Keep the keyring file out of
      the store's backups (a backup with its key is unprotected) and on an encrypted volume; as with
      ``safepassage.enrolment.kek``, a destroyed key may survive in old filesystem blocks and Python
      cannot wipe memory.
    * Probes in transit are raw embeddings; TLS protects them, not this transform.

Derivation (version 1): ``seed = HKDF-SHA256(key, salt=None, info=b"safepassage/template-transform/v1/"
+ ascii(d))``; a numpy PCG64 generator seeded with it gives d*d 64-bit words, turned into standard
Gaussians by Box-Muller here (PCG64's raw stream is stable across numpy releases, while
``Generator.standard_normal`` is not promised to be); QR in float64 with the columns' signs fixed by
``diag(R)``, which makes ``Q`` Haar-distributed on O(d). Across machines ``Q`` agrees to about 1e-15
(libm and LAPACK rounding), far below float32 storage precision. ``fingerprint`` = the first 8 bytes
of ``HMAC-SHA256(key, b"safepassage/template-transform/v1/fingerprint")``: safe to store and log, it
tells which key a gallery was written under. Key bytes and ``Q`` never appear in ``repr`` or logs.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from safepassage.core.key_derivation import derive_key
from safepassage.core.keyring import Keyring, KeyringFormat, KeyringState
from safepassage.matcher.errors import InvalidVector, ProtectionKeyError

__all__ = ["KEY_SIZE", "TemplateTransform", "TransformKeyring"]

log = logging.getLogger(__name__)

KEY_SIZE = 32
_INFO = b"safepassage/template-transform/v1/"
_FINGERPRINT_LABEL = b"safepassage/template-transform/v1/fingerprint"
_FINGERPRINT_SIZE = 8
_MAX_DIMENSION = 4096  # a 4096 x 4096 float64 matrix is 128 MiB; embeddings are far smaller
_CHUNK_ROWS = 65536  # rows per float64 product: bounds the temporary copies of large galleries


def _fingerprint(key: bytes) -> bytes:
    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).digest()[:_FINGERPRINT_SIZE]


def _orthonormal(key: bytes, dimension: int) -> npt.NDArray[np.float64]:
    info = _INFO + str(dimension).encode("ascii")
    seed = derive_key(key, info)
    count = dimension * dimension
    words = np.random.PCG64(int.from_bytes(seed, "big")).random_raw(count + count % 2)
    # 53-bit uniforms in (0, 1]: never 0, so the logarithm is finite.
    uniform = ((words >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53
    radius = np.sqrt(-2.0 * np.log(uniform[0::2]))
    angle = 2.0 * np.pi * uniform[1::2]
    gaussian = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]
    q, r = np.linalg.qr(gaussian.reshape(dimension, dimension))
    # Without the sign fix QR's output is not Haar-distributed (Mezzadri 2007).
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)[None, :]
    matrix: npt.NDArray[np.float64] = np.ascontiguousarray(q)
    matrix.setflags(write=False)
    return matrix


def _product(vectors: npt.ArrayLike, matrix: npt.NDArray[np.float64], what: str) -> npt.NDArray[np.float32]:
    """``vectors @ matrix`` in float64, returned as float32, in bounded chunks."""
    rows = np.asarray(vectors)
    if rows.ndim != 2 or rows.shape[1] != matrix.shape[0]:
        raise InvalidVector(f"{what} needs an (n, {matrix.shape[0]}) matrix; got shape {rows.shape}")
    out = np.empty((rows.shape[0], matrix.shape[1]), dtype=np.float32)
    for start in range(0, rows.shape[0], _CHUNK_ROWS):
        block = rows[start : start + _CHUNK_ROWS].astype(np.float64)
        out[start : start + _CHUNK_ROWS] = block @ matrix
    return out


@dataclass(frozen=True)
class TemplateTransform:
    """One key's orthonormal transform for one dimension. Build with ``from_key`` or ``TransformKeyring.get``.

    Equal when version, dimension and fingerprint are. Thread-safe (read-only).
    """

    version: int
    dimension: int
    fingerprint: bytes
    _matrix: npt.NDArray[np.float64] = field(repr=False, compare=False)

    @classmethod
    def from_key(cls, key: bytes, version: int, dimension: int) -> TemplateTransform:
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise ProtectionKeyError(f"a template-protection key must be {KEY_SIZE} bytes")
        if (
            isinstance(dimension, bool)
            or not isinstance(dimension, int)
            or not 1 <= dimension <= _MAX_DIMENSION
        ):
            raise InvalidVector(f"template dimension must be an integer in 1..{_MAX_DIMENSION}")
        return cls(version, dimension, _fingerprint(key), _orthonormal(key, dimension))

    def __repr__(self) -> str:
        fields = f"version={self.version}, dimension={self.dimension}, fingerprint={self.fingerprint.hex()}"
        return f"TemplateTransform({fields})"

    @property
    def matrix(self) -> npt.NDArray[np.float64]:
        """The secret ``Q`` (read-only): for tests and audits, never for logs."""
        return self._matrix

    def apply(self, vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Protected templates ``Q x`` of the rows of an (n, d) matrix."""
        return _product(vectors, self._matrix.T, "a template transform")

    def invert(self, vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """The original rows ``Q^T y`` of protected templates."""
        return _product(vectors, self._matrix, "an inverse template transform")

    def check_fingerprint(self, expected: bytes) -> None:
        """ProtectionKeyError unless ``expected`` (recorded with a gallery) is this key's fingerprint."""
        if not hmac.compare_digest(self.fingerprint, expected):
            raise ProtectionKeyError(
                f"template-protection key version {self.version} (fingerprint {self.fingerprint.hex()})"
                f" is not the key the templates were written under (fingerprint {expected.hex()})"
            )

    @staticmethod
    def rekey(
        vectors: npt.ArrayLike, old: TemplateTransform, new: TemplateTransform
    ) -> npt.NDArray[np.float32]:
        """Templates protected under ``old`` rewritten under ``new`` (``Q_new Q_old^T y``, in float64)."""
        if old.dimension != new.dimension:
            raise ProtectionKeyError(
                f"cannot re-key from dimension {old.dimension} (version {old.version})"
                f" to dimension {new.dimension} (version {new.version})"
            )
        return _product(vectors, old._matrix @ new._matrix.T, "a template re-key")


# The file's format string, the key size, then the words messages use (kept as operators know them).
_FORMAT = KeyringFormat(
    "safepassage-template-keyring", KEY_SIZE, "template-protection keyring", "key version", ProtectionKeyError
)


class TransformKeyring(Keyring):
    """Template-protection key versions in one JSON file (mode 0600)::

        {"format": "safepassage-template-keyring", "format_version": 1, "current_version": 2,
         "keys": {"2": "<base64 of 32 bytes>"}, "destroyed": [1]}

    Keys never leave this object: ``get`` hands out transforms, not key bytes. Every change is
    written atomically before memory changes, so a failed write leaves both as they were. Destroyed
    version numbers are kept so that none is reused and a gallery still written under one is
    reported as such. Thread-safe; one process owns the file (as ``safepassage.enrolment.kek.FileKeyring``).

    Re-keying, as the caller drives it: ``new = rotate()``; for each protected gallery rewrite its
    templates with ``TemplateTransform.rekey(rows, get(old, d), get(new, d))`` and record ``new``
    with it; only once every gallery has moved, ``destroy(old)``.
    """

    __slots__ = ("_cache", "_cache_lock")

    def __init__(self, path: Path, fmt: KeyringFormat, state: KeyringState) -> None:
        """Use :meth:`open` or :meth:`create_if_missing`."""
        super().__init__(path, fmt, state)
        self._cache_lock = threading.Lock()  # the keyring's own lock guards its state
        self._cache: dict[tuple[int, int], TemplateTransform] = {}

    @classmethod
    def open(cls, path: Path) -> TransformKeyring:
        """The keyring at ``path``; ProtectionKeyError if it is missing, unreadable or malformed."""
        return cls.load_file(path, _FORMAT)

    @classmethod
    def create_if_missing(cls, path: Path) -> TransformKeyring:
        """The keyring at ``path``, made with a random version 1 if there is none (never overwriting one)."""
        return cls.create_file(path, _FORMAT)

    def _key(self, version: int) -> bytes:
        key, destroyed = self.lookup(version)
        if key is None:
            state = "was destroyed" if destroyed else "is unknown to this keyring"
            raise ProtectionKeyError(f"template-protection key version {version} {state}")
        return key

    def fingerprint(self, version: int) -> bytes:
        """The 8-byte public fingerprint of ``version`` (the same for every dimension)."""
        return _fingerprint(self._key(version))

    def get(self, version: int, dimension: int) -> TemplateTransform:
        """The transform of ``version`` for ``dimension``; ProtectionKeyError if absent or destroyed."""
        with self._cache_lock:
            cached = self._cache.get((version, dimension))
        if cached is not None:
            return cached
        transform = TemplateTransform.from_key(self._key(version), version, dimension)  # QR outside the lock
        with self._cache_lock:
            if version not in self.versions():  # destroyed meanwhile (destroy empties the cache after)
                raise ProtectionKeyError(f"template-protection key version {version} was destroyed")
            return self._cache.setdefault((version, dimension), transform)

    def rotate(self) -> int:
        """A new random key as the current version; older versions stay until destroyed."""
        version = self.add_version()
        fingerprint = self.fingerprint(version).hex()
        log.info("rotated template-protection keyring %s to version %d (%s)", self.path, version, fingerprint)
        return version

    def destroy(self, version: int) -> None:
        """Forget ``version`` for good (idempotent); ProtectionKeyError for the current or an unknown one."""
        if self.destroy_version(version):
            log.info("destroyed template-protection key version %d of keyring %s", version, self.path)
        with self._cache_lock:
            self._cache = {k: t for k, t in self._cache.items() if k[0] != version}
