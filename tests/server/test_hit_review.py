"""Four-eyes review of kept CCTV hits, attacked at the service: a real server over mutual TLS.

A camera streams under a signed authorisation and its hits are kept. Confirming takes two
different officers; these tests try what a reviewer should not get away with: confirming twice
(or completing their own confirmation), overwriting another's decision (dismissing a confirmed
hit, confirming a dismissed one, dismissing twice), a role the matrix refuses, another gallery's
hit. A dismissal erases the sealed probe at once: its bytes are gone from the file and the WAL.
The queue (ListKeptHits) shows what a reviewer needs: camera, time kept and left, the
authorisation's legal basis and expiry, candidate, score, threshold and the decisions so far.
"""

from __future__ import annotations

import io
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from PIL import Image

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.server.cctv_authorisation import METADATA_KEY, sign
from safepassage.server.identity import Role
from safepassage.server.pseudonyms import LogPseudonyms
from tests.pki_helpers import ORGANISATIONS, RolePki

MIRANDA = "face_recognition/lin_manuel_miranda/lin-manuel-miranda.png"


def face_crop(faces_dir: Path, side: int = 120) -> bytes:
    """A real face as a camera would send it: a small JPEG."""
    with Image.open(faces_dir / MIRANDA) as photo:
        small = photo.convert("RGB")
        small.thumbnail((side, side))
        encoded = io.BytesIO()
        small.save(encoded, format="JPEG", quality=85)
    return encoded.getvalue()


pytestmark = pytest.mark.server
Code = grpc.StatusCode
DIM = 128
HITS, OTHER = "review-cams", "review-other"
LEGAL_BASIS = "Order 2026/321 of the border court"
WANTED = np.random.default_rng(211).normal(scale=0.1, size=DIM).astype(np.float32)


def emb(vector: np.ndarray) -> pb.Probe:
    return pb.Probe(embedding=pb.Embedding(values=vector.tolist()))


def refusal(call: Any) -> tuple[Code, str]:
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return Code.OK, ""


@dataclass
class World:
    service: Any
    clients: Any
    role_pki: RolePki
    token: str
    channels: list[grpc.Channel]

    def stub(self, client_id: str, role: Role = Role.OFFICER) -> pb_grpc.MatchingServiceStub:
        issued = self.role_pki.pki.issue_client(
            client_id, role, organisation=ORGANISATIONS.get(role), replace=True
        )
        channel = self.role_pki.channel_with(self.clients.port, issued)
        self.channels.append(channel)
        return pb_grpc.MatchingServiceStub(channel)

    def stream(self, vector: np.ndarray, face_crop: bytes = b"", role: Role = Role.CCTV_EDGE) -> Any:
        """One query on an identify stream (cam-1's, under the authorisation); the answer."""
        stub = self.clients.as_role(role).matching
        request = pb.IdentifyRequest(
            gallery_id=HITS, probe=emb(vector), request_id=os.urandom(8).hex(), face_crop=face_crop
        )
        (answer,) = stub.IdentifyStream(iter([request]), metadata=[(METADATA_KEY, self.token)], timeout=30)
        return answer

    def hit(self, face_crop: bytes = b"") -> int:
        """One kept hit, streamed by cam-1 under the authorisation."""
        answer = self.stream(WANTED + 0.001, face_crop)
        assert answer.result.decision == pb.MATCH and answer.probe_id
        return int(answer.probe_id)


def confirm(stub: pb_grpc.MatchingServiceStub, probe_id: int, gallery: str = HITS) -> Any:
    return stub.ConfirmMatch(pb.ConfirmMatchRequest(gallery_id=gallery, probe_id=probe_id), timeout=30)


def dismiss(stub: pb_grpc.MatchingServiceStub, probe_id: int, gallery: str = HITS) -> Any:
    return stub.DismissMatch(pb.DismissMatchRequest(gallery_id=gallery, probe_id=probe_id), timeout=30)


@pytest.fixture(scope="module")
def world(server_factory: Any, clients_for: Any, role_pki: RolePki) -> Iterator[World]:
    service, port, _ = server_factory()
    clients = clients_for(port)
    for gallery in (HITS, OTHER):
        clients.admin.galleries.CreateGallery(
            pb.CreateGalleryRequest(gallery_id=gallery, purpose=pb.WATCHLIST)
        )
        clients.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id=gallery, reference_id="wanted-7", template=emb(WANTED))
        )
    admin = role_pki.clients[Role.ADMIN]
    token = sign(
        gallery_id=HITS,
        cameras=["cam-1"],
        legal_basis=LEGAL_BASIS,
        valid_for_s=3600,
        admin_cert=x509.load_pem_x509_certificate(admin.cert_pem),
        admin_key=load_pem_private_key(admin.key_pem, None),  # type: ignore[arg-type]
    )
    made = World(service, clients, role_pki, token, [])
    yield made
    for channel in made.channels:
        channel.close()


def log_of(world: World, probe_id: int) -> list[tuple[str, str, str, str]]:
    """The log entries naming the hit (by pseudonym): operation, outcome, hit state, who."""
    named = LogPseudonyms.from_key_file(world.service.config.template_key_path).probe(probe_id)
    log = world.service.transparency_log
    return [
        (e.operation.rsplit("/", 1)[-1], e.outcome, e.details.get("hit_state", ""), e.actor)
        for e in (entry.event() for entry in log.entries(0, log.size()))
        if e.details.get("probe_hmac_sha256") == named
    ]


def test_the_same_person_cannot_confirm_twice_nor_dismiss_after_confirming(world: World) -> None:
    probe_id = world.hit()
    officer = world.clients.officer.matching
    assert confirm(officer, probe_id).state == pb.AWAITING_SECOND_REVIEW
    code, details = refusal(lambda: confirm(officer, probe_id))
    assert code == Code.PERMISSION_DENIED and "four eyes" in details
    # Nor can they change their mind into a dismissal: that would be their second decision.
    code, details = refusal(lambda: dismiss(officer, probe_id))
    assert code == Code.PERMISSION_DENIED and "four eyes" in details
    assert not world.service.kept_probes.get(probe_id).confirmed
    # Still awaiting a second, different person, who completes it.
    assert confirm(world.stub("officer-b"), probe_id).state == pb.CONFIRMED
    assert [(op, outcome) for op, outcome, _, _ in log_of(world, probe_id)] == [
        ("IdentifyStream", "MATCH"),
        ("ConfirmMatch", "OK"),
        ("ConfirmMatch", "PERMISSION_DENIED"),
        ("DismissMatch", "PERMISSION_DENIED"),
        ("ConfirmMatch", "OK"),
    ]
    assert [who for *_, who in log_of(world, probe_id)][1:] == [
        "officer:officer-1",
        "officer:officer-1",
        "officer:officer-1",
        "officer:officer-b",
    ]


def test_nobody_overwrites_a_decision(world: World) -> None:
    confirmed = world.hit()
    confirm(world.clients.officer.matching, confirmed)
    confirm(world.stub("officer-c"), confirmed)
    # A third officer cannot dismiss (erase) a hit two others confirmed.
    code, details = refusal(lambda: dismiss(world.stub("officer-d"), confirmed))
    assert code == Code.FAILED_PRECONDITION and "confirmed already" in details
    assert world.service.kept_probes.get(confirmed).confirmed
    # A dismissed hit cannot be confirmed (nor dismissed again) by anyone, the first confirmer included.
    dismissed = world.hit()
    confirm(world.clients.officer.matching, dismissed)
    assert dismiss(world.stub("officer-c"), dismissed).state == pb.DISMISSED
    for stub in (world.stub("officer-d"), world.stub("officer-e")):
        for act in (confirm, dismiss):
            code, details = refusal(lambda stub=stub, act=act: act(stub, dismissed))
            assert code == Code.FAILED_PRECONDITION and "dismissed" in details
    history = world.service.kept_probes.history(dismissed)
    assert [(r.reviewed_by, r.action.value, r.accepted) for r in history] == [
        ("officer:officer-1", "confirm", True),
        ("officer:officer-c", "dismiss", True),
        ("officer:officer-d", "confirm", False),
        ("officer:officer-d", "dismiss", False),
        ("officer:officer-e", "confirm", False),
        ("officer:officer-e", "dismiss", False),
    ]


def test_roles_the_matrix_refuses_and_another_gallerys_hit(world: World) -> None:
    probe_id = world.hit()
    for client_id, role in (
        ("cam-review", Role.CCTV_EDGE),
        ("kiosk-review", Role.KIOSK),
        ("auditor-review", Role.AUDITOR),
        ("admin-review", Role.ADMIN),
        ("ngo-review", Role.NGO_CASEWORKER),
    ):
        stub = world.stub(client_id, role)
        for call in (
            lambda stub=stub: confirm(stub, probe_id),
            lambda stub=stub: dismiss(stub, probe_id),
            lambda stub=stub: stub.ListKeptHits(pb.ListKeptHitsRequest(gallery_id=HITS), timeout=30),
        ):
            code, details = refusal(call)
            assert code == Code.PERMISSION_DENIED and role.value in details
    # An officer naming another gallery (one it may review): no such hit there, and nothing changes.
    officer = world.clients.officer.matching
    assert refusal(lambda: dismiss(officer, probe_id, OTHER))[0] == Code.NOT_FOUND
    assert refusal(lambda: confirm(officer, probe_id, OTHER))[0] == Code.NOT_FOUND
    assert world.service.kept_probes.history(probe_id) == []
    queue = officer.ListKeptHits(pb.ListKeptHitsRequest(gallery_id=OTHER), timeout=30)
    assert probe_id not in [h.probe_id for h in queue.hits]
    # A guessed id is nobody's hit.
    assert refusal(lambda: dismiss(officer, probe_id + 1))[0] == Code.NOT_FOUND


def test_a_dismissed_hit_is_erased_from_the_file_at_once(world: World, faces_dir: Path) -> None:
    probe_id = world.hit(face_crop(faces_dir))
    path = world.service.config.probes_path
    with sqlite3.connect(path) as db:
        sealed, crop = db.execute(
            "SELECT sealed, face_crop FROM probes WHERE probe_id = ?", (probe_id,)
        ).fetchone()
    assert len(sealed) > 64 and len(crop) > 500
    confirm(world.clients.officer.matching, probe_id)
    # The second reviewer disagrees: one dismissal is enough, and nothing waits for the retention.
    assert dismiss(world.stub("officer-f"), probe_id).state == pb.DISMISSED
    with pytest.raises(Exception, match="not kept"):
        world.service.kept_probes.get(probe_id)
    files = [p.read_bytes() for p in path.parent.glob(path.name + "*")]
    assert files and not any(sealed[-32:] in data or crop[-32:] in data for data in files)
    queue = world.clients.officer.matching.ListKeptHits(pb.ListKeptHitsRequest(gallery_id=HITS), timeout=30)
    assert probe_id not in [h.probe_id for h in queue.hits]
    assert [(op, outcome, state) for op, outcome, state, _ in log_of(world, probe_id)][-1] == (
        "DismissMatch",
        "OK",
        "DISMISSED",
    )


def test_the_queue_shows_what_a_reviewer_needs(world: World) -> None:
    before = time.time()
    probe_id = world.hit()
    confirm(world.clients.officer.matching, probe_id)
    officer = world.stub("officer-queue")
    queue = officer.ListKeptHits(pb.ListKeptHitsRequest(gallery_id=HITS, camera_id="cam-1"), timeout=30)
    (hit,) = [h for h in queue.hits if h.probe_id == probe_id]
    assert queue.metric == pb.L2 and queue.retention_hours == 24
    assert hit.camera_id == "cam-1" and hit.reference_id == "wanted-7"
    assert before - 1 <= hit.kept_at.ToSeconds() <= time.time() + 1
    assert hit.purge_at.ToSeconds() - hit.kept_at.ToSeconds() == pytest.approx(24 * 3600, abs=1)
    assert hit.legal_basis == LEGAL_BASIS and hit.authorisation_id
    assert 3500 < hit.authorisation_expires.ToSeconds() - before <= 3601
    assert hit.HasField("score") and hit.HasField("threshold") and hit.score <= hit.threshold
    assert hit.state == pb.AWAITING_SECOND_REVIEW
    assert [(r.reviewer, r.action) for r in hit.reviews] == [("officer:officer-1", pb.HIT_CONFIRM)]
    # Another camera's filter shows none of cam-1's hits.
    assert not officer.ListKeptHits(
        pb.ListKeptHitsRequest(gallery_id=HITS, camera_id="cam-9"), timeout=30
    ).hits
    # Once confirmed, the hit has no purge time: it is evidence.
    confirm(officer, probe_id)
    queue = officer.ListKeptHits(pb.ListKeptHitsRequest(gallery_id=HITS), timeout=30)
    (hit,) = [h for h in queue.hits if h.probe_id == probe_id]
    assert hit.state == pb.CONFIRMED and not hit.HasField("purge_at")


def test_a_cameras_face_crop_is_kept_sealed_with_a_hit_only_and_shown_to_reviewers(
    world: World, faces_dir: Path
) -> None:
    crop = face_crop(faces_dir)
    probe_id = world.hit(crop)
    officer = world.clients.officer.matching
    listed = officer.ListKeptHits(pb.ListKeptHitsRequest(gallery_id=HITS, probe_id=probe_id), timeout=30)
    (hit,) = listed.hits
    assert hit.has_face_crop and not hit.face_crop  # the queue says so; the bytes only when asked
    shown = officer.ListKeptHits(
        pb.ListKeptHitsRequest(gallery_id=HITS, probe_id=probe_id, include_face_crops=True), timeout=30
    )
    assert shown.hits[0].face_crop == crop
    with sqlite3.connect(world.service.config.probes_path) as db:
        (sealed,) = db.execute("SELECT face_crop FROM probes WHERE probe_id = ?", (probe_id,)).fetchone()
    assert crop not in sealed and crop[-64:] not in sealed  # sealed, not stored in the clear
    # A face that matched nobody: its crop goes nowhere.
    stranger = np.random.default_rng(5).normal(scale=0.1, size=DIM).astype(np.float32) + 3
    before = world.service.kept_probes.count()
    miss = world.stream(stranger, crop)
    assert miss.result.decision == pb.NO_MATCH and miss.probe_id == 0
    assert world.service.kept_probes.count() == before
    # Only a camera sends one, and only a small JPEG.
    assert world.stream(WANTED + 0.001, crop, Role.OFFICER).error.code == Code.INVALID_ARGUMENT.value[0]
    for bad in (b"\x89PNG\r\n\x1a\n" + b"0" * 100, face_crop(faces_dir, 600), os.urandom(70_000)):
        answer = world.stream(WANTED + 0.001, bad)
        assert answer.WhichOneof("outcome") == "error", len(bad)
    assert (
        refusal(
            lambda: officer.Identify(
                pb.IdentifyRequest(gallery_id=HITS, probe=emb(WANTED), face_crop=crop), timeout=30
            )
        )[0]
        == Code.INVALID_ARGUMENT
    )
