"""Model manifests, weights verification, error categories, and what importing loads."""

from __future__ import annotations

import dataclasses
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from safepassage import face as faces
from safepassage.core import errors as core
from safepassage.face import (
    DLIB_FIVE_POINT_LANDMARKS,
    DLIB_RESNET_V1,
    DlibEmbedder,
    EmbeddingModel,
    FacesError,
    Metric,
    ModelFileMissing,
    ModelHashMismatch,
    ModelPackError,
    file_sha256,
    verify_weights,
)
from safepassage.face.dlib_embedder import _installed_models_dir

CATEGORIES = (
    core.InvalidInput,
    core.NotFound,
    core.AlreadyExists,
    core.TooLarge,
    core.FailedPrecondition,
    core.Unavailable,
    core.DataIntegrityError,
)


@pytest.fixture(scope="module")
def models_dir() -> Path:
    return _installed_models_dir()


def test_dlib_manifest() -> None:
    assert DLIB_RESNET_V1.name == "dlib-resnet-v1"
    assert DLIB_RESNET_V1.dimension == 128
    assert DLIB_RESNET_V1.metric is Metric.L2 is Metric("l2")
    assert DLIB_RESNET_V1.default_threshold == 0.6
    assert DLIB_RESNET_V1.licence == DLIB_FIVE_POINT_LANDMARKS.licence == "CC0-1.0"
    with pytest.raises(dataclasses.FrozenInstanceError):
        DLIB_RESNET_V1.dimension = 512  # type: ignore[misc]


def test_manifest_rejects_a_malformed_digest() -> None:
    with pytest.raises(ValueError, match="64 lower-case hex"):
        dataclasses.replace(DLIB_RESNET_V1, sha256="ABC")


def test_installed_weights_match_the_pinned_digests(models_dir: Path) -> None:
    assert file_sha256(models_dir / DLIB_RESNET_V1.filename) == DLIB_RESNET_V1.sha256
    verify_weights(models_dir / DLIB_RESNET_V1.filename, DLIB_RESNET_V1)
    verify_weights(models_dir / DLIB_FIVE_POINT_LANDMARKS.filename, DLIB_FIVE_POINT_LANDMARKS)


def copy_models(models_dir: Path, target: Path) -> Path:
    for weights in (DLIB_RESNET_V1, DLIB_FIVE_POINT_LANDMARKS):
        shutil.copyfile(models_dir / weights.filename, target / weights.filename)
    return target


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("weights", [DLIB_RESNET_V1, DLIB_FIVE_POINT_LANDMARKS], ids=["resnet", "landmarks"])
def test_tampered_weights_are_refused(
    models_dir: Path, tmp_path: Path, weights: EmbeddingModel | faces.WeightsFile
) -> None:
    copy_models(models_dir, tmp_path)
    flip_one_byte(tmp_path / weights.filename)
    with pytest.raises(ModelHashMismatch, match=f"the manifest for {weights.filename} pins {weights.sha256}"):
        verify_weights(tmp_path / weights.filename, weights)
    with pytest.raises(ModelHashMismatch):
        DlibEmbedder(models_dir=tmp_path)


def test_missing_weights_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelFileMissing, match=f"{DLIB_RESNET_V1.filename} not found at"):
        DlibEmbedder(models_dir=tmp_path)


def test_embedder_loads_from_a_models_dir(models_dir: Path, tmp_path: Path) -> None:
    embedder = DlibEmbedder(models_dir=copy_models(models_dir, tmp_path))
    assert embedder.model is DLIB_RESNET_V1


def test_importing_loads_nothing_and_the_embedder_leaves_pillow_strict() -> None:
    # In a fresh interpreter: importing faces must not load dlib; building the
    # embedder must not import face_recognition (which makes Pillow accept
    # truncated images process-wide) nor pkg_resources.
    script = (
        "import sys\n"
        "from safepassage import face as faces\n"
        "assert 'dlib' not in sys.modules and 'face_recognition_models' not in sys.modules\n"
        "faces.DlibEmbedder()\n"
        "from PIL import ImageFile\n"
        "assert not ImageFile.LOAD_TRUNCATED_IMAGES\n"
        "assert 'face_recognition' not in sys.modules and 'pkg_resources' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_every_error_has_exactly_one_category() -> None:
    roots = (FacesError, ModelPackError)
    classes = [
        value
        for value in vars(faces.errors).values()
        if inspect.isclass(value) and issubclass(value, roots) and value not in roots
    ]
    assert len(classes) == 10
    for error in classes:
        assert sum(issubclass(error, category) for category in CATEGORIES) == 1, error
        assert error.__name__ in faces.__all__


def test_error_categories() -> None:
    assert issubclass(faces.ImageDecodeError, core.InvalidInput)
    assert issubclass(faces.ImageTooLarge, core.TooLarge)
    assert issubclass(faces.NoFaceFound, core.FailedPrecondition)
    assert issubclass(faces.MultipleFacesFound, core.FailedPrecondition)
    assert issubclass(faces.PipelineInputError, core.InvalidInput)
    assert issubclass(faces.ManifestError, core.InvalidInput)
    assert issubclass(faces.ModelFileMissing, core.FailedPrecondition)
    assert issubclass(faces.ModelHashMismatch, core.DataIntegrityError)
    assert issubclass(faces.ModelShapeMismatch, core.InvalidInput)
    # A broken install is not an unreadable image: callers that skip the one must not skip the other.
    assert not issubclass(ModelPackError, FacesError)
