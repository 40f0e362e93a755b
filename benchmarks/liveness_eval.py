"""Head-turn liveness (safepassage.camera_edge.liveness): APCER and BPCER on real turns and planar attacks.

    uv run python benchmarks/liveness_eval.py [--stills 24] [--workers 2] [--out PATH]

Figures follow ISO/IEC 30107-3: APCER = attack presentations accepted / attack
presentations, per attack species (PAI species) and for the worst species;
BPCER = bona fide presentations rejected / bona fide presentations. Each count
is printed beside its rate: the sets are small.

**Bona fide** (../shared/data/faces, or $SAFEPASSAGE_FACES_DIR): the turns real
people make in the clips, labelled by hand (frames looked at; `LIVE_TURNS`),
each run from its frontal frame with the side the person turns to as the
challenge. There are only four such turns, of two people; each is also run
mirrored (the other side), at half the frame rate, and re-encoded as JPEG
quality 50 with noise, so the windows are correlated: read BPCER with the
count of distinct turns in mind.

**Attacks**: still faces moved as planes in front of a camera (480x270, focal
length 420 px, over a blurred background with no face), 24 frames at 12 fps: 3
frames still and frontal, 12 moving, 9 held. Every frame gets sensor noise
and JPEG quality 75. Each sequence is run against both sides, so an attack
presentation is a (sequence, asked side) pair: the attacker acts after seeing
the prompt. Species:

- ``print_lfw``: LFW stills whose face is frontal enough to start a challenge
  (the stronger attacker; turned faces never start one), as a print;
- ``print_face_recognition``: the face_recognition photos, likewise;
- ``video_still``: single frames of the head-pose and talk clips, likewise;
- ``screen``: LFW stills on a screen (black bezel, brighter, gamma, a faint
  moire), moved the same way.

Motions (`MOTIONS`): rotation about the vertical axis (55 degrees each way),
about the horizontal axis, both close to the camera (strong perspective), a
fixed perspective tilt then a rotation, in-plane rotation with a slide, an
approach, hand-held shake and a waggle from side to side.

Reported beside them, outside the planar claim: ``bent_print`` (the print bent
around a vertical axis into a cylinder, rendered as 24 planar strips: a
non-planar attack), a live face held still and head tilts (roll) from the
clips (neither may pass), and each bona fide turn asked the other way. The
``raw`` columns apply the pass rule (thresholds and hold, not the jump, loss
and wrong-side failures) to the detector's own points, without the rectified
re-detection, to show what that step buys.

Not covered, and a head-turn check cannot stop them by itself: replay of a
video of the person turning (the random side halves its chance: it passes when
the recorded turn matches the prompt), 3-D masks and head models, a face on a
tablet or a phone that itself plays a turn, and real prints and screens
(moire, glare, paper texture are simulated, not captured).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per worker

import cv2
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from safepassage.camera_edge.errors import LivenessFailed  # noqa: E402
from safepassage.camera_edge.liveness import (  # noqa: E402
    ChallengeState,
    HeadTurnChallenge,
    LivenessSettings,
    TurnDirection,
)
from safepassage.camera_edge.parallax import planar_parallax, yaw_proxy  # noqa: E402
from safepassage.evaluation.intervals import Rate  # noqa: E402
from safepassage.face.detection import Detection  # noqa: E402
from safepassage.face.errors import PipelineInputError  # noqa: E402
from safepassage.face.pipeline import Detector, PipelineSettings, load_pipeline  # noqa: E402

Frame = npt.NDArray[np.uint8]
FACES_ENV = "SAFEPASSAGE_FACES_DIR"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "liveness.json"
HEAD_POSE = "video/intel_sample_videos/mp4_from_gif/head-pose-face-detection-{}.mp4"
HAMILTON = "video/face_recognition/short_hamilton_clip.mp4"
BACKGROUND = "video/intel_sample_videos/mp4_from_gif/people-detection.mp4"  # no face in it
SCENE_SIZE = (480, 270)  # width, height: the head-pose clips' size, so faces are alike in pixels
FOCAL_PX = 420.0
ATTACK_FPS = 12.0
HOLD_START, MOVE, HOLD_END = 3, 12, 9
PHOTO_SIDE = 250  # texture side, pixels (an LFW image)


def faces_root() -> Path:
    return Path(os.environ.get(FACES_ENV, REPO.parent / "shared" / "data" / "faces"))


def read_video(path: Path) -> tuple[list[Frame], float]:
    """Every frame of a clip as RGB, and its frame rate."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open {path}")
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    frames: list[Frame] = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), dtype=np.uint8))
    capture.release()
    return frames, fps


def read_image(path: Path) -> Frame:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read {path}")
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)


# ----------------------------------------------------------------------------- bona fide turns


@dataclass(frozen=True)
class LiveTurn:
    """A real head turn in a clip: frames in presentation order, the first frontal.

    ``direction``: the person's own side, the image being unmirrored (a turn to
    one's right moves the nose towards the image's left).
    """

    name: str
    video: str
    frames: tuple[int, ...]
    direction: TurnDirection
    note: str


# Looked at frame by frame (montages of the clips). The female clip opens
# turned to her right and comes to face the camera at frame 9; played backwards
# from 9 it is a turn to her right: time-reversed, still a real head moving.
LIVE_TURNS: tuple[LiveTurn, ...] = (
    LiveTurn(
        "female_right",
        HEAD_POSE.format("female"),
        tuple(range(9, -1, -1)),
        TurnDirection.RIGHT,
        "frames 9 -> 0, played backwards: frontal to a large turn to her right",
    ),
    LiveTurn(
        "female_left",
        HEAD_POSE.format("female"),
        tuple(range(9, 17)),
        TurnDirection.LEFT,
        "frames 9 -> 16: frontal to a small turn (about 20 degrees) to her left, then back",
    ),
    LiveTurn(
        "hamilton_right_1",
        HAMILTON,
        tuple(range(93, 141)),
        TurnDirection.RIGHT,
        "frames 93 -> 140 (30 fps): the performer turns to his right while singing",
    ),
    LiveTurn(
        "hamilton_right_2",
        HAMILTON,
        tuple(range(178, 211)),
        TurnDirection.RIGHT,
        "frames 178 -> 210: frontal to his right, up to the cut at 211",
    ),
)
EXCLUDED_TURNS = (
    "female frames 18 -> 22: a turn to her right that the clip cuts off mid-turn (not held)",
    "hamilton frames 142 -> 165: a slight glance to his left (nose moves < 0.12 IOD), not a turn",
    "female-and-male clip: both people tilt their heads (roll); run as head tilts, not as turns",
)
STILL_LIVE = (HEAD_POSE.format("male"), tuple(range(0, 62)))  # looks at the camera, does not turn
HEAD_TILTS = (HEAD_POSE.format("female-and-male"), tuple(range(0, 56)))
AUGMENTS = ("original", "half_rate", "jpeg_noise")


def camera_effects(frame: Frame, rng: np.random.Generator, quality: int, noise: float) -> Frame:
    """Sensor noise then JPEG, as a camera delivers frames."""
    noisy = frame.astype(np.float32) + rng.normal(0.0, noise, frame.shape).astype(np.float32)
    clipped = np.clip(noisy, 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", clipped, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return np.asarray(cv2.imdecode(data, cv2.IMREAD_UNCHANGED), dtype=np.uint8)


def live_frames(
    turn: LiveTurn, clips: dict[str, tuple[list[Frame], float]], mirrored: bool, augment: str
) -> tuple[list[Frame], list[float], TurnDirection]:
    """The frames and timestamps of one bona fide window, and the side it turns to."""
    frames, fps = clips[turn.video]
    indices = list(turn.frames[::2] if augment == "half_rate" else turn.frames)
    step = 2 if augment == "half_rate" else 1
    chosen = [frames[i] for i in indices]
    if mirrored:
        chosen = [np.ascontiguousarray(f[:, ::-1]) for f in chosen]
    if augment == "jpeg_noise":
        rng = np.random.default_rng(7)
        chosen = [camera_effects(f, rng, 50, 3.0) for f in chosen]
    timestamps = [k * step / fps for k in range(len(chosen))]
    direction = turn.direction.opposite if mirrored else turn.direction
    return chosen, timestamps, direction


# ----------------------------------------------------------------------------- planar attacks


@dataclass(frozen=True)
class Pose:
    """A held picture's pose: degrees about the vertical (yaw), horizontal (pitch) and view (roll) axes;
    shift in pixels at the picture's depth; distance as a multiple of the starting one."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    distance: float = 1.0


def rotation(pose: Pose) -> npt.NDArray[np.float64]:
    yaw, pitch, roll = (math.radians(a) for a in (pose.yaw, pose.pitch, pose.roll))
    about_y = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    about_x = np.array(
        [[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]]
    )
    about_z = np.array([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]])
    combined: npt.NDArray[np.float64] = about_z @ about_y @ about_x
    return combined


def project(points: npt.NDArray[np.float64], pose: Pose, width_px: float) -> npt.NDArray[np.float64]:
    """Texture points (x, y, depth) in texture pixels, centred, to scene pixels.

    At distance 1 the texture is ``width_px`` wide in the scene, ``FOCAL_PX`` away.
    """
    scale = width_px / PHOTO_SIDE
    world = (rotation(pose) @ (points * scale).T).T
    world += np.array([pose.shift_x, pose.shift_y, pose.distance * FOCAL_PX])
    width, height = SCENE_SIZE
    return np.stack(
        [FOCAL_PX * world[:, 0] / world[:, 2] + width / 2, FOCAL_PX * world[:, 1] / world[:, 2] + height / 2],
        axis=1,
    )


def _paste(
    scene: Frame,
    texture: Frame,
    corners: npt.NDArray[np.float64],
    source: npt.NDArray[np.float64],
    hard: bool = False,
) -> None:
    homography = cv2.getPerspectiveTransform(source.astype(np.float32), corners.astype(np.float32))
    size = (scene.shape[1], scene.shape[0])
    warped = cv2.warpPerspective(texture, homography, size, flags=cv2.INTER_LINEAR)
    full = np.full(texture.shape[:2], 255, np.uint8)
    mask = cv2.warpPerspective(full, homography, size, flags=cv2.INTER_NEAREST if hard else cv2.INTER_LINEAR)
    alpha = (mask.astype(np.float32) / 255.0)[:, :, None]
    scene[:] = (scene * (1 - alpha) + warped * alpha).astype(np.uint8)


def render_plane(texture: Frame, pose: Pose, background: Frame, width_px: float) -> Frame:
    """The square texture as a flat picture at ``pose``: one homography, exactly a plane."""
    half = PHOTO_SIDE / 2
    corners3 = np.array(
        [[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]], dtype=np.float64
    )
    source = corners3[:, :2] + half
    scene = background.copy()
    _paste(scene, texture, project(corners3, pose, width_px), source)
    return scene


def render_bent(texture: Frame, pose: Pose, background: Frame, width_px: float, radius: float) -> Frame:
    """The texture bent around a vertical axis (radius in texture pixels, convex towards the camera)."""
    half = PHOTO_SIDE / 2
    scene = background.copy()
    edges = np.linspace(-half, half, 25)
    for left, right in itertools.pairwise(edges):
        arc = np.array([left, right, right, left])
        y = np.array([-half, -half, half, half])
        points3 = np.stack([radius * np.sin(arc / radius), y, radius * (1 - np.cos(arc / radius))], axis=1)
        # One pixel of overlap each side, pasted with a hard mask: no seams between the strips.
        first = max(math.floor(left + half) - 1, 0)
        last = min(math.ceil(right + half) + 1, PHOTO_SIDE)
        source = np.stack([arc + half - first, y + half], axis=1)
        strip = np.ascontiguousarray(texture[:, first:last])
        _paste(scene, strip, project(points3, pose, width_px), source, hard=True)
    return scene


def _ramp(step: int) -> float:
    """0 while still, rising smoothly over the move, 1 while held."""
    t = min(max((step - HOLD_START) / MOVE, 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(math.pi * t)


def _shake(step: int) -> Pose:
    t = step / ATTACK_FPS
    return Pose(
        yaw=8 * math.sin(2.1 * t),
        pitch=6 * math.sin(3.3 * t + 1),
        roll=4 * math.sin(1.7 * t + 2),
        shift_x=10 * math.sin(2.7 * t),
        shift_y=6 * math.sin(1.9 * t + 0.5),
    )


def _waggle(step: int) -> Pose:
    phase = max(step - HOLD_START, 0) / ATTACK_FPS
    return Pose(yaw=45 * math.sin(2 * math.pi * 0.6 * phase))


# Each motion maps a frame number to a pose and names the texture width it is seen at (scene pixels).
MOTIONS: dict[str, tuple[Callable[[int], Pose], float]] = {
    "yaw_positive": (lambda k: Pose(yaw=55 * _ramp(k)), 200.0),
    "yaw_negative": (lambda k: Pose(yaw=-55 * _ramp(k)), 200.0),
    "pitch": (lambda k: Pose(pitch=35 * _ramp(k)), 200.0),
    "yaw_pitch_close": (lambda k: Pose(yaw=45 * _ramp(k), pitch=20 * _ramp(k), distance=0.75), 230.0),
    "tilted_then_yaw": (lambda k: Pose(pitch=30, yaw=-45 * _ramp(k), distance=0.8), 200.0),
    "roll_slide": (lambda k: Pose(roll=30 * _ramp(k), shift_x=90 * _ramp(k)), 200.0),
    "approach": (lambda k: Pose(yaw=10 * _ramp(k), distance=1.0 - 0.35 * _ramp(k)), 170.0),
    "shake": (_shake, 200.0),
    "waggle": (_waggle, 200.0),
}
BENT_MOTIONS = ("yaw_positive", "yaw_negative", "waggle")
BENT_RADIUS = 0.45 * PHOTO_SIDE


def background(root: Path) -> Frame:
    frames, _ = read_video(root / BACKGROUND)
    scene = cv2.resize(frames[0], SCENE_SIZE, interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.GaussianBlur(scene, (0, 0), 4), dtype=np.uint8)


def attack_frames(
    texture: Frame, motion: str, scene: Frame, seed: int, bent_radius: float | None = None
) -> tuple[list[Frame], list[float]]:
    """One planar (or, with ``bent_radius``, bent) attack sequence: frames and timestamps."""
    pose_at, width_px = MOTIONS[motion]
    rng = np.random.default_rng(seed)
    frames: list[Frame] = []
    for step in range(HOLD_START + MOVE + HOLD_END):
        pose = pose_at(step)
        if bent_radius is None:
            rendered = render_plane(texture, pose, scene, width_px)
        else:
            rendered = render_bent(texture, pose, scene, width_px, bent_radius)
        frames.append(camera_effects(rendered, rng, 75, 2.0))
    return frames, [k / ATTACK_FPS for k in range(len(frames))]


def as_screen(texture: Frame) -> Frame:
    """The texture as a screen shows it: a black bezel, brighter with a gamma, a faint moire."""
    inner = PHOTO_SIDE - 2 * 16
    shown = cv2.resize(texture, (inner, inner), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    shown = np.clip(1.1 * shown**0.8, 0.0, 1.0)
    rows, cols = np.mgrid[0:inner, 0:inner]
    shown *= (1.0 + 0.03 * np.sin(0.9 * cols + 0.4 * rows))[:, :, None]
    screen = np.zeros((PHOTO_SIDE, PHOTO_SIDE, 3), np.uint8)
    screen[16:-16, 16:-16] = np.clip(shown * 255.0, 0, 255).astype(np.uint8)
    return screen


def face_texture(image: Frame, face: Detection) -> Frame:
    """A square print around a detected face, the face about 45% of its side (as in LFW)."""
    left, top, right, bottom = face.box
    side = max(right - left, bottom - top) / 0.45
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    scale = PHOTO_SIDE / side
    transform = np.array(
        [[scale, 0, PHOTO_SIDE / 2 - scale * centre_x], [0, scale, PHOTO_SIDE / 2 - scale * centre_y]]
    )
    texture = cv2.warpAffine(
        image, transform, (PHOTO_SIDE, PHOTO_SIDE), flags=cv2.INTER_AREA, borderValue=(255,) * 3
    )
    return np.asarray(texture, dtype=np.uint8)


@dataclass(frozen=True)
class Still:
    name: str
    species: str
    texture: Frame = field(repr=False)


def frontal_face(detector: Detector, image: Frame, frontal_max: float) -> Detection | None:
    """The largest face of an image when it is frontal enough to start a challenge."""
    faces = detector.detect(image)
    if not faces:
        return None
    face = max(faces, key=lambda d: d.width * d.height)
    try:
        return face if abs(yaw_proxy(face.points)) <= frontal_max else None
    except PipelineInputError:
        return None


def collect_stills(
    root: Path, detector: Detector, count: int, frontal_max: float
) -> tuple[list[Still], dict[str, int]]:
    """Frontal stills per species; returns them and how many candidates each species screened out."""
    stills: list[Still] = []
    screened: dict[str, int] = {}

    def take(species: str, name: str, image: Frame, limit: int) -> None:
        if sum(s.species == species for s in stills) >= limit:
            return
        face = frontal_face(detector, image, frontal_max)
        if face is None:
            screened[species] = screened.get(species, 0) + 1
            return
        texture = image if species == "print_lfw" else face_texture(image, face)
        stills.append(Still(name, species, np.ascontiguousarray(texture)))

    lfw = sorted((root / "lfw").glob("*/*_0001.jpg"))
    for path in lfw[:: max(1, len(lfw) // (3 * count))]:
        take("print_lfw", path.name, read_image(path), count)
    duplicates = {"obama-240p.jpg", "obama-480p.jpg", "obama-720p.jpg", "obama-1080p.jpg", "obama_small.jpg"}
    for path in sorted((root / "face_recognition").glob("*/*")):
        if path.name not in duplicates:
            # Folder and file: two people's folders both hold an img1.jpg.
            take("print_face_recognition", f"{path.parent.name}/{path.name}", read_image(path), count)
    clips = {HEAD_POSE.format("female"): (9, 12), HEAD_POSE.format("male"): (0, 30), HAMILTON: (95, 180)}
    for clip, indices in clips.items():
        frames, _ = read_video(root / clip)
        for index in indices:
            take("video_still", f"{Path(clip).stem}#{index}", frames[index], count)
    for still in [s for s in stills if s.species == "print_lfw"][: max(1, count // 2)]:
        stills.append(Still(still.name, "screen", as_screen(still.texture)))
    return stills, screened


# ----------------------------------------------------------------------------- running challenges


@dataclass(frozen=True)
class Outcome:
    """One presentation: the challenge's verdict, and the pass rule alone on the raw points."""

    passed: bool
    check: str | None
    reached_turning: bool
    peak_parallax: float | None  # rectified, towards the asked side (IOD)
    raw_passed: bool
    raw_peak_parallax: float | None


def detect_all(detector: Detector, frames: Sequence[Frame]) -> list[list[Detection]]:
    return [detector.detect(frame) for frame in frames]


def raw_rule(
    detections: Sequence[Sequence[Detection]], direction: TurnDirection, settings: LivenessSettings
) -> tuple[bool, float | None]:
    """The challenge's thresholds on the detector's own points (no rectification): pass, peak parallax."""
    sign = direction.image_sign(settings.mirrored)
    reference = None
    run, peak = 0, None
    for faces in detections:
        if not faces:
            run = 0
            continue
        face = max(faces, key=lambda d: d.width * d.height)
        try:
            yaw = yaw_proxy(face.points)
            if reference is None:
                if abs(yaw) <= settings.frontal_max:
                    reference = (face.points, yaw)
                continue
            parallax = sign * planar_parallax(reference[0], face.points)[0]
        except PipelineInputError:
            run = 0
            continue
        peak = parallax if peak is None else max(peak, parallax)
        turn = sign * (yaw - reference[1])
        run = run + 1 if parallax >= settings.min_parallax and turn >= settings.min_turn else 0
        if run >= settings.min_frames:
            return True, peak
    return False, peak


def run_challenge(
    detector: Detector,
    frames: Sequence[Frame],
    timestamps: Sequence[float],
    detections: Sequence[Sequence[Detection]],
    direction: TurnDirection,
    settings: LivenessSettings,
) -> Outcome:
    challenge = HeadTurnChallenge(direction, detector, settings)
    reached = False
    try:
        for frame, timestamp, faces in zip(frames, timestamps, detections, strict=True):
            state = challenge.observe(timestamp, frame, faces)
            reached = reached or state is not ChallengeState.WAITING_FRONTAL
            if state is ChallengeState.PASSED:
                break
        challenge.result()
        passed, check = True, None
    except LivenessFailed:
        passed, check = False, challenge.failed_check.value if challenge.failed_check else None
    peak = challenge.peak_parallax
    raw_passed, raw_peak = raw_rule(detections, direction, settings)
    return Outcome(passed, check, reached, peak, raw_passed, raw_peak)


WORKER: dict[str, Any] = {}


def init_worker(model_dir: str) -> None:
    WORKER["detector"] = load_pipeline(PipelineSettings(model_dir=Path(model_dir))).detector
    WORKER["scene"] = background(faces_root())


def attack_job(job: tuple[Still, str, int, float | None, LivenessSettings]) -> list[dict[str, Any]]:
    still, motion, seed, radius, settings = job
    detector: Detector = WORKER["detector"]
    frames, timestamps = attack_frames(still.texture, motion, WORKER["scene"], seed, radius)
    detections = detect_all(detector, frames)
    rows = []
    for direction in TurnDirection:
        outcome = run_challenge(detector, frames, timestamps, detections, direction, settings)
        species = "bent_print" if radius is not None else still.species
        rows.append(
            {"species": species, "still": still.name, "motion": motion, "direction": direction.value}
            | asdict(outcome)
        )
    return rows


# ----------------------------------------------------------------------------- report


def source_of(species: str, name: str) -> tuple[str, str]:
    """The source image behind a still: a screen shows an LFW print's image, every other still is one
    image of its own (named uniquely within its species)."""
    return ("print_lfw" if species == "screen" else species, name)


def rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def summary(values: Iterable[float | None]) -> dict[str, float] | None:
    array = np.array([v for v in values if v is not None], dtype=np.float64)
    if array.size == 0:
        return None
    return {
        "n": int(array.size),
        "min": float(array.min()),
        "median": float(np.median(array)),
        "p95": float(np.percentile(array, 95)),
        "max": float(array.max()),
    }


def tally(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    accepted = sum(r["passed"] for r in rows)
    checks: dict[str, int] = {}
    for row in rows:
        if not row["passed"]:
            checks[str(row["check"])] = checks.get(str(row["check"]), 0) + 1
    return {
        "presentations": len(rows),
        "accepted": accepted,
        "apcer": rate(accepted, len(rows)),
        "reached_turning": sum(r["reached_turning"] for r in rows),
        "raw_accepted": sum(r["raw_passed"] for r in rows),
        "raw_apcer": rate(sum(r["raw_passed"] for r in rows), len(rows)),
        "peak_parallax": summary(r["peak_parallax"] for r in rows),
        "raw_peak_parallax": summary(r["raw_peak_parallax"] for r in rows),
        "failed_checks": checks,
    }


def evaluate(root: Path, model_dir: Path, stills_per_species: int, workers: int) -> dict[str, Any]:
    started = time.perf_counter()
    settings = LivenessSettings()
    detector = load_pipeline(PipelineSettings(model_dir=model_dir)).detector
    clips = {v: read_video(root / v) for v in {t.video for t in LIVE_TURNS} | {STILL_LIVE[0], HEAD_TILTS[0]}}

    bona_fide: list[dict[str, Any]] = []
    wrong_way: list[dict[str, Any]] = []
    for turn in LIVE_TURNS:
        for mirrored in (False, True):
            for augment in AUGMENTS:
                frames, timestamps, direction = live_frames(turn, clips, mirrored, augment)
                detections = detect_all(detector, frames)
                label = {"turn": turn.name, "mirrored": mirrored, "augment": augment}
                outcome = run_challenge(detector, frames, timestamps, detections, direction, settings)
                bona_fide.append(label | {"direction": direction.value} | asdict(outcome))
                other = run_challenge(detector, frames, timestamps, detections, direction.opposite, settings)
                wrong_way.append(label | {"direction": direction.opposite.value} | asdict(other))

    def live_sequence(video: str, indices: tuple[int, ...], name: str) -> list[dict[str, Any]]:
        frames_all, fps = clips[video]
        rows = []
        for mirrored in (False, True):
            frames = [frames_all[i][:, ::-1].copy() if mirrored else frames_all[i] for i in indices]
            timestamps = [k / fps for k in range(len(frames))]
            detections = detect_all(detector, frames)
            for direction in TurnDirection:
                outcome = run_challenge(detector, frames, timestamps, detections, direction, settings)
                rows.append(
                    {"sequence": name, "mirrored": mirrored, "direction": direction.value} | asdict(outcome)
                )
        return rows

    still_live = live_sequence(*STILL_LIVE, "male_still")
    head_tilts = live_sequence(*HEAD_TILTS, "female_and_male_tilts")

    stills, screened = collect_stills(root, detector, stills_per_species, settings.frontal_max)
    jobs: list[tuple[Still, str, int, float | None, LivenessSettings]] = []
    for index, still in enumerate(stills):
        for motion in MOTIONS:
            jobs.append((still, motion, index * 101 + len(jobs), None, settings))
        if still.species == "print_lfw":
            for motion in BENT_MOTIONS:
                jobs.append((still, motion, index * 101 + len(jobs), BENT_RADIUS, settings))
    with ProcessPoolExecutor(
        max_workers=workers, initializer=init_worker, initargs=(str(model_dir),)
    ) as pool:
        attack_rows = [row for rows in pool.map(attack_job, jobs, chunksize=4) for row in rows]

    species = sorted({r["species"] for r in attack_rows if r["species"] != "bent_print"})
    per_species = {s: tally([r for r in attack_rows if r["species"] == s]) for s in species}
    planar = [r for r in attack_rows if r["species"] != "bent_print"]
    per_motion = {m: tally([r for r in planar if r["motion"] == m]) for m in MOTIONS}
    rejected = sum(not r["passed"] for r in bona_fide)
    # The worst species: the highest APCER, then (all at 0) the one that came nearest the threshold.
    worst = max(
        per_species,
        key=lambda s: (
            per_species[s]["apcer"] or 0.0,
            (per_species[s]["peak_parallax"] or {}).get("max", 0.0),
        ),
    )
    return {
        "benchmark": "liveness",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "versions": {"opencv": cv2.__version__, "numpy": np.__version__},
        "settings": asdict(settings),
        "scene": {
            "size": list(SCENE_SIZE),
            "focal_px": FOCAL_PX,
            "attack_fps": ATTACK_FPS,
            "frames": {"still": HOLD_START, "moving": MOVE, "held": HOLD_END},
            "camera": "noise sigma 2, JPEG 75 on every attack frame",
            "bent_radius_texture_px": BENT_RADIUS,
        },
        "bona_fide": {
            "distinct_turns": len(LIVE_TURNS),
            "people": 2,
            "rejected_per_turn": Rate(
                len({r["turn"] for r in bona_fide if not r["passed"]}),
                len(LIVE_TURNS),
                "distinct turns (any window of it rejected)",
            ).as_dict(),
            "turns": [
                asdict(t) | {"direction": t.direction.value, "frames": [t.frames[0], t.frames[-1]]}
                for t in LIVE_TURNS
            ],
            "excluded": list(EXCLUDED_TURNS),
            "windows": len(bona_fide),
            "rejected": rejected,
            "bpcer": rate(rejected, len(bona_fide)),
            "raw_rejected": sum(not r["raw_passed"] for r in bona_fide),
            "peak_parallax": summary(r["peak_parallax"] for r in bona_fide),
            "by_window": bona_fide,
        },
        "tuning_set": "safepassage.camera_edge.liveness.LivenessSettings was set on these presentations:"
        " the rates below are measured on the tuning set (see liveness_heldout.py for presentations it"
        " never saw)",
        "attacks": {
            "stills": {s: sum(st.species == s for st in stills) for s in species},
            # Screens reuse the LFW prints' images: the independent unit is the source image.
            "distinct_source_images": len({source_of(st.species, st.name) for st in stills}),
            "accepted_per_source_image": Rate(
                len({source_of(r["species"], r["still"]) for r in planar if r["passed"]}),
                len({source_of(st.species, st.name) for st in stills}),
                "source images (any presentation of it accepted)",
            ).as_dict(),
            "screened_out_not_frontal": screened,
            "motions": list(MOTIONS),
            "per_species": per_species,
            "worst_species": worst,
            "apcer_worst_species": per_species[worst]["apcer"],
            "all_planar": tally(planar),
            "per_motion": per_motion,
        },
        "outside_the_planar_claim": {
            "bent_print": tally([r for r in attack_rows if r["species"] == "bent_print"]),
        },
        "functional": {
            "bona_fide_asked_the_other_way": tally(wrong_way),
            "still_live_face": tally(still_live),
            "head_tilts": tally(head_tilts),
        },
        "not_covered": [
            "video replay of the person turning: passes whenever the recorded side matches the prompt"
            " (random side: one chance in two per attempt)",
            "3-D masks, head models, and a screen playing a turn",
            "physical prints and screens: moire, glare and paper are simulated, not captured",
            "bona fide: 4 turns by 2 people; the augmented windows are not independent",
        ],
        "wall_s": time.perf_counter() - started,
    }


def print_table(report: dict[str, Any]) -> None:
    def fmt(value: float | None) -> str:
        return "   -  " if value is None else f"{100 * value:5.1f}%"

    bona = report["bona_fide"]
    print(
        f"\nBona fide: {bona['windows']} windows, {bona['distinct_turns']} turns of {bona['people']} people"
    )
    print(
        f"  BPCER {fmt(bona['bpcer'])}  ({bona['rejected']}/{bona['windows']} rejected;"
        f" raw points: {bona['raw_rejected']}/{bona['windows']})"
    )
    print(
        f"\n{'attack species':<26}{'n':>5}{'accepted':>10}{'APCER':>9}{'raw APCER':>11}"
        f"{'peak p95':>10}{'max':>7}"
    )
    rows = dict(report["attacks"]["per_species"])
    rows["all planar"] = report["attacks"]["all_planar"]
    rows["bent_print (non-planar)"] = report["outside_the_planar_claim"]["bent_print"]
    for name, t in rows.items():
        peak = t["peak_parallax"] or {"p95": math.nan, "max": math.nan}
        print(
            f"{name:<26}{t['presentations']:>5}{t['accepted']:>10}{fmt(t['apcer']):>9}{fmt(t['raw_apcer']):>11}"
            f"{peak['p95']:>10.2f}{peak['max']:>7.2f}"
        )
    print(
        f"  worst species: {report['attacks']['worst_species']}"
        f" (APCER {fmt(report['attacks']['apcer_worst_species'])})"
    )
    print(f"\n{'motion':<26}{'n':>5}{'accepted':>10}{'raw acc.':>10}")
    for name, t in report["attacks"]["per_motion"].items():
        print(f"{name:<26}{t['presentations']:>5}{t['accepted']:>10}{t['raw_accepted']:>10}")
    print("\nFunctional (live, must not pass):")
    for name, t in report["functional"].items():
        print(f"  {name:<32} {t['accepted']}/{t['presentations']} passed; {t['failed_checks']}")
    print("\nNot covered:", *report["not_covered"], sep="\n  - ")
    print(f"\n{report['wall_s']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stills", type=int, default=24, help="stills per species (at most; default 24)")
    parser.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)))
    parser.add_argument("--model-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    report = evaluate(faces_root(), args.model_dir, args.stills, args.workers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
