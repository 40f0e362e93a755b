"""How the matcher's galleries hold their templates: unit length for cosine, then the gallery's key.

`ProtectedTemplates` maps templates and probes into a gallery's form (safepassage.matcher.protection explains
the transform and what it protects against) and prepares the re-keying of a protected gallery. It
holds the server's `TransformKeyring`, or none when template protection is off; then only plain
galleries can be created or used. Locks and the store stay with the matcher, which drives renewal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from safepassage.matcher.errors import ProtectionKeyError
from safepassage.matcher.gallery import GallerySpec
from safepassage.matcher.metric import Metric, normalise_rows
from safepassage.matcher.protection import TemplateTransform, TransformKeyring
from safepassage.matcher.vectors import as_vector

__all__ = ["ProtectedTemplates", "Renewal"]


@dataclass(frozen=True)
class Renewal:
    """One protected gallery's move from its key to the new one."""

    old: TemplateTransform
    new: TemplateTransform

    @property
    def version(self) -> int:
        return self.new.version

    def rewrite(self, vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """The gallery's templates, protected under the old key, as the new key protects them."""
        return TemplateTransform.rekey(vectors, self.old, self.new)


class ProtectedTemplates:
    def __init__(self, keyring: TransformKeyring | None) -> None:
        self._keyring = keyring

    @property
    def keyring(self) -> TransformKeyring | None:
        return self._keyring

    def _required(self) -> TransformKeyring:
        if self._keyring is None:
            raise ProtectionKeyError("template protection is not configured on this server")
        return self._keyring

    def current_version(self) -> int:
        """The key version a new protected gallery is written under."""
        return self._required().current()

    def transform(self, spec: GallerySpec) -> TemplateTransform | None:
        """The gallery's template-protection transform; None for a plain gallery."""
        version = spec.protection_version
        if version is None:
            return None
        if self._keyring is None:
            raise ProtectionKeyError(
                f"gallery {spec.gallery_id!r} holds protected templates but template protection is off"
            )
        return self._keyring.get(version, spec.dimension)

    def prepare(self, spec: GallerySpec, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Probes or templates as the gallery holds them: unit length for cosine, then transformed."""
        if spec.metric is Metric.COSINE:
            # Cosine galleries keep unit vectors, so the store and the index agree bit for bit.
            matrix = normalise_rows(matrix)
        transform = self.transform(spec)
        return matrix if transform is None else transform.apply(matrix)

    def template(self, spec: GallerySpec, vector: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """One template or probe (checked against the gallery's dimension) as the gallery holds it."""
        template: npt.NDArray[np.float32] = self.prepare(spec, as_vector(vector, spec.dimension)[None, :])[0]
        return template

    # -- renewal: rotate(), then renewal() and rewrite per protected gallery, then retire_all_but() --

    def rotate(self) -> int:
        """A new current key version; the older ones stay until every gallery has moved off them."""
        return self._required().rotate()

    def renewal(self, spec: GallerySpec, version: int) -> Renewal | None:
        """The gallery's move to key `version`; None for a plain gallery, which has nothing to renew.

        Both transforms are derived here, outside the gallery's write lock, so
        that searches wait only for the rewrite itself.
        """
        old = self.transform(spec)
        if old is None:
            return None
        return Renewal(old, self._required().get(version, spec.dimension))

    def retire_all_but(self, version: int) -> None:
        """Destroy every key but `version`: only once no gallery is written under them."""
        keyring = self._required()
        for old in keyring.versions():
            if old != version:
                keyring.destroy(old)
