"""Seeded hostile values: text and ids, vectors, and image bytes."""

from __future__ import annotations

import io
import random
import string
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from safepassage.matcher.vectors import GALLERY_ID, REFERENCE_ID

from .rpcs import DIM, IMAGE_LIMIT, MESSAGE_LIMIT, REFS, P, W


def enum(value: int) -> Any:
    """An enum field's value as the wire carries it, known to the schema or not."""
    return value


UNICODE_RANGES = ((0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF))
ODD_CHARS = "\u202e\u200b\ufeff\u0301\U0001f600\u0430\u2010\x00\u2028\ufffd\u00a0\t\r\n "
HOSTILE_TEXT = (
    "../../etc/passwd",
    "'; DROP TABLE templates; --",
    "%s%n%x%p",
    "${jndi:ldap://x/a}",
    "<script>alert(1)</script>",
    "\\",
    "*",
    "?",
    "%00",
    ".",
    "..",
    "/",
    "NUL",
    "a" * 63 + "\x00",
    "fz-watch\x00",
    "fz-watch/../fz-protected",
)


def control_text(rng: random.Random) -> str:
    pool = [chr(c) for c in range(32)] + ["\x7f"] + list(string.ascii_lowercase)
    return "".join(rng.choice(pool) for _ in range(rng.randint(1, 40)))


def unicode_text(rng: random.Random) -> str:
    chars = []
    for _ in range(rng.randint(1, 40)):
        low, high = rng.choice(UNICODE_RANGES)
        chars.append(chr(rng.randint(low, high)))
    return "".join(chars)


def lookalike(rng: random.Random) -> str:
    """A near miss of a real gallery or reference id."""
    base = rng.choice([W, P, *REFS[W], *REFS[P]])
    kind = rng.randrange(7)
    if kind == 0:
        return base.upper()
    if kind == 1:
        return base + rng.choice([" ", "\n", "\t", "\x00", "\u200b", "."])
    if kind == 2:
        return rng.choice([" ", "-", "_", ".", "\ufeff"]) + base
    if kind == 3:
        return base.replace("-", "\u2010")
    if kind == 4:
        return base.replace("a", "\u0430").replace("p", "\u0440").replace("w", "\u051d")
    if kind == 5:
        return base + "\u0301"
    return base * rng.randint(2, 20)


def text(rng: random.Random) -> str:
    """Any string, mostly hostile; sometimes a valid-looking id."""
    kind = rng.randrange(10)
    if kind == 0:
        return ""
    if kind == 1:
        return "".join(rng.choice(string.printable) for _ in range(rng.randint(1, 80)))
    if kind == 2:
        return control_text(rng)
    if kind == 3:
        return unicode_text(rng)
    if kind == 4:
        return "".join(rng.choice(string.ascii_lowercase + ODD_CHARS) for _ in range(rng.randint(1, 30)))
    if kind == 5:
        return rng.choice("aZ0-._") * rng.choice([64, 129, 1000, 70_000])
    if kind == 6:
        return rng.choice(HOSTILE_TEXT)
    if kind == 7:
        return lookalike(rng)
    if kind == 8:
        return "".join(
            rng.choice(string.ascii_letters + string.digits + "._:@/-") for _ in range(rng.randint(1, 40))
        )
    return "nx-" + rng.randbytes(rng.randint(1, 20)).hex()


def bad_gallery(rng: random.Random) -> str:
    """A gallery id that names no gallery: malformed, or well-formed and unknown."""
    while True:
        gallery = text(rng)
        if gallery not in (W, P):
            return gallery


def unknown_gallery(rng: random.Random) -> str:
    """Well-formed, unknown, and more than a few byte edits away from W and P."""
    return "nx-" + rng.randbytes(rng.randint(5, 12)).hex()


def bad_reference(rng: random.Random) -> str:
    """A malformed reference id."""
    while True:
        reference = text(rng)
        if not REFERENCE_ID.fullmatch(reference):
            return reference


def fresh_reference(rng: random.Random) -> str:
    return "zz-" + rng.randbytes(rng.randint(1, 10)).hex()


def unknown_reference(rng: random.Random) -> str:
    """Malformed, or well-formed and in neither gallery."""
    return bad_reference(rng) if rng.random() < 0.5 else fresh_reference(rng)


def any_reference(rng: random.Random, gallery: str) -> str:
    kind = rng.randrange(3)
    if kind == 0 and gallery in REFS:
        return rng.choice(REFS[gallery])
    return bad_reference(rng) if kind == 1 else fresh_reference(rng)


def normal_vector(rng: random.Random, n: int = DIM) -> list[float]:
    return [rng.gauss(0.0, 0.1) for _ in range(n)]


def bad_vector(rng: random.Random) -> tuple[list[float], str]:
    """A vector the server must refuse: wrong dimension, NaN or infinite values."""
    kind = rng.randrange(6)
    if kind == 0:
        n = rng.choice(
            [0, 1, 2, 64, 127, 129, 256, 1024, 100_000] if rng.random() < 0.05 else [0, 1, 127, 129, 512]
        )
        return ([0.25] * n if n > 1024 else normal_vector(rng, n)), f"dimension {n}"
    values = normal_vector(rng)
    bad = [float("nan"), float("inf"), float("-inf"), 1e39, -1e300][kind - 1]
    for _ in range(rng.randint(1, 3)):
        values[rng.randrange(DIM)] = bad
    if rng.random() < 0.2:
        values += normal_vector(rng, rng.randint(1, 5))
    return values, f"{bad} in vector"


def odd_vector(rng: random.Random) -> tuple[list[float], str]:
    """A valid but strange vector."""
    kind = rng.randrange(7)
    if kind == 0:
        return [0.0] * DIM, "zeros"
    if kind == 1:
        return [rng.choice([1e-40, -1e-40, 1e-45]) for _ in range(DIM)], "denormals"
    if kind == 2:
        return [rng.choice([3.0e38, -3.0e38]) for _ in range(DIM)], "near float32 max"
    if kind == 3:
        return [-0.0] * DIM, "negative zeros"
    if kind == 4:
        return [rng.choice([3.4e38, 1e-40, 0.0, -1.0]) for _ in range(DIM)], "mixed extremes"
    if kind == 5:
        return [1e30] * DIM, "huge"
    return normal_vector(rng), "normal"


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, body: bytes = b"\x00" * 1000) -> bytes:
    """A PNG header claiming width x height (a decompression bomb when they are large)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(body))
        + chunk(b"IEND", b"")
    )


def jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0/SOF2) claims another size."""
    data = bytearray(jpeg)
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at > 0:
            struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def tiny_image(kind: str, size: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (120, 90, 60)).save(out, format=kind)
    return out.getvalue()


@dataclass(frozen=True)
class Images:
    faces: tuple[bytes, ...]  # real photos with faces
    blank: bytes  # a valid 64x64 JPEG with no face
    other_formats: tuple[bytes, ...]  # GIF, BMP, TIFF, WebP


def definite_bad_image(rng: random.Random, images: Images) -> tuple[bytes, str]:
    """Image bytes the server must refuse whatever its decoder settings."""
    kind = rng.randrange(8)
    if kind == 0:
        return b"", "empty image"
    if kind == 1:
        data = rng.randbytes(rng.randint(1, 4096))
        if data.startswith((b"\xff\xd8\xff", b"\x89PNG")):
            data = b"\x00" + data
        return data, "random bytes"
    if kind == 2:
        return rng.choice(images.other_formats), "other format"
    if kind == 3:
        width, height = rng.choice(
            [(30_000, 30_000), (2**31 - 1, 1), (1, 2**31 - 1), (2**32 - 1, 2**32 - 1), (100_000, 50_000)]
        )
        return png(width, height), f"PNG claiming {width}x{height}"
    if kind == 4:
        side = rng.choice([0, 1, 8, 31])
        return (
            png(side, side) if side == 0 else tiny_image(rng.choice(["PNG", "JPEG"]), side)
        ), f"{side}px image"
    if kind == 5:
        width, height = rng.choice([(65_535, 65_535), (65_000, 1000), (10_000, 10_000)])
        return jpeg_claiming(rng.choice(images.faces), width, height), f"JPEG claiming {width}x{height}"
    if kind == 6:
        if rng.random() < 0.25:
            return b"\xff\xd8\xff" + bytes(
                MESSAGE_LIMIT + rng.randint(0, 1000)
            ), "message over the gRPC limit"
        return b"\xff\xd8\xff" + bytes(IMAGE_LIMIT + rng.randint(0, 1000)), "image over its byte limit"
    return b"GIF89a" + rng.randbytes(rng.randint(0, 200)), "GIF header and garbage"


def any_image(rng: random.Random, images: Images) -> tuple[bytes, str]:
    """Hostile image bytes that may still decode (and may hold a face)."""
    kind = rng.randrange(8)
    face = rng.choice(images.faces)
    if kind == 0:
        cut = rng.randint(3, len(face) - 1)
        return face[:cut], f"JPEG truncated at {cut}"
    if kind == 1:
        data = bytearray(face)
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(2, len(data))] = rng.randrange(256)
        return bytes(data), "JPEG with flipped bytes"
    if kind == 2:
        return b"\xff\xd8\xff" + rng.randbytes(rng.randint(0, 5000)), "JPEG magic and garbage"
    if kind == 3:
        return b"\x89PNG\r\n\x1a\n" + rng.randbytes(rng.randint(0, 5000)), "PNG magic and garbage"
    if kind == 4:
        return face + rng.randbytes(rng.randint(1, 5000)), "JPEG with trailing garbage"
    if kind == 5:
        return images.blank, "image with no face"
    if kind == 6:
        return face, "real photo"
    return definite_bad_image(rng, images)


def malformed_gallery(rng: random.Random) -> str:
    """A malformed gallery id (never a well-formed one: a create must not succeed)."""
    while True:
        gallery = text(rng)
        if not GALLERY_ID.fullmatch(gallery):
            return gallery


def load_images(faces_dir: Path) -> Images:
    people = sorted(p for p in (faces_dir / "lfw").iterdir() if p.is_dir())
    photos = tuple(sorted(people[i].glob("*.jpg"))[0].read_bytes() for i in (0, 7, 31, 101))
    others = tuple(tiny_image(kind, 64) for kind in ("GIF", "BMP", "TIFF", "WEBP"))
    return Images(photos, tiny_image("JPEG", 64), others)
