"""ISO/IEC 39794-5 face image data (tagged BER), as DG2 carries it from 2026 on.

The ASN.1 module uses automatic tagging: context tags replace the universal ones (implicit), and a
CHOICE keeps its own tag inside the field's (explicit). What is read, and written::

    FaceImageDataBlock ::= [APPLICATION 5] SEQUENCE {                         65
      versionBlock         [0] SEQUENCE { generation [0] INTEGER, year [1] INTEGER },  A0 {80, 81}
      representationBlocks [1] SEQUENCE SIZE (1..) OF RepresentationBlock, ... }       A1 {30 ...}
    RepresentationBlock ::= SEQUENCE {
      representationId     [0] INTEGER,                                      80
      imageRepresentation  [1] CHOICE { base [0] CHOICE {                    A1 { A0 {
        imageRepresentation2DBlock [0] SEQUENCE {                            A0 {
          representationData2D    [0] OCTET STRING,   -- the image           80
          imageInformation2DBlock [1] SEQUENCE {                             A1 {
            imageDataFormat [0] CHOICE { code [0] ENUMERATED },              A0 { 80 }
            imageSizeBlock  [7] SEQUENCE { width [0], height [1] } OPTIONAL, A7 { 80, 81 }
            ... } ... } } },
      ... }

Fields not listed (capture date, quality, PAD data, landmarks, the extension blocks) are
skipped, as the extensible types allow. Image data format codes: 2 JPEG, 3 JPEG 2000 lossy,
4 JPEG 2000 lossless; any other is refused by number.
"""

from __future__ import annotations

from collections.abc import Sequence

from safepassage.travel_document import ber
from safepassage.travel_document.errors import MalformedDocument, UnsupportedDocumentFormat
from safepassage.travel_document.face_image import FaceImage, FaceRecordFormat, ImageEncoding, check_image

__all__ = ["read_39794_5", "write_39794_5"]

DATA_BLOCK_TAG = 0x65  # [APPLICATION 5], constructed
# The edition written: ISO/IEC 39794-5:2019, generation 3 of the biometric data interchange formats.
GENERATION, YEAR = 3, 2019
MAX_REPRESENTATIONS = 8
_JPEG, _JPEG_2000_LOSSY, _JPEG_2000_LOSSLESS = 2, 3, 4
_ENCODINGS = {
    _JPEG: ImageEncoding.JPEG,
    _JPEG_2000_LOSSY: ImageEncoding.JPEG_2000,
    _JPEG_2000_LOSSLESS: ImageEncoding.JPEG_2000,
}


def _context(number: int, constructed: bool) -> int:
    return 0x80 | (0x20 if constructed else 0) | number


def _fields(parent: ber.Tlv, what: str) -> list[ber.Tlv]:
    return ber.children(parent, what)


def read_39794_5(data: bytes) -> list[FaceImage]:
    """The face images of one 39794-5 FaceImageDataBlock (its complete encoding, tag 65 first)."""
    block = ber.decode_one(data, "ISO/IEC 39794-5 record", DATA_BLOCK_TAG)
    fields = _fields(block, "ISO/IEC 39794-5 record")
    version = ber.require(fields, _context(0, True), "ISO/IEC 39794-5 version block")
    version_fields = _fields(version, "ISO/IEC 39794-5 version block")
    ber.decode_unsigned(
        ber.require(version_fields, _context(0, False), "the version's generation").value, "generation", 255
    )
    representations = ber.require(fields, _context(1, True), "ISO/IEC 39794-5 representation blocks")
    blocks = ber.children(representations, "ISO/IEC 39794-5 representation blocks", MAX_REPRESENTATIONS)
    if not blocks:
        raise MalformedDocument("ISO/IEC 39794-5 record: no representation blocks")
    return [_read_representation(b, f"ISO/IEC 39794-5 representation {n}") for n, b in enumerate(blocks, 1)]


def _read_representation(block: ber.Tlv, what: str) -> FaceImage:
    if block.tag != 0x30:
        raise MalformedDocument(f"{what}: tag {block.tag:X} where a SEQUENCE (30) was expected")
    fields = _fields(block, what)
    ber.decode_unsigned(ber.require(fields, _context(0, False), f"{what}'s id").value, f"{what}'s id", 2**32)
    choice = ber.require(fields, _context(1, True), f"{what}'s image representation")
    base = ber.find(_fields(choice, what), _context(0, True))
    if base is None:
        raise UnsupportedDocumentFormat(
            f"{what}: an image representation extension block (only base is read)"
        )
    two_d = ber.find(_fields(base, what), _context(0, True))
    if two_d is None:
        raise UnsupportedDocumentFormat(f"{what}: not a 2D image representation")
    parts = _fields(two_d, what)
    image = ber.require(parts, _context(0, False), f"{what}'s image data").value
    information = _fields(ber.require(parts, _context(1, True), f"{what}'s image information"), what)
    data_format = _fields(ber.require(information, _context(0, True), f"{what}'s image data format"), what)
    code_field = ber.find(data_format, _context(0, False))
    if code_field is None:
        raise UnsupportedDocumentFormat(f"{what}: an image data format extension block (only codes are read)")
    code = ber.decode_unsigned(code_field.value, f"{what}'s image data format", 255)
    encoding = _ENCODINGS.get(code)
    if encoding is None:
        raise UnsupportedDocumentFormat(
            f"{what}: image data format {code} (2 JPEG, 3 and 4 JPEG 2000 are read)"
        )
    width = height = 0
    size = ber.find(information, _context(7, True))
    if size is not None:
        dimensions = _fields(size, f"{what}'s image size")
        width = ber.decode_unsigned(
            ber.require(dimensions, _context(0, False), "width").value, "width", 65535
        )
        height = ber.decode_unsigned(
            ber.require(dimensions, _context(1, False), "height").value, "height", 65535
        )
    return FaceImage(
        FaceRecordFormat.ISO_39794_5, encoding, check_image(image, encoding, what), width, height
    )


def write_39794_5(images: Sequence[FaceImage]) -> bytes:
    """A FaceImageDataBlock of these images (one representation block each), as the reader reads it."""
    if not 1 <= len(images) <= MAX_REPRESENTATIONS:
        raise ValueError(f"a record holds 1 to {MAX_REPRESENTATIONS} images, not {len(images)}")
    version = ber.encode(
        _context(0, True),
        ber.encode(_context(0, False), ber.encode_unsigned(GENERATION))
        + ber.encode(_context(1, False), ber.encode_unsigned(YEAR)),
    )
    blocks = b"".join(_representation(number, image) for number, image in enumerate(images))
    return ber.encode(DATA_BLOCK_TAG, version + ber.encode(_context(1, True), blocks))


def _representation(number: int, image: FaceImage) -> bytes:
    code = _JPEG if image.encoding is ImageEncoding.JPEG else _JPEG_2000_LOSSY
    size = ber.encode(
        _context(7, True),
        ber.encode(_context(0, False), ber.encode_unsigned(image.width))
        + ber.encode(_context(1, False), ber.encode_unsigned(image.height)),
    )
    information = ber.encode(
        _context(1, True),
        ber.encode(_context(0, True), ber.encode(_context(0, False), ber.encode_unsigned(code))) + size,
    )
    two_d = ber.encode(_context(0, True), ber.encode(_context(0, False), image.data) + information)
    choice = ber.encode(_context(1, True), ber.encode(_context(0, True), two_d))
    return ber.encode(0x30, ber.encode(_context(0, False), ber.encode_unsigned(number)) + choice)
