"""A reference image for human review: the face of an enrolment photo, small, as a JPEG.

A gallery that keeps reference images (opt-in at creation) keeps, per subject, this crop and not
the photo: the face's box with a margin, at most 160 pixels a side, re-encoded (which drops the
photo's metadata: no EXIF, no location). It is made from the pixels the server decoded for the
enrolment, while they live, so no second decode of the upload is needed.
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from PIL import Image

from safepassage.face.embedder import FaceBox

__all__ = ["REFERENCE_SIDE", "reference_crop"]

REFERENCE_SIDE = 160
_MARGIN = 0.25
_QUALITY = 85


def reference_crop(image: npt.NDArray[np.uint8], box: FaceBox, side: int = REFERENCE_SIDE) -> bytes:
    """The JPEG of the face in `box` of the decoded HxWx3 RGB `image`, with a margin, at most `side` px."""
    height, width = image.shape[:2]
    margin_x = int((box.right - box.left) * _MARGIN)
    margin_y = int((box.bottom - box.top) * _MARGIN)
    top, bottom = max(0, box.top - margin_y), min(height, box.bottom + margin_y)
    left, right = max(0, box.left - margin_x), min(width, box.right + margin_x)
    face = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]), mode="RGB")
    face.thumbnail((side, side))
    encoded = io.BytesIO()
    face.save(encoded, format="JPEG", quality=_QUALITY)
    return encoded.getvalue()
