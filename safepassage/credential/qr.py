"""The credential as the holder carries it: its text form, and that text as a QR code.

The text form is ``"SP1:" + base45(binary)``; the prefix names the format
(and its version) to a person or a scanner app, and base45 (RFC 9285) uses
only characters of the QR alphanumeric set, so segno encodes it in
alphanumeric mode, 5.5 bits per character. A text longer than
MAX_TEXT_CHARS is refused before it is decoded at all, so an oversized input
costs nothing. The code is drawn with segno and read back with OpenCV's
detector. Error correction is level M (15 % of the code may be damaged):
enough for a printed card that is folded or scuffed, while a credential for
a few readers still fits a code a phone or a desk scanner reads at arm's
length. OpenCV is imported only when a code is read, so issuing (on the
server) does not need it.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import base45  # type: ignore[import-untyped]
import numpy as np
import segno

from safepassage.credential.errors import MalformedCredential

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_TEXT_CHARS",
    "TEXT_PREFIX",
    "decode_text",
    "encode_text",
    "qr_png",
    "read_qr",
]

log = logging.getLogger(__name__)

TEXT_PREFIX = "SP1:"
MAX_TEXT_CHARS = 8000
MAX_IMAGE_BYTES = 20 * 1024 * 1024
_MAX_PIXELS = 40_000_000


def encode_text(binary: bytes) -> str:
    """The text form of a credential's binary form; MalformedCredential if it would be too long."""
    text = TEXT_PREFIX + str(base45.b45encode(binary).decode("ascii"))
    if len(text) > MAX_TEXT_CHARS:
        raise MalformedCredential(f"a credential of {len(text)} characters exceeds {MAX_TEXT_CHARS}")
    return text


def decode_text(text: str) -> bytes:
    """The binary form of a credential's text; MalformedCredential for anything else (size checked first)."""
    if not isinstance(text, str):
        raise MalformedCredential("a credential must be text")
    if len(text) > MAX_TEXT_CHARS:
        raise MalformedCredential(f"the credential text is {len(text)} characters; at most {MAX_TEXT_CHARS}")
    text = text.strip("\r\n")  # a line end from a file; spaces belong to base45
    if not text.startswith(TEXT_PREFIX):
        raise MalformedCredential(f"not a SafePassage credential: the text must start with {TEXT_PREFIX!r}")
    try:
        return bytes(base45.b45decode(text[len(TEXT_PREFIX) :]))
    except (ValueError, TypeError, UnicodeError):
        raise MalformedCredential("not a SafePassage credential: the text is not valid base45") from None


def qr_png(text: str, scale: int = 4) -> bytes:
    """A PNG of the QR code of ``text`` (error correction M, quiet zone of 4 modules)."""
    if not isinstance(text, str) or not text.startswith(TEXT_PREFIX) or len(text) > MAX_TEXT_CHARS:
        raise MalformedCredential(
            f"only a credential's text ({TEXT_PREFIX}..., <= {MAX_TEXT_CHARS}) is drawn"
        )
    if not 1 <= scale <= 32:
        raise MalformedCredential("the QR scale must be 1-32 pixels per module")
    try:
        code = segno.make(text, error="m", boost_error=False, micro=False)
    except segno.DataOverflowError:
        raise MalformedCredential(f"{len(text)} characters do not fit in one QR code") from None
    out = io.BytesIO()
    code.save(out, kind="png", scale=scale, border=4)
    log.info("drew a version %s QR code for %d characters", code.version, len(text))
    return out.getvalue()


def _decode_image(cv2: Any, data: bytes) -> Any:
    """The image as grayscale pixels; MalformedCredential if it is not a readable image."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedCredential("a QR image must be given as bytes")
    if len(data) > MAX_IMAGE_BYTES:
        raise MalformedCredential(f"the QR image is {len(data)} bytes; at most {MAX_IMAGE_BYTES}")
    buffer = np.frombuffer(bytes(data), dtype=np.uint8)
    if buffer.size == 0:
        raise MalformedCredential("the QR image is empty")
    image = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE)
    if image is None or image.size == 0:
        raise MalformedCredential("the QR image is not a readable PNG or JPEG")
    if image.size > _MAX_PIXELS:
        raise MalformedCredential(f"the QR image has {image.size} pixels; at most {_MAX_PIXELS}")
    return image


def read_qr(image_bytes: bytes) -> str:
    """The text of the one QR code in a PNG or JPEG; MalformedCredential when none can be read."""
    import cv2  # the edge stack's OpenCV: loaded only when a code is read

    image = _decode_image(cv2, image_bytes)
    # OpenCV's classic detector misses many large (version 20+) codes that the ArUco-based one reads,
    # and a photo of a card may need the code enlarged or reduced: try each in turn, cheapest first.
    detectors = (cv2.QRCodeDetectorAruco(), cv2.QRCodeDetector())
    text = ""
    for factor in (1.0, 2.0, 0.5):
        if factor == 1.0:
            candidate = image
        else:
            interpolation = cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA
            candidate = cv2.resize(image, None, fx=factor, fy=factor, interpolation=interpolation)
        for detector in detectors:
            try:
                text = detector.detectAndDecode(candidate)[0]
            except cv2.error:
                text = ""
            if text:
                break
        if text:
            break
    if not text:
        raise MalformedCredential("no QR code could be read from the image")
    if len(text) > MAX_TEXT_CHARS:
        raise MalformedCredential(f"the QR code holds {len(text)} characters; at most {MAX_TEXT_CHARS}")
    return str(text)
