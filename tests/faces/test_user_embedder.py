"""A user-supplied ONNX embedder (ArcFace-style: 112x112, BGR, mean/std 127.5, cosine) runs
from its manifest alone; a model that disagrees with its manifest is refused by name."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from safepassage.face import ImageLimits, decode_image
from safepassage.face.chip_embedder import EmbedderSpec, OnnxChipEmbedder
from safepassage.face.errors import ModelFileMissing, ModelHashMismatch, ModelShapeMismatch
from safepassage.face.manifest import ModelEntry, ModelPack, ModelSource
from safepassage.face.model import file_sha256
from safepassage.face.pipeline import FacePipeline

DIM = 64
RNG = np.random.default_rng(12)
WEIGHTS = RNG.normal(size=(3, DIM)).astype(np.float32)


def tiny_arcface_like(path: Path, dim: int = DIM, size: int = 112) -> None:
    """Global average pool over a 112x112 NCHW input, then a 3 x dim projection."""
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["embedding"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        initializer=[numpy_helper.from_array(WEIGHTS[:, :dim].copy(), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def entry(path: Path, **overrides: object) -> ModelEntry:
    params = {
        "input_size": [112, 112],
        "channel_order": "BGR",
        "mean": [127.5] * 3,
        "std": [127.5] * 3,
        "layout": "NCHW",
        "output_dim": DIM,
        "metric": "cosine",
        "default_threshold": 0.3,
        "alignment": "arcface_112",
        "input_name": "input",
        "output_name": "embedding",
    }
    params.update(overrides)
    return ModelEntry(
        key="user-arcface",
        kind="embedder",
        name="user-arcface",
        version="1",
        file=path.name,
        sha256=file_sha256(path),
        licence="proprietary",
        source=ModelSource("user", "1", path.name),
        params=params,
    )


@pytest.fixture
def user_pack(tmp_path: Path, model_dir: Path) -> ModelPack:
    tiny_arcface_like(tmp_path / "user.onnx")
    shutil.copy(model_dir / "centerface.onnx", tmp_path / "centerface.onnx")
    base = ModelPack.load(model_dir)
    pack = ModelPack(
        tmp_path, {"user-arcface": entry(tmp_path / "user.onnx"), "centerface": base.entry("centerface")}
    )
    pack.save()
    return ModelPack.load(tmp_path)


def test_manifest_alone_drives_preprocessing(user_pack: ModelPack) -> None:
    spec = EmbedderSpec.from_entry(user_pack.entry("user-arcface"))
    embedder = OnnxChipEmbedder(user_pack.path_of("user-arcface"), spec)
    chips = RNG.integers(0, 256, size=(3, 112, 112, 3), dtype=np.uint8)
    got = embedder.embed(chips)
    bgr = chips[..., ::-1].astype(np.float64)
    expected = ((bgr - 127.5) / 127.5).mean(axis=(1, 2)) @ WEIGHTS
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_user_model_runs_in_the_pipeline_with_detector_points(user_pack: ModelPack, faces_dir: Path) -> None:
    from safepassage.face.detection import CenterFaceDetector

    detector = CenterFaceDetector(user_pack.path_of("centerface"))
    spec = EmbedderSpec.from_entry(user_pack.entry("user-arcface"))
    pipeline = FacePipeline(detector, OnnxChipEmbedder(user_pack.path_of("user-arcface"), spec))
    image = decode_image((faces_dir / "face_recognition" / "obama" / "obama.jpg").read_bytes(), ImageLimits())
    faces = pipeline.process(image)
    assert len(faces) == 1 and faces[0].embedding.shape == (DIM,) and faces[0].landmarks is None


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ({"output_dim": 32}, "output_dim 32"),
        ({"input_size": [150, 150]}, "input shape"),
        ({"input_name": "data"}, "input 'data'"),
        ({"layout": "NHWC"}, "input shape"),
    ],
)
def test_model_that_disagrees_with_its_manifest_is_refused(
    tmp_path: Path, override: dict[str, object], says: str
) -> None:
    path = tmp_path / "user.onnx"
    tiny_arcface_like(path)
    spec = EmbedderSpec.from_entry(entry(path, **override))
    with pytest.raises(ModelShapeMismatch, match=says) as info:
        OnnxChipEmbedder(path, spec)
    assert str(path) in str(info.value)


def test_wrong_hash_and_missing_file_are_refused_by_name(user_pack: ModelPack) -> None:
    path = user_pack.folder / "user.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelHashMismatch, match=r"user\.onnx"):
        user_pack.path_of("user-arcface")
    path.unlink()
    with pytest.raises(ModelFileMissing, match=r"user\.onnx"):
        user_pack.path_of("user-arcface")
