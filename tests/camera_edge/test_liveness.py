"""The head-turn liveness challenge: parallax geometry, real head turns, planar attacks from real stills."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from benchmarks import liveness_eval as bench
from safepassage.camera_edge.errors import LivenessFailed
from safepassage.camera_edge.liveness import (
    ChallengeState,
    HeadTurnChallenge,
    LivenessCheck,
    LivenessSettings,
    TurnDirection,
)
from safepassage.camera_edge.parallax import planar_parallax, yaw_proxy
from safepassage.face.detection import Detection
from safepassage.face.errors import PipelineInputError
from safepassage.face.pipeline import Detector, PipelineSettings, load_pipeline

Frame = npt.NDArray[np.uint8]
SETTINGS = LivenessSettings()
TURNS = {turn.name: turn for turn in bench.LIVE_TURNS}


@pytest.fixture(scope="module")
def detector(model_dir: Path) -> Detector:
    return load_pipeline(PipelineSettings(model_dir=model_dir)).detector


@pytest.fixture(scope="module")
def clips(faces_dir: Path) -> dict[str, tuple[list[Frame], float]]:
    videos = {turn.video for turn in bench.LIVE_TURNS} | {bench.STILL_LIVE[0]}
    return {video: bench.read_video(faces_dir / video) for video in videos}


@pytest.fixture(scope="module")
def scene(faces_dir: Path) -> Frame:
    return bench.background(faces_dir)


def feed(
    challenge: HeadTurnChallenge,
    frames: Sequence[Frame],
    timestamps: Sequence[float],
    detections: Sequence[Sequence[Detection]],
) -> ChallengeState:
    """Frames into the challenge until it passes; raises what it raises."""
    state = challenge.state
    for frame, timestamp, faces in zip(frames, timestamps, detections, strict=True):
        state = challenge.observe(timestamp, frame, faces)
        if state is ChallengeState.PASSED:
            break
    return state


def live(
    detector: Detector,
    clips: dict[str, tuple[list[Frame], float]],
    name: str,
    mirrored: bool = False,
    augment: str = "original",
) -> tuple[list[Frame], list[float], list[list[Detection]], TurnDirection]:
    frames, timestamps, direction = bench.live_frames(TURNS[name], clips, mirrored, augment)
    return frames, timestamps, [detector.detect(f) for f in frames], direction


def failure(
    detector: Detector,
    direction: TurnDirection,
    frames: Sequence[Frame],
    timestamps: Sequence[float],
    detections: Sequence[Sequence[Detection]],
    settings: LivenessSettings = SETTINGS,
) -> tuple[HeadTurnChallenge, LivenessFailed]:
    """Runs a challenge that must fail, and returns it with its error (from observe or result)."""
    challenge = HeadTurnChallenge(direction, detector, settings)
    with pytest.raises(LivenessFailed) as caught:
        feed(challenge, frames, timestamps, detections)
        challenge.result()
    return challenge, caught.value


# ----------------------------------------------------------------------------- the geometry, on points

# A head in IOD units, x to the image's right, y down, z away from the camera:
# eyes and mouth corners on the plane z = 0, the nose tip 0.6 IOD towards the camera.
HEAD = np.array([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.55, -0.6], [-0.4, 1.1, 0.0], [0.4, 1.1, 0.0]])
FLAT_FACE = HEAD * np.array([1.0, 1.0, 0.0])  # the same face printed on the plane


def rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> npt.NDArray[np.float64]:
    """Degrees; a positive yaw carries the nose (pointing at the camera, -z) towards +x."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    about_y = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    about_x = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    about_z = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    result: npt.NDArray[np.float64] = about_z @ about_x @ about_y
    return result


def image_of(
    points: npt.NDArray[np.float64],
    rotation_matrix: npt.NDArray[np.float64],
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0),
    distance: float = 8.0,
    focal: float = 400.0,
) -> npt.NDArray[np.float64]:
    """Pinhole projection (pixels) of points rotated about the face's centre and moved."""
    centre = np.array([0.0, 0.55, 0.0])
    world = (points - centre) @ rotation_matrix.T + np.array([shift[0], shift[1], distance + shift[2]])
    return np.stack(
        [focal * world[:, 0] / world[:, 2] + 320, focal * world[:, 1] / world[:, 2] + 240], axis=1
    )


def test_a_plane_shows_no_parallax_whatever_its_motion_or_perspective() -> None:
    rng = np.random.default_rng(3)
    reference = image_of(FLAT_FACE, rotation(0.0))
    for _ in range(300):
        pose = rotation(*rng.uniform([-60, -45, -90], [60, 45, 90]))
        shift = tuple(rng.uniform([-3, -3, -5], [3, 3, 6]))
        moved = image_of(FLAT_FACE, pose, shift, distance=8.0, focal=float(rng.uniform(200, 900)))
        along, across = planar_parallax(reference, moved)
        assert abs(along) < 1e-6 and abs(across) < 1e-6, (along, across)
        # Any homography of the image at all, not only those of a rigid motion.
        homography = np.eye(3) + rng.normal(0, [[0.2, 0.2, 20], [0.2, 0.2, 20], [2e-4, 2e-4, 0]])
        mapped = np.c_[moved, np.ones(5)] @ homography.T
        along, across = planar_parallax(reference, mapped[:, :2] / mapped[:, 2:])
        assert abs(along) < 1e-6 and abs(across) < 1e-6, (along, across)


def test_a_nose_off_the_plane_gives_parallax_signed_by_the_side_of_the_turn() -> None:
    reference = image_of(HEAD, rotation(0.0))
    previous = 0.0
    for yaw in (10.0, 20.0, 30.0, 45.0):
        along, _ = planar_parallax(reference, image_of(HEAD, rotation(yaw)))
        mirrored_along, _ = planar_parallax(reference, image_of(HEAD, rotation(-yaw)))
        assert along > previous and mirrored_along == pytest.approx(-along, abs=1e-9)
        previous = along
    # 0.6 IOD of nose depth turned 20 degrees: about 0.6 sin 20 / cos 20 of the foreshortened IOD.
    along_20, _ = planar_parallax(reference, image_of(HEAD, rotation(20.0)))
    assert 0.18 < along_20 < 0.26
    # A positive yaw carries the nose to +x: towards the image's right, a turn to the person's left.
    assert TurnDirection.LEFT.image_sign() == 1 and TurnDirection.RIGHT.image_sign() == -1
    assert TurnDirection.LEFT.image_sign(mirrored=True) == -1
    # Nodding moves the nose across the eye axis, not along it; rolling and scaling move nothing.
    along, across = planar_parallax(reference, image_of(HEAD, rotation(0.0, pitch=25.0)))
    assert abs(along) < 1e-9 and abs(across) > 0.15
    rolled = image_of(HEAD, rotation(0.0, roll=35.0))
    centre = rolled.mean(axis=0)
    along, across = planar_parallax(reference, (rolled - centre) * 1.7 + centre + 40)
    assert abs(along) < 1e-9 and abs(across) < 1e-9


def test_the_yaw_proxy_is_zero_facing_the_camera_and_follows_the_turn() -> None:
    assert yaw_proxy(image_of(HEAD, rotation(0.0))) == pytest.approx(0.0, abs=1e-9)
    assert yaw_proxy(image_of(HEAD, rotation(30.0))) > 0.3 > -0.3 > yaw_proxy(image_of(HEAD, rotation(-30.0)))
    # A printed face keeps its yaw proxy under rotation (to first order): the plane does not turn.
    assert abs(yaw_proxy(image_of(FLAT_FACE, rotation(40.0)))) < 0.05


def test_points_that_fix_no_plane_are_refused() -> None:
    good = image_of(HEAD, rotation(0.0))
    collinear = good.copy()
    collinear[:, 1] = 240.0
    for bad in (collinear, good[:4], np.full((5, 2), np.nan), np.zeros((5, 2))):
        with pytest.raises(PipelineInputError):
            planar_parallax(good, bad)


# ----------------------------------------------------------------------------- real head turns


@pytest.mark.parametrize("name", ["female_right", "female_left", "hamilton_right_2"])
def test_real_head_turns_pass_for_the_side_they_turn_to(
    detector: Detector, clips: dict[str, tuple[list[Frame], float]], name: str
) -> None:
    frames, timestamps, detections, direction = live(detector, clips, name)
    challenge = HeadTurnChallenge(direction, detector)
    assert feed(challenge, frames, timestamps, detections) is ChallengeState.PASSED
    evidence = challenge.result()
    assert evidence.direction is direction
    assert evidence.peak_parallax >= SETTINGS.min_parallax and evidence.peak_turn >= SETTINGS.min_turn
    assert evidence.turned_frames == SETTINGS.min_frames
    assert abs(evidence.reference_yaw) <= SETTINGS.frontal_max
    assert 0 < evidence.duration_s <= timestamps[-1] and evidence.frames <= len(frames)


def test_a_real_turn_mirrored_passes_for_the_other_side_and_fails_asked_the_same(
    detector: Detector, clips: dict[str, tuple[list[Frame], float]]
) -> None:
    frames, timestamps, detections, direction = live(detector, clips, "female_right", mirrored=True)
    assert direction is TurnDirection.LEFT
    challenge = HeadTurnChallenge(TurnDirection.LEFT, detector)
    assert feed(challenge, frames, timestamps, detections) is ChallengeState.PASSED
    challenge, error = failure(detector, TurnDirection.RIGHT, frames, timestamps, detections)
    assert challenge.failed_check is LivenessCheck.WRONG_DIRECTION
    assert "wrong direction" in str(error)
    # A camera that delivers mirrored frames: the same pixels are a turn to the person's right.
    mirrored_camera = LivenessSettings(mirrored=True)
    challenge = HeadTurnChallenge(TurnDirection.RIGHT, detector, mirrored_camera)
    assert feed(challenge, frames, timestamps, detections) is ChallengeState.PASSED


def test_a_real_turn_fails_when_the_other_side_was_asked(
    detector: Detector, clips: dict[str, tuple[list[Frame], float]]
) -> None:
    for name in ("female_right", "hamilton_right_2"):
        frames, timestamps, detections, direction = live(detector, clips, name)
        challenge, error = failure(detector, direction.opposite, frames, timestamps, detections)
        assert challenge.failed_check is LivenessCheck.WRONG_DIRECTION, str(error)
        with pytest.raises(LivenessFailed):  # and it stays failed
            challenge.observe(timestamps[-1] + 0.1, frames[-1], detections[-1])


def test_a_live_face_held_still_fails(
    detector: Detector, clips: dict[str, tuple[list[Frame], float]]
) -> None:
    video, indices = bench.STILL_LIVE
    all_frames, fps = clips[video]
    frames = [all_frames[i] for i in indices[:40]]
    timestamps = [k / fps for k in range(len(frames))]  # 3.3 s of a man looking at the camera
    detections = [detector.detect(f) for f in frames]
    short = LivenessSettings(time_limit_s=3.0)
    for direction in TurnDirection:
        challenge, error = failure(detector, direction, frames, timestamps, detections, short)
        assert challenge.failed_check is LivenessCheck.NO_TURN, str(error)
        assert "time limit" in str(error)
        assert challenge.peak_parallax is not None and challenge.peak_parallax < 0.1


def test_a_face_that_never_faces_the_camera_cannot_start(
    detector: Detector, clips: dict[str, tuple[list[Frame], float]]
) -> None:
    frames, timestamps, detections, direction = live(detector, clips, "female_right")
    turned = slice(5, None)  # frames 4 -> 0 of the clip: she looks to her right throughout
    challenge, _ = failure(detector, direction, frames[turned], timestamps[turned], detections[turned])
    assert challenge.failed_check is LivenessCheck.NO_FRONTAL_FACE
    assert challenge.state is ChallengeState.WAITING_FRONTAL


def test_a_face_that_jumps_or_is_lost_fails(
    detector: Detector, clips: dict[str, tuple[list[Frame], float]]
) -> None:
    frames, _, detections, direction = live(detector, clips, "female_right")
    # Frontal, then 1/30 s later the fully turned frame: a photo swapped for another, not a head.
    swap = [0, 0, 8]
    challenge, error = failure(
        detector, direction, [frames[i] for i in swap], [0.0, 1 / 30, 2 / 30], [detections[i] for i in swap]
    )
    assert challenge.failed_check is LivenessCheck.FACE_JUMPED and "faster than a head" in str(error)
    # The face moves 150 px and stays there: another face in the picture, never measured.
    shifted = np.ascontiguousarray(np.roll(frames[1], 150, axis=1))
    moved = [frames[0], frames[1], *[shifted] * 6]
    moved_detections = [detections[0], detections[1], *[detector.detect(shifted)] * 6]
    times = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    challenge, error = failure(detector, direction, moved, times, moved_detections)
    assert challenge.failed_check is LivenessCheck.FACE_JUMPED and "another face" in str(error)
    # No face for longer than max_gap_s.
    black = np.zeros_like(frames[0])
    gap = [frames[0], frames[1], black, black, black, frames[2]]
    times = [0.0, 0.1, 0.3, 0.5, 0.7, 0.8]
    challenge, error = failure(detector, direction, gap, times, [detector.detect(f) for f in gap])
    assert challenge.failed_check is LivenessCheck.FACE_LOST, str(error)


def test_ending_early_and_bad_input(detector: Detector, clips: dict[str, tuple[list[Frame], float]]) -> None:
    frames, _, detections, direction = live(detector, clips, "female_right")
    challenge = HeadTurnChallenge(direction, detector)
    assert challenge.observe(0.0, frames[0], detections[0]) is ChallengeState.TURNING
    with pytest.raises(PipelineInputError):
        challenge.observe(-1.0, frames[1], detections[1])  # time went backwards
    with pytest.raises(PipelineInputError):
        challenge.observe(0.1, frames[1][:, :, 0], detections[1])
    with pytest.raises(LivenessFailed, match="ended before the turn"):
        challenge.result()
    assert challenge.failed_check is LivenessCheck.NO_TURN
    with pytest.raises(ValueError):
        LivenessSettings(min_parallax=0.0)
    with pytest.raises(ValueError):
        LivenessSettings(min_frames=0)


def test_the_side_is_drawn_at_random_and_said_in_the_prompt(detector: Detector) -> None:
    sides = {HeadTurnChallenge.random(detector, random.Random(seed)).direction for seed in range(32)}
    assert sides == set(TurnDirection)
    first = HeadTurnChallenge.random(detector, random.Random(5)).direction
    assert HeadTurnChallenge.random(detector, random.Random(5)).direction is first
    challenge = HeadTurnChallenge.random(detector)  # secrets
    assert challenge.direction in set(TurnDirection)
    assert f"to your {challenge.direction.value}" in challenge.prompt
    assert challenge.state is ChallengeState.WAITING_FRONTAL


# ----------------------------------------------------------------------------- planar attacks, real stills


@pytest.fixture(scope="module")
def stills(
    detector: Detector, faces_dir: Path, clips: dict[str, tuple[list[Frame], float]]
) -> list[bench.Still]:
    """Two LFW prints, a face_recognition print and a frame of the head-pose clip, all frontal."""
    chosen: list[bench.Still] = []
    candidates = [
        ("print_lfw", faces_dir / "lfw" / "Hanan_Ashrawi" / "Hanan_Ashrawi_0001.jpg"),
        ("print_lfw", faces_dir / "lfw" / "Kevin_Millwood" / "Kevin_Millwood_0001.jpg"),
        ("print_face_recognition", faces_dir / "face_recognition" / "biden" / "biden.jpg"),
    ]
    for species, path in candidates:
        image = bench.read_image(path)
        face = bench.frontal_face(detector, image, SETTINGS.frontal_max)
        assert face is not None, f"{path.name} no longer has a frontal face"
        chosen.append(
            bench.Still(
                path.name, species, image if species == "print_lfw" else bench.face_texture(image, face)
            )
        )
    frame = clips[bench.LIVE_TURNS[0].video][0][9]
    face = bench.frontal_face(detector, frame, SETTINGS.frontal_max)
    assert face is not None
    chosen.append(bench.Still("female#9", "video_still", bench.face_texture(frame, face)))
    chosen.append(bench.Still("Hanan_Ashrawi screen", "screen", bench.as_screen(chosen[0].texture)))
    return chosen


ATTACK_MOTIONS = (
    "yaw_positive",
    "yaw_negative",
    "yaw_pitch_close",
    "tilted_then_yaw",
    "roll_slide",
    "waggle",
)


def test_a_picture_moved_as_a_plane_fails_whatever_the_motion(
    detector: Detector, scene: Frame, stills: list[bench.Still]
) -> None:
    planar = 0
    for index, still in enumerate(stills):
        motions = ATTACK_MOTIONS if index < 2 else ATTACK_MOTIONS[::2]
        for motion in motions:
            frames, timestamps = bench.attack_frames(still.texture, motion, scene, seed=index)
            detections = [detector.detect(f) for f in frames]
            for direction in TurnDirection:
                challenge, error = failure(detector, direction, frames, timestamps, detections)
                label = f"{still.name} {motion} {direction.value}: {error}"
                # It started (a frontal reference was taken), so the 3-D check is what stopped it.
                assert challenge.failed_check in (LivenessCheck.PLANAR_MOTION, LivenessCheck.NO_TURN), label
                assert challenge.peak_parallax is not None and challenge.peak_parallax < SETTINGS.min_parallax
                planar += challenge.failed_check is LivenessCheck.PLANAR_MOTION
    # Rotated pictures do fool the detector's points into a turn; the parallax is what refuses them.
    assert planar >= 3
