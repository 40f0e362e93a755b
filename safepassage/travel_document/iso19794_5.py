"""ISO/IEC 19794-5:2005 face image records (the binary ``FAC\\0`` / ``010\\0`` format DG2 has held).

Big-endian throughout::

    Facial record header (14 bytes)
      format identifier "FAC\\0" (4), version "010\\0" (4), record length (4), number of images (2)
    Per image, the facial record data:
      facial information (20 bytes): block length (4, this whole block), feature points (2),
        gender (1), eye colour (1), hair colour (1), feature mask (3), expression (2),
        pose angles yaw/pitch/roll (3), their uncertainties (3)
      feature points (8 bytes each): type (1), code (1), x (2), y (2), reserved (2)
      image information (12 bytes): face image type (1), image data type (1: 0 JPEG, 1 JPEG 2000),
        width (2), height (2), colour space (1), source type (1), device type (2), quality (2)
      image data: the rest of the block

Every declared length must fit what is left and the blocks must fill the record exactly. The
2011 edition (``030\\0``) lays the record out differently and is refused by name.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from safepassage.travel_document.errors import (
    DocumentTooLarge,
    MalformedDocument,
    UnsupportedDocumentFormat,
)
from safepassage.travel_document.face_image import (
    FaceImage,
    FaceRecordFormat,
    FeaturePoint,
    ImageEncoding,
    check_image,
)

__all__ = ["read_19794_5", "write_19794_5"]

FORMAT_IDENTIFIER = b"FAC\x00"
VERSION_2005 = b"010\x00"
_HEADER = struct.Struct(">4s4sIH")
_FACIAL_INFORMATION = struct.Struct(">IHBBB3sH3s3s")
_FEATURE_POINT = struct.Struct(">BBHHH")
_IMAGE_INFORMATION = struct.Struct(">BBHHBBHH")
_FIXED = _FACIAL_INFORMATION.size + _IMAGE_INFORMATION.size
MAX_IMAGES = 8
MAX_FEATURE_POINTS = 256
_ENCODINGS = {0: ImageEncoding.JPEG, 1: ImageEncoding.JPEG_2000}
_TYPES = {encoding: code for code, encoding in _ENCODINGS.items()}
# What the writer declares: a full frontal image (1), 24-bit RGB (1), a digital still camera (2).
_FULL_FRONTAL, _RGB24, _STILL_CAMERA = 1, 1, 2


def read_19794_5(data: bytes) -> list[FaceImage]:
    """The face images of one 19794-5:2005 record, each checked against its declared type."""
    if len(data) < _HEADER.size:
        raise MalformedDocument(f"ISO/IEC 19794-5 record: {len(data)} bytes, shorter than its header")
    identifier, version, record_length, count = _HEADER.unpack_from(data)
    if identifier != FORMAT_IDENTIFIER:
        raise MalformedDocument("ISO/IEC 19794-5 record: the format identifier is not FAC")
    if version != VERSION_2005:
        raise UnsupportedDocumentFormat(
            f"ISO/IEC 19794-5 record version {version[:3].decode('ascii', 'replace')!r}:"
            " only the 2005 edition (010) is read"
        )
    if record_length != len(data):
        raise MalformedDocument(
            f"ISO/IEC 19794-5 record: the header says {record_length} bytes, the record has {len(data)}"
        )
    if count == 0:
        raise MalformedDocument("ISO/IEC 19794-5 record: no facial images")
    if count > MAX_IMAGES:
        raise DocumentTooLarge(
            f"ISO/IEC 19794-5 record: {count} facial images; at most {MAX_IMAGES} are read"
        )
    images: list[FaceImage] = []
    offset = _HEADER.size
    for number in range(1, count + 1):
        image, offset = _read_image(data, offset, f"ISO/IEC 19794-5 image {number}")
        images.append(image)
    if offset != len(data):
        raise MalformedDocument(f"ISO/IEC 19794-5 record: {len(data) - offset} bytes after its last image")
    return images


def _read_image(data: bytes, offset: int, what: str) -> tuple[FaceImage, int]:
    left = len(data) - offset
    if left < _FIXED:
        raise MalformedDocument(f"{what}: truncated, {left} bytes where a block needs at least {_FIXED}")
    block_length, points, *_ = _FACIAL_INFORMATION.unpack_from(data, offset)
    if points > MAX_FEATURE_POINTS:
        raise DocumentTooLarge(f"{what}: {points} feature points; at most {MAX_FEATURE_POINTS} are read")
    least = _FIXED + points * _FEATURE_POINT.size + 1
    if block_length < least or block_length > left:
        raise MalformedDocument(
            f"{what}: a block length of {block_length} bytes ({least} to {left} would fit its contents)"
        )
    position = offset + _FACIAL_INFORMATION.size
    feature_points = []
    for _ in range(points):
        kind, code, x, y, _reserved = _FEATURE_POINT.unpack_from(data, position)
        feature_points.append(FeaturePoint(kind, code, x, y))
        position += _FEATURE_POINT.size
    _kind, image_type, width, height, *_ = _IMAGE_INFORMATION.unpack_from(data, position)
    position += _IMAGE_INFORMATION.size
    encoding = _ENCODINGS.get(image_type)
    if encoding is None:
        raise UnsupportedDocumentFormat(
            f"{what}: image data type {image_type} (0 JPEG and 1 JPEG 2000 are read)"
        )
    end = offset + block_length
    image = check_image(bytes(data[position:end]), encoding, what)
    return FaceImage(FaceRecordFormat.ISO_19794_5, encoding, image, width, height, tuple(feature_points)), end


def write_19794_5(images: Sequence[FaceImage]) -> bytes:
    """A 19794-5:2005 record of these images (their feature points included), as the reader reads it."""
    if not 1 <= len(images) <= MAX_IMAGES:
        raise ValueError(f"a record holds 1 to {MAX_IMAGES} images, not {len(images)}")
    blocks = []
    for image in images:
        points = b"".join(_FEATURE_POINT.pack(p.kind, p.code, p.x, p.y, 0) for p in image.feature_points)
        information = _IMAGE_INFORMATION.pack(
            _FULL_FRONTAL, _TYPES[image.encoding], image.width, image.height, _RGB24, _STILL_CAMERA, 0, 0
        )
        length = _FIXED + len(points) + len(image.data)
        facial = _FACIAL_INFORMATION.pack(
            length, len(image.feature_points), 0, 0, 0, b"\x00" * 3, 0, b"\x00" * 3, b"\x00" * 3
        )
        blocks.append(facial + points + information + image.data)
    body = b"".join(blocks)
    return _HEADER.pack(FORMAT_IDENTIFIER, VERSION_2005, _HEADER.size + len(body), len(images)) + body
