"""Kiosk mode on real video: guided capture, the head-turn challenge, then 1:1 and 1:N at the server."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.camera_edge.errors import CaptureTimedOut, LivenessFailed, ServerUnreachable
from safepassage.camera_edge.kiosk import KioskSession, KioskSettings, KioskStep, Prompt, identify, verify
from safepassage.camera_edge.liveness import HeadTurnChallenge, LivenessSettings, TurnDirection
from safepassage.camera_edge.sources import Frame, SourceSpec, open_source
from safepassage.face.pipeline import FacePipeline, PipelineSettings, load_pipeline

CLIP = "video/intel_sample_videos/mp4_from_gif/head-pose-face-detection-female.mp4"
FPS = 12.0


@pytest.fixture(scope="module")
def pipeline(model_dir: Path) -> FacePipeline:
    return load_pipeline(PipelineSettings(model_dir=model_dir))


def kiosk_frames(clip: Path) -> list[Frame]:
    """The clip at twice its size: a kiosk camera sees a face of 120 px or more, not 60."""
    capture = cv2.VideoCapture(str(clip))
    frames: list[Frame] = []
    while True:
        ok, image = capture.read()
        if not ok:
            return frames
        image = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        frames.append(Frame(index=len(frames), timestamp=len(frames) / FPS, image=rgb))


@pytest.fixture(scope="module")
def live(faces_dir: Path) -> list[Frame]:
    return kiosk_frames(faces_dir / CLIP)


def run_session(pipeline: FacePipeline, frames: list[Frame], direction: TurnDirection) -> KioskSession:
    session = KioskSession(
        pipeline, lambda _: None, challenge=HeadTurnChallenge(direction, pipeline.detector)
    )
    for frame in frames:
        if session.feed(frame) is KioskStep.DONE:
            break
    return session


def test_a_live_head_turn_the_asked_way_gives_a_capture(pipeline: FacePipeline, live: list[Frame]) -> None:
    session = run_session(pipeline, live, TurnDirection.RIGHT)  # she turns to her right in the clip
    assert session.step is KioskStep.DONE
    capture = session.capture
    assert capture.liveness.direction is TurnDirection.RIGHT and capture.liveness.peak_parallax > 0.2
    assert capture.embedding.shape == (128,) and capture.quality.overall > 0.5
    assert session.prompts[-3:-1] == [
        Prompt.CAPTURED,
        "Look at the camera, then turn your head slowly to your right",
    ]
    assert session.prompts[-1] == Prompt.DONE


def test_the_same_person_turning_the_other_way_fails(pipeline: FacePipeline, live: list[Frame]) -> None:
    with pytest.raises(LivenessFailed, match="wrong direction"):
        run_session(pipeline, live, TurnDirection.LEFT)


def tilted_as_a_plane(image: np.ndarray, fraction: float) -> np.ndarray:
    """The image as a photo turned about its vertical axis: its right edge recedes (perspective)."""
    height, width = image.shape[:2]
    squeeze, shrink = width * 0.3 * fraction, height * 0.12 * fraction
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    moved = np.array(
        [[0, 0], [width - squeeze, shrink], [width - squeeze, height - shrink], [0, height]], dtype=np.float32
    )
    transform = cv2.getPerspectiveTransform(corners, moved)
    return np.ascontiguousarray(cv2.warpPerspective(image, transform, (width, height)))


@pytest.fixture(scope="module")
def frontal(pipeline: FacePipeline, live: list[Frame]) -> np.ndarray:
    """The frame the kiosk captured: a face that passes the quality gate."""
    capture = run_session(pipeline, live, TurnDirection.RIGHT).capture
    return live[round(capture.frame_time * FPS)].image


def reached_the_challenge(session: KioskSession, direction: TurnDirection | None = None) -> bool:
    """The photo passed the quality gate and the head-turn challenge was put to it."""
    asked = [p for p in session.prompts if p.startswith("Look at the camera, then turn your head")]
    return (
        session.step is KioskStep.CHALLENGE
        and Prompt.CAPTURED in session.prompts
        and len(asked) == 1
        and (direction is None or asked[0].endswith(direction.value))
    )


def test_a_still_photo_passes_the_quality_gate_and_fails_the_head_turn_challenge(
    pipeline: FacePipeline, faces_dir: Path, tmp_path: Path
) -> None:
    """A printed photo held up to the camera: a real face, frontal, large and sharp enough to capture,
    that never turns. The kiosk draws its challenge as it does in service (`secrets`), and refuses."""
    photo = cv2.imread(str(faces_dir / "face_recognition/lin_manuel_miranda/lin-manuel-miranda.png"))
    assert photo is not None
    held_up = tmp_path / "camera"
    held_up.mkdir()
    for i in range(round(3 * FPS)):  # three seconds of the same photo, as the camera delivers it
        cv2.imwrite(str(held_up / f"frame_{i}.png"), photo)
    settings = KioskSettings(liveness=LivenessSettings(time_limit_s=2.0))
    session = KioskSession(pipeline, lambda _: None, settings)
    source = open_source(SourceSpec(str(held_up), folder_fps=FPS))
    source.open()
    try:
        with pytest.raises(LivenessFailed, match=r"^liveness check failed: no turn: the time limit"):
            while (frame := source.read()) is not None:
                assert session.feed(frame) is not KioskStep.DONE, "a still photo was accepted"
    finally:
        source.close()
    assert reached_the_challenge(session), session.prompts
    with pytest.raises(CaptureTimedOut, match="has not finished"):
        _ = session.capture  # nothing to send to the server
    assert Prompt.DONE not in session.prompts


def test_a_photo_turned_as_a_plane_fails_whichever_way_is_asked(
    pipeline: FacePipeline, frontal: np.ndarray
) -> None:
    """Her captured frame as a print: held still (captured), then turned about its vertical axis."""
    frames = [
        Frame(index=i, timestamp=i / FPS, image=tilted_as_a_plane(frontal, min(1.0, max(0.0, (i - 6) / 12))))
        for i in range(48)
    ]
    # The print still in front of the camera after the challenge's time limit (8 s), within the kiosk's.
    late = Frame(index=len(frames), timestamp=9.0, image=frames[-1].image)
    for side in TurnDirection:
        session = KioskSession(pipeline, lambda _: None, challenge=HeadTurnChallenge(side, pipeline.detector))
        with pytest.raises(LivenessFailed, match=r"^liveness check failed: (planar motion|no turn): "):
            for frame in [*frames, late]:
                assert session.feed(frame) is not KioskStep.DONE, f"a tilted photo passed a turn {side}"
        assert reached_the_challenge(session, side), session.prompts


def test_the_kiosk_guides_the_person_before_any_capture(pipeline: FacePipeline, frontal: np.ndarray) -> None:
    face = frontal
    height, width = face.shape[:2]
    far = np.zeros_like(face)
    far[: height // 4, : width // 4] = cv2.resize(face, (width // 4, height // 4))
    dark = (face.astype(np.float32) * 0.12).astype(np.uint8)
    blank = np.full_like(face, 128)
    said: list[str] = []
    session = KioskSession(
        pipeline, said.append, KioskSettings(time_limit_s=5), HeadTurnChallenge.random(pipeline.detector)
    )
    for i, image in enumerate([blank, far, dark]):
        assert session.feed(Frame(index=i, timestamp=i * 0.5, image=image)) is KioskStep.POSITIONING
    assert said == [Prompt.STAND_IN_FRONT, Prompt.COME_CLOSER, Prompt.MORE_LIGHT]
    with pytest.raises(CaptureTimedOut, match="5 s"):
        session.feed(Frame(index=9, timestamp=6.0, image=blank))
    with pytest.raises(CaptureTimedOut):
        _ = session.capture


def test_two_people_in_front_of_the_kiosk_are_asked_to_come_one_at_a_time(
    pipeline: FacePipeline, frontal: np.ndarray
) -> None:
    face = frontal
    pair = np.ascontiguousarray(np.hstack([face, face]))
    said: list[str] = []
    session = KioskSession(
        pipeline, said.append, challenge=HeadTurnChallenge.random(pipeline.detector, random.Random(1))
    )
    session.feed(Frame(index=0, timestamp=0.0, image=pair))
    assert said == [Prompt.ONE_PERSON]


@pytest.mark.server
def test_the_capture_is_verified_and_identified_at_the_server(  # type: ignore[no-untyped-def]
    server_factory, clients_for, pipeline: FacePipeline, live: list[Frame], faces_dir: Path
) -> None:
    _, port, _ = server_factory()
    clients = clients_for(port)
    clients.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="desk", purpose=pb.WATCHLIST))
    # Her reference: the clip's last frame (another moment and pose than the capture at its start).
    reference = pipeline.process(live[-1].image)
    assert len(reference) == 1
    clients.admin.matching.InsertTemplate(
        pb.InsertTemplateRequest(
            gallery_id="desk",
            reference_id="traveller-1",
            template=pb.Probe(embedding=pb.Embedding(values=reference[0].embedding.tolist())),
        )
    )
    other = faces_dir / "lfw/Abdullah_Gul/Abdullah_Gul_0001.jpg"
    clients.admin.matching.InsertTemplate(
        pb.InsertTemplateRequest(
            gallery_id="desk", reference_id="traveller-2", template=pb.Probe(image=other.read_bytes())
        )
    )
    capture = run_session(pipeline, live, TurnDirection.RIGHT).capture
    officer = clients.officer.matching
    assert verify(officer, "desk", "traveller-1", capture, timeout_s=10).decision == pb.MATCH
    assert verify(officer, "desk", "traveller-2", capture, timeout_s=10).decision == pb.NO_MATCH
    found = identify(officer, "desk", capture, timeout_s=10)
    assert found.decision == pb.MATCH and found.faces[0].candidates[0].reference_id == "traveller-1"
    # A kiosk does not queue: an unreachable server is an error the officer sees.
    with (
        grpc.insecure_channel("localhost:1") as dead,
        pytest.raises(ServerUnreachable, match="cannot be reached"),
    ):
        verify(pb_grpc.MatchingServiceStub(dead), "desk", "traveller-1", capture, timeout_s=2)
