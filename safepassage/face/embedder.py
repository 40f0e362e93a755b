"""The backend-agnostic face embedding interface and its value types.

An ``Embedder`` takes decoded RGB pixels and returns one ``DetectedFace`` per
face it was asked for. Which faces it returns is decided by ``FaceSelection``,
and ``choose_faces`` implements that decision once so that every backend
(dlib today, ONNX later) refuses and orders faces the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from safepassage.face.errors import MultipleFacesFound, NoFaceFound
from safepassage.face.model import EmbeddingModel

Embedding = npt.NDArray[np.float32]
RgbImage = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class FaceBox:
    """A face's bounding box in pixels of the decoded image.

    Half-open like a numpy slice: the face is ``image[top:bottom, left:right]``.
    Boxes are clipped to the image, so a face cut by the frame edge has a box
    smaller than the detector's.
    """

    left: int
    top: int
    right: int
    bottom: int

    def __post_init__(self) -> None:
        if self.left < 0 or self.top < 0 or self.right <= self.left or self.bottom <= self.top:
            raise ValueError(
                f"invalid face box left={self.left} top={self.top} right={self.right} bottom={self.bottom}"
            )

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return self.width * self.height


# eq=False: an ndarray field makes generated __eq__ ambiguous; faces are
# compared by distance between embeddings, never by equality.
@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One face: where it is and its embedding (float32, the model's dimension).

    The embedding array is read-only, so a frozen face stays frozen.
    """

    box: FaceBox
    embedding: Embedding

    def __post_init__(self) -> None:
        if self.embedding.dtype != np.float32 or self.embedding.ndim != 1:
            raise ValueError(
                f"embedding must be a 1-D float32 array, got {self.embedding.dtype}"
                f" with shape {self.embedding.shape}"
            )
        view = self.embedding.view()
        view.flags.writeable = False
        object.__setattr__(self, "embedding", view)


class FaceSelection(enum.StrEnum):
    """Which faces of an image the caller wants embedded."""

    SINGLE = "single"  # exactly one face, else NoFaceFound / MultipleFacesFound (enrolment, 1:1)
    LARGEST = "largest"  # the largest face; NoFaceFound if none (a probe with bystanders)
    ALL = "all"  # every face, left to right; [] if none (1:N identify on a scene)


class Embedder(Protocol):
    """Turns an RGB image into face embeddings of one model.

    Implementations must be safe to call from several threads.
    """

    @property
    def model(self) -> EmbeddingModel:
        """The manifest of the model whose vectors ``embed`` returns."""
        ...

    def embed(self, image: RgbImage, selection: FaceSelection) -> list[DetectedFace]:
        """Detect faces in an HxWx3 uint8 RGB image and embed those ``selection`` asks for.

        SINGLE returns one face or raises NoFaceFound / MultipleFacesFound;
        LARGEST returns one face or raises NoFaceFound; ALL returns every face
        ordered left to right, possibly none.
        """
        ...


def choose_faces(boxes: Sequence[FaceBox], selection: FaceSelection) -> list[int]:
    """Indices into ``boxes`` of the faces to embed, in the order to return them.

    Backends call this after detection and before the (expensive) embedding,
    so refused images cost only the detector.
    """
    if selection is FaceSelection.ALL:
        return sorted(range(len(boxes)), key=lambda i: (boxes[i].left, boxes[i].top))
    if not boxes:
        raise NoFaceFound("no face was found in the image")
    if selection is FaceSelection.SINGLE:
        if len(boxes) > 1:
            raise MultipleFacesFound(
                f"found {len(boxes)} faces in the image; exactly one is required: crop the image to one"
                " face (holder and live captures always need one; a matching request may instead ask for"
                " the largest: face_selection LARGEST, `--largest` on `safepassage enrol|import|verify`)"
            )
        return [0]
    # LARGEST: ties go to the leftmost face so the answer is deterministic.
    return [max(range(len(boxes)), key=lambda i: (boxes[i].area, -boxes[i].left, -boxes[i].top))]


def check_rgb_image(image: RgbImage) -> RgbImage:
    """Return ``image`` as a C-contiguous HxWx3 uint8 array, or raise ValueError.

    A wrong array is a programming error (``decode_image`` never returns one),
    hence ValueError rather than a FacesError the API would blame on the client.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} with shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image has no pixels: shape {image.shape}")
    return np.ascontiguousarray(image)
