"""Domain values the store reads and writes: galleries, their state, template handles.

Records validate themselves on construction, so a malformed one never reaches
SQLite and one read back from a damaged file is caught at the boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from safepassage.store.errors import InvalidRecord, InvalidTemplate

__all__ = [
    "MAX_DIMENSION",
    "MAX_GALLERY_ID_LENGTH",
    "MAX_REFERENCE_ID_LENGTH",
    "GalleryRecord",
    "GalleryState",
    "StoredTemplate",
    "check_reference_id",
    "check_threshold",
]

MAX_GALLERY_ID_LENGTH = 128
MAX_REFERENCE_ID_LENGTH = 256
# Far above any face model (dlib: 128, ArcFace: 512); bounds the per-row blob size.
MAX_DIMENSION = 4096


def _check_name(value: object, what: str, limit: int) -> None:
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise InvalidRecord(f"{what} must be 1-{limit} printable characters")


def check_reference_id(reference_id: object) -> str:
    """Return ``reference_id`` if it is 1-256 printable characters, else raise InvalidTemplate."""
    if (
        not isinstance(reference_id, str)
        or not reference_id
        or len(reference_id) > MAX_REFERENCE_ID_LENGTH
        or not reference_id.isprintable()
    ):
        # Do not echo the value: a malformed reference id may be personal data.
        raise InvalidTemplate(f"a reference id must be 1-{MAX_REFERENCE_ID_LENGTH} printable characters")
    return reference_id


@dataclass(frozen=True)
class GalleryRecord:
    """A gallery's configuration: which model fills it and how it is matched."""

    gallery_id: str
    purpose: str
    model_name: str
    dimension: int
    metric: str
    threshold: float
    created_at: float
    # The FPIR the threshold follows at the gallery's current size (None: the fixed threshold).
    target_fpir: float | None = None
    # Version of the template-protection key its templates are transformed with (None: plain).
    protection_version: int | None = None

    def __post_init__(self) -> None:
        _check_name(self.gallery_id, "gallery id", MAX_GALLERY_ID_LENGTH)
        _check_name(self.purpose, "purpose", 256)
        _check_name(self.model_name, "model name", 256)
        _check_name(self.metric, "metric", 64)
        if (
            isinstance(self.dimension, bool)
            or not isinstance(self.dimension, int)
            or not 0 < self.dimension <= MAX_DIMENSION
        ):
            raise InvalidRecord(f"dimension must be an integer in 1..{MAX_DIMENSION}")
        check_threshold(self.threshold)
        if not isinstance(self.created_at, (int, float)) or not math.isfinite(self.created_at):
            raise InvalidRecord("created_at must be a finite timestamp")
        if self.target_fpir is not None and not 0.0 < self.target_fpir < 1.0:
            raise InvalidRecord("target_fpir must be in (0, 1)")
        if self.protection_version is not None and (
            isinstance(self.protection_version, bool)
            or not isinstance(self.protection_version, int)
            or self.protection_version < 1
        ):
            raise InvalidRecord("protection_version must be a positive integer")


def check_threshold(threshold: object) -> float:
    """Return ``threshold`` as float if it is a finite real number, else raise InvalidRecord."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise InvalidRecord("threshold must be a finite number")
    return float(threshold)


@dataclass(frozen=True)
class GalleryState:
    """What an index built from the gallery must agree with.

    ``generation`` counts committed insert batches and deletes; ``digest`` is
    the XOR of safepassage.store.digest.template_digest over the gallery's templates.
    """

    gallery_id: str
    size: int
    generation: int
    digest: bytes

    @property
    def digest_hex(self) -> str:
        return self.digest.hex()


@dataclass(frozen=True)
class StoredTemplate:
    """Handle of one stored template: its index id and the caller's reference."""

    template_id: int
    reference_id: str


@dataclass(frozen=True)
class SubjectChange:
    """Captures added to a subject: its template row was replaced by their fused template."""

    reference_id: str
    removed: int  # the subject's previous template id (left the gallery and the index)
    added: int  # its fused template's id
    captures: int  # captures the subject holds now
