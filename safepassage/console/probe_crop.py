"""The face the service searched, cut from the officer's upload in memory, to show beside its answer.

The service answers with the box of each face it searched (in the image after its EXIF
orientation). The desk shows that face, so the officer sees which face an answer is about: a crop
with a margin, at most 240 pixels a side, re-encoded as a JPEG inside the page (a data: URL, which
the page's Content-Security-Policy allows for images only). Nothing is written anywhere; a crop
that cannot be made (an image format only the service reads) is simply not shown.
"""

from __future__ import annotations

import base64
import io
import logging
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["face_crop"]

log = logging.getLogger(__name__)
_SIDE = 240
_MARGIN = 0.25


def face_crop(image: bytes, box: tuple[int, int, int, int]) -> str | None:
    """A data: URL of the face in `box` (left, top, right, bottom), or None when it cannot be made."""
    left, top, right, bottom = box
    if right <= left or bottom <= top:
        return None
    try:
        with warnings.catch_warnings():
            # The service has accepted the image within its pixel limits; Pillow's own bomb warning
            # would only repeat that check.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(image)) as opened:
                upright = ImageOps.exif_transpose(opened)
                width, height = right - left, bottom - top
                margin_x, margin_y = int(width * _MARGIN), int(height * _MARGIN)
                face = upright.crop(
                    (
                        max(0, left - margin_x),
                        max(0, top - margin_y),
                        min(upright.width, right + margin_x),
                        min(upright.height, bottom + margin_y),
                    )
                ).convert("RGB")
        face.thumbnail((_SIDE, _SIDE))
        encoded = io.BytesIO()
        face.save(encoded, format="JPEG", quality=85)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        log.info("no crop shown: the console cannot decode this image format")  # never the image
        return None
    return "data:image/jpeg;base64," + base64.b64encode(encoded.getvalue()).decode("ascii")
