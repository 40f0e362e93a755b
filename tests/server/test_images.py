"""Faces from images, server-side: enrolment rules, multi-face identification, 1:1.

Admin enrols into the watchlist; an officer searches it."""

from __future__ import annotations

import io
import re
from pathlib import Path

import grpc
import pytest

from safepassage.api.v1 import matching_pb2 as pb

pytestmark = pytest.mark.server


def image(path: Path) -> pb.Probe:
    return pb.Probe(image=path.read_bytes())


@pytest.fixture(scope="module")
def clients(server_factory, clients_for, faces_dir):  # type: ignore[no-untyped-def]
    _, port, _ = server_factory()
    clients = clients_for(port)
    clients.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="people", purpose=pb.WATCHLIST))
    fr = faces_dir / "face_recognition"
    for reference, path in {
        "obama": fr / "obama" / "obama.jpg",
        "biden": fr / "biden" / "biden.jpg",
        "kit": fr / "kit_harington" / "john1.jpeg",
        "rose": fr / "rose_leslie" / "img1.jpg",
    }.items():
        answer = clients.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id="people", reference_id=reference, template=image(path))
        )
        assert answer.HasField("box") and answer.box.right > answer.box.left
    return clients


def test_enrolment_refuses_an_image_without_a_face(clients, faces_dir) -> None:  # type: ignore[no-untyped-def]
    matching = clients.admin.matching
    with pytest.raises(grpc.RpcError) as info:
        matching.InsertTemplate(
            pb.InsertTemplateRequest(
                gallery_id="people",
                reference_id="dog",
                template=image(faces_dir / "group" / "dlib" / "dogs.jpg"),
            )
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no face" in (info.value.details() or "").lower()


def test_enrolment_refuses_several_faces_unless_largest_is_asked(clients, faces_dir) -> None:  # type: ignore[no-untyped-def]
    matching = clients.admin.matching
    group = faces_dir / "group" / "face_recognition" / "obama_and_biden.jpg"
    with pytest.raises(grpc.RpcError) as info:
        matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id="people", reference_id="pair", template=image(group))
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert re.search(r"found [2-9] faces", info.value.details() or "")
    assert matching.CountTemplates(pb.CountTemplatesRequest(gallery_id="people")).count == 4
    answer = matching.InsertTemplate(
        pb.InsertTemplateRequest(
            gallery_id="people", reference_id="pair-largest", template=image(group), face_selection=pb.LARGEST
        )
    )
    assert answer.HasField("box")
    matching.DeleteTemplate(pb.DeleteTemplateRequest(gallery_id="people", reference_id="pair-largest"))


def test_identify_searches_each_face_and_says_which_box(clients, faces_dir) -> None:  # type: ignore[no-untyped-def]
    matching = clients.officer.matching
    for name, expected in (
        ("obama_and_biden.jpg", {"obama", "biden"}),
        ("kit_with_rose.jpg", {"kit", "rose"}),
    ):
        answer = matching.Identify(
            pb.IdentifyRequest(
                gallery_id="people", probe=image(faces_dir / "group" / "face_recognition" / name), top_k=2
            )
        )
        assert len(answer.faces) >= 2 and answer.decision == pb.MATCH
        boxes = [f.box for f in answer.faces]
        assert boxes[0].left < boxes[1].left  # ordered left to right
        assert all(b.right > b.left and b.bottom > b.top for b in boxes)
        winners = {f.candidates[0].reference_id for f in answer.faces if f.decision == pb.MATCH}
        assert winners == expected


def test_identify_on_an_image_without_faces_is_a_no_match(clients, faces_dir) -> None:  # type: ignore[no-untyped-def]
    matching = clients.officer.matching
    answer = matching.Identify(
        pb.IdentifyRequest(gallery_id="people", probe=image(faces_dir / "group" / "dlib" / "dogs.jpg"))
    )
    assert answer.decision == pb.NO_MATCH and len(answer.faces) == 0


def test_verify_images_one_to_one(clients, faces_dir) -> None:  # type: ignore[no-untyped-def]
    matching = clients.officer.matching
    fr = faces_dir / "face_recognition"
    same = matching.Verify(
        pb.VerifyRequest(gallery_id="people", reference_id="obama", probe=image(fr / "obama" / "obama2.jpg"))
    )
    assert same.decision == pb.MATCH and same.score < 0.6 and same.HasField("box")
    other = matching.Verify(
        pb.VerifyRequest(gallery_id="people", reference_id="biden", probe=image(fr / "obama" / "obama2.jpg"))
    )
    assert other.decision == pb.NO_MATCH and other.score > 0.6
    # An RGBA PNG is accepted like any photo.
    rgba = matching.Identify(
        pb.IdentifyRequest(gallery_id="people", probe=image(fr / "alex_lacamoire" / "alex-lacamoire.png"))
    )
    assert len(rgba.faces) == 1


def encoded(path: Path, image_format: str, **options: object) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    with Image.open(path) as photo:
        photo.convert("RGB").save(buffer, image_format, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("image_format", "options"), [("WEBP", {}), ("JPEG2000", {"no_jp2": True}), ("PPM", {})]
)
def test_verify_reads_other_formats_by_their_bytes(clients, faces_dir, image_format, options) -> None:  # type: ignore[no-untyped-def]
    data = encoded(faces_dir / "face_recognition" / "obama" / "obama2.jpg", image_format, **options)
    answer = clients.officer.matching.Verify(
        pb.VerifyRequest(gallery_id="people", reference_id="obama", probe=pb.Probe(image=data))
    )
    assert answer.decision == pb.MATCH and answer.score < 0.6


@pytest.mark.parametrize(
    ("make", "found"),
    [
        (lambda fr: encoded(fr / "obama" / "obama2.jpg", "WEBP")[:600], "WebP image data is"),
        (lambda fr: b"<html><body>not a photo</body></html>" * 10, "first bytes look like HTML text"),
        (lambda fr: b"\x00\x00\x00\x18ftypavif" + bytes(64), "image format is AVIF"),
    ],
)
def test_an_undecodable_image_is_invalid_argument_naming_what_was_found(  # type: ignore[no-untyped-def]
    clients, faces_dir, make, found
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        clients.officer.matching.Verify(
            pb.VerifyRequest(
                gallery_id="people",
                reference_id="obama",
                probe=pb.Probe(image=make(faces_dir / "face_recognition")),
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert found in (info.value.details() or "")


def test_bulk_import_lists_a_bad_file_and_imports_the_rest(clients, faces_dir) -> None:  # type: ignore[no-untyped-def]
    fr = faces_dir / "face_recognition"
    templates = [
        encoded(fr / "obama" / "obama2.jpg", "WEBP"),
        b"GIF89a" + bytes(20),  # a GIF header and nothing else
        encoded(fr / "biden" / "biden.jpg", "PPM"),
    ]
    answer = clients.admin.matching.BulkInsertTemplates(
        iter(
            pb.InsertTemplateRequest(
                gallery_id="people", reference_id=f"bulk-{i}", template=pb.Probe(image=data)
            )
            for i, data in enumerate(templates)
        )
    )
    assert (answer.inserted, answer.failed) == (2, 1)
    [error] = answer.errors
    assert error.index == 1 and error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "GIF" in error.message
    for i in (0, 2):
        clients.admin.matching.DeleteTemplate(
            pb.DeleteTemplateRequest(gallery_id="people", reference_id=f"bulk-{i}")
        )
