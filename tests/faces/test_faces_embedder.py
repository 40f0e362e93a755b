"""DlibEmbedder on real photos: embeddings, face selection, large images, threads."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from safepassage.face import (
    DLIB_RESNET_V1,
    DetectedFace,
    DlibEmbedder,
    FaceBox,
    FaceSelection,
    MultipleFacesFound,
    NoFaceFound,
)
from tests.faces.helpers import distance, embed_largest, pixels

THRESHOLD = DLIB_RESNET_V1.default_threshold
# Two LFW photos each of six people, all well inside the threshold with this
# model; the pipeline is being tested here, not the model's error rates.
GENUINE = {
    name: (f"lfw/{name}/{name}_0001.jpg", f"lfw/{name}/{name}_0002.jpg")
    for name in (
        "Salma_Hayek",
        "Mohammad_Khatami",
        "Walter_Mondale",
        "Jose_Serra",
        "Lucy_Liu",
        "Sandra_Bullock",
    )
}
OBAMA_AND_BIDEN = "group/face_recognition/obama_and_biden.jpg"  # 2000x1428
KIT_WITH_ROSE = "group/face_recognition/kit_with_rose.jpg"  # 501x700, exactly 2 faces
DOGS = "group/dlib/dogs.jpg"  # dog faces only
OBAMA = "face_recognition/obama/obama.jpg"  # 910x1137
BIDEN = "face_recognition/biden/biden2.jpg"  # 1200x1200
ROSE = "face_recognition/rose_leslie/img1.jpg"
KIT = "face_recognition/kit_harington/john1.jpeg"


@pytest.fixture(scope="module")
def lfw_faces(embedder: DlibEmbedder, faces_dir: Path) -> dict[str, tuple[DetectedFace, DetectedFace]]:
    return {
        name: (embed_largest(embedder, faces_dir, first), embed_largest(embedder, faces_dir, second))
        for name, (first, second) in GENUINE.items()
    }


def inside(box: FaceBox, image: np.ndarray) -> bool:
    height, width = image.shape[:2]
    return bool(0 <= box.left < box.right <= width and 0 <= box.top < box.bottom <= height)


def test_embedding_is_finite_float32_of_model_dimension(
    lfw_faces: dict[str, tuple[DetectedFace, DetectedFace]],
) -> None:
    face = lfw_faces["Salma_Hayek"][0]
    assert face.embedding.shape == (DLIB_RESNET_V1.dimension,) == (128,)
    assert face.embedding.dtype == np.float32
    assert np.isfinite(face.embedding).all()
    assert not face.embedding.flags.writeable
    assert 60 < face.box.width < 200 and 60 < face.box.height < 200  # LFW faces are ~100-120 px


@pytest.mark.parametrize("name", GENUINE)
def test_same_person_is_within_threshold(
    lfw_faces: dict[str, tuple[DetectedFace, DetectedFace]], name: str
) -> None:
    first, second = lfw_faces[name]
    assert distance(first, second) < THRESHOLD


def test_different_people_are_beyond_threshold(
    lfw_faces: dict[str, tuple[DetectedFace, DetectedFace]],
) -> None:
    for a, b in itertools.combinations(GENUINE, 2):
        assert distance(lfw_faces[a][0], lfw_faces[b][0]) > THRESHOLD, (a, b)


def test_embedding_is_deterministic(embedder: DlibEmbedder, faces_dir: Path) -> None:
    image = pixels(faces_dir, GENUINE["Lucy_Liu"][0])
    [first] = embedder.embed(image, FaceSelection.SINGLE)
    [again] = embedder.embed(image, FaceSelection.SINGLE)
    assert first.box == again.box
    assert np.array_equal(first.embedding, again.embedding)


# --- selection ---------------------------------------------------------------


def test_single_refuses_two_faces(embedder: DlibEmbedder, faces_dir: Path) -> None:
    with pytest.raises(MultipleFacesFound, match="found 2 faces in the image; exactly one is required"):
        embedder.embed(pixels(faces_dir, KIT_WITH_ROSE), FaceSelection.SINGLE)


def test_all_returns_faces_left_to_right(embedder: DlibEmbedder, faces_dir: Path) -> None:
    image = pixels(faces_dir, KIT_WITH_ROSE)
    rose, kit = embedder.embed(image, FaceSelection.ALL)
    assert rose.box.left < kit.box.left
    assert inside(rose.box, image) and inside(kit.box, image)
    # The filename says Kit Harington and Rose Leslie; check they are who the order says.
    assert distance(rose, embed_largest(embedder, faces_dir, ROSE)) < THRESHOLD
    assert distance(kit, embed_largest(embedder, faces_dir, KIT)) < THRESHOLD


def test_largest_returns_the_larger_face(embedder: DlibEmbedder, faces_dir: Path) -> None:
    image = pixels(faces_dir, KIT_WITH_ROSE)
    every = embedder.embed(image, FaceSelection.ALL)
    [largest] = embedder.embed(image, FaceSelection.LARGEST)
    assert largest.box == max((face.box for face in every), key=lambda box: box.area)
    assert np.array_equal(largest.embedding, every[1].embedding)


def test_group_photo_of_obama_and_biden(embedder: DlibEmbedder, faces_dir: Path) -> None:
    # Named for two people, the photo shows three faces: the third is a child
    # at the lower right, looking down, which HOG rightly finds.
    image = pixels(faces_dir, OBAMA_AND_BIDEN)
    with pytest.raises(MultipleFacesFound, match="found 3 faces"):
        embedder.embed(image, FaceSelection.SINGLE)
    every = embedder.embed(image, FaceSelection.ALL)
    assert len(every) == 3
    assert [face.box.left for face in every] == sorted(face.box.left for face in every)
    assert all(inside(face.box, image) for face in every)
    biden, obama, child = every
    assert distance(biden, embed_largest(embedder, faces_dir, BIDEN)) < THRESHOLD
    assert distance(obama, embed_largest(embedder, faces_dir, OBAMA)) < THRESHOLD
    assert distance(child, biden) > THRESHOLD and distance(child, obama) > THRESHOLD
    [largest] = embedder.embed(image, FaceSelection.LARGEST)
    assert largest.box in (biden.box, obama.box)


def test_no_human_face(embedder: DlibEmbedder, faces_dir: Path) -> None:
    image = pixels(faces_dir, DOGS)
    with pytest.raises(NoFaceFound, match="no face was found"):
        embedder.embed(image, FaceSelection.SINGLE)
    with pytest.raises(NoFaceFound):
        embedder.embed(image, FaceSelection.LARGEST)
    assert embedder.embed(image, FaceSelection.ALL) == []


def test_rgba_png_has_one_face(embedder: DlibEmbedder, faces_dir: Path) -> None:
    [face] = embedder.embed(pixels(faces_dir, "group/face_recognition/32bit.png"), FaceSelection.SINGLE)
    assert face.box.width > 200


# --- large images: detection on a downscaled copy, boxes in full resolution ---


def test_large_image_matches_the_same_photo_in_lower_resolution(
    embedder: DlibEmbedder, faces_dir: Path
) -> None:
    image = pixels(faces_dir, "face_recognition/obama/obama-1080p.jpg")  # 1920x1080: downscaled for detection
    [large] = embedder.embed(image, FaceSelection.SINGLE)
    assert inside(large.box, image)
    assert 200 < large.box.width < 330  # full-resolution pixels, not the detector's
    reference = embed_largest(embedder, faces_dir, OBAMA)  # same photo, 910x1137
    assert distance(large, reference) < 0.35


def test_large_portrait_matches_another_photo(embedder: DlibEmbedder, faces_dir: Path) -> None:
    image = pixels(faces_dir, "face_recognition/biden/biden.jpg")  # 970x2204
    [large] = embedder.embed(image, FaceSelection.SINGLE)
    assert inside(large.box, image) and large.box.width > 250
    assert distance(large, embed_largest(embedder, faces_dir, BIDEN)) < THRESHOLD


def test_small_face_in_small_image_is_found(embedder: DlibEmbedder, faces_dir: Path) -> None:
    # 427x240 letterboxed copy: the face is ~65 px, found only with upsampling.
    [face] = embedder.embed(pixels(faces_dir, "face_recognition/obama/obama-240p.jpg"), FaceSelection.SINGLE)
    assert face.box.width < 80
    reference = embed_largest(embedder, faces_dir, OBAMA)
    assert distance(face, reference) < THRESHOLD


# --- contract ---------------------------------------------------------------


def test_concurrent_calls_agree(embedder: DlibEmbedder, faces_dir: Path) -> None:
    images = [pixels(faces_dir, path) for pair in list(GENUINE.values())[:2] for path in pair]
    expected = [embedder.embed(image, FaceSelection.SINGLE)[0].embedding for image in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda image: embedder.embed(image, FaceSelection.SINGLE), images * 2))
    for index, [face] in enumerate(results):
        assert np.array_equal(face.embedding, expected[index % len(images)])


def test_model_is_the_dlib_manifest(embedder: DlibEmbedder) -> None:
    assert embedder.model is DLIB_RESNET_V1


@pytest.mark.parametrize(
    "array",
    [np.zeros((50, 50), np.uint8), np.zeros((50, 50, 4), np.uint8), np.zeros((50, 50, 3), np.float32)],
    ids=["gray", "rgba", "float"],
)
def test_refuses_arrays_that_are_not_rgb_uint8(embedder: DlibEmbedder, array: np.ndarray) -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        embedder.embed(array, FaceSelection.ALL)


def test_detection_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="upsample_max_side"):
        DlibEmbedder(upsample_max_side=2000, detect_max_side=1600)
