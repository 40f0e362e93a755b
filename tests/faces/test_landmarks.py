"""The numpy shape predictor against dlib's on dlib's own detector boxes, real photos; refusals."""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np
import numpy.typing as npt
import pytest

from safepassage.face.errors import ModelFileMissing, ModelShapeMismatch, PipelineInputError
from safepassage.face.landmarks import ShapePredictorLandmarker

logger = logging.getLogger(__name__)

LFW_STEP = 60  # every 60th LFW image: 30 faces
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Photo:
    name: str
    image: npt.NDArray[np.uint8]
    boxes: list[Box]


@pytest.fixture(scope="module")
def landmarker(npz_path: Path) -> ShapePredictorLandmarker:
    return ShapePredictorLandmarker(npz_path)


@pytest.fixture(scope="module")
def reference(dat_path: Path) -> dlib.shape_predictor:
    return dlib.shape_predictor(str(dat_path))


@pytest.fixture(scope="module")
def photos(faces_dir: Path) -> list[Photo]:
    """LFW, face_recognition and group photos with dlib's HOG boxes (what the model was trained on)."""
    lfw = sorted((faces_dir / "lfw").glob("*/*.jpg"))[::LFW_STEP]
    others = sorted(p for p in (faces_dir / "face_recognition").glob("*/*") if p.is_file())
    groups = sorted(p for p in (faces_dir / "group").glob("*/*") if p.suffix in (".jpg", ".png"))
    detector = dlib.get_frontal_face_detector()
    found = []
    for path in lfw + others + groups:
        image = load_rgb(path)
        upsample = 1 if max(image.shape[:2]) <= 800 else 0
        boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in detector(image, upsample)]
        if boxes:
            found.append(Photo(str(path.relative_to(faces_dir)), image, boxes))
    assert sum(len(p.boxes) for p in found) >= 50
    return found


def load_rgb(path: Path) -> npt.NDArray[np.uint8]:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def dlib_points(
    predictor: dlib.shape_predictor, image: npt.NDArray[np.uint8], boxes: Sequence[Box]
) -> npt.NDArray[np.float64]:
    shapes = [predictor(image, dlib.rectangle(*box)) for box in boxes]
    return np.array([[(p.x, p.y) for p in shape.parts()] for shape in shapes], dtype=np.float64)


def test_matches_dlib_on_real_faces(
    landmarker: ShapePredictorLandmarker, reference: dlib.shape_predictor, photos: list[Photo]
) -> None:
    deviations = []
    for photo in photos:
        ours = landmarker.landmarks(photo.image, photo.boxes)
        assert ours.shape == (len(photo.boxes), 5, 2) and ours.dtype == np.float32
        theirs = dlib_points(reference, photo.image, photo.boxes)
        per_face = np.abs(ours - theirs).max(axis=(1, 2))
        deviations.extend(per_face.tolist())
        assert per_face.max() <= 1, f"{photo.name}: {per_face.max()} px from dlib"
    logger.info(
        "landmarks vs dlib: %d faces in %d photos, max %.2f px, mean of per-face max %.4f px",
        len(deviations), len(photos), max(deviations), float(np.mean(deviations)),
    )  # fmt: skip
    assert float(np.mean(deviations)) < 0.05


def test_batches_equal_single_faces(landmarker: ShapePredictorLandmarker, photos: list[Photo]) -> None:
    crowd = max(photos, key=lambda p: len(p.boxes))
    assert len(crowd.boxes) > 5
    together = landmarker.landmarks(crowd.image, crowd.boxes)
    alone = np.concatenate([landmarker.landmarks(crowd.image, [box]) for box in crowd.boxes])
    np.testing.assert_array_equal(together, alone)


def test_odd_boxes_and_grey_images_match_dlib(
    landmarker: ShapePredictorLandmarker, reference: dlib.shape_predictor, faces_dir: Path
) -> None:
    """Boxes half outside the image, tiny, huge or one pixel wide: dlib reads 0 off the image."""
    image = load_rgb(faces_dir / "group" / "dlib" / "bald_guys.jpg")
    height, width = image.shape[:2]
    rng = np.random.default_rng(7)
    boxes: list[Box] = [(0, 0, 0, 0), (width - 1, height - 1, width - 1, height - 1), (-50, -50, 10, 10)]
    for _ in range(40):
        side = int(np.exp(rng.uniform(0, np.log(3000))))
        left, top = int(rng.uniform(-side, width)), int(rng.uniform(-side, height))
        boxes.append((left, top, left + side, top + int(side * rng.uniform(0.8, 1.2))))
    for picture in (image, np.ascontiguousarray(image[:, :, 1])):
        ours = landmarker.landmarks(picture, boxes)
        np.testing.assert_allclose(ours, dlib_points(reference, picture, boxes), atol=1)


def test_subpixel_points_round_to_dlib_points(
    landmarker: ShapePredictorLandmarker, photos: list[Photo]
) -> None:
    photo = photos[0]
    rounded = landmarker.landmarks(photo.image, photo.boxes)
    fine = landmarker.landmarks(photo.image, photo.boxes, subpixel=True)
    assert not np.array_equal(fine, rounded)
    np.testing.assert_array_equal(np.floor(fine.astype(np.float64) + 0.5), rounded)


def test_no_boxes_no_points(landmarker: ShapePredictorLandmarker) -> None:
    points = landmarker.landmarks(np.zeros((10, 10, 3), np.uint8), [])
    assert points.shape == (0, 5, 2) and points.dtype == np.float32


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((10, 10, 3), np.float32),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 3, 1), np.uint8),
        np.zeros((0, 10, 3), np.uint8),
        [[0, 0, 0]],
    ],
    ids=["float", "rgba", "4d", "empty", "list"],
)
def test_malformed_images_refused(landmarker: ShapePredictorLandmarker, image: object) -> None:
    with pytest.raises(PipelineInputError):
        landmarker.landmarks(image, [(0, 0, 5, 5)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "box",
    [
        (0, 0, 5),
        (0, 0, 5, 5, 5),
        (0.0, 0, 5, 5),
        (True, 0, 5, 5),
        (5, 0, 4, 5),
        (0, 5, 5, 4),
        (0, 0, 1 << 40, 5),
        7,
    ],
    ids=["three", "five", "float", "bool", "right-before-left", "bottom-before-top", "huge", "scalar"],
)
def test_malformed_boxes_refused(landmarker: ShapePredictorLandmarker, box: object) -> None:
    with pytest.raises(PipelineInputError):
        landmarker.landmarks(np.zeros((10, 10, 3), np.uint8), [box])  # type: ignore[list-item]


def test_numpy_integer_boxes_accepted(landmarker: ShapePredictorLandmarker) -> None:
    box = tuple(np.array([1, 1, 8, 8], dtype=np.int64))
    assert landmarker.landmarks(np.zeros((10, 10, 3), np.uint8), [box]).shape == (1, 5, 2)


def test_missing_model_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileMissing):
        ShapePredictorLandmarker(tmp_path / "absent.npz")


def test_not_an_npz_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(ModelShapeMismatch):
        ShapePredictorLandmarker(path)


def _rewrite(source: Path, target: Path, change: dict[str, npt.NDArray[np.generic] | None]) -> Path:
    with np.load(source, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    for name, value in change.items():
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value
    np.savez(target, **arrays)
    assert zipfile.is_zipfile(target)
    return target


def test_inconsistent_models_refused(npz_path: Path, tmp_path: Path) -> None:
    with np.load(npz_path, allow_pickle=False) as archive:
        split = archive["split_idx1"]
        anchors = archive["anchor_idx"]
        leaves = archive["leaf_values"]
        thresh = archive["split_thresh"]
    bad_split = split.copy()
    bad_split[3, 7, 2] = 800
    bad_anchor = anchors.copy()
    bad_anchor[0, 0] = 5
    bad_thresh = thresh.copy()
    bad_thresh[0, 0, 0] = np.nan
    changes: list[dict[str, npt.NDArray[np.generic] | None]] = [
        {"deltas": None},
        {"split_idx1": bad_split},
        {"anchor_idx": bad_anchor},
        {"leaf_values": leaves[:, :, :8]},
        {"split_thresh": bad_thresh},
        {"split_idx2": split.astype(np.float32)},
        {"initial_shape": np.zeros((5, 3), np.float32)},
    ]
    for i, change in enumerate(changes):
        path = _rewrite(npz_path, tmp_path / f"bad{i}.npz", change)
        with pytest.raises(ModelShapeMismatch):
            ShapePredictorLandmarker(path)
