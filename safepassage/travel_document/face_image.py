"""A face image as a chip holds it: the encoded image, what its record says of it, and which record.

Both face record formats (ISO/IEC 19794-5:2005 binary, ISO/IEC 39794-5 tagged BER) come down to
this value. The image stays encoded (JPEG or JPEG 2000, as the issuer wrote it): decoding it is the
face pipeline's job, under the server's decode budget. Only its leading bytes are checked here,
against the type the record declares, so a record that says JPEG 2000 over other bytes is refused.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from safepassage.travel_document.errors import DocumentTooLarge, MalformedDocument

__all__ = ["FaceImage", "FaceRecordFormat", "FeaturePoint", "ImageEncoding", "check_image"]

# The largest image one record may carry: ICAO photos are 15-30 KB, a generous JPEG is 200 KB.
MAX_IMAGE_BYTES = 512 * 1024


class ImageEncoding(enum.StrEnum):
    JPEG = "JPEG"
    JPEG_2000 = "JPEG 2000"


class FaceRecordFormat(enum.StrEnum):
    """The biometric data block's format: the 2005 binary record, or the ASN.1 one issuers move to."""

    ISO_19794_5 = "ISO/IEC 19794-5:2005"
    ISO_39794_5 = "ISO/IEC 39794-5"


@dataclass(frozen=True)
class FeaturePoint:
    """A 19794-5 feature point: its type (1: MPEG-4), its code (major << 4 | minor) and its pixel."""

    kind: int
    code: int
    x: int
    y: int


@dataclass(frozen=True)
class FaceImage:
    """One face image from DG2: the encoded bytes and what the record declares of them."""

    record_format: FaceRecordFormat
    encoding: ImageEncoding
    data: bytes
    width: int  # as the record declares it (0: not declared)
    height: int
    feature_points: tuple[FeaturePoint, ...] = ()

    def __repr__(self) -> str:  # never the image bytes, in a log or an assertion message
        return (
            f"FaceImage({self.record_format.value}, {self.encoding.value}, {len(self.data)} bytes,"
            f" {self.width}x{self.height}, {len(self.feature_points)} feature points)"
        )


_SIGNATURES = {
    ImageEncoding.JPEG: (b"\xff\xd8\xff",),
    # The JP2 file format's signature box, or a bare codestream (what many chips hold).
    ImageEncoding.JPEG_2000: (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51"),
}


def check_image(data: bytes, encoding: ImageEncoding, what: str) -> bytes:
    """``data`` if it is non-empty, within the limit, and begins as ``encoding`` does."""
    if not data:
        raise MalformedDocument(f"{what}: the image data is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise DocumentTooLarge(f"{what}: an image of {len(data)} bytes; at most {MAX_IMAGE_BYTES} are read")
    if not data.startswith(_SIGNATURES[encoding]):
        raise MalformedDocument(f"{what}: the record declares {encoding.value}, the image data is not")
    return data
