"""EF.DG2 (ICAO 9303 part 10, 4.7.2): the encoded face, in a CBEFF biometric information template group.

::

    75 L                                   DG2
      7F61 L                               biometric information group template
        02 01 n                            number of templates
        7F60 L                             biometric information template (n of them)
          A1 L                             biometric header template (ISO/IEC 7816-11)
            80 02 0101                     ICAO header version
            81 01 02                       biometric type: facial features
            87 02 0101                     format owner: ISO/IEC JTC 1/SC 37
            88 02 0008 | 002A              format type: 19794-5 face | 39794-5 face
          5F2E L <19794-5 record>          biometric data block, binary
          | 7F2E L <39794-5 record>        biometric data block, ASN.1 (constructed)

The data block's tag says which record format it holds; the header's format type is written but
not trusted for that (issuers have been seen to disagree). Templates under secure messaging
(7D) are refused: they need the chip's session keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from safepassage.travel_document import ber
from safepassage.travel_document.errors import DocumentTooLarge, MalformedDocument, UnsupportedDocumentFormat
from safepassage.travel_document.face_image import FaceImage, FaceRecordFormat
from safepassage.travel_document.iso19794_5 import read_19794_5, write_19794_5
from safepassage.travel_document.iso39794_5 import read_39794_5, write_39794_5

__all__ = ["DG2_TAG", "MAX_DG2_BYTES", "Dg2", "read_dg2", "write_dg2"]

DG2_TAG = 0x75
GROUP_TAG = 0x7F61
TEMPLATE_TAG = 0x7F60
HEADER_TAG = 0xA1
COUNT_TAG = 0x02
SECURE_MESSAGING_TAG = 0x7D
BINARY_BLOCK_TAG = 0x5F2E
ASN1_BLOCK_TAG = 0x7F2E
# A DG2 is tens of kilobytes; a megabyte is far beyond any issuer's and bounds what a sender can make us read.
MAX_DG2_BYTES = 1024 * 1024
MAX_TEMPLATES = 8
_FORMAT_OWNER_SC37 = b"\x01\x01"
_FORMAT_TYPES = {FaceRecordFormat.ISO_19794_5: b"\x00\x08", FaceRecordFormat.ISO_39794_5: b"\x00\x2a"}
_BLOCK_TAGS = {FaceRecordFormat.ISO_19794_5: BINARY_BLOCK_TAG, FaceRecordFormat.ISO_39794_5: ASN1_BLOCK_TAG}


@dataclass(frozen=True)
class Dg2:
    """The face images DG2 holds, in the chip's order, and the record format they came in."""

    record_format: FaceRecordFormat
    faces: tuple[FaceImage, ...]

    @property
    def first(self) -> FaceImage:
        """The portrait an inspection system compares with (ICAO: the first template)."""
        return self.faces[0]


def read_dg2(data: bytes) -> Dg2:
    """The face images of DG2 bytes; MalformedDocument, UnsupportedDocumentFormat or DocumentTooLarge."""
    group = ber.decode_one(data, "DG2", DG2_TAG, max_bytes=MAX_DG2_BYTES)
    outer = ber.children(group, "DG2", max_children=4)
    templates_group = ber.require(outer, GROUP_TAG, "DG2's biometric information group template")
    elements = ber.children(templates_group, "DG2's template group", MAX_TEMPLATES + 1)
    count_field = ber.require(elements, COUNT_TAG, "DG2's template count")
    count = ber.decode_unsigned(count_field.value, "DG2's template count", 255)
    templates = [e for e in elements if e.tag == TEMPLATE_TAG]
    if count > MAX_TEMPLATES:
        raise DocumentTooLarge(f"DG2 declares {count} templates; at most {MAX_TEMPLATES} are read")
    if count == 0 or count != len(templates):
        raise MalformedDocument(f"DG2 declares {count} templates and holds {len(templates)}")
    faces: list[FaceImage] = []
    formats = set()
    for number, template in enumerate(templates, 1):
        found = _read_template(template, f"DG2 template {number}")
        faces.extend(found)
        formats.add(found[0].record_format)
    if len(formats) != 1:
        raise MalformedDocument("DG2 mixes ISO/IEC 19794-5 and 39794-5 records")
    return Dg2(formats.pop(), tuple(faces))


def _read_template(template: ber.Tlv, what: str) -> list[FaceImage]:
    elements = ber.children(template, what, max_children=4)
    if ber.find(elements, SECURE_MESSAGING_TAG) is not None:
        raise UnsupportedDocumentFormat(
            f"{what} is under secure messaging (7D); read it through the chip's session"
        )
    header = ber.children(ber.require(elements, HEADER_TAG, f"{what}'s biometric header"), f"{what}'s header")
    owner = ber.find(header, 0x87)
    if owner is not None and owner.value != _FORMAT_OWNER_SC37:
        raise UnsupportedDocumentFormat(
            f"{what}: format owner {owner.value.hex()} (0101, ISO/IEC JTC 1/SC 37, is read)"
        )
    binary = ber.find(elements, BINARY_BLOCK_TAG)
    structured = ber.find(elements, ASN1_BLOCK_TAG)
    if (binary is None) == (structured is None):
        raise MalformedDocument(
            f"{what} holds {'no' if binary is None else 'two'} biometric data blocks (5F2E or 7F2E)"
        )
    if binary is not None:
        return read_19794_5(binary.value)
    assert structured is not None
    return read_39794_5(structured.value)


def write_dg2(faces: Sequence[FaceImage], record_format: FaceRecordFormat) -> bytes:
    """DG2 bytes holding each face in a template of its own, in ``record_format`` (what tests read back)."""
    if not 1 <= len(faces) <= MAX_TEMPLATES:
        raise ValueError(f"DG2 holds 1 to {MAX_TEMPLATES} faces, not {len(faces)}")
    templates = b""
    for face in faces:
        header = (
            ber.encode(0x80, b"\x01\x01")
            + ber.encode(0x81, b"\x02")
            + ber.encode(0x87, _FORMAT_OWNER_SC37)
            + ber.encode(0x88, _FORMAT_TYPES[record_format])
        )
        record = (
            write_19794_5([face]) if record_format is FaceRecordFormat.ISO_19794_5 else write_39794_5([face])
        )
        block = ber.encode(_BLOCK_TAGS[record_format], record)
        templates += ber.encode(TEMPLATE_TAG, ber.encode(HEADER_TAG, header) + block)
    group = ber.encode(COUNT_TAG, ber.encode_unsigned(len(faces))) + templates
    return ber.encode(DG2_TAG, ber.encode(GROUP_TAG, group))
