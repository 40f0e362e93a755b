"""Validation of vectors and ids at the matcher's edge: nothing malformed gets in."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from safepassage.matcher.errors import InvalidGalleryId, InvalidReferenceId, InvalidVector

GALLERY_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
REFERENCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")

Matrix = npt.NDArray[np.float32]


def check_gallery_id(gallery_id: str) -> str:
    if not GALLERY_ID.fullmatch(gallery_id):
        raise InvalidGalleryId(
            f"gallery id {gallery_id[:70]!r} is invalid: use 1 to 63 lower-case letters,"
            " digits, '-' or '_', starting with a letter or digit"
        )
    return gallery_id


def check_reference_id(reference_id: str) -> str:
    if not REFERENCE_ID.fullmatch(reference_id):
        shown = reference_id[:40] + ("..." if len(reference_id) > 40 else "")
        raise InvalidReferenceId(
            f"reference id {shown!r} is invalid: use 1 to 128 letters, digits or"
            " . _ : @ / -, starting with a letter or digit"
        )
    return reference_id


def check_reference_ids(reference_ids: Sequence[str]) -> list[str]:
    return [check_reference_id(r) for r in reference_ids]


def as_matrix(values: npt.ArrayLike, dimension: int) -> Matrix:
    """Return probes or templates as a C-contiguous (n, dimension) float32 matrix.

    Raises InvalidVector for a wrong shape or dimension, an empty set, or any
    value that is NaN, infinite or beyond float32 range.
    """
    try:
        # Signalling NaNs warn on conversion; they are refused below like any NaN.
        with np.errstate(invalid="ignore"):
            array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidVector(f"vector is not numeric: {error}") from None
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise InvalidVector(f"expected vectors of {dimension} values, got an array of shape {array.shape}")
    if array.shape[1] != dimension:
        raise InvalidVector(f"vector has {array.shape[1]} values; this gallery's model produces {dimension}")
    if array.shape[0] == 0:
        raise InvalidVector("no vectors were given")
    finite = np.isfinite(array)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        raise InvalidVector(f"vector {row} has a NaN or infinite value at position {column}")
    if np.abs(array).max() > np.finfo(np.float32).max:
        raise InvalidVector("vector has a value beyond the float32 range")
    matrix: Matrix = np.ascontiguousarray(array, dtype=np.float32)
    return matrix


def as_vector(values: npt.ArrayLike, dimension: int) -> Matrix:
    """One vector, validated as by as_matrix; returned with shape (dimension,)."""
    matrix = as_matrix(values, dimension)
    if matrix.shape[0] != 1:
        raise InvalidVector(f"expected one vector, got {matrix.shape[0]}")
    vector: Matrix = matrix[0]
    return vector
