"""A gallery's background cohort: templates of people never enrolled, sealed with its calibration.

A gallery calibrated with a background cohort divides each search's distances by the probe's
mean distance to its nearest cohort members (safepassage.matcher.fusion.background_cohort_scale):
a probe that is close to everybody, as some faces and poor captures are, no longer looks close to
the one subject it happens to be nearest. The cohort is biometric data of real people who are
not on the watchlist, so it is kept as templates are: sealed (one blob, bound to the gallery under
its own namespace, ``background-cohort:``), under the gallery's protection key if it has one
(re-keyed with its templates: `rekey_cohort`), never searched for or returned as a candidate,
replaced by the next calibration and erased with the gallery (the calibration row's cascade).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from safepassage.store.errors import TemplateIntegrityError
from safepassage.store.galleries import GalleryRow
from safepassage.store.sealing import TemplateSealer

__all__ = ["open_cohort", "rekey_cohort", "seal_cohort"]

_NAMESPACE = "background-cohort:"


def seal_cohort(sealer: TemplateSealer, gallery_id: str, cohort: npt.ArrayLike) -> bytes:
    """Seal an (n, d) cohort for ``gallery_id``."""
    matrix = np.ascontiguousarray(cohort, dtype="<f4")
    if matrix.ndim != 2 or not len(matrix):
        raise ValueError("a background cohort is a non-empty (n, d) matrix")
    header = len(matrix).to_bytes(4, "little")
    return sealer.seal_bytes(header + matrix.tobytes(), context=(_NAMESPACE, gallery_id))


def open_cohort(
    sealer: TemplateSealer, gallery_id: str, blob: bytes, dimension: int
) -> npt.NDArray[np.float32]:
    """The (n, dimension) cohort sealed for ``gallery_id``; raises TemplateIntegrityError."""
    plain = sealer.open_bytes(blob, context=(_NAMESPACE, gallery_id))
    count = int.from_bytes(plain[:4], "little")
    if len(plain) != 4 + 4 * count * dimension:
        raise TemplateIntegrityError(
            f"the background cohort of gallery {gallery_id!r} does not fit {dimension}"
        )
    return np.frombuffer(plain, dtype="<f4", offset=4).reshape(count, dimension).astype(np.float32)


def rekey_cohort(
    conn: sqlite3.Connection,
    sealer: TemplateSealer,
    gallery: GalleryRow,
    rewrite: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
) -> int:
    """Rewrite the gallery's cohort with ``rewrite`` (a protection re-keying) in the caller's
    transaction; returns its size (0: none)."""
    gallery_id, gallery_pk, dimension = gallery.record.gallery_id, gallery.pk, gallery.record.dimension
    row = conn.execute(
        "SELECT cohort FROM gallery_calibrations WHERE gallery_pk = ?", (gallery_pk,)
    ).fetchone()
    if row is None or row[0] is None:
        return 0
    fresh = rewrite(open_cohort(sealer, gallery_id, bytes(row[0]), dimension))
    conn.execute(
        "UPDATE gallery_calibrations SET cohort = ? WHERE gallery_pk = ?",
        (seal_cohort(sealer, gallery_id, fresh), gallery_pk),
    )
    return len(fresh)
