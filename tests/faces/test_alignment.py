"""Face chips: dlib_chip against dlib.get_face_chip on dlib's landmarks; arcface_chip; refusals."""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path

import cv2
import dlib
import numpy as np
import numpy.typing as npt
import pytest

from safepassage.face.alignment import ARCFACE_TEMPLATE, DLIB_TEMPLATE, arcface_chip, dlib_chip
from safepassage.face.errors import PipelineInputError

logger = logging.getLogger(__name__)

PREDICTOR = "shape_predictor_5_face_landmarks.dat"
LFW_STEP = 60  # every 60th LFW image: 30 faces
MAX_GREY_LEVELS = 2
Faces = list[tuple[str, npt.NDArray[np.uint8], dlib.full_object_detection]]


@pytest.fixture(scope="module")
def faces(faces_dir: Path) -> Faces:
    """dlib's 5 landmarks on dlib's HOG boxes: LFW, face_recognition (large portraits) and group photos."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        pytest.fail("face_recognition_models (the dlib weights) is not installed", pytrace=False)
    predictor = dlib.shape_predictor(str(Path(spec.origin).parent / "models" / PREDICTOR))
    detector = dlib.get_frontal_face_detector()
    lfw = sorted((faces_dir / "lfw").glob("*/*.jpg"))[::LFW_STEP]
    others = sorted(p for p in (faces_dir / "face_recognition").glob("*/*") if p.is_file())
    groups = sorted(p for p in (faces_dir / "group").glob("*/*") if p.suffix in (".jpg", ".png"))
    found = []
    for path in lfw + others + groups:
        image = load_rgb(path)
        upsample = 1 if max(image.shape[:2]) <= 800 else 0
        for box in detector(image, upsample):
            found.append((str(path.relative_to(faces_dir)), image, predictor(image, box)))
    assert len(found) >= 50
    return found


def load_rgb(path: Path) -> npt.NDArray[np.uint8]:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def points_of(shape: dlib.full_object_detection) -> npt.NDArray[np.float64]:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def grey_levels(ours: npt.NDArray[np.uint8], theirs: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    assert ours.shape == theirs.shape and ours.dtype == np.uint8
    return np.abs(ours.astype(np.int64) - theirs.astype(np.int64))


def test_dlib_chip_matches_dlib_on_real_faces(faces: Faces) -> None:
    worst, means, pyramid = 0, [], 0
    for name, image, shape in faces:
        theirs = dlib.get_face_chip(image, shape, size=150, padding=0.25)
        difference = grey_levels(dlib_chip(image, points_of(shape)), theirs)
        worst = max(worst, int(difference.max()))
        means.append(float(difference.mean()))
        assert difference.max() <= MAX_GREY_LEVELS, f"{name}: {difference.max()} grey levels from dlib"
        # dlib samples a downscaled image when the chip's source is over about twice the chip
        if dlib.get_face_chip_details(shape, 150, 0.25).rect.width() > 300:
            pyramid += 1
    logger.info(
        "dlib_chip vs dlib.get_face_chip: %d faces (%d through the pyramid), max %d, mean %.5f grey levels",
        len(faces), pyramid, worst, float(np.mean(means)),
    )  # fmt: skip
    assert pyramid >= 3  # obama.jpg, biden.jpg, obama3.jpg at least
    assert float(np.mean(means)) < 0.01


def test_dlib_chip_matches_dlib_under_any_similarity(faces_dir: Path) -> None:
    """Rotated, tiny to huge (up to 7 pyramid levels), off the image, other sizes and paddings."""
    image = load_rgb(faces_dir / "face_recognition" / "biden" / "biden.jpg")
    height, width = image.shape[:2]
    rng = np.random.default_rng(11)
    for trial in range(80):
        scale = math.exp(rng.uniform(math.log(20), math.log(3000)))
        angle = rng.uniform(-math.pi, math.pi)
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        centre = np.array([rng.uniform(-200, width + 200), rng.uniform(-200, height + 200)])
        points = (DLIB_TEMPLATE - 0.5) @ rotation.T * scale + centre + rng.normal(0, 0.02 * scale, (5, 2))
        points = np.round(points)
        padding = float(rng.choice([0.0, 0.2, 0.25, 0.5]))
        size = int(rng.choice([32, 100, 150, 151]))
        picture = (
            image if trial % 4 else np.ascontiguousarray(image[: rng.integers(5, 80), : rng.integers(5, 80)])
        )
        shape = dlib.full_object_detection(
            dlib.rectangle(0, 0, 1, 1), [dlib.point(int(x), int(y)) for x, y in points]
        )
        theirs = dlib.get_face_chip(picture, shape, size=size, padding=padding)
        difference = grey_levels(dlib_chip(picture, points, size=size, padding=padding), theirs)
        assert difference.max() <= MAX_GREY_LEVELS, (trial, scale, padding, size, picture.shape)


def _umeyama(source: npt.NDArray[np.float64], target: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Reference: Umeyama's similarity by SVD, as skimage's SimilarityTransform.estimate computes it."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    src, dst = source - source_mean, target - target_mean
    covariance = dst.T @ src / len(source)
    signs = np.ones(2)
    if np.linalg.det(covariance) < 0:
        signs[-1] = -1
    u, singular, vt = np.linalg.svd(covariance)
    rotation = u @ np.diag(signs) @ vt
    scale = (singular @ signs) / src.var(axis=0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = target_mean - scale * rotation @ source_mean
    return matrix


def test_arcface_chip_is_the_least_squares_similarity(faces_dir: Path) -> None:
    image = load_rgb(faces_dir / "group" / "skimage" / "astronaut.png")
    rng = np.random.default_rng(3)
    for size, template in (
        (112, ARCFACE_TEMPLATE),
        (224, ARCFACE_TEMPLATE * 2),
        (128, ARCFACE_TEMPLATE + np.array([8.0, 0.0])),
    ):
        for _ in range(10):
            angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.3, 3)
            rotation = scale * np.array(
                [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
            )
            points = (
                (ARCFACE_TEMPLATE - 56) @ rotation.T + rng.uniform(100, 400, 2) + rng.normal(0, 2, (5, 2))
            )
            matrix = _umeyama(points, template)
            expected = np.asarray(
                cv2.warpAffine(image, matrix, (size, size), borderValue=(0, 0, 0)), np.uint8
            )
            chip = arcface_chip(image, points, size=size)
            assert chip.shape == (size, size, 3) and chip.dtype == np.uint8
            assert grey_levels(chip, expected).max() <= 1


def test_arcface_chip_puts_the_points_on_the_template() -> None:
    """A picture of five dots, moved by a similarity, comes back with its dots on the template."""
    picture = np.zeros((400, 400, 3), np.uint8)
    angle, scale, shift = 0.4, 2.5, np.array([130.0, 90.0])
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    points = ARCFACE_TEMPLATE @ rotation.T + shift
    for x, y in points:
        cv2.circle(picture, (round(x), round(y)), 6, (255, 255, 255), -1)
    chip = arcface_chip(picture, points)
    for x, y in ARCFACE_TEMPLATE:
        assert chip[round(y), round(x)].min() > 200


GOOD_POINTS = (DLIB_TEMPLATE * 100 + 50).tolist()


@pytest.mark.parametrize("chip", [dlib_chip, arcface_chip], ids=["dlib", "arcface"])
@pytest.mark.parametrize(
    ("image", "points"),
    [
        (np.zeros((200, 200, 3), np.float32), GOOD_POINTS),
        (np.zeros((200, 200), np.uint8), GOOD_POINTS),
        (np.zeros((200, 200, 4), np.uint8), GOOD_POINTS),
        (np.zeros((0, 200, 3), np.uint8), GOOD_POINTS),
        ("pixels", GOOD_POINTS),
        (np.zeros((200, 200, 3), np.uint8), GOOD_POINTS[:4]),
        (np.zeros((200, 200, 3), np.uint8), [[math.nan, 1.0], *GOOD_POINTS[1:]]),
        (np.zeros((200, 200, 3), np.uint8), [[1e12, 1.0], *GOOD_POINTS[1:]]),
        (np.zeros((200, 200, 3), np.uint8), [[10.0, 10.0]] * 5),
        (np.zeros((200, 200, 3), np.uint8), [["a", "b"]] * 5),
    ],
    ids=["float", "grey", "rgba", "empty", "str", "four-points", "nan", "far", "one-point", "text"],
)
def test_malformed_inputs_refused(chip: object, image: object, points: object) -> None:
    with pytest.raises(PipelineInputError):
        chip(image, points)  # type: ignore[operator]


@pytest.mark.parametrize("size", [0, 1, -150, 150.0, True, 5000, "150"])
def test_bad_sizes_refused(size: object) -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    with pytest.raises(PipelineInputError):
        dlib_chip(image, np.array(GOOD_POINTS), size=size)  # type: ignore[arg-type]
    with pytest.raises(PipelineInputError):
        arcface_chip(image, np.array(GOOD_POINTS), size=size)  # type: ignore[arg-type]


@pytest.mark.parametrize("padding", [-0.1, math.nan, math.inf, 11.0, "0.25", None])
def test_bad_paddings_refused(padding: object) -> None:
    with pytest.raises(PipelineInputError):
        dlib_chip(np.zeros((200, 200, 3), np.uint8), np.array(GOOD_POINTS), padding=padding)  # type: ignore[arg-type]


def test_face_off_the_image_gives_a_black_chip() -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    chip = dlib_chip(image, np.array(GOOD_POINTS) + 10_000)
    assert chip.shape == (150, 150, 3) and not chip.any()


def test_landmarks_on_the_template_give_a_plain_crop() -> None:
    """No rotation, scale exactly 1: dlib copies the (rounded) rectangle instead of resampling."""
    image = np.random.default_rng(5).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    template = (0.25 + DLIB_TEMPLATE) / 1.5 * 150  # chip centre (75, 75): rectangle 0.5 .. 149.5
    np.testing.assert_array_equal(dlib_chip(image, template), image[1:151, 1:151])
