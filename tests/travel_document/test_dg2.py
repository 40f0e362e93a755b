"""DG2 in both record formats (ISO/IEC 19794-5:2005 binary, 39794-5 tagged BER) with real faces as
JPEG and JPEG 2000: written, read back, decoded by the face pipeline's reader; and malformed,
truncated or oversized input refused with a TravelDocumentError, never another exception."""

from __future__ import annotations

import contextlib
import random
import struct
from pathlib import Path

import pytest

from safepassage import face as faces
from safepassage.travel_document import (
    DocumentTooLarge,
    FaceImage,
    FaceRecordFormat,
    FeaturePoint,
    ImageEncoding,
    MalformedDocument,
    TravelDocumentError,
    UnsupportedDocumentFormat,
    ber,
    read_dg2,
    write_dg2,
)
from safepassage.travel_document.iso19794_5 import read_19794_5, write_19794_5
from safepassage.travel_document.iso39794_5 import read_39794_5
from tests.travel_document.issuer import photo_of, portrait

FORMATS = list(FaceRecordFormat)
ENCODINGS = [(ImageEncoding.JPEG, False), (ImageEncoding.JPEG_2000, False), (ImageEncoding.JPEG_2000, True)]
LIMITS = faces.ImageLimits(max_bytes=10 * 1024 * 1024, max_pixels=40_000_000)


@pytest.fixture(scope="module")
def photo(faces_dir: Path) -> bytes:
    return photo_of(faces_dir, "Tony_Blair", 1)


@pytest.mark.parametrize("record_format", FORMATS, ids=lambda f: f.name)
@pytest.mark.parametrize(("encoding", "codestream"), ENCODINGS, ids=["jpeg", "jp2", "j2k"])
def test_dg2_round_trip_with_a_real_face(
    photo: bytes, record_format: FaceRecordFormat, encoding: ImageEncoding, codestream: bool
) -> None:
    face = portrait(photo, encoding, record_format, codestream)
    dg2 = read_dg2(write_dg2([face], record_format))
    assert dg2.record_format is record_format
    assert dg2.faces == (face,) and dg2.first.width == dg2.first.height == 250
    # The face pipeline decodes what the chip holds (Pillow's bundled OpenJPEG for JPEG 2000).
    pixels = faces.decode_image(dg2.first.data, LIMITS)
    assert pixels.shape == (250, 250, 3)
    assert faces.read_header(dg2.first.data, LIMITS).format == encoding.value


def test_19794_5_keeps_feature_points_and_several_images(photo: bytes) -> None:
    first = FaceImage(
        FaceRecordFormat.ISO_19794_5,
        ImageEncoding.JPEG,
        photo,
        250,
        250,
        (FeaturePoint(1, 0xC1, 101, 120), FeaturePoint(1, 0xC2, 149, 121)),
    )
    second = portrait(photo, ImageEncoding.JPEG_2000, FaceRecordFormat.ISO_19794_5)
    record = write_19794_5([first, second])
    assert record[:8] == b"FAC\x00010\x00" and struct.unpack(">IH", record[8:14]) == (len(record), 2)
    assert read_19794_5(record) == [first, second]
    dg2 = read_dg2(write_dg2([first, second], FaceRecordFormat.ISO_19794_5))
    assert dg2.faces == (first, second) and dg2.first == first


def test_the_39794_5_record_is_tagged_as_the_standard_says(photo: bytes) -> None:
    face = portrait(photo, ImageEncoding.JPEG, FaceRecordFormat.ISO_39794_5)
    data = write_dg2([face], FaceRecordFormat.ISO_39794_5)
    group = ber.decode_one(data, "DG2", 0x75)
    (template_group,) = ber.children(group, "DG2")
    assert template_group.tag == 0x7F61
    count, template = ber.children(template_group, "group")
    assert (count.tag, count.value, template.tag) == (0x02, b"\x01", 0x7F60)
    header, block = ber.children(template, "template")
    assert header.tag == 0xA1 and block.tag == 0x7F2E
    assert ber.require(ber.children(header, "header"), 0x88, "format type").value == b"\x00\x2a"
    record = ber.decode_one(block.value, "record", 0x65)
    version, representations = ber.children(record, "record")
    assert (version.tag, representations.tag) == (0xA0, 0xA1)
    assert [e.value for e in ber.children(version, "version")] == [b"\x03", b"\x07\xe3"]  # 3, 2019
    (representation,) = ber.children(representations, "representations")
    assert representation.tag == 0x30


def _write(record_format: FaceRecordFormat, photo: bytes) -> bytes:
    return write_dg2([portrait(photo, ImageEncoding.JPEG, record_format)], record_format)


@pytest.mark.parametrize("record_format", FORMATS, ids=lambda f: f.name)
def test_every_truncation_is_refused_cleanly(photo: bytes, record_format: FaceRecordFormat) -> None:
    data = _write(record_format, photo)
    # Every cut inside the headers, then every 97th byte through the image.
    for end in [*range(len(data) - 1)[:400], *range(400, len(data) - 1, 97)]:
        with pytest.raises(TravelDocumentError):
            read_dg2(data[:end])


@pytest.mark.parametrize("record_format", FORMATS, ids=lambda f: f.name)
def test_random_corruption_never_crashes(photo: bytes, record_format: FaceRecordFormat) -> None:
    data = bytearray(_write(record_format, photo))
    rng = random.Random(22)
    for _ in range(3000):
        corrupt = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            corrupt[rng.randrange(0, 120)] = rng.randrange(256)  # the headers, where lengths live
        with contextlib.suppress(TravelDocumentError):
            read_dg2(bytes(corrupt))


def test_lengths_beyond_the_input_are_refused_before_any_allocation() -> None:
    # A 4-byte length claiming 4 GiB, and a 19794-5 block claiming more than is left.
    with pytest.raises(MalformedDocument, match="claims 4294967295 bytes"):
        read_dg2(b"\x75\x84\xff\xff\xff\xff\x00")
    with pytest.raises(MalformedDocument, match="indefinite length"):
        read_dg2(b"\x75\x80\x00\x00")
    with pytest.raises(DocumentTooLarge):
        read_dg2(b"\x75" + b"\x83\x20\x00\x00" + bytes(0x200000))


def test_19794_5_inconsistent_headers_are_refused(photo: bytes) -> None:
    face = portrait(photo, ImageEncoding.JPEG, FaceRecordFormat.ISO_19794_5)
    record = bytearray(write_19794_5([face]))
    with pytest.raises(MalformedDocument, match="the header says"):
        read_19794_5(bytes(record[:-1]))
    wrong_count = bytearray(record)
    wrong_count[12:14] = struct.pack(">H", 2)
    with pytest.raises(MalformedDocument, match="truncated"):
        read_19794_5(bytes(wrong_count))
    many = bytearray(record)
    many[12:14] = struct.pack(">H", 9999)
    with pytest.raises(DocumentTooLarge, match="9999 facial images"):
        read_19794_5(bytes(many))
    block_too_long = bytearray(record)
    block_too_long[14:18] = struct.pack(">I", len(record))
    with pytest.raises(MalformedDocument, match="block length"):
        read_19794_5(bytes(block_too_long))
    points = bytearray(record)
    points[18:20] = struct.pack(">H", 65535)
    with pytest.raises(DocumentTooLarge, match="feature points"):
        read_19794_5(bytes(points))
    version_2011 = bytearray(record)
    version_2011[4:8] = b"030\x00"
    with pytest.raises(UnsupportedDocumentFormat, match="030"):
        read_19794_5(bytes(version_2011))
    wrong_type = bytearray(record)
    wrong_type[14 + 20 + 1] = 1  # declares JPEG 2000 over JPEG bytes
    with pytest.raises(MalformedDocument, match="declares JPEG 2000"):
        read_19794_5(bytes(wrong_type))


def test_39794_5_unknown_image_format_is_refused(photo: bytes) -> None:
    face = portrait(photo, ImageEncoding.JPEG, FaceRecordFormat.ISO_39794_5)
    block = ber.decode_one(write_dg2([face], FaceRecordFormat.ISO_39794_5), "DG2", 0x75)
    record = bytearray(block.value[block.value.index(b"\x65") :])
    marker = record.index(b"\xa0\x03\x80\x01\x02")  # imageDataFormat: code 2, JPEG
    record[marker + 4] = 5  # PNG
    with pytest.raises(UnsupportedDocumentFormat, match="image data format 5"):
        read_39794_5(bytes(record))


def test_structural_errors_in_the_template_group_are_refused(photo: bytes) -> None:
    good = _write(FaceRecordFormat.ISO_19794_5, photo)
    count_at = good.index(b"\x02\x01\x01")
    two_declared = good[:count_at] + b"\x02\x01\x02" + good[count_at + 3 :]
    with pytest.raises(MalformedDocument, match="declares 2 templates and holds 1"):
        read_dg2(two_declared)
    with pytest.raises(MalformedDocument, match="bytes follow"):
        read_dg2(good + b"\x00")
    with pytest.raises(MalformedDocument, match="tag 61"):
        read_dg2(b"\x61" + good[1:])
    secure = ber.encode(
        0x75, ber.encode(0x7F61, ber.encode(0x02, b"\x01") + ber.encode(0x7F60, ber.encode(0x7D, b"\x00")))
    )
    with pytest.raises(UnsupportedDocumentFormat, match="secure messaging"):
        read_dg2(secure)
