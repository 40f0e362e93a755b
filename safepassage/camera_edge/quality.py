"""How good a face shot is for matching: size, sharpness, pose, lighting and detector confidence.

Each factor is scored from 0 (useless) to 1 (good enough that more would not
help), and the overall score is their weighted geometric mean, so one bad
factor (a blurred or a turned face) sinks the shot however good the others
are; a sum would let a large, sharp profile outscore a small frontal face.
The factors follow what ISO/IEC 29794-5 measures for face image quality, in
the cheapest form an edge device can afford per detection:

- size: the face box's shorter side in pixels (the face recogniser's chip is
  150 px; under about 20 px there is too little detail); the box, not the eye
  distance, since a turned face keeps its size but not its eye distance;
- sharpness: the variance of the Laplacian of the face, grey, at a fixed size;
- pose: yaw and roll from the detector's five points (the nose's offset from
  the eyes' midpoint, the eye line's angle) and pitch from where the nose sits
  between the eyes and the mouth;
- lighting: the face's mean brightness and contrast;
- confidence: the detector's own score.

The tracker keeps each person's best shot by the overall score; the edge
sends nothing below the configured floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from safepassage.face.detection import Detection
from safepassage.face.errors import PipelineInputError

RgbImage = npt.NDArray[np.uint8]
_SHARPNESS_SIDE = 64  # faces are resampled to this size so sharpness compares across face sizes


@dataclass(frozen=True)
class QualitySettings:
    """Where each factor reaches 1 (or 0), and the weights of the overall score."""

    good_face_side: float = 80.0  # face box's shorter side, pixels, for a size score of 1
    min_face_side: float = 16.0  # and for 0
    good_sharpness: float = 150.0  # Laplacian variance at 64 px for a score of ~0.75
    max_yaw: float = 0.9  # nose offset / eye distance at which the pose score reaches 0
    max_roll_degrees: float = 45.0
    pitch_range: tuple[float, float] = (0.25, 0.8)  # nose height between eyes (0) and mouth (1)
    brightness_range: tuple[float, float] = (60.0, 200.0)  # mean grey level scoring 1 inside
    min_contrast: float = 20.0  # grey-level standard deviation for a full lighting score
    weights: tuple[float, float, float, float, float] = (1.0, 1.0, 1.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.good_face_side <= self.min_face_side or self.min_face_side < 0:
            raise PipelineInputError("quality: good_face_side must exceed min_face_side >= 0")
        if min(self.weights) < 0 or sum(self.weights) <= 0:
            raise PipelineInputError("quality: weights must be non-negative and not all zero")


@dataclass(frozen=True)
class FacePose:
    """Pose estimated from five points; 0 is frontal. Yaw and pitch are ratios, roll in degrees."""

    yaw: float  # nose offset from the eyes' midpoint, in eye distances (+: towards the image right)
    pitch: float  # nose height between the eye line (0) and the mouth line (1)
    roll_degrees: float
    eye_distance: float  # pixels


@dataclass(frozen=True)
class Quality:
    size: float
    sharpness: float
    pose: float
    lighting: float
    confidence: float
    overall: float
    face_pose: FacePose

    def passes(self, floor: float) -> bool:
        return self.overall >= floor


def estimate_pose(points: npt.NDArray[np.float32]) -> FacePose:
    """Yaw, pitch and roll from the detector's five points (eyes, nose tip, mouth corners)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (5, 2):
        raise PipelineInputError(f"five (x, y) points expected; got shape {pts.shape}")
    left_eye, right_eye, nose, mouth_left, mouth_right = pts
    eye_vector = right_eye - left_eye
    eye_distance = float(np.hypot(*eye_vector))
    if eye_distance < 1e-6:
        return FacePose(yaw=math.inf, pitch=math.inf, roll_degrees=0.0, eye_distance=0.0)
    roll = math.degrees(math.atan2(eye_vector[1], eye_vector[0]))
    # Undo the roll so yaw and pitch are measured along and across the face.
    cos_r, sin_r = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rotation = np.array([[cos_r, -sin_r], [sin_r, cos_r]])
    eye_mid = (left_eye + right_eye) / 2
    mouth_mid = (mouth_left + mouth_right) / 2
    nose_face = rotation @ (nose - eye_mid)
    mouth_face = rotation @ (mouth_mid - eye_mid)
    yaw = float(nose_face[0] / eye_distance)
    pitch = float(nose_face[1] / mouth_face[1]) if mouth_face[1] > 1e-6 else math.inf
    return FacePose(yaw=yaw, pitch=pitch, roll_degrees=roll, eye_distance=eye_distance)


def _ramp(value: float, zero_at: float, one_at: float) -> float:
    if one_at == zero_at:
        return 1.0 if value >= one_at else 0.0
    return float(min(1.0, max(0.0, (value - zero_at) / (one_at - zero_at))))


def _face_crop(frame: RgbImage, box: tuple[float, float, float, float]) -> npt.NDArray[np.uint8]:
    height, width = frame.shape[:2]
    left, top = max(0, int(box[0])), max(0, int(box[1]))
    right, bottom = min(width, math.ceil(box[2])), min(height, math.ceil(box[3]))
    if right - left < 2 or bottom - top < 2:
        return np.zeros((2, 2), dtype=np.uint8)
    grey = cv2.cvtColor(np.ascontiguousarray(frame[top:bottom, left:right]), cv2.COLOR_RGB2GRAY)
    return np.asarray(grey, dtype=np.uint8)


def sharpness_of(grey_face: npt.NDArray[np.uint8]) -> float:
    """Variance of the Laplacian of the face resampled to 64x64 (area averaging when shrinking)."""
    resized = cv2.resize(grey_face, (_SHARPNESS_SIDE, _SHARPNESS_SIDE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(resized, cv2.CV_64F).var())


def assess(frame: RgbImage, detection: Detection, settings: QualitySettings | None = None) -> Quality:
    """Score one detected face of an RGB frame."""
    settings = settings or QualitySettings()
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise PipelineInputError(f"frame must be uint8 HxWx3 RGB; got {frame.dtype} {frame.shape}")
    pose = estimate_pose(detection.points)
    box = detection.box
    side = min(box[2] - box[0], box[3] - box[1])
    size = _ramp(side, settings.min_face_side, settings.good_face_side)

    grey = _face_crop(frame, detection.box)
    laplacian = sharpness_of(grey)
    # Saturating: doubling an already sharp face's edges adds nothing for matching.
    sharpness = laplacian / (laplacian + settings.good_sharpness / 3)

    low, high = settings.pitch_range
    pitch_excess = max(0.0, low - pose.pitch, pose.pitch - high) if math.isfinite(pose.pitch) else 1.0
    pose_score = (
        _ramp(-abs(pose.yaw), -settings.max_yaw, 0.0)
        * _ramp(-abs(pose.roll_degrees), -settings.max_roll_degrees, 0.0)
        * _ramp(-pitch_excess, -0.4, 0.0)
    )

    mean, std = float(grey.mean()), float(grey.std())
    dark, bright = settings.brightness_range
    brightness = min(_ramp(mean, dark / 3, dark), _ramp(-mean, -(255 + bright) / 2, -bright))
    lighting = brightness * _ramp(std, 0.0, settings.min_contrast)

    confidence = float(min(1.0, max(0.0, detection.score)))
    factors = (size, sharpness, pose_score, lighting, confidence)
    overall = _weighted_geometric_mean(factors, settings.weights)
    return Quality(
        size=size,
        sharpness=sharpness,
        pose=pose_score,
        lighting=lighting,
        confidence=confidence,
        overall=overall,
        face_pose=pose,
    )


def _weighted_geometric_mean(factors: tuple[float, ...], weights: tuple[float, ...]) -> float:
    if min(factors) <= 0.0:
        return 0.0
    total = sum(weights)
    return float(math.exp(sum(w * math.log(f) for f, w in zip(factors, weights, strict=True)) / total))
