"""The service's own head-turn check (StartLiveness, CheckLiveness), and the statement it earns.

Real video: frames 93 to 141 of the shared Hamilton clip show the performer turning to his own right
(benchmarks/liveness_eval.py, "hamilton_right_1"). His record is enrolled from later frames of the
same clip (170, 200), so the live frame is never a replay of a stored template. Against a real
mutual-TLS server (attack_helpers.py). The attacks: the other side, a photo held still or tilted as
a plane, another caller's or a reused or stale challenge, frames that claim more time than there was,
a statement used twice, by another device or for another image, and a photo of the holder enrolled
where the deployment requires a live capture.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest

from safepassage.api.v1 import capture_pb2 as cpb
from safepassage.api.v1 import capture_pb2_grpc as cpb_grpc
from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.enrolment import verify_receipt
from safepassage.face.pipeline import PipelineSettings, load_pipeline
from safepassage.server.identity import Role
from tests.pki_helpers import RolePki
from tests.server.attack_helpers import ORGANISATION, Code, Device, World, attack_world, refused, status_of
from tests.server.protected_helpers import CONSENT_TEXT, DURESS_PIN, GALLERY, PIN, record_message

pytestmark = pytest.mark.server

CLIP = Path("video") / "face_recognition" / "short_hamilton_clip.mp4"
TURN = range(93, 142, 2)  # 15 frames a second of a turn to his right
ENROLLED = (170, 200)
FPS = 30.0


def _clip_frames(faces_dir: Path) -> dict[int, np.ndarray]:
    clip = faces_dir / CLIP
    assert clip.exists(), f"{clip} is missing: the shared faces are incomplete"
    wanted = {*TURN, *ENROLLED}
    capture = cv2.VideoCapture(str(clip))
    frames: dict[int, np.ndarray] = {}
    try:
        for index in range(max(wanted) + 1):
            ok, image = capture.read()
            assert ok, f"{clip} has no frame {index}"
            if index in wanted:
                frames[index] = image
    finally:
        capture.release()
    return frames


def jpeg(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 88])
    assert ok
    return encoded.tobytes()


def _frame(frame: cpb.LivenessFrame) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(frame.image, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def recorded(images: list[np.ndarray], interval_ms: int = 67) -> list[cpb.LivenessFrame]:
    return [cpb.LivenessFrame(image=jpeg(image), at_ms=n * interval_ms) for n, image in enumerate(images)]


def tilted(image: np.ndarray, fraction: float) -> np.ndarray:
    """The frame as a printed photo turned about its vertical axis: its right edge recedes."""
    height, width = image.shape[:2]
    squeeze, shrink = width * 0.3 * fraction, height * 0.12 * fraction
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    moved = np.array(
        [[0, 0], [width - squeeze, shrink], [width - squeeze, height - shrink], [0, height]], dtype=np.float32
    )
    return cv2.warpPerspective(image, cv2.getPerspectiveTransform(corners, moved), (width, height))


def recording(frames: list[cpb.LivenessFrame]) -> None:
    """Wait as long as the frames took to record: the service refuses frames older than their challenge."""
    time.sleep((frames[-1].at_ms - frames[0].at_ms) / 1000)


class Liveness:
    """A caller's CaptureService stub, and challenges drawn until the side wanted comes up."""

    def __init__(self, world: World, device: Device) -> None:
        channel = world.role_pki.channel_with(world.port, device.issued)
        world.channels.append(channel)
        self.stub = cpb_grpc.CaptureServiceStub(channel)

    def challenge(self, side: int = cpb.TURN_RIGHT) -> cpb.LivenessChallenge:
        # The server draws the side at random; a test takes the first of the side it needs.
        for _ in range(64):
            drawn: cpb.LivenessChallenge = self.stub.StartLiveness(cpb.StartLivenessRequest())
            if drawn.direction == side:
                return drawn
        raise AssertionError("64 challenges, none to that side")

    def check(self, frames: list[cpb.LivenessFrame], side: int = cpb.TURN_RIGHT) -> cpb.LivenessResult:
        challenge = self.challenge(side)
        recording(frames)
        result: cpb.LivenessResult = self.stub.CheckLiveness(
            cpb.CheckLivenessRequest(challenge=challenge.challenge, frames=frames)
        )
        return result


@pytest.fixture(scope="module")
def world(
    server_factory: Any, faces_dir: Path, role_pki: RolePki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from attack_world(server_factory, faces_dir, role_pki, tmp_path_factory)


@pytest.fixture(scope="module")
def clip(faces_dir: Path) -> dict[int, np.ndarray]:
    return _clip_frames(faces_dir)


@pytest.fixture(scope="module")
def turn(clip: dict[int, np.ndarray]) -> list[cpb.LivenessFrame]:
    return recorded([clip[n] for n in TURN])


def enrol_performer(world: World, clip: dict[int, np.ndarray], **extra: Any) -> pb.EnrolRecordResponse:
    faces = [jpeg(clip[n]) for n in ENROLLED]
    answer: pb.EnrolRecordResponse = world.ngo.stub.EnrolRecord(
        pb.EnrolRecordRequest(
            gallery_id=GALLERY,
            record=record_message("Perf", "Ormer", "PS7000001", faces[0], faces[1]),
            faces=[mpb.Probe(image=face) for face in extra.pop("faces", faces)],
            consent=pb.ConsentGiven(
                language="en",
                text=CONSENT_TEXT,
                granted=["store", "verify_at_border", "duplicate_check", f"share:{ORGANISATION}"],
            ),
            pin=PIN,
            duress_pin=DURESS_PIN,
            **extra,
        )
    )
    return answer


def test_a_turn_the_asked_way_earns_a_statement_that_proves_the_holder_at_the_kiosk(
    world: World, clip: dict[int, np.ndarray], turn: list[cpb.LivenessFrame]
) -> None:
    enrolled = enrol_performer(world, clip)
    assert enrolled.face_liveness == "none"  # a photo: the receipt says so
    keys = world.public_keys()
    assert verify_receipt(enrolled.consent_receipt, keys.station_public_pem).body["face_liveness"] == "none"
    kiosk = world.kiosk
    result = Liveness(world, kiosk).check(turn)
    assert result.passed and result.failed_check == cpb.LIVENESS_CHECK_NONE
    assert result.peak_parallax >= 0.2 and result.peak_turn >= 0.2
    assert result.image in {frame.image for frame in turn}  # a frame it saw, byte for byte
    assert result.statement.startswith(b"SPLS1.") and result.statement_valid_s == 120
    card = pb.HolderRef(credential=enrolled.credential.text)
    proof = pb.HolderProof(live=pb.LiveCapture(image=result.image, statement=result.statement), pin=PIN)
    state = kiosk.stub.GetConsent(pb.GetConsentRequest(holder=card, proof=proof))
    assert state.record_id == enrolled.record_id
    # The statement is spent: the same face and PIN a second time are refused, and logged.
    again = pb.GetConsentRequest(holder=card, proof=proof)
    details = refused(world, kiosk, "GetConsent", lambda: kiosk.stub.GetConsent(again), enrolled.record_id)
    assert "used before" in details


def test_the_other_side_a_still_photo_and_a_tilted_photo_earn_nothing(
    world: World, clip: dict[int, np.ndarray], turn: list[cpb.LivenessFrame]
) -> None:
    liveness = Liveness(world, world.kiosk)
    mark = world.log_size()
    wrong = liveness.check(turn, cpb.TURN_LEFT)
    assert not wrong.passed and wrong.failed_check == cpb.WRONG_DIRECTION
    assert not wrong.statement and not wrong.image
    still = liveness.check(recorded([clip[TURN[0]]] * 20))
    assert not still.passed and still.failed_check == cpb.NO_TURN
    photo = liveness.check(recorded([tilted(clip[TURN[0]], n / 14) for n in range(15)]))
    assert not photo.passed and photo.failed_check in (cpb.PLANAR_MOTION, cpb.NO_TURN), photo
    assert not photo.statement
    # The log shows a kiosk probed with photos: each check's outcome and the frames read, no face.
    checks = world.entries(mark, world.kiosk.label, "CheckLiveness")
    assert [e.details["liveness"] for e in checks] == ["wrong_direction", "no_turn", photo_check(photo)]
    assert all(set(e.details) == {"liveness", "frames"} for e in checks)


def photo_check(result: cpb.LivenessResult) -> str:
    return cpb.LivenessCheck.Name(result.failed_check).lower()


def test_a_photo_of_someone_else_held_frontal_then_the_callers_own_turn_earns_nothing(
    world: World, model_dir: Path, faces_dir: Path, clip: dict[int, np.ndarray]
) -> None:
    # The victim's photo aligned on the performer's five points for the first frames (the frontal
    # reference the statement would be about), then his own head turning: the box, the speed and the
    # parallax are all those of a live turn. Only the faces differ, and that is what fails.
    detector = load_pipeline(PipelineSettings(model_dir=model_dir)).detector
    victim = cv2.imread(str(faces_dir / "face_recognition" / "obama" / "obama.jpg"))
    assert victim is not None

    def largest(image: np.ndarray) -> Any:
        found = detector.detect(np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)))
        return max(found, key=lambda d: d.width * d.height)

    victim_points = np.asarray(largest(victim).points, np.float32)

    def victim_on(frame: np.ndarray) -> np.ndarray:
        face = largest(frame)
        moved, _ = cv2.estimateAffinePartial2D(victim_points, np.asarray(face.points, np.float32))
        warped = cv2.warpAffine(victim, moved, (frame.shape[1], frame.shape[0]))
        x0, y0, x1, y1 = (int(v) for v in face.box)
        mask = np.zeros(frame.shape[:2], np.uint8)
        axes = ((x1 - x0) // 2, int((y1 - y0) * 0.6))
        cv2.ellipse(mask, ((x0 + x1) // 2, (y0 + y1) // 2), axes, 0, 0, 360, 255, -1)
        out = frame.copy()
        out[mask > 0] = warped[mask > 0]
        return out

    images = [victim_on(clip[n]) if k < 3 else clip[n] for k, n in enumerate(TURN)]
    result = Liveness(world, world.kiosk).check(recorded(images))
    assert not result.passed and result.failed_check == cpb.FACE_JUMPED
    assert result.peak_parallax >= 0.2  # the turn itself was seen: the faces alone refused it
    assert not result.statement


def test_a_challenge_is_the_callers_once_and_its_frames_take_no_more_time_than_it_had(
    world: World, turn: list[cpb.LivenessFrame]
) -> None:
    kiosk, officer = Liveness(world, world.kiosk), Liveness(world, world.officer)
    drawn = kiosk.challenge()
    check = cpb.CheckLivenessRequest(challenge=drawn.challenge, frames=turn)

    def refused_as(stub: Any, request: cpb.CheckLivenessRequest, words: str) -> None:
        code, details = status_of(lambda: stub.CheckLiveness(request))
        assert code == Code.INVALID_ARGUMENT and words in details, (code, details)

    recording(turn)
    refused_as(officer.stub, check, "another caller")  # an officer cannot spend the kiosk's challenge
    assert kiosk.stub.CheckLiveness(check).passed
    refused_as(kiosk.stub, check, "used before")
    forged = bytearray(drawn.challenge)
    forged[-1] ^= 1
    refused_as(kiosk.stub, cpb.CheckLivenessRequest(challenge=bytes(forged), frames=turn), "not a liveness")
    # Frames claiming four times the time they took: a slow photo swap the challenge never had time for.
    stretched = [cpb.LivenessFrame(image=f.image, at_ms=f.at_ms * 4) for f in turn]
    refused_as(
        kiosk.stub, cpb.CheckLivenessRequest(challenge=kiosk.challenge().challenge, frames=stretched), "ago"
    )
    # Frames left out (1.2 s between two): the face was not seen there, and nothing is earned.
    gapped = [
        cpb.LivenessFrame(image=f.image, at_ms=f.at_ms + (1200 if n >= 5 else 0)) for n, f in enumerate(turn)
    ]
    drawn = kiosk.challenge()
    recording(gapped)
    lost = kiosk.stub.CheckLiveness(cpb.CheckLivenessRequest(challenge=drawn.challenge, frames=gapped))
    assert not lost.passed and lost.failed_check == cpb.FACE_LOST and not lost.statement
    backwards = list(reversed(turn))
    refused_as(
        kiosk.stub,
        cpb.CheckLivenessRequest(challenge=kiosk.challenge().challenge, frames=backwards),
        "increase",
    )
    one = turn[:1]
    refused_as(
        kiosk.stub, cpb.CheckLivenessRequest(challenge=kiosk.challenge().challenge, frames=one), "between 2"
    )
    # A frame bigger than a camera's (here 2,400 x 1,400: within a photo's limits) buys no detector time.
    huge = cv2.resize(_frame(turn[0]), (2400, 1400))
    oversized = [cpb.LivenessFrame(image=jpeg(huge), at_ms=n) for n in (0, 50)]
    code, details = status_of(
        lambda: kiosk.stub.CheckLiveness(
            cpb.CheckLivenessRequest(challenge=kiosk.challenge().challenge, frames=oversized)
        )
    )
    assert code in (Code.RESOURCE_EXHAUSTED, Code.INVALID_ARGUMENT) and "pixels" in details, (code, details)
    garbage = [cpb.LivenessFrame(image=b"not an image", at_ms=n) for n in (0, 50)]
    refused_as(
        kiosk.stub, cpb.CheckLivenessRequest(challenge=kiosk.challenge().challenge, frames=garbage), "image"
    )


def test_a_statement_is_for_its_caller_and_its_frame_only(
    world: World, clip: dict[int, np.ndarray], turn: list[cpb.LivenessFrame]
) -> None:
    enrolled = enrol_performer(world, clip)
    card = pb.HolderRef(credential=enrolled.credential.text)
    kiosk = world.kiosk
    other_kiosk = world.device("kiosk-liveness-2", Role.KIOSK, ORGANISATION)
    result = Liveness(world, kiosk).check(turn)

    def proof(image: bytes) -> pb.GetConsentRequest:
        live = pb.LiveCapture(image=image, statement=result.statement)
        return pb.GetConsentRequest(holder=card, proof=pb.HolderProof(live=live, pin=PIN))

    stolen = proof(result.image)
    details = refused(
        world, other_kiosk, "GetConsent", lambda: other_kiosk.stub.GetConsent(stolen), enrolled.record_id
    )
    assert "another caller" in details
    swapped = proof(jpeg(clip[ENROLLED[0]]))  # the statement over one frame, sent with another
    details = refused(world, kiosk, "GetConsent", lambda: kiosk.stub.GetConsent(swapped), enrolled.record_id)
    assert "not the frame" in details
    # Neither attempt spent it: the kiosk it was issued to, with its frame, is still answered.
    assert kiosk.stub.GetConsent(proof(result.image)).record_id == enrolled.record_id


def test_enrolment_records_the_head_turn_in_the_consent_receipt(
    world: World, clip: dict[int, np.ndarray], turn: list[cpb.LivenessFrame]
) -> None:
    result = Liveness(world, world.ngo).check(turn)
    enrolled = enrol_performer(
        world,
        clip,
        faces=[result.image, jpeg(clip[ENROLLED[0]])],
        face_statement=result.statement,
    )
    assert enrolled.face_liveness == "head_turn"
    keys = world.public_keys()
    receipt = verify_receipt(enrolled.consent_receipt, keys.station_public_pem)
    assert receipt.body["face_liveness"] == "head_turn"
    # A statement drawn by the kiosk is not the caseworker's to enrol with.
    kiosk_result = Liveness(world, world.kiosk).check(turn)
    code, details = status_of(
        lambda: enrol_performer(
            world, clip, faces=[kiosk_result.image], face_statement=kiosk_result.statement
        )
    )
    assert code == Code.PERMISSION_DENIED and "another caller" in details


def test_a_deployment_that_requires_liveness_refuses_a_photo(
    server_factory: Any,
    role_pki: RolePki,
    faces_dir: Path,
    clip: dict[int, np.ndarray],
    turn: list[cpb.LivenessFrame],
) -> None:
    service, port, _ = server_factory(**{"enrolment.require_face_liveness": True})
    with role_pki.channel_for(port, Role.ADMIN) as admin:
        from safepassage.api.v1 import matching_pb2_grpc as mpb_grpc

        mpb_grpc.GalleryServiceStub(admin).CreateGallery(
            mpb.CreateGalleryRequest(gallery_id=GALLERY, purpose=mpb.PROTECTED_IDENTITY)
        )
    with role_pki.channel_for(port, Role.NGO_CASEWORKER) as channel:
        from safepassage.api.v1 import protected_identity_pb2_grpc as ppb_grpc

        stub = ppb_grpc.ProtectedIdentityServiceStub(channel)
        photo = jpeg(clip[ENROLLED[0]])
        request = pb.EnrolRecordRequest(
            gallery_id=GALLERY,
            record=record_message("Perf", "Ormer", "PS7000009", photo, photo),
            faces=[mpb.Probe(image=photo)],
            consent=pb.ConsentGiven(language="en", text=CONSENT_TEXT, granted=["store"]),
            pin=PIN,
            duress_pin=DURESS_PIN,
        )
        with pytest.raises(grpc.RpcError) as refusal:
            stub.EnrolRecord(request)
        assert refusal.value.code() == Code.FAILED_PRECONDITION
        assert "head-turn check" in (refusal.value.details() or "")
        live = cpb_grpc.CaptureServiceStub(channel)
        for _ in range(64):
            drawn = live.StartLiveness(cpb.StartLivenessRequest())
            if drawn.direction == cpb.TURN_RIGHT:
                break
        recording(turn)
        result = live.CheckLiveness(cpb.CheckLivenessRequest(challenge=drawn.challenge, frames=turn))
        request.faces[0].image = result.image
        request.face_statement = result.statement
        assert stub.EnrolRecord(request).face_liveness == "head_turn"
    service.stop(grace_s=1)
