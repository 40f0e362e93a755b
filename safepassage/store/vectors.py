"""Validation of template batches before they are sealed.

The matcher validates too; the store checks again because it is the last
place a bad vector can be stopped before it becomes durable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from safepassage.store.errors import DuplicateReference, InvalidTemplate
from safepassage.store.records import check_reference_id

__all__ = ["TemplateBatch", "check_batch", "check_vectors"]


class TemplateBatch:
    """A validated batch: unique reference ids and finite 1-D float32 vectors."""

    __slots__ = ("reference_ids", "vectors")

    def __init__(self, reference_ids: list[str], vectors: list[npt.NDArray[np.float32]]) -> None:
        self.reference_ids = reference_ids
        self.vectors = vectors

    def __len__(self) -> int:
        return len(self.reference_ids)

    def matrix(self, dimension: int) -> npt.NDArray[np.float32]:
        """Stack into (n, dimension) little-endian float32, checking every length."""
        for index, vector in enumerate(self.vectors):
            if vector.shape[0] != dimension:
                raise InvalidTemplate(
                    f"template {index} of the batch has length {vector.shape[0]}, "
                    f"the gallery expects {dimension}"
                )
        if not self.vectors:
            return np.empty((0, dimension), dtype="<f4")
        return np.ascontiguousarray(np.stack(self.vectors), dtype="<f4")


def _check_vector(vector: object, index: int) -> npt.NDArray[np.float32]:
    try:
        data = np.asarray(vector)
    except (TypeError, ValueError):
        raise InvalidTemplate(f"template {index} of the batch is not an array") from None
    if data.ndim != 1 or data.dtype.kind not in "fiu":
        raise InvalidTemplate(f"template {index} of the batch must be a 1-D numeric vector")
    # Values beyond float32's range become inf here and are rejected just below.
    with np.errstate(over="ignore", invalid="ignore"):
        converted = data.astype(np.float32)
    if not np.isfinite(converted).all():
        raise InvalidTemplate(f"template {index} of the batch is not finite in float32")
    return converted


def check_batch(gallery_id: str, items: Sequence[tuple[str, npt.ArrayLike]]) -> TemplateBatch:
    """Validate (reference_id, vector) pairs; raise InvalidTemplate or DuplicateReference."""
    reference_ids: list[str] = []
    vectors: list[npt.NDArray[np.float32]] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, tuple) or len(item) != 2:
            raise InvalidTemplate(f"item {index} of the batch is not a (reference_id, vector) pair")
        reference_id = check_reference_id(item[0])
        if reference_id in seen:
            raise DuplicateReference(
                f"reference {reference_id!r} is repeated within the batch for gallery {gallery_id!r}"
            )
        seen.add(reference_id)
        reference_ids.append(reference_id)
        vectors.append(_check_vector(item[1], index))
    return TemplateBatch(reference_ids, vectors)


def check_vectors(vectors: Sequence[npt.ArrayLike], dimension: int) -> npt.NDArray[np.float32]:
    """Validate vectors of one subject into a (n, dimension) little-endian float32 matrix."""
    checked = [_check_vector(vector, index) for index, vector in enumerate(vectors)]
    return TemplateBatch([""] * len(checked), checked).matrix(dimension)
