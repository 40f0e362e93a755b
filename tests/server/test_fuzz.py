"""Fuzzing: over 10,000 generated bad and hostile requests across every RPC.

The server must answer each with a status it means (never INTERNAL, UNKNOWN or
UNAVAILABLE), stay up (health SERVING, still answering afterwards) and leave
the stored data exactly as it was.

Two kinds of request, from one seeded generator (the seed is printed; set
SAFEPASSAGE_FUZZ_SEED to replay another):

1. structured: real protobuf messages with hostile fields (empty, huge,
   unicode, control-character and look-alike ids; NaN, infinite, denormal and
   out-of-range floats; wrong dimensions; random, truncated and corrupted
   JPEG bytes; PNG and JPEG headers claiming huge sizes; out-of-range top_k,
   thresholds and enum values; oversized restrict_to lists; forged CCTV
   authorisations), mostly sent by a role the authorisation matrix allows,
   so that they reach validation, and some by roles it does not;
2. raw: byte strings sent as the serialized request to every method path
   (random bytes, truncated and mutated encodings, invalid UTF-8, bad wire
   types, length prefixes past the end, deep group nesting).

Every write (create, insert, delete) is built to fail: it carries at least
one defect that the server must refuse (bad or unknown gallery, bad or
existing reference id, bad template, bad face selection, a role that may not
write there), and raw mutations of writes start from galleries that a few
byte edits cannot turn into a real one. Searches may succeed now and then
(a weird but valid probe); they change nothing stored.

Figures: a table printed at the end; with SAFEPASSAGE_WRITE_RESULTS=1 they are
also written to benchmarks/results/fuzz.json.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import random
import string
import struct
import sys
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from benchmarks.fuzz_report import render
from matcher import GalleryPurpose
from matcher.vectors import GALLERY_ID, REFERENCE_ID
from safepassage_api.v1 import matching_pb2 as pb
from safepassage_server.authorization import GALLERY_FREE, MATRIX, Operation
from safepassage_server.cctv_authorisation import METADATA_KEY, sign
from safepassage_server.identity import Role
from tests.pki_helpers import RolePki

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

SEED = int(os.environ.get("SAFEPASSAGE_FUZZ_SEED", "20240917"))
WRITE_RESULTS = os.environ.get("SAFEPASSAGE_WRITE_RESULTS") == "1"
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "fuzz.json"
THREADS = 4
CALL_TIMEOUT_S = 60.0

DIM = 128
MESSAGE_LIMIT = 4 * 1024 * 1024
IMAGE_LIMIT = 1024 * 1024
W, P = "fz-watch", "fz-protected"
REFS = {W: tuple(f"w-{i}" for i in range(8)), P: tuple(f"p-{i}" for i in range(8))}
PURPOSE = {W: GalleryPurpose.WATCHLIST, P: GalleryPurpose.PROTECTED_IDENTITY}
CAMERA = "cam-1"  # the session PKI's cctv_edge client

# How many calls of each kind; stream calls carry several messages each.
PLAN: dict[str, tuple[int, int]] = {  # rpc -> (structured, raw)
    "CreateGallery": (650, 320),
    "ListGalleries": (200, 320),
    "DescribeGallery": (500, 320),
    "DeleteGallery": (550, 320),
    "InsertTemplate": (1500, 360),
    "BulkInsertTemplates": (320, 200),
    "DeleteTemplate": (650, 320),
    "CountTemplates": (450, 320),
    "Identify": (1750, 360),
    "Verify": (1000, 340),
    "IdentifyStream": (320, 200),
    "ConfirmMatch": (550, 320),
}
GALLERY_RPCS = ("CreateGallery", "ListGalleries", "DescribeGallery", "DeleteGallery")
REQUEST_TYPES: dict[str, Any] = {
    "CreateGallery": pb.CreateGalleryRequest,
    "ListGalleries": pb.ListGalleriesRequest,
    "DescribeGallery": pb.DescribeGalleryRequest,
    "DeleteGallery": pb.DeleteGalleryRequest,
    "InsertTemplate": pb.InsertTemplateRequest,
    "BulkInsertTemplates": pb.InsertTemplateRequest,
    "DeleteTemplate": pb.DeleteTemplateRequest,
    "CountTemplates": pb.CountTemplatesRequest,
    "Identify": pb.IdentifyRequest,
    "Verify": pb.VerifyRequest,
    "IdentifyStream": pb.IdentifyRequest,
    "ConfirmMatch": pb.ConfirmMatchRequest,
}
RESPONSE_TYPES: dict[str, Any] = {
    "CreateGallery": pb.Gallery,
    "ListGalleries": pb.ListGalleriesResponse,
    "DescribeGallery": pb.Gallery,
    "DeleteGallery": pb.DeleteGalleryResponse,
    "InsertTemplate": pb.InsertTemplateResponse,
    "BulkInsertTemplates": pb.BulkInsertResponse,
    "DeleteTemplate": pb.DeleteTemplateResponse,
    "CountTemplates": pb.CountTemplatesResponse,
    "Identify": pb.IdentifyResponse,
    "Verify": pb.VerifyResponse,
    "IdentifyStream": pb.IdentifyStreamResponse,
    "ConfirmMatch": pb.ConfirmMatchResponse,
}
STREAMS = {"BulkInsertTemplates": "stream_unary", "IdentifyStream": "stream_stream"}
WRITES = ("CreateGallery", "DeleteGallery", "InsertTemplate", "BulkInsertTemplates", "DeleteTemplate")

OK = "OK"
ALLOWED = frozenset(
    {
        "OK",
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "PERMISSION_DENIED",
    }
)
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def path_of(rpc: str) -> str:
    service = "GalleryService" if rpc in GALLERY_RPCS else "MatchingService"
    return f"/safepassage.v1.{service}/{rpc}"


def allowed_callers(rpc: str) -> list[tuple[Role, str]]:
    """(role, gallery) pairs the authorisation matrix allows for the rpc."""
    operation = Operation(rpc)
    if operation in GALLERY_FREE:
        return [(role, "") for role in sorted(GALLERY_FREE[operation], key=str)]
    return [
        (role, gallery)
        for role, purposes in sorted(MATRIX[operation].items(), key=lambda item: str(item[0]))
        for gallery in (W, P)
        if PURPOSE[gallery] in purposes
    ]


def refused_callers(rpc: str) -> list[tuple[Role, str]]:
    allowed = set(allowed_callers(rpc))
    if Operation(rpc) in GALLERY_FREE:
        return [(role, "") for role in Role if (role, "") not in allowed]
    return [(role, g) for role in Role for g in (W, P) if (role, g) not in allowed]


# -- hostile values --------------------------------------------------------------------


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


# -- requests --------------------------------------------------------------------------


@dataclass
class Case:
    rpc: str
    role: Role
    raw: bool
    request: Any  # a message, a list of messages, bytes, or a list of bytes
    label: str
    metadata: tuple[tuple[str, str], ...] = ()
    images: int = 0
    kind: str = ""  # the kind of hostility, for grouping outcomes


@dataclass(frozen=True)
class Tokens:
    valid: str  # a real authorisation for CAMERA on W
    admin_der: bytes
    camera_der: bytes
    other_gallery: str
    other_camera: str
    expired: str


def b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hostile_token(rng: random.Random, tokens: Tokens) -> tuple[str | None, str]:
    """A CCTV authorisation that must be refused (or the valid one, sometimes)."""
    kind = rng.randrange(13)
    if kind == 0:
        return None, "no authorisation"
    if kind == 1:
        return "", "empty authorisation"
    if kind == 2:
        return "".join(
            rng.choice(string.printable[:94] + " ") for _ in range(rng.randint(1, 300))
        ), "random token"
    if kind == 3:
        return ".".join(
            b64(rng.randbytes(rng.randint(0, 200))) for _ in range(rng.randint(1, 5))
        ), "random parts"
    if kind == 4:
        chars = list(tokens.valid)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice(string.ascii_letters + string.digits + "-_.")
        return "".join(chars), "valid token with changed characters"
    if kind == 5:
        return tokens.valid[: rng.randrange(len(tokens.valid))], "truncated token"
    if kind in (6, 7):
        payloads = [
            b"[]",
            b"5",
            b'"x"',
            b"null",
            b"{}",
            b'{"version": 1}',
            b'{"version": "1"}',
            b'{"version": 1, "cameras": 5}',
            b'{"version": 1, "cameras": ["cam-1"], "extra": 1}',
            b"[" * 2000 + b"]" * 2000,
            b'{"a":' * 800 + b"1" + b"}" * 800,
            b"\xff\xfe",
            rng.randbytes(rng.randint(0, 100)),
            json.dumps({"version": 1, "cameras": [CAMERA], "gallery_id": W, "not_before": "x"}).encode(),
        ]
        payload = rng.choice(payloads)
        cert = tokens.admin_der if kind == 6 else tokens.camera_der
        signature = b64(rng.randbytes(rng.choice([0, 8, 70, 72])))
        return f"{b64(payload)}.{signature}.{b64(cert)}", f"forged payload {payload[:12]!r}"
    if kind == 8:
        body, signed, _ = tokens.valid.split(".")
        return f"{body}.{signed}.{b64(tokens.camera_der)}", "camera's own certificate"
    if kind == 9:
        return rng.choice(
            [tokens.other_gallery, tokens.other_camera, tokens.expired]
        ), "token for another call"
    if kind == 10:
        return "." * rng.randint(0, 10), "dots"
    if kind == 11:
        # A well-formed admin certificate with one field made unreadable.
        name, old, new = rng.choice(
            [
                ("unknown curve", "2a8648ce3d030107", "2a8648ce3d030108"),  # prime256v1 -> .8
                ("unknown key type", "2a8648ce3d0201", "2a8648ce3d0205"),  # id-ecPublicKey -> .5
                ("bad X.509 version", "a003020102", "a003020107"),
            ]
        )
        der = tokens.admin_der.replace(bytes.fromhex(old), bytes.fromhex(new), 1)
        body, signed, _ = tokens.valid.split(".")
        return f"{body}.{signed}.{b64(der)}", f"certificate with {name}"
    return tokens.valid, "valid authorisation"


class Generator:
    """Seeded: the same seed gives the same requests, in the same order."""

    def __init__(self, seed: int, images: Images, tokens: Tokens) -> None:
        self.rng = random.Random(seed)
        self.images = images
        self.tokens = tokens

    # Who calls: mostly a role the matrix allows (the request reaches validation).

    def caller(self, rpc: str, refused_share: float = 0.12) -> tuple[Role, str, bool]:
        rng = self.rng
        if rng.random() < refused_share:
            role, gallery = rng.choice(refused_callers(rpc))
            return role, gallery, True
        role, gallery = rng.choice(allowed_callers(rpc))
        return role, gallery, False

    # Probes and templates.

    def definite_bad_probe(self) -> tuple[pb.Probe, str, int]:
        rng = self.rng
        kind = rng.random()
        if kind < 0.1:
            return pb.Probe(), "empty probe", 0
        if kind < 0.2:
            return pb.Probe(embedding=pb.Embedding()), "empty embedding", 0
        if kind < 0.28:
            image, label = definite_bad_image(rng, self.images)
            return pb.Probe(image=image), label, 1
        values, label = bad_vector(rng)
        return pb.Probe(embedding=pb.Embedding(values=values)), label, 0

    def any_probe(self, image_share: float = 0.06) -> tuple[pb.Probe, str, int]:
        rng = self.rng
        kind = rng.random()
        if kind < image_share:
            image, label = any_image(rng, self.images)
            return pb.Probe(image=image), label, 1
        if kind < 0.5:
            values, label = odd_vector(rng)
            return pb.Probe(embedding=pb.Embedding(values=values)), label, 0
        return self.definite_bad_probe()

    # One generator per RPC: (request, label, images sent).

    def create_gallery(self, role: Role, refused: bool) -> tuple[Any, str, int]:
        rng = self.rng
        request = pb.CreateGalleryRequest(
            gallery_id=rng.choice([W, P, fresh_reference(rng).replace(".", "-").lower()]),
            purpose=rng.choice([pb.WATCHLIST, pb.PROTECTED_IDENTITY]),
        )
        if rng.random() < 0.3:
            request.threshold = rng.choice([0.0, 0.6, 1e30, 1e-40])
        if rng.random() < 0.2:
            request.model = "dlib-resnet-v1"
        defects = rng.sample(["gallery", "purpose", "threshold", "model", "exists"], rng.randint(1, 2))
        if refused:
            defects.append("role")
        if "exists" in defects:
            request.gallery_id = rng.choice([W, P])
        if "gallery" in defects:
            request.gallery_id = malformed_gallery(rng)
        if "purpose" in defects:
            request.purpose = enum(rng.choice([0, 3, 4, 99, -1, 2**31 - 1, -(2**31)]))
        if "threshold" in defects:
            request.threshold = rng.choice([float("nan"), float("inf"), float("-inf"), -5.0, -1e30, -1e39])
        if "model" in defects:
            request.model = (
                rng.choice(["arcface", "DLIB-RESNET-V1", "dlib-resnet-v1 ", "\x00"])
                if rng.random() < 0.5
                else text(rng) or "x"
            )
            if request.model == "dlib-resnet-v1":
                request.model = "arcface"
        return request, "create: " + "+".join(defects), 0

    def list_galleries(self, role: Role, refused: bool) -> tuple[Any, str, int]:
        return pb.ListGalleriesRequest(), "list" + (" (refused role)" if refused else ""), 0

    def describe_gallery(self, role: Role, gallery: str, refused: bool) -> tuple[Any, str, int]:
        gallery_id = gallery if refused and self.rng.random() < 0.7 else bad_gallery(self.rng)
        return pb.DescribeGalleryRequest(gallery_id=gallery_id), "describe a bad gallery", 0

    def delete_gallery(self, role: Role, gallery: str, refused: bool) -> tuple[Any, str, int]:
        # The admin only ever deletes galleries that do not exist; refused roles try the real ones too.
        gallery_id = gallery if refused and self.rng.random() < 0.5 else bad_gallery(self.rng)
        return pb.DeleteGalleryRequest(gallery_id=gallery_id), "delete a missing gallery", 0

    def insert(self, role: Role, gallery: str, refused: bool) -> tuple[pb.InsertTemplateRequest, str, int]:
        """An insert with at least one defect the server must refuse."""
        rng = self.rng
        defects = rng.sample(["gallery", "reference", "template", "selection"], rng.choice([1, 1, 2]))
        if refused:
            defects = ["role"] + (defects if rng.random() < 0.3 else [])
        gallery_id = bad_gallery(rng) if "gallery" in defects else gallery
        if "reference" in defects:
            reference = rng.choice(REFS[gallery]) if rng.random() < 0.4 else bad_reference(rng)
        else:
            reference = any_reference(rng, gallery)
        probe, label, images = self.definite_bad_probe() if "template" in defects else self.any_probe(0.04)
        if "selection" in defects:
            selection = rng.choice([pb.ALL, 4, 42, -1, 2**31 - 1])
        else:
            selection = rng.choice([0, 0, pb.SINGLE, pb.LARGEST, pb.ALL, 42])
        request = pb.InsertTemplateRequest(
            gallery_id=gallery_id,
            reference_id=reference,
            template=probe,
            face_selection=enum(selection),
        )
        return request, f"insert: {'+'.join(defects)} ({label})", images

    def bulk(self, role: Role, gallery: str, refused: bool) -> tuple[Any, str, int]:
        rng = self.rng
        items = [self.insert(role, gallery, refused) for _ in range(rng.choice([0, 1, 2, 5, 12, 30]))]
        return [r for r, _, _ in items], f"bulk of {len(items)} bad items", sum(i for _, _, i in items)

    def delete_template(self, role: Role, gallery: str, refused: bool) -> tuple[Any, str, int]:
        rng = self.rng
        if refused:
            # A role that may not delete here tries a real reference.
            request = pb.DeleteTemplateRequest(gallery_id=gallery, reference_id=rng.choice(REFS[gallery]))
            return request, "delete a real reference as a refused role", 0
        if rng.random() < 0.3:
            request = pb.DeleteTemplateRequest(
                gallery_id=bad_gallery(rng), reference_id=any_reference(rng, gallery)
            )
            return request, "delete in a bad gallery", 0
        other = P if gallery == W else W
        reference = rng.choice(REFS[other]) if rng.random() < 0.15 else unknown_reference(rng)
        return (
            pb.DeleteTemplateRequest(gallery_id=gallery, reference_id=reference),
            "delete a missing reference",
            0,
        )

    def count(self, role: Role, gallery: str, refused: bool) -> tuple[Any, str, int]:
        gallery_id = gallery if refused and self.rng.random() < 0.7 else bad_gallery(self.rng)
        return pb.CountTemplatesRequest(gallery_id=gallery_id), "count a bad gallery", 0

    def identify(self, gallery: str, definite: bool = False) -> tuple[pb.IdentifyRequest, str, int]:
        """A search with hostile fields; with `definite`, one the server must refuse."""
        rng = self.rng
        choices = ["gallery", "probe", "top_k", "threshold", "selection", "restrict_to"]
        count = rng.choice([1, 1, 1, 2, 3]) if definite or rng.random() < 0.85 else 0
        defects = rng.sample(choices, count)
        probe, label, images = self.definite_bad_probe() if "probe" in defects else self.any_probe()
        request = pb.IdentifyRequest(
            gallery_id=bad_gallery(rng) if "gallery" in defects else gallery,
            probe=probe,
            top_k=rng.choice([101, 1000, 2**31, 2**32 - 1])
            if "top_k" in defects
            else rng.choice([0, 1, 5, 100]),
            request_id=text(rng) if rng.random() < 0.5 else "",
            face_selection=enum(
                rng.choice([4, 42, -1, 2**31 - 1, -(2**31)])
                if "selection" in defects
                else rng.choice([0, 1, 2, 3])
            ),
        )
        if "threshold" in defects:
            request.threshold = rng.choice([float("nan"), float("inf"), float("-inf"), -1.0, -1e-30, -1e30])
        elif rng.random() < 0.3:
            request.threshold = rng.choice([0.0, 0.6, 1e30, 1e-40])
        if "restrict_to" in defects:
            if rng.random() < 0.03:
                request.restrict_to.extend(f"r{i}" for i in range(10_001 + rng.randrange(2000)))
                label += ", restrict_to over its limit"
            else:
                request.restrict_to.extend([bad_reference(rng) for _ in range(rng.randint(1, 5))])
                label += ", malformed restrict_to"
        elif rng.random() < 0.2:
            many = rng.random() < 0.01
            request.restrict_to.extend(
                [f"zz{i}" for i in range(10_000)]
                if many
                else [
                    rng.choice([*REFS[W], *REFS[P], fresh_reference(rng)]) for _ in range(rng.randint(1, 8))
                ]
            )
        return request, f"identify: {'+'.join(defects) or 'weird but valid'} ({label})", images

    def verify(self, gallery: str) -> tuple[Any, str, int]:
        rng = self.rng
        choices = ["gallery", "reference", "probe", "threshold", "selection"]
        defects = rng.sample(choices, rng.choice([1, 1, 2]) if rng.random() < 0.85 else 0)
        probe, label, images = self.definite_bad_probe() if "probe" in defects else self.any_probe()
        request = pb.VerifyRequest(
            gallery_id=bad_gallery(rng) if "gallery" in defects else gallery,
            reference_id=unknown_reference(rng)
            if "reference" in defects
            else rng.choice(REFS.get(gallery, REFS[W])),
            probe=probe,
            face_selection=enum(
                rng.choice([pb.ALL, 4, 42, -1]) if "selection" in defects else rng.choice([0, 1, 2])
            ),
        )
        if "threshold" in defects:
            request.threshold = rng.choice([float("nan"), float("inf"), float("-inf"), -1.0, -1e30])
        elif rng.random() < 0.3:
            request.threshold = rng.choice([0.0, 0.6, 1e30])
        return request, f"verify: {'+'.join(defects) or 'weird but valid'} ({label})", images

    def confirm(self, gallery: str, refused: bool) -> tuple[Any, str, int]:
        rng = self.rng
        gallery_id = gallery if refused or rng.random() < 0.7 else bad_gallery(rng)
        probe_id = rng.choice(
            [0, 1, 2, 42, 2**31, 2**32, 2**53 + 1, 2**63 - 1, rng.randrange(1000), rng.randrange(2**63)]
        )
        if rng.random() < 0.15:
            probe_id = rng.choice([2**63, 2**64 - 1, rng.randrange(2**63, 2**64)])
        return (
            pb.ConfirmMatchRequest(gallery_id=gallery_id, probe_id=probe_id),
            f"confirm probe {probe_id}",
            0,
        )

    # Structured cases.

    def structured(self, rpc: str) -> Case:
        rng = self.rng
        role, gallery, refused = self.caller(rpc)
        if rpc == "IdentifyStream" and rng.random() < 0.5:
            role, gallery, refused = Role.CCTV_EDGE, W, False  # half the streams fuzz the authorisation
        metadata: tuple[tuple[str, str], ...] = ()
        if rpc == "CreateGallery":
            request, label, images = self.create_gallery(role, refused)
        elif rpc == "ListGalleries":
            role, _, refused = self.caller(rpc, refused_share=0.6)
            request, label, images = self.list_galleries(role, refused)
        elif rpc == "DescribeGallery":
            request, label, images = self.describe_gallery(role, gallery, refused)
        elif rpc == "DeleteGallery":
            request, label, images = self.delete_gallery(role, gallery, refused)
        elif rpc == "InsertTemplate":
            request, label, images = self.insert(role, gallery, refused)
        elif rpc == "BulkInsertTemplates":
            request, label, images = self.bulk(role, gallery, refused)
        elif rpc == "DeleteTemplate":
            request, label, images = self.delete_template(role, gallery, refused)
        elif rpc == "CountTemplates":
            request, label, images = self.count(role, gallery, refused)
        elif rpc == "Identify":
            request, label, images = self.identify(gallery)
        elif rpc == "Verify":
            request, label, images = self.verify(gallery)
        elif rpc == "IdentifyStream":
            # A camera with a valid authorisation only ever sends refusable requests, so no probe is kept.
            # Tokens get their own generator: their lengths vary from run to run (ECDSA
            # signatures), and the main sequence must not.
            token, token_label = (
                hostile_token(random.Random(rng.getrandbits(64)), self.tokens)
                if role is Role.CCTV_EDGE
                else (None, "")
            )
            definite = token == self.tokens.valid
            items = [self.identify(gallery, definite) for _ in range(rng.choice([0, 1, 1, 2, 4, 8]))]
            request = [r for r, _, _ in items]
            images = sum(i for _, _, i in items)
            label = f"stream of {len(items)}" + (f", {token_label}" if token_label else "")
            if token is not None:
                metadata = ((METADATA_KEY, token),)
        elif rpc == "ConfirmMatch":
            request, label, images = self.confirm(gallery, refused)
        else:  # pragma: no cover
            raise AssertionError(rpc)
        if rpc == "ConfirmMatch":
            kind = "probe_id >= 2**63" if request.probe_id >= 2**63 else "probe_id < 2**63"
        elif rpc == "IdentifyStream":
            kind = token_label or f"as {role.value}"
        else:
            kind = label.split(" (")[0]
        if refused:
            label += f" [as {role.value}, refused]"
            kind += " [refused role]"
        return Case(rpc, role, False, request, label, metadata, images, kind)

    # Raw cases: bytes on the wire.

    def raw_base(self, rpc: str) -> bytes:
        """An encoding to truncate or mutate; writes aim at galleries a few edits cannot reach."""
        rng = self.rng
        if rpc == "CreateGallery":
            # Four independent defects: three byte edits cannot fix them all.
            create = pb.CreateGalleryRequest(
                gallery_id="ZZZZ" + rng.randbytes(4).hex(),
                purpose=enum(99),
                model="arcface",
                threshold=float("nan"),
            )
            return create.SerializeToString()
        if rpc == "DeleteGallery":
            return pb.DeleteGalleryRequest(gallery_id=unknown_gallery(rng)).SerializeToString()
        if rpc in ("InsertTemplate", "BulkInsertTemplates"):
            insert = pb.InsertTemplateRequest(
                gallery_id=unknown_gallery(rng),
                reference_id=fresh_reference(rng),
                template=pb.Probe(embedding=pb.Embedding(values=normal_vector(rng))),
            )
            return insert.SerializeToString()
        if rpc == "DeleteTemplate":
            delete = pb.DeleteTemplateRequest(
                gallery_id=unknown_gallery(rng), reference_id=rng.choice(REFS[W])
            )
            return delete.SerializeToString()
        if rpc == "ListGalleries":
            return b""
        search: Any
        if rpc in ("Identify", "IdentifyStream"):
            search, _, _ = self.identify(rng.choice([W, P]))
        elif rpc == "Verify":
            search, _, _ = self.verify(rng.choice([W, P]))
        elif rpc == "ConfirmMatch":
            search, _, _ = self.confirm(W, False)
        else:
            search = REQUEST_TYPES[rpc](gallery_id=rng.choice([W, P]))
        if rpc in ("Identify", "IdentifyStream", "Verify") and search.probe.WhichOneof("kind") == "image":
            search.probe.embedding.values.extend(normal_vector(rng))  # no image decoding in raw cases
        encoded: bytes = search.SerializeToString()
        return encoded

    def raw_message(self, rpc: str) -> tuple[bytes, str]:
        rng = self.rng
        kind = rng.randrange(10)
        if kind == 0:
            return rng.randbytes(rng.randint(0, 64)), "random bytes"
        if kind == 1:
            return rng.randbytes(rng.randint(64, 4096)), "random bytes (long)"
        base = self.raw_base(rpc)
        if kind == 2:
            return base[: rng.randrange(len(base) + 1)], "truncated encoding"
        if kind in (3, 4):
            data = bytearray(base)
            for _ in range(rng.randint(1, 3)):
                edit = rng.randrange(3)
                at = rng.randrange(len(data) + 1)
                if edit == 0 and at < len(data):
                    data[at] = rng.randrange(256)
                elif edit == 1:
                    data.insert(at, rng.randrange(256))
                elif at < len(data):
                    del data[at]
            return bytes(data), "mutated encoding"
        if kind == 5:
            bad_utf8 = rng.choice(
                [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"a\x80b", b"\xf4\x90\x80\x80", b"\xe2\x82"]
            )
            field = (
                rng.choice([1, 2, 6])
                if rpc
                in (
                    "Identify",
                    "IdentifyStream",
                    "InsertTemplate",
                    "BulkInsertTemplates",
                    "Verify",
                    "DeleteTemplate",
                )
                else 1
            )
            return bytes([field << 3 | 2, len(bad_utf8)]) + bad_utf8, "invalid UTF-8 in a string"
        if kind == 6:
            tricks = [
                (b"\x0a\x7f" + b"abc", "length past the end"),
                (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "huge length varint"),
                (b"\x08" + b"\xff" * 11, "overlong varint"),
                (b"\x0b" * rng.choice([10, 200, 5000]), "unterminated groups"),
                ((b"\x9b\x06" * 3000) + (b"\x9c\x06" * 3000), "deeply nested unknown groups"),
                (b"\x0c", "end group without a start"),
                (b"\x00", "field number 0"),
                (b"\xfa\xff\xff\xff\x0f\x00", "field number past the maximum"),
                (b"\x0f", "wire type 7"),
                (b"\x0d\x00\x00", "truncated fixed32"),
                (b"\x1a\x03\x0a\x01\x05", "embedding values with a length of 1"),
                (b"\x1a\x05\x0a\x03\x00\x00\x00", "packed floats not a multiple of 4"),
                (b"\x12\x05\x0a\x03\x00\x00\x00", "packed floats not a multiple of 4 (field 2)"),
            ]
            return rng.choice(tricks)
        if kind == 7:
            unknown = b"".join(
                bytes([0xF8 | 0, rng.randint(1, 127)]) + bytes([rng.randrange(128)])
                for _ in range(rng.randint(1, 20))
            )
            return base + unknown, "valid encoding and unknown fields"
        if kind == 8:
            wrong_wire = bytes(
                [rng.choice([1, 2, 3, 4, 5, 6, 7]) << 3 | rng.choice([0, 1, 5])]
            ) + rng.randbytes(8)
            return wrong_wire + base, "a known field with the wrong wire type"
        return base, "the base encoding"

    def raw(self, rpc: str) -> Case:
        rng = self.rng
        role, _, _ = self.caller(rpc, refused_share=0.15)
        if rpc == "IdentifyStream" and role is Role.CCTV_EDGE:
            role = Role.OFFICER  # no authorisation: every camera stream would be refused outright
        if rpc in STREAMS:
            messages = [self.raw_message(rpc) for _ in range(rng.choice([0, 1, 1, 2, 3, 5]))]
            label = "stream of " + ", ".join(sorted({m for _, m in messages})) if messages else "empty stream"
            return Case(rpc, role, True, [m for m, _ in messages], "raw " + label, kind="raw bytes")
        message, label = self.raw_message(rpc)
        return Case(rpc, role, True, message, f"raw {label} ({len(message)} bytes)", kind="raw bytes")

    def cases(self) -> list[Case]:
        cases = []
        for rpc, (structured, raw) in PLAN.items():
            cases += [self.structured(rpc) for _ in range(structured)]
            cases += [self.raw(rpc) for _ in range(raw)]
        self.rng.shuffle(cases)
        return cases


def malformed_gallery(rng: random.Random) -> str:
    """A malformed gallery id (never a well-formed one: a create must not succeed)."""
    while True:
        gallery = text(rng)
        if not GALLERY_ID.fullmatch(gallery):
            return gallery


# -- running ---------------------------------------------------------------------------


@dataclass
class Outcome:
    status: str
    items: list[str]
    inserted: int = 0
    kept: int = 0
    details: str = ""


def identity(data: bytes) -> bytes:
    return data


def serializer(raw: bool) -> Callable[[Any], bytes]:
    return identity if raw else (lambda message: message.SerializeToString())


def execute(channel: grpc.Channel, case: Case) -> Outcome:
    path = path_of(case.rpc)
    decode = RESPONSE_TYPES[case.rpc].FromString
    kwargs: dict[str, Any] = {"timeout": CALL_TIMEOUT_S}
    if case.metadata:
        kwargs["metadata"] = case.metadata
    items: list[str] = []
    inserted = kept = 0
    try:
        shape = STREAMS.get(case.rpc, "unary")
        if shape == "unary":
            channel.unary_unary(path, request_serializer=serializer(case.raw), response_deserializer=decode)(
                case.request, **kwargs
            )
        elif shape == "stream_unary":
            response = channel.stream_unary(
                path, request_serializer=serializer(case.raw), response_deserializer=decode
            )(iter(case.request), **kwargs)
            inserted = response.inserted
            items = [CODE_NAMES.get(e.code, f"code {e.code}") for e in response.errors]
            items += ["(unreported)"] * (response.failed - len(response.errors))
        else:
            responses = channel.stream_stream(
                path, request_serializer=serializer(case.raw), response_deserializer=decode
            )(iter(case.request), **kwargs)
            for response in responses:
                if response.WhichOneof("outcome") == "error":
                    items.append(CODE_NAMES.get(response.error.code, f"code {response.error.code}"))
                else:
                    items.append(OK)
                kept += response.probe_id != 0
    except grpc.RpcError as error:
        return Outcome(error.code().name, items, inserted, kept, error.details() or "")
    return Outcome(OK, items, inserted, kept)


def stored_state(service: Any, clients: Any) -> dict[str, Any]:
    """Everything stored that the fuzzing must leave alone, as the API and the store see it."""
    galleries = clients.admin.galleries.ListGalleries(pb.ListGalleriesRequest()).galleries
    state: dict[str, Any] = {
        "galleries": sorted(
            (
                g.gallery_id,
                g.purpose,
                g.model,
                g.dimension,
                g.metric,
                g.threshold,
                g.size,
                g.created_at.ToNanoseconds(),
            )
            for g in galleries
        ),
        "kept_probes": service.kept_probes.count(),
    }
    searcher = {W: clients.officer, P: clients.ngo}
    for gallery in (W, P):
        stored = service.template_store.state(gallery)
        state[gallery] = {
            "store": (stored.size, stored.generation, stored.digest_hex),
            "index": service.matcher.count(gallery),
            "count": clients.admin.matching.CountTemplates(
                pb.CountTemplatesRequest(gallery_id=gallery)
            ).count,
            "answers": [
                [
                    (c.reference_id, c.score, c.rank, c.match)
                    for c in searcher[gallery]
                    .matching.Identify(
                        pb.IdentifyRequest(
                            gallery_id=gallery,
                            probe=pb.Probe(
                                embedding=pb.Embedding(values=[math.sin(seed + i) * 0.1 for i in range(DIM)])
                            ),
                            top_k=100,
                        )
                    )
                    .faces[0]
                    .candidates
                ]
                for seed in range(4)
            ],
        }
    return state


def serving(port: int, pki: RolePki) -> bool:
    """Health SERVING, and the gRPC server still answers a fresh connection's real call."""
    channel = pki.channel_for(port, Role.ADMIN)
    try:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        listed = channel.unary_unary(
            path_of("ListGalleries"),
            request_serializer=pb.ListGalleriesRequest.SerializeToString,
            response_deserializer=pb.ListGalleriesResponse.FromString,
        )(pb.ListGalleriesRequest(), timeout=10)
        return health.status == health_pb2.HealthCheckResponse.SERVING and len(listed.galleries) == 2
    finally:
        channel.close()


def load_images(faces_dir: Path) -> Images:
    people = sorted(p for p in (faces_dir / "lfw").iterdir() if p.is_dir())
    photos = tuple(sorted(people[i].glob("*.jpg"))[0].read_bytes() for i in (0, 7, 31, 101))
    others = tuple(tiny_image(kind, 64) for kind in ("GIF", "BMP", "TIFF", "WEBP"))
    return Images(photos, tiny_image("JPEG", 64), others)


def make_tokens(pki: RolePki) -> Tokens:
    admin = pki.clients[Role.ADMIN]
    camera = pki.clients[Role.CCTV_EDGE]
    admin_cert = x509.load_pem_x509_certificate(admin.cert_pem)
    key = load_pem_private_key(admin.key_pem, None)

    def token(gallery: str = W, cameras: Sequence[str] = (CAMERA,), now: float | None = None) -> str:
        return sign(
            gallery_id=gallery,
            cameras=cameras,
            legal_basis="fuzz test",
            valid_for_s=3600,
            admin_cert=admin_cert,
            admin_key=key,  # type: ignore[arg-type]
            now=now,
        )

    return Tokens(
        valid=token(),
        admin_der=admin_cert.public_bytes(Encoding.DER),
        camera_der=x509.load_pem_x509_certificate(camera.cert_pem).public_bytes(Encoding.DER),
        other_gallery=token(gallery=P),
        other_camera=token(cameras=("cam-2",)),
        expired=token(now=time.time() - 7200),
    )


def run_all(clients: Any, cases: Sequence[Case]) -> list[Outcome]:
    channels = {role: clients.as_role(role).channel for role in Role}

    def run(case: Case) -> Outcome:
        return execute(channels[case.role], case)

    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="fuzz") as pool:
        return list(pool.map(run, cases, chunksize=16))


def stop_within(service: Any, seconds: float) -> bool:
    """Stop the server (as its fixture would) but give up waiting after `seconds`."""
    stopper = threading.Thread(target=service.stop, kwargs={"grace_s": 1}, name="fuzz-stop", daemon=True)
    stopper.start()
    stopper.join(seconds)
    return not stopper.is_alive()


def summarise(cases: Sequence[Case], outcomes: Sequence[Outcome]) -> dict[str, Any]:
    status_by_rpc: dict[str, Counter[str]] = defaultdict(Counter)
    items_by_rpc: dict[str, Counter[str]] = defaultdict(Counter)
    unexpected: Counter[str] = Counter()
    examples: list[str] = []
    for case, outcome in zip(cases, outcomes, strict=True):
        status_by_rpc[case.rpc][outcome.status] += 1
        for item in outcome.items:
            items_by_rpc[case.rpc][item] += 1
        for status in (outcome.status, *outcome.items):
            if status in ALLOWED:
                continue
            group = f"{case.rpc} -> {status}: {case.kind}"
            unexpected[group] += 1
            if unexpected[group] <= 2:
                shown = f" bytes={case.request[:48]!r}" if isinstance(case.request, bytes) else ""
                examples.append(f"{case.rpc} -> {status}: {case.label}{shown} [{outcome.details[:80]}]")
    raw = sum(case.raw for case in cases)
    return {
        "requests": len(cases),
        "structured_requests": len(cases) - raw,
        "raw_requests": raw,
        "stream_messages": sum(len(c.request) for c in cases if c.rpc in STREAMS),
        "image_requests": sum(1 for c in cases if c.images),
        "rpcs": list(PLAN),
        "status_by_rpc": {rpc: dict(sorted(status_by_rpc[rpc].items())) for rpc in PLAN},
        "stream_items_by_rpc": {rpc: dict(sorted(items_by_rpc[rpc].items())) for rpc in STREAMS},
        "status_totals": dict(sorted(sum(status_by_rpc.values(), Counter()).items())),
        "unexpected": sum(unexpected.values()),
        "unexpected_by_kind": dict(sorted(unexpected.items())),
        "unexpected_examples": examples,
        "templates_inserted": sum(o.inserted for o in outcomes),
        "probes_kept": sum(o.kept for o in outcomes),
    }


def test_fuzzing_leaves_the_server_up_and_the_data_unchanged(
    server_factory: Any,
    clients_for: Any,
    role_pki: RolePki,
    faces_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.perf_counter()
    limits = {"listen.max_message_bytes": MESSAGE_LIMIT, "faces.max_image_bytes": IMAGE_LIMIT}
    service, port, config = server_factory(**limits)
    clients = clients_for(port)
    rng = random.Random(SEED ^ 0x5EED)
    admin, ngo = clients.admin, clients.ngo
    admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id=W, purpose=pb.WATCHLIST))
    admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id=P, purpose=pb.PROTECTED_IDENTITY))
    for gallery, enroller in ((W, admin), (P, ngo)):
        for reference in REFS[gallery]:
            enroller.matching.InsertTemplate(
                pb.InsertTemplateRequest(
                    gallery_id=gallery,
                    reference_id=reference,
                    template=pb.Probe(embedding=pb.Embedding(values=normal_vector(rng))),
                )
            )
    assert admin.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id=W)).dimension == DIM
    before = stored_state(service, clients)
    assert serving(port, role_pki)

    cases = Generator(SEED, load_images(faces_dir), make_tokens(role_pki)).cases()
    generated = time.perf_counter()
    outcomes = run_all(clients, cases)
    fuzzed = time.perf_counter()

    after = stored_state(service, clients)
    up = serving(port, role_pki)
    # Stopped here rather than by the fixture, so a shutdown that never completes fails the test
    # instead of hanging the run; then the stored data is read back by a fresh server.
    stopped = stop_within(service, 30)
    reopened = None
    if stopped:
        again, again_port, _ = server_factory(data_dir=config.storage.data_dir, **limits)
        reopened = stored_state(again, clients_for(again_port)) == before
    elapsed = time.perf_counter() - started

    results: dict[str, Any] = {
        "seed": SEED,
        **summarise(cases, outcomes),
        "client_threads": THREADS,
        "runtime_s": round(elapsed, 1),
        "fuzz_phase_s": round(fuzzed - generated, 1),
        "requests_per_s": round(len(cases) / (fuzzed - generated), 1),
        "serving_after": up,
        "state_unchanged": after == before,
        "stopped_cleanly": stopped,
        "state_unchanged_after_restart": reopened,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "grpc": grpc.__version__,
            "platform": sys.platform,
        },
    }
    with capsys.disabled():
        print("\n" + render(results))
    if WRITE_RESULTS:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    assert results["requests"] >= 10_000
    assert all(results["status_by_rpc"][rpc] for rpc in PLAN), "every RPC was fuzzed"
    assert not results["unexpected"], "statuses outside the allowed set:\n" + "\n".join(
        f"{count:6d}  {group}" for group, count in results["unexpected_by_kind"].items()
    )
    assert results["templates_inserted"] == 0 and results["probes_kept"] == 0
    assert up, "the server stopped serving"
    assert after == before, "the stored data changed"
    assert stopped, "the server did not shut down within 30 s after the fuzzing"
    assert reopened, "a server reopened on the same data sees other data"
