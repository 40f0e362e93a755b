"""Every kind of bad input gets the right status and a message saying what was wrong,
and nothing already stored changes.

Each call is made by a role the authorisation matrix allows for it (admin for
gallery administration and watchlist enrolment, an officer for searches), so
the status seen is the bad input's, never PERMISSION_DENIED."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from safepassage.api.v1 import matching_pb2 as pb

pytestmark = pytest.mark.server
DIM = 128
Code = grpc.StatusCode
MESSAGE_LIMIT = 2 * 1024 * 1024
IMAGE_LIMIT = 512 * 1024


def emb(values: object) -> pb.Probe:
    return pb.Probe(embedding=pb.Embedding(values=list(values)))  # type: ignore[call-overload]


def huge_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height, with a tiny body (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def clients(server_factory, clients_for):  # type: ignore[no-untyped-def]
    _, port, _ = server_factory(
        **{"listen.max_message_bytes": MESSAGE_LIMIT, "faces.max_image_bytes": IMAGE_LIMIT}
    )
    clients = clients_for(port)
    clients.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="gate", purpose=pb.WATCHLIST))
    rng = np.random.default_rng(11)
    for i in range(30):
        clients.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(
                gallery_id="gate", reference_id=f"ok-{i}", template=emb(rng.normal(scale=0.1, size=DIM))
            )
        )
    return clients


def _state(clients) -> tuple[object, ...]:  # type: ignore[no-untyped-def]
    probe = emb(np.full(DIM, 0.3))
    answer = clients.officer.matching.Identify(pb.IdentifyRequest(gallery_id="gate", probe=probe, top_k=30))
    admin = clients.admin
    return (
        [g.gallery_id for g in admin.galleries.ListGalleries(pb.ListGalleriesRequest()).galleries],
        admin.matching.CountTemplates(pb.CountTemplatesRequest(gallery_id="gate")).count,
        [(c.reference_id, round(c.score, 5)) for c in answer.faces[0].candidates],
    )


def _jpeg(faces_dir: Path) -> bytes:
    return next((faces_dir / "lfw").glob("*/*.jpg")).read_bytes()


def _other_format(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 90, 60)).save(out, format=kind)
    return out.getvalue()


CASES: list[tuple[str, Code, str, Callable[..., object]]] = [
    (
        "empty gallery id",
        Code.INVALID_ARGUMENT,
        "gallery_id is required",
        lambda c, f: c.admin.matching.CountTemplates(pb.CountTemplatesRequest()),
    ),
    (
        "malformed gallery id",
        Code.INVALID_ARGUMENT,
        "gallery id",
        lambda c, f: c.admin.galleries.CreateGallery(
            pb.CreateGalleryRequest(gallery_id="Bad Name!", purpose=pb.WATCHLIST)
        ),
    ),
    (
        "no purpose",
        Code.INVALID_ARGUMENT,
        "purpose must be",
        lambda c, f: c.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="nopurpose")),
    ),
    (
        "unknown model",
        Code.INVALID_ARGUMENT,
        "not served here",
        lambda c, f: c.admin.galleries.CreateGallery(
            pb.CreateGalleryRequest(gallery_id="m", purpose=pb.WATCHLIST, model="arcface")
        ),
    ),
    (
        "NaN gallery threshold",
        Code.INVALID_ARGUMENT,
        "threshold",
        lambda c, f: c.admin.galleries.CreateGallery(
            pb.CreateGalleryRequest(gallery_id="t", purpose=pb.WATCHLIST, threshold=float("nan"))
        ),
    ),
    (
        "duplicate gallery",
        Code.ALREADY_EXISTS,
        "gate",
        lambda c, f: c.admin.galleries.CreateGallery(
            pb.CreateGalleryRequest(gallery_id="gate", purpose=pb.WATCHLIST)
        ),
    ),
    (
        "unknown gallery",
        Code.NOT_FOUND,
        "nowhere",
        lambda c, f: c.officer.matching.Identify(
            pb.IdentifyRequest(gallery_id="nowhere", probe=emb(np.zeros(DIM)))
        ),
    ),
    (
        "delete unknown gallery",
        Code.NOT_FOUND,
        "nowhere",
        lambda c, f: c.admin.galleries.DeleteGallery(pb.DeleteGalleryRequest(gallery_id="nowhere")),
    ),
    (
        "empty reference id",
        Code.INVALID_ARGUMENT,
        "reference_id is required",
        lambda c, f: c.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id="gate", template=emb(np.zeros(DIM)))
        ),
    ),
    (
        "malformed reference id",
        Code.INVALID_ARGUMENT,
        "reference id",
        lambda c, f: c.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id="gate", reference_id="a b\n", template=emb(np.zeros(DIM)))
        ),
    ),
    (
        "duplicate reference",
        Code.ALREADY_EXISTS,
        "ok-3",
        lambda c, f: c.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id="gate", reference_id="ok-3", template=emb(np.zeros(DIM)))
        ),
    ),
    (
        "unknown reference (verify)",
        Code.NOT_FOUND,
        "ghost",
        lambda c, f: c.officer.matching.Verify(
            pb.VerifyRequest(gallery_id="gate", reference_id="ghost", probe=emb(np.zeros(DIM)))
        ),
    ),
    (
        "unknown reference (delete)",
        Code.NOT_FOUND,
        "ghost",
        lambda c, f: c.admin.matching.DeleteTemplate(
            pb.DeleteTemplateRequest(gallery_id="gate", reference_id="ghost")
        ),
    ),
    (
        "empty template",
        Code.INVALID_ARGUMENT,
        "template is empty",
        lambda c, f: c.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id="gate", reference_id="x1")
        ),
    ),
    (
        "empty probe",
        Code.INVALID_ARGUMENT,
        "probe is empty",
        lambda c, f: c.officer.matching.Identify(pb.IdentifyRequest(gallery_id="gate")),
    ),
    (
        "empty embedding",
        Code.INVALID_ARGUMENT,
        "0 values",
        lambda c, f: c.officer.matching.Identify(pb.IdentifyRequest(gallery_id="gate", probe=emb([]))),
    ),
    (
        "wrong dimension",
        Code.INVALID_ARGUMENT,
        "127 values",
        lambda c, f: c.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id="gate", reference_id="x2", template=emb(np.zeros(DIM - 1)))
        ),
    ),
    (
        "NaN in template",
        Code.INVALID_ARGUMENT,
        "NaN or infinite",
        lambda c, f: c.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(
                gallery_id="gate", reference_id="x3", template=emb([float("nan")] + [0.0] * (DIM - 1))
            )
        ),
    ),
    (
        "infinity in probe",
        Code.INVALID_ARGUMENT,
        "NaN or infinite",
        lambda c, f: c.officer.matching.Identify(
            pb.IdentifyRequest(gallery_id="gate", probe=emb([0.0] * (DIM - 1) + [float("inf")]))
        ),
    ),
    (
        "NaN threshold",
        Code.INVALID_ARGUMENT,
        "threshold",
        lambda c, f: c.officer.matching.Identify(
            pb.IdentifyRequest(gallery_id="gate", probe=emb(np.zeros(DIM)), threshold=float("nan"))
        ),
    ),
    (
        "negative threshold",
        Code.INVALID_ARGUMENT,
        "negative",
        lambda c, f: c.officer.matching.Verify(
            pb.VerifyRequest(gallery_id="gate", reference_id="ok-1", probe=emb(np.zeros(DIM)), threshold=-1)
        ),
    ),
    (
        "top_k too large",
        Code.INVALID_ARGUMENT,
        "top_k",
        lambda c, f: c.officer.matching.Identify(
            pb.IdentifyRequest(gallery_id="gate", probe=emb(np.zeros(DIM)), top_k=100000)
        ),
    ),
    (
        "restriction too long",
        Code.RESOURCE_EXHAUSTED,
        "restrict_to",
        lambda c, f: c.officer.matching.Identify(
            pb.IdentifyRequest(
                gallery_id="gate", probe=emb(np.zeros(DIM)), restrict_to=[f"r{i}" for i in range(10001)]
            )
        ),
    ),
    (
        "ALL faces at enrolment",
        Code.INVALID_ARGUMENT,
        "face_selection",
        lambda c, f: c.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(
                gallery_id="gate", reference_id="x4", template=pb.Probe(image=_jpeg(f)), face_selection=pb.ALL
            )
        ),
    ),
    (
        "corrupt image",
        Code.INVALID_ARGUMENT,
        "image",
        lambda c, f: c.officer.matching.Identify(
            pb.IdentifyRequest(
                gallery_id="gate", probe=pb.Probe(image=b"\xff\xd8\xff" + bytes(range(256)) * 40)
            )
        ),
    ),
    (
        "truncated JPEG",
        Code.INVALID_ARGUMENT,
        "image",
        lambda c, f: c.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(
                gallery_id="gate", reference_id="x5", template=pb.Probe(image=_jpeg(f)[:3000])
            )
        ),
    ),
    (
        "ICO image",  # a format not read (GIF, WebP, TIFF, ... are: tests/faces/test_image_formats.py)
        Code.INVALID_ARGUMENT,
        "ICO",
        lambda c, f: c.officer.matching.Identify(
            pb.IdentifyRequest(gallery_id="gate", probe=pb.Probe(image=_other_format("ICO")))
        ),
    ),
    (
        "decompression bomb",
        Code.RESOURCE_EXHAUSTED,
        "megapixels",
        lambda c, f: c.officer.matching.Identify(
            pb.IdentifyRequest(gallery_id="gate", probe=pb.Probe(image=huge_png(30000, 30000)))
        ),
    ),
    (
        "image over its byte limit",
        Code.RESOURCE_EXHAUSTED,
        "image",
        lambda c, f: c.officer.matching.Identify(
            pb.IdentifyRequest(gallery_id="gate", probe=pb.Probe(image=b"\xff\xd8" + bytes(IMAGE_LIMIT + 10)))
        ),
    ),
    (
        "message over the gRPC limit",
        Code.RESOURCE_EXHAUSTED,
        "",
        lambda c, f: c.officer.matching.Identify(
            pb.IdentifyRequest(gallery_id="gate", probe=pb.Probe(image=bytes(MESSAGE_LIMIT + 1000)))
        ),
    ),
]


@pytest.mark.parametrize(("name", "code", "says", "call"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(clients, faces_dir, name, code, says, call) -> None:  # type: ignore[no-untyped-def]
    before = _state(clients)
    with pytest.raises(grpc.RpcError) as info:
        call(clients, faces_dir)
    assert info.value.code() == code, info.value.details()
    assert says.lower() in (info.value.details() or "").lower()
    assert _state(clients) == before
