"""What a gallery's model can produce: the one bound on templates, checked on every path in.

A finite vector is not necessarily a template. FAISS computes in float32: a
component of 2e19 (or about 2e18 in every component) overflows a squared
distance to infinity, k-means then assigns a training point to no centroid,
and FAISS aborts the process from C++ (issue #15), which no Python handler
can catch. So templates are held to what the gallery's embedding model can
produce, far inside float32's range:

* at insert, bulk insert and calibration (`check_templates`): refused with
  InvalidVector naming the component or the norm, before anything is stored;
* at start-up (`outside`, over the stored form, `stored_bounds`): rows an
  older version accepted are quarantined, not indexed (safepassage.matcher.index_loader);
* before FAISS trains (`FAISS_SAFE`): the last guard, whatever the model
  (safepassage.matcher.approximate).

Known models have measured bounds, with a wide margin (a genuine face must
never be refused): dlib-resnet-v1 on 400 LFW faces through the server's ONNX
pipeline gave norms 1.26 to 1.64 and components within +-0.55; dlib's network
ends in a linear layer, so nothing larger is reachable from face images in
practice. A model this table does not know gets `GENERIC`, a sanity bound
well beyond any embedding model and still far inside what FAISS can square
and sum. Search probes are not held to these bounds: they are never stored
or trained on, and an outlandish probe only finds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from safepassage.matcher.errors import InvalidVector
from safepassage.matcher.gallery import GallerySpec
from safepassage.matcher.metric import Metric
from safepassage.matcher.vectors import Matrix, as_matrix, as_vector

__all__ = [
    "FAISS_SAFE",
    "GENERIC",
    "MODEL_BOUNDS",
    "VectorBounds",
    "bounds_of",
    "check_template",
    "check_templates",
    "stored_bounds",
]

# Rows checked per step (64k x 128 float64: 64 MiB).
_BLOCK = 1 << 16
# Normalised rows come out of float32 arithmetic within about 1e-6 of unit length.
_UNIT_SLACK = 1e-3


@dataclass(frozen=True)
class VectorBounds:
    """Every component within [-max_component, max_component], the L2 norm within [min_norm, max_norm]."""

    max_component: float
    max_norm: float
    min_norm: float = 0.0
    source: str = ""  # whose vectors these are, for messages

    def __post_init__(self) -> None:
        if not 0 <= self.min_norm <= self.max_norm or not 0 < self.max_component <= self.max_norm:
            raise ValueError("bounds need 0 <= min_norm <= max_norm and 0 < max_component <= max_norm")

    def outside(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
        """Per row: True where the row is non-finite or beyond these bounds."""
        rows = np.asarray(vectors).reshape(len(vectors), -1)
        outside = np.zeros(len(rows), dtype=np.bool_)
        # In float64 (a float32 norm of 2e19 overflows), a block at a time: a gallery may be large.
        for start in range(0, len(rows), _BLOCK):
            block = np.asarray(rows[start : start + _BLOCK], dtype=np.float64)
            with np.errstate(invalid="ignore", over="ignore"):
                largest = np.abs(block).max(axis=1, initial=0.0)
                norms = np.sqrt(np.einsum("ij,ij->i", block, block))
                inside = (largest <= self.max_component) & (norms <= self.max_norm) & (norms >= self.min_norm)
            outside[start : start + len(block)] = ~(inside & np.isfinite(norms))
        return outside

    def check(self, matrix: Matrix, what: str = "template") -> None:
        """Raise InvalidVector naming the first row, and its component or norm, beyond these bounds.

        Messages give positions and bounds, never the values themselves.
        """
        bad = np.flatnonzero(self.outside(matrix))
        if len(bad) == 0:
            return
        row = int(bad[0])
        vector = np.asarray(matrix[row], dtype=np.float64)
        name = what if len(matrix) == 1 else f"{what} {row}"
        of = f" of {self.source}" if self.source else ""
        component = int(np.argmax(np.abs(vector)))
        if abs(vector[component]) > self.max_component:
            raise InvalidVector(
                f"{name}: component {component} is outside [-{self.max_component:g}, {self.max_component:g}],"
                f" the range of the embeddings{of}"
            )
        norm = float(np.linalg.norm(vector))
        if norm > self.max_norm:
            raise InvalidVector(
                f"{name}: its norm is above {self.max_norm:g}, the most the embeddings{of} reach"
            )
        raise InvalidVector(f"{name}: its norm is below {self.min_norm:g}, the least the embeddings{of} have")


# Measured (module docstring), then widened: components x ~1.8, norms x ~1.8.
MODEL_BOUNDS: dict[tuple[str, int], VectorBounds] = {
    ("dlib-resnet-v1", 128): VectorBounds(max_component=1.0, max_norm=3.0, source="dlib-resnet-v1"),
}

# A model this server has no measurements of. 1e3 per component and 1e4 in norm are far beyond any
# embedding model's output, and squared distances (<= 4e8) and k-means sums stay exact enough in float32.
GENERIC = VectorBounds(max_component=1e3, max_norm=1e4, source="an embedding model")

# What FAISS is trained on, whatever the gallery: its float32 squares and sums must stay finite.
FAISS_SAFE = VectorBounds(max_component=1e4, max_norm=1e5, source="a FAISS index")


def bounds_of(spec: GallerySpec) -> VectorBounds:
    """What the gallery's model produces: the bound on templates and calibration probes as clients send them.

    Cosine galleries need a direction: a zero vector has none.
    """
    bounds = MODEL_BOUNDS.get((spec.model_name, spec.dimension), GENERIC)
    if spec.metric is Metric.COSINE and bounds.min_norm == 0:
        bounds = replace(bounds, min_norm=1e-6)
    return bounds


def stored_bounds(spec: GallerySpec) -> VectorBounds:
    """The bound on templates as the gallery stores them, to screen rows at start-up.

    Cosine galleries store unit vectors. A protected gallery stores an
    orthonormal transform of each template: the norm is kept, but one
    component may then carry all of it.
    """
    bounds = bounds_of(spec)
    if spec.metric is Metric.COSINE:
        unit = VectorBounds(1.0 + _UNIT_SLACK, 1.0 + _UNIT_SLACK, 1.0 - _UNIT_SLACK, bounds.source)
        return unit
    if spec.protection_version is not None:
        return replace(bounds, max_component=bounds.max_norm)
    return bounds


def check_templates(spec: GallerySpec, values: npt.ArrayLike, what: str = "template") -> Matrix:
    """Templates (or calibration probes) as an (n, dimension) matrix, each within the model's bounds.

    Raises InvalidVector for a wrong shape, a non-finite value, or a value
    beyond what the gallery's model can produce.
    """
    matrix = as_matrix(values, spec.dimension)
    bounds_of(spec).check(matrix, what)
    return matrix


def check_template(spec: GallerySpec, values: npt.ArrayLike) -> Matrix:
    """One template, shape (dimension,), within the model's bounds (as `check_templates`)."""
    vector = as_vector(values, spec.dimension)
    bounds_of(spec).check(vector[None, :])
    return vector
