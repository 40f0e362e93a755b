"""Every image format the service reads, made by the test from a real photo, read by its bytes alone.

Each file is embedded through the real dlib embedder and must be the same person as the JPEG it was
made from; a name never decides the format; bombs in other formats are refused before decoding.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pillow_heif
import pytest
from PIL import Image

from safepassage.face import (
    DetectedFace,
    DlibEmbedder,
    FaceSelection,
    ImageDecodeError,
    ImageLimits,
    ImageTooLarge,
    decode_image,
    read_header,
)
from tests.faces.helpers import distance, embed_largest

OBAMA = "face_recognition/obama/obama.jpg"
BIDEN = "face_recognition/biden/biden.jpg"
LIMITS = ImageLimits()
SAME_PERSON = 0.6  # dlib's own threshold for its 128-d embeddings


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def heic(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=85)  # no opener registered, here either
    return buffer.getvalue()


ENCODERS: dict[str, tuple[str, Callable[[Image.Image], bytes]]] = {
    "webp": ("WebP", lambda im: encode(im, "WEBP", quality=85)),
    "webp-lossless": ("WebP", lambda im: encode(im, "WEBP", lossless=True)),
    "gif": ("GIF", lambda im: encode(im, "GIF")),
    "bmp": ("BMP", lambda im: encode(im, "BMP")),
    "tiff": ("TIFF", lambda im: encode(im, "TIFF", compression="tiff_lzw")),
    "pgm": ("PGM", lambda im: encode(im.convert("L"), "PPM")),
    "ppm": ("PPM", lambda im: encode(im, "PPM")),
    "jp2": ("JPEG 2000", lambda im: encode(im, "JPEG2000", irreversible=True)),
    "j2k": ("JPEG 2000", lambda im: encode(im, "JPEG2000", no_jp2=True)),  # ePassport chips: a codestream
    "heic": ("HEIF", heic),
}


@pytest.fixture(scope="module")
def photo(faces_dir: Path) -> Image.Image:
    with Image.open(faces_dir / OBAMA) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def original(embedder: DlibEmbedder, faces_dir: Path) -> DetectedFace:
    return embed_largest(embedder, faces_dir, OBAMA)


@pytest.mark.parametrize("kind", sorted(ENCODERS))
def test_each_format_reads_as_the_same_person(
    kind: str, photo: Image.Image, original: DetectedFace, embedder: DlibEmbedder, faces_dir: Path
) -> None:
    name, make = ENCODERS[kind]
    data = make(photo)
    header = read_header(data, LIMITS)
    assert (header.format if name != "PGM" else header.mode, header.width, header.height) == (
        name if name != "PGM" else "L",
        photo.width,
        photo.height,
    )
    pixels = decode_image(data, LIMITS)
    assert pixels.shape == (photo.height, photo.width, 3)
    [face] = embedder.embed(pixels, FaceSelection.LARGEST)
    assert distance(face, original) < 0.25  # the same photo, re-encoded
    assert distance(face, embed_largest(embedder, faces_dir, BIDEN)) > SAME_PERSON


def test_pgm_is_named_pgm(photo: Image.Image) -> None:
    assert read_header(encode(photo.convert("L"), "PPM"), LIMITS).format == "PGM"


def test_a_webp_named_jpg_is_read_as_webp(photo: Image.Image, tmp_path: Path) -> None:
    path = tmp_path / "passport.jpg"
    path.write_bytes(encode(photo, "WEBP", quality=85))
    assert read_header(path.read_bytes(), LIMITS).format == "WebP"
    assert decode_image(path.read_bytes(), LIMITS).shape == (photo.height, photo.width, 3)


@pytest.mark.parametrize("image_format", ["GIF", "TIFF"])
def test_multi_frame_files_give_their_first_frame(photo: Image.Image, image_format: str) -> None:
    blank = Image.new("RGB", photo.size, (0, 0, 0))
    data = encode(photo, image_format, save_all=True, append_images=[blank])
    pixels = decode_image(data, LIMITS)
    assert pixels.mean() > 40  # the photo, not the black second frame


def test_heic_gives_its_primary_image(photo: Image.Image) -> None:
    buffer = io.BytesIO()
    blank = Image.new("RGB", photo.size, (0, 0, 0))
    collection = pillow_heif.from_pillow(photo)  # the first image is the primary one
    collection.add_from_pillow(blank)
    collection.save(buffer, quality=85)
    assert decode_image(buffer.getvalue(), LIMITS).mean() > 40


@pytest.mark.parametrize("kind", sorted(ENCODERS))
def test_a_truncated_file_is_refused_naming_its_format(kind: str, photo: Image.Image) -> None:
    name, make = ENCODERS[kind]
    data = make(photo)
    with pytest.raises(ImageDecodeError, match=name.split("/")[0]):
        decode_image(data[: len(data) // 3], LIMITS)


def test_garbage_is_refused_saying_what_it_looks_like() -> None:
    with pytest.raises(ImageDecodeError, match="not an image format we read: the first bytes look like text"):
        decode_image(b"Dear border agency,\n" * 50, LIMITS)
    with pytest.raises(ImageDecodeError, match="look like a ZIP archive"):
        decode_image(b"PK\x03\x04" + bytes(100), LIMITS)


def gif_claiming(gif: bytes, width: int, height: int) -> bytes:
    """The same GIF with its logical screen and first image descriptor claiming another size."""
    data = bytearray(gif)
    data[6:10] = struct.pack("<HH", width, height)
    descriptor = data.index(b",", 13)
    data[descriptor + 5 : descriptor + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def webp_claiming(photo: Image.Image, width: int, height: int) -> bytes:
    """A WebP with an extended (VP8X) header whose canvas claims another size."""
    rgba = photo.convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # alpha makes Pillow write a VP8X header
    data = bytearray(encode(rgba, "WEBP", quality=80))
    assert data[12:16] == b"VP8X"
    data[24:27] = (width - 1).to_bytes(3, "little")
    data[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(data)


def tiff_claiming(photo: Image.Image, width: int, height: int) -> bytes:
    image = photo.resize((64, 64))
    data = bytearray(encode(image, "TIFF"))
    # Rewrite the ImageWidth (256) and ImageLength (257) entries of the first IFD.
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        (tag,) = struct.unpack("<H", data[entry : entry + 2])
        if tag in (256, 257):
            value = width if tag == 256 else height
            data[entry + 2 : entry + 12] = struct.pack("<HII", 4, 1, value)
    return bytes(data)


@pytest.mark.parametrize("kind", ["gif", "webp", "tiff"])
def test_a_bomb_in_another_format_is_refused_before_decoding(kind: str, photo: Image.Image) -> None:
    # 16000x16000 would take 3 GB to decode; libwebp would allocate the canvas as soon as it opened.
    bomb = {
        "gif": lambda: gif_claiming(encode(photo.resize((200, 200)), "GIF"), 16000, 16000),
        "webp": lambda: webp_claiming(photo.resize((200, 200)), 16000, 16000),
        "tiff": lambda: tiff_claiming(photo, 16000, 16000),
    }[kind]()
    started = time.perf_counter()
    for check in (read_header, decode_image):
        with pytest.raises(ImageTooLarge, match=r"16000x16000 = 256\.0 megapixels; the limit is 40\.0"):
            check(bomb, LIMITS)
    assert time.perf_counter() - started < 5  # nothing was decompressed (decoding would take minutes)


def test_decode_cost_covers_the_decoders_own_buffers(photo: Image.Image) -> None:
    pixels = photo.width * photo.height
    assert read_header(encode(photo, "BMP"), LIMITS).decode_bytes == 12 * pixels
    assert read_header(encode(photo, "WEBP"), LIMITS).decode_bytes == 20 * pixels
    assert read_header(encode(photo, "JPEG2000"), LIMITS).decode_bytes == 24 * pixels
    assert read_header(encode(photo.convert("P"), "GIF"), LIMITS).decode_bytes == 24 * pixels


def test_the_heif_library_loads_only_for_a_heif_image_and_is_never_registered(photo: Image.Image) -> None:
    data = heic(photo)
    script = (
        "import sys\nfrom safepassage import face as faces\n"
        "from PIL import Image\n"
        "assert 'pillow_heif' not in sys.modules, 'pillow_heif loaded at import'\n"
        "faces.decode_image(sys.stdin.buffer.read(), faces.ImageLimits())\n"
        "assert 'pillow_heif' in sys.modules\n"
        "assert 'HEIF' not in Image.OPEN, 'the HEIF opener was registered'\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], input=data, capture_output=True, timeout=120, check=False
    )
    assert finished.returncode == 0, finished.stderr.decode()
