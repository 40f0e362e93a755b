"""decode_image on real photos, and its refusals, made in memory from real photos."""

from __future__ import annotations

import contextlib
import io
import random
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safepassage.face import ImageDecodeError, ImageLimits, ImageTooLarge, ImageTooSmall, decode_image
from tests.faces.helpers import read

LFW_JPEG = "lfw/Salma_Hayek/Salma_Hayek_0001.jpg"
SMALL_JPEG = "face_recognition/obama/obama_small.jpg"  # 320x240
RGB_PNG = "group/skimage/astronaut.png"  # 512x512
RGBA_PNG = "group/face_recognition/32bit.png"  # 626x1200
TWO_FACES = "group/face_recognition/obama_and_biden.jpg"  # 2000x1428

LIMITS = ImageLimits()


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def assert_rgb(array: np.ndarray, height: int, width: int) -> None:
    assert array.shape == (height, width, 3)
    assert array.dtype == np.uint8
    assert array.flags.c_contiguous


# --- accepted ---------------------------------------------------------------


def test_decodes_jpeg(faces_dir: Path) -> None:
    assert_rgb(decode_image(read(faces_dir, LFW_JPEG), LIMITS), 250, 250)


def test_decodes_png(faces_dir: Path) -> None:
    data = read(faces_dir, RGB_PNG)
    array = decode_image(data, LIMITS)
    assert_rgb(array, 512, 512)
    assert np.array_equal(array, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_decodes_rgba_png(faces_dir: Path) -> None:
    assert_rgb(decode_image(read(faces_dir, RGBA_PNG), LIMITS), 1200, 626)


def test_transparent_pixels_become_white(faces_dir: Path) -> None:
    rgba = Image.open(io.BytesIO(read(faces_dir, SMALL_JPEG))).convert("RGBA")
    rgba.paste((0, 0, 0, 0), (0, 0, 100, 100))  # fully transparent black corner
    array = decode_image(encode(rgba, "PNG"), LIMITS)
    assert (array[:100, :100] == 255).all()
    assert not (array[150:, 150:] == 255).all()


@pytest.mark.parametrize("mode", ["L", "LA", "P", "1", "I;16"])
def test_converts_other_png_modes_to_rgb(faces_dir: Path, mode: str) -> None:
    photo = Image.open(io.BytesIO(read(faces_dir, SMALL_JPEG)))
    gray = np.asarray(photo.convert("L"))
    # I;16 from the 8-bit values times 257: the full 16-bit range.
    converted = Image.fromarray(gray.astype(np.uint16) * 257) if mode == "I;16" else photo.convert(mode)
    data = encode(converted, "PNG")
    assert Image.open(io.BytesIO(data)).mode == mode
    array = decode_image(data, LIMITS)
    assert_rgb(array, 240, 320)
    if mode in ("L", "LA", "I;16"):
        assert np.array_equal(array[:, :, 0], array[:, :, 2])
        # 16-bit values are scaled down, not clipped to white.
        assert np.abs(array[:, :, 0].astype(int) - gray).max() <= 1


def test_converts_cmyk_jpeg_to_rgb(faces_dir: Path) -> None:
    photo = Image.open(io.BytesIO(read(faces_dir, SMALL_JPEG)))
    array = decode_image(encode(photo.convert("CMYK"), "JPEG", quality=95), LIMITS)
    assert_rgb(array, 240, 320)
    assert np.abs(array.astype(int) - np.asarray(photo.convert("RGB"))).mean() < 8


def test_applies_exif_orientation(faces_dir: Path) -> None:
    upright = decode_image(read(faces_dir, SMALL_JPEG), LIMITS)  # 240 rows x 320 columns
    # A camera held sideways stores the pixels turned and says so in the tag;
    # 6 means "turn 90 degrees clockwise to view".
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    array = decode_image(encode(stored, "JPEG", quality=95, exif=exif), LIMITS)
    assert_rgb(array, 240, 320)
    assert np.abs(array.astype(int) - upright.astype(int)).mean() < 4


# --- refused: not an image ----------------------------------------------------


def test_refuses_empty_bytes() -> None:
    with pytest.raises(ImageDecodeError, match="image is empty"):
        decode_image(b"", LIMITS)


def test_refuses_random_bytes() -> None:
    with pytest.raises(
        ImageDecodeError, match="not an image format we read: the first bytes look like binary"
    ):
        decode_image(random.Random(7).randbytes(5000), LIMITS)


def test_refuses_garbage_behind_jpeg_magic() -> None:
    with pytest.raises(ImageDecodeError, match="JPEG"):
        decode_image(b"\xff\xd8\xff" + random.Random(7).randbytes(5000), LIMITS)


@pytest.mark.parametrize(("image_format", "name"), [("ICO", "ICO"), ("PDF", "PDF"), ("QOI", "QOI")])
def test_refuses_formats_not_read_by_name(faces_dir: Path, image_format: str, name: str) -> None:
    photo = Image.open(io.BytesIO(read(faces_dir, SMALL_JPEG)))
    with pytest.raises(
        ImageDecodeError, match=f"not an image format we read: the first bytes look like {name}"
    ):
        decode_image(encode(photo, image_format), LIMITS)


@pytest.mark.parametrize("relative", [TWO_FACES, RGB_PNG])
def test_refuses_truncated_file(faces_dir: Path, relative: str) -> None:
    data = read(faces_dir, relative)
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(data[: len(data) // 2], LIMITS)


def test_corrupted_files_only_raise_decode_errors(faces_dir: Path) -> None:
    # Whatever Pillow raises inside must surface as ImageDecodeError (or the
    # damaged file still decodes); nothing else may escape to the API.
    rng = random.Random(3)
    for relative in (LFW_JPEG, RGB_PNG):
        original = read(faces_dir, relative)
        for _ in range(60):
            damaged = bytearray(original)
            start = rng.randrange(len(damaged))
            if rng.random() < 0.5:
                del damaged[start : start + rng.randint(1, 400)]
            else:
                for _ in range(rng.randint(1, 10)):
                    damaged[rng.randrange(min(len(damaged), 2000))] = rng.randrange(256)
            with contextlib.suppress(ImageDecodeError):
                decode_image(bytes(damaged), LIMITS)


# --- refused: limits ---------------------------------------------------------


def test_refuses_bytes_over_limit(faces_dir: Path) -> None:
    data = read(faces_dir, TWO_FACES)
    with pytest.raises(ImageTooLarge, match=r"image is 0\.\d MiB \(\d+ bytes\); the limit is 0\.1 MiB"):
        decode_image(data, ImageLimits(max_bytes=100 * 1024))


def test_refuses_bytes_over_default_limit() -> None:
    with pytest.raises(ImageTooLarge, match=r"the limit is 10\.0 MiB"):
        decode_image(b"\xff\xd8\xff" + bytes(10 * 1024 * 1024), LIMITS)


def test_refuses_pixels_over_limit(faces_dir: Path) -> None:
    with pytest.raises(ImageTooLarge, match=r"image is 2000x1428 = 2\.9 megapixels; the limit is 2\.0"):
        decode_image(read(faces_dir, TWO_FACES), ImageLimits(max_pixels=2_000_000))


def with_png_size(png: bytes, width: int, height: int) -> bytes:
    """The same PNG with its IHDR claiming another size (CRC fixed up)."""
    assert png[12:16] == b"IHDR"
    body = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:8] + png[8:12] + body + struct.pack(">I", zlib.crc32(body)) + png[33:]


def test_refuses_png_bomb_before_decoding(faces_dir: Path) -> None:
    # 20000x20000 would need 1.2 GB as RGB. If any pixel were decoded first,
    # the short pixel data would fail as truncated instead, and slowly.
    bomb = with_png_size(read(faces_dir, RGB_PNG), 20000, 20000)
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=r"image is 20000x20000 = 400\.0 megapixels; the limit is 40\.0"):
        decode_image(bomb, LIMITS)
    assert time.perf_counter() - started < 0.5


def test_refuses_real_bomb_png_under_a_low_limit() -> None:
    # A genuine 5000x5000 single-colour PNG: a few kB on the wire, 75 MB decoded.
    bomb = encode(Image.new("P", (5000, 5000)), "PNG", optimize=True)
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLarge, match=r"5000x5000 = 25\.0 megapixels; the limit is 10\.0"):
        decode_image(bomb, ImageLimits(max_pixels=10_000_000))


def test_refuses_tiny_image(faces_dir: Path) -> None:
    photo = Image.open(io.BytesIO(read(faces_dir, SMALL_JPEG))).resize((40, 20))
    with pytest.raises(ImageTooSmall, match="image is 40x20 pixels; each side must be at least 32"):
        decode_image(encode(photo, "PNG"), LIMITS)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ImageLimits(max_pixels=0)
