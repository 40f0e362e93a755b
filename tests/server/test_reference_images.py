"""Reference images for human review, on a real server over mutual TLS with real faces.

A watchlist that opts in at creation keeps, per subject, a small face crop of the first capture
(never the photo), sealed under its own namespace and bound to the gallery and the subject; a
gallery that does not opt in keeps none, and a protected-identity gallery may not. The image is
shown only to roles that review the gallery's hits (officers), through GetReferenceImage, logged by
the reference's pseudonym and never as an image; it is erased with the subject and with the gallery,
its bytes gone from the file at once.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from PIL import Image

from safepassage import store
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.server.identity import Role
from safepassage.server.pseudonyms import LogPseudonyms
from tests.pki_helpers import RolePki

pytestmark = pytest.mark.server
Code = grpc.StatusCode
KEEPING, PLAIN = "keeps-images", "keeps-none"
OBAMA = "face_recognition/obama/obama.jpg"
OBAMA_2 = "face_recognition/obama/obama2.jpg"
BIDEN = "face_recognition/biden/biden.jpg"
LESLIE = "face_recognition/rose_leslie/img1.jpg"


@dataclass
class World:
    service: Any
    clients: Any
    faces: Path
    config: Any

    def photo(self, path: str) -> pb.Probe:
        return pb.Probe(image=(self.faces / path).read_bytes())

    def insert(self, gallery: str, reference: str, path: str, add_capture: bool = False) -> None:
        self.clients.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(
                gallery_id=gallery,
                reference_id=reference,
                template=self.photo(path),
                face_selection=pb.LARGEST,
                add_capture=add_capture,
            ),
            timeout=60,
        )

    def image(self, gallery: str, reference: str, role: Role = Role.OFFICER) -> bytes:
        stub: pb_grpc.MatchingServiceStub = self.clients.as_role(role).matching
        answer = stub.GetReferenceImage(
            pb.GetReferenceImageRequest(gallery_id=gallery, reference_id=reference), timeout=30
        )
        return bytes(answer.jpeg)

    def sealed_rows(self) -> list[tuple[str, str, bytes]]:
        with sqlite3.connect(self.config.reference_images_path) as db:
            return [
                (g, r, bytes(s))
                for g, r, s in db.execute("SELECT gallery_id, reference_id, sealed FROM images")
            ]


def code_of(call: Any) -> Code:
    try:
        call()
    except grpc.RpcError as error:
        code: Code = error.code()
        return code
    return Code.OK


@pytest.fixture(scope="module")
def world(server_factory: Any, clients_for: Any, role_pki: RolePki, faces_dir: Path) -> Iterator[World]:
    service, port, config = server_factory()
    clients = clients_for(port)
    created = clients.admin.galleries.CreateGallery(
        pb.CreateGalleryRequest(gallery_id=KEEPING, purpose=pb.WATCHLIST, keep_reference_images=True)
    )
    assert created.keep_reference_images
    plain = clients.admin.galleries.CreateGallery(
        pb.CreateGalleryRequest(gallery_id=PLAIN, purpose=pb.WATCHLIST)
    )
    assert not plain.keep_reference_images  # off by default
    made = World(service, clients, faces_dir, config)
    made.insert(KEEPING, "case-obama", OBAMA)
    made.insert(PLAIN, "case-obama", OBAMA)
    yield made


def test_a_gallery_that_opts_in_keeps_a_small_crop_of_the_face_never_the_photo(world: World) -> None:
    jpeg = world.image(KEEPING, "case-obama")
    photo = (world.faces / OBAMA).read_bytes()
    with Image.open(io.BytesIO(jpeg)) as crop, Image.open(io.BytesIO(photo)) as whole:
        assert crop.format == "JPEG" and max(crop.size) <= 160
        assert crop.size[0] * crop.size[1] < whole.size[0] * whole.size[1] / 4
        assert not crop.getexif()  # re-encoded: nothing of the photo's metadata
    assert jpeg not in photo
    described = world.clients.officer.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id=KEEPING))
    assert described.keep_reference_images
    # A gallery that did not opt in keeps none: the reviewer's screen says so.
    assert code_of(lambda: world.image(PLAIN, "case-obama")) == Code.NOT_FOUND
    assert all(gallery == KEEPING for gallery, _, _ in world.sealed_rows())


def test_the_image_is_sealed_and_bound_to_its_gallery_and_subject(world: World) -> None:
    world.insert(KEEPING, "case-biden", BIDEN)
    jpeg = world.image(KEEPING, "case-biden")
    rows = {(g, r): sealed for g, r, sealed in world.sealed_rows()}
    sealed = rows[(KEEPING, "case-biden")]
    assert jpeg not in sealed and b"\xff\xd8\xff" not in sealed[:16]  # no JPEG in the clear
    # A blob moved onto another subject's row does not open there.
    sealer = store.TemplateSealer.from_key_file(world.config.template_key_path)
    images = store.ReferenceImageStore.open(world.config.reference_images_path, sealer)
    try:
        with sqlite3.connect(world.config.reference_images_path) as db:
            db.execute(
                "UPDATE images SET sealed = ? WHERE gallery_id = ? AND reference_id = ?",
                (sealed, KEEPING, "case-obama"),
            )
        with pytest.raises(store.TemplateIntegrityError):
            images.get(KEEPING, "case-obama")
        with sqlite3.connect(world.config.reference_images_path) as db:
            db.execute(
                "UPDATE images SET sealed = ? WHERE gallery_id = ? AND reference_id = ?",
                (rows[(KEEPING, "case-obama")], KEEPING, "case-obama"),
            )
        assert images.get(KEEPING, "case-obama").jpeg == world.image(KEEPING, "case-obama")
    finally:
        images.close()


def test_a_later_capture_never_replaces_the_first_captures_image(world: World) -> None:
    first = world.image(KEEPING, "case-obama")
    world.insert(KEEPING, "case-obama", OBAMA_2, add_capture=True)
    assert world.image(KEEPING, "case-obama") == first
    # An embedding template has no face to show: nothing is kept for it.
    world.clients.admin.matching.InsertTemplate(
        pb.InsertTemplateRequest(
            gallery_id=KEEPING,
            reference_id="case-vector",
            template=pb.Probe(embedding=pb.Embedding(values=[0.01] * 128)),
        )
    )
    assert code_of(lambda: world.image(KEEPING, "case-vector")) == Code.NOT_FOUND
    # Bulk import keeps one per new subject, as InsertTemplate does.
    bulk = world.clients.admin.matching.BulkInsertTemplates(
        iter(
            [
                pb.InsertTemplateRequest(
                    gallery_id=KEEPING,
                    reference_id="case-leslie",
                    template=world.photo(LESLIE),
                    face_selection=pb.LARGEST,
                )
            ]
        ),
        timeout=60,
    )
    assert bulk.inserted == 1 and world.image(KEEPING, "case-leslie").startswith(b"\xff\xd8")


def test_only_roles_that_review_the_gallery_see_it_and_the_log_holds_no_image(world: World) -> None:
    for role in (Role.ADMIN, Role.AUDITOR, Role.KIOSK, Role.CCTV_EDGE, Role.NGO_CASEWORKER):
        assert code_of(lambda role=role: world.image(KEEPING, "case-obama", role)) == Code.PERMISSION_DENIED
    jpeg = world.image(KEEPING, "case-obama")
    log = world.service.transparency_log
    entries = log.entries(0, log.size())
    named = LogPseudonyms.from_key_file(world.config.template_key_path).reference("case-obama")
    shown = [
        (e.event().actor.split(":")[0], e.event().outcome)
        for e in entries
        if e.event().operation.endswith("/GetReferenceImage")
        and e.event().details.get("reference_hmac_sha256") == named
    ]
    assert ("officer", "OK") in shown and ("admin", "PERMISSION_DENIED") in shown
    assert not any(jpeg[:64] in e.data or b"case-obama" in e.data for e in entries)
    # A protected-identity gallery may not keep images at all.
    refused = code_of(
        lambda: world.clients.admin.galleries.CreateGallery(
            pb.CreateGalleryRequest(
                gallery_id="protected-images", purpose=pb.PROTECTED_IDENTITY, keep_reference_images=True
            )
        )
    )
    assert refused == Code.INVALID_ARGUMENT


def test_the_image_is_erased_with_the_subject_and_with_the_gallery(world: World) -> None:
    path: Path = world.config.reference_images_path
    world.insert(KEEPING, "case-leaving", BIDEN)
    sealed = next(s for g, r, s in world.sealed_rows() if r == "case-leaving")
    world.clients.admin.matching.DeleteTemplate(
        pb.DeleteTemplateRequest(gallery_id=KEEPING, reference_id="case-leaving")
    )
    assert code_of(lambda: world.image(KEEPING, "case-leaving")) == Code.NOT_FOUND
    files = [p.read_bytes() for p in path.parent.glob(path.name + "*")]
    assert files and not any(sealed in data or sealed[-32:] in data for data in files)
    # The gallery goes, and every image with it; a new gallery of the same id keeps none unless asked.
    remaining = [s for g, _, s in world.sealed_rows() if g == KEEPING]
    assert remaining
    world.clients.admin.galleries.DeleteGallery(pb.DeleteGalleryRequest(gallery_id=KEEPING))
    files = [p.read_bytes() for p in path.parent.glob(path.name + "*")]
    assert not any(blob[-32:] in data for blob in remaining for data in files)
    assert world.sealed_rows() == [] or all(g != KEEPING for g, _, _ in world.sealed_rows())
    again = world.clients.admin.galleries.CreateGallery(
        pb.CreateGalleryRequest(gallery_id=KEEPING, purpose=pb.WATCHLIST)
    )
    assert not again.keep_reference_images
