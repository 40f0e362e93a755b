"""The ONNX face pipeline beside face_recognition (dlib): parity, LFW verification, speed.

    uv run python benchmarks/pipeline_eval.py [--pairs 1180] [--out benchmarks/results/pipeline.json]

On the LFW pairs of ../shared/data/faces/lfw_protocol/pairs_folds1-2_subset.txt
(every pair whose images are present), both pipelines embed the face nearest
the image centre of each image, on one core:
- parity: L2 distance between the two descriptors of the same face;
- verification: accuracy at the 0.6 threshold, accuracy with the threshold
  chosen on the other fold (2-fold cross-validation, the evaluation harness's
  own `metrics.cross_validated_correct`), and the true-accept rate where no
  impostor pair is accepted (FAR 0 of 589: with no false accept seen, the
  rule of three bounds FAR below 0.51 %, not at 1/589); each with its count;
- speed: per-stage milliseconds of the ONNX pipeline (detect per image;
  landmarks, align, embed per face) and whole-image time of both.
A face not found counts as a rejected pair (distance = infinity).

This run embeds the face nearest the image centre, on both sides, so the two
pipelines see the same face; the service (and `safepassage evaluate`) embeds
the largest. The two choices differ on a few LFW images, so the accuracies
here and in benchmarks/results/evaluation/figures.json differ slightly.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, for both pipelines

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from safepassage.evaluation import metrics  # noqa: E402
from safepassage.face import ImageLimits, decode_image  # noqa: E402
from safepassage.face.pipeline import FacePipeline, PipelineSettings, load_pipeline  # noqa: E402

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Pair:
    fold: int
    first: Path
    second: Path
    genuine: bool


def faces_root() -> Path:
    return Path(os.environ.get("SAFEPASSAGE_FACES_DIR", REPO.parent / "shared" / "data" / "faces"))


def read_pairs(root: Path, limit: int | None) -> list[Pair]:
    pairs: list[Pair] = []
    lfw = root / "lfw"

    def image(name: str, number: str) -> Path:
        return lfw / name / f"{name}_{int(number):04d}.jpg"

    for line in (root / "lfw_protocol" / "pairs_folds1-2_subset.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            pair = Pair(int(parts[0]), image(parts[1], parts[2]), image(parts[1], parts[3]), True)
        elif len(parts) == 5:
            pair = Pair(int(parts[0]), image(parts[1], parts[2]), image(parts[3], parts[4]), False)
        else:
            continue
        if pair.first.exists() and pair.second.exists():
            pairs.append(pair)
    if limit is not None and limit < len(pairs):
        # An even spread over both folds and both kinds.
        step = len(pairs) / limit
        pairs = [pairs[int(i * step)] for i in range(limit)]
    return pairs


def nearest_centre(boxes: list[tuple[float, float, float, float]], width: int, height: int) -> int:
    centres = [((x0 + x1 - width) / 2) ** 2 + ((y0 + y1 - height) / 2) ** 2 for x0, y0, x1, y1 in boxes]
    return int(np.argmin(centres))


class OnnxSide:
    def __init__(self, pipeline: FacePipeline) -> None:
        self.pipeline = pipeline
        self.seconds = 0.0
        self.last_landmarks: npt.NDArray[np.float32] | None = None

    def embed(self, image: npt.NDArray[np.uint8]) -> Vector | None:
        started = time.perf_counter()
        detections = self.pipeline.detector.detect(image)
        self.pipeline.times.frames += 1
        self.pipeline.times.detect += time.perf_counter() - started
        result = None
        self.last_landmarks = None
        if detections:
            chosen = nearest_centre([d.box for d in detections], image.shape[1], image.shape[0])
            face = self.pipeline.embed_detections(image, [detections[chosen]])[0]
            result, self.last_landmarks = face.embedding, face.landmarks
        self.seconds += time.perf_counter() - started
        return result


class FaceRecognitionSide:
    def __init__(self) -> None:
        import face_recognition
        from PIL import ImageFile

        # face_recognition turns on truncated-image loading process-wide; undo it.
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        self.fr = face_recognition
        self.seconds = 0.0

    def embed(self, image: npt.NDArray[np.uint8]) -> Vector | None:
        started = time.perf_counter()
        locations = self.fr.face_locations(image, number_of_times_to_upsample=1)
        result = None
        if locations:
            boxes = [(float(x0), float(y0), float(x1), float(y1)) for y0, x1, y1, x0 in locations]
            chosen = nearest_centre(boxes, image.shape[1], image.shape[0])
            (encoding,) = self.fr.face_encodings(image, [locations[chosen]], model="small")
            result = np.asarray(encoding, np.float32)
        self.seconds += time.perf_counter() - started
        return result


def embed_same_chips(
    pipeline: FacePipeline, samples: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]]
) -> dict[str, float]:
    """Embedding stage alone, ONNX against dlib, on the very same aligned chips."""
    import dlib

    from safepassage.face.alignment import dlib_chip
    from safepassage.model_pack.build import dlib_models_dir

    chips = np.stack([dlib_chip(image, landmarks) for image, landmarks in samples])
    reference = dlib.face_recognition_model_v1(
        str(dlib_models_dir() / "dlib_face_recognition_resnet_model_v1.dat")
    )
    started = time.perf_counter()
    ours = np.concatenate([pipeline.embedder.embed(chip[None]) for chip in chips])
    onnx_s = time.perf_counter() - started
    started = time.perf_counter()
    batched = pipeline.embedder.embed(chips)
    onnx_batch_s = time.perf_counter() - started
    started = time.perf_counter()
    theirs = np.array([np.asarray(reference.compute_face_descriptor(chip)) for chip in chips], np.float32)
    dlib_s = time.perf_counter() - started
    return {
        "chips": len(chips),
        "onnx_ms_per_chip": 1000 * onnx_s / len(chips),
        "onnx_batched_ms_per_chip": 1000 * onnx_batch_s / len(chips),
        "dlib_ms_per_chip": 1000 * dlib_s / len(chips),
        "speedup": dlib_s / onnx_s,
        "max_abs_difference": float(np.abs(ours - theirs).max()),
        "batched_max_abs_difference": float(np.abs(batched - theirs).max()),
    }


def verification(
    distances: npt.NDArray[np.float64], genuine: npt.NDArray[np.bool_], folds: npt.NDArray[np.int64]
) -> dict[str, float]:
    # A face not found is a rejected pair: beyond every real distance, finite for the CV's thresholds.
    finite = distances[np.isfinite(distances)]
    scored = np.where(np.isfinite(distances), distances, (finite.max() if len(finite) else 0.0) + 1.0)
    correct_cv, _ = metrics.cross_validated_correct(scored, genuine, folds, higher_is_closer=False)
    impostor = np.sort(distances[~genuine])
    strictest = impostor[0]  # accept nothing below the closest impostor: FAR = 0 on these pairs
    correct_at_06 = int(np.count_nonzero((distances <= 0.6) == genuine))
    accepted_at_far_0 = int(np.count_nonzero(distances[genuine] < strictest))
    return {
        "pairs": len(distances),
        "genuine_pairs": int(genuine.sum()),
        "impostor_pairs": int((~genuine).sum()),
        "correct_at_0.6": correct_at_06,
        "accuracy_at_0.6": correct_at_06 / len(distances),
        "correct_2fold_cv": correct_cv,
        "accuracy_2fold_cv": correct_cv / len(distances),
        "genuine_accepted_at_far_0": accepted_at_far_0,
        "tar_at_far_0": accepted_at_far_0 / max(int(genuine.sum()), 1),
        "false_accepts_at_0.6": int(np.count_nonzero(impostor <= 0.6)),
        "far_at_0.6": float((impostor <= 0.6).mean()),
        "genuine_accepted_at_0.6": int(np.count_nonzero(distances[genuine] <= 0.6)),
        "tar_at_0.6": float((distances[genuine] <= 0.6).mean()),
    }


def run(pairs_limit: int | None, model_dir: Path) -> dict[str, object]:
    root = faces_root()
    pairs = read_pairs(root, pairs_limit)
    images = sorted({p.first for p in pairs} | {p.second for p in pairs})
    onnx_side = OnnxSide(load_pipeline(PipelineSettings(model_dir=model_dir)))
    fr_side = FaceRecognitionSide()
    limits = ImageLimits()
    ours: dict[Path, Vector | None] = {}
    theirs: dict[Path, Vector | None] = {}
    samples: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]] = []
    for path in images:
        pixels = decode_image(path.read_bytes(), limits)
        ours[path] = onnx_side.embed(pixels)
        theirs[path] = fr_side.embed(pixels)
        if onnx_side.last_landmarks is not None and len(samples) < 64:
            samples.append((pixels, onnx_side.last_landmarks))

    parity = np.array(
        [
            float(np.linalg.norm(mine - other))
            for p in images
            if (mine := ours[p]) is not None and (other := theirs[p]) is not None
        ]
    )

    def distances(table: dict[Path, Vector | None]) -> npt.NDArray[np.float64]:
        out = []
        for pair in pairs:
            a, b = table[pair.first], table[pair.second]
            out.append(np.inf if a is None or b is None else float(np.linalg.norm(a - b)))
        return np.array(out)

    genuine = np.array([p.genuine for p in pairs])
    folds = np.array([p.fold for p in pairs])
    times = onnx_side.pipeline.times
    stage_ms = times.per_face_ms()
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "threads": 1},
        "images": len(images),
        "faces_not_found": {
            "onnx": sum(v is None for v in ours.values()),
            "face_recognition": sum(v is None for v in theirs.values()),
        },
        "parity_l2": {
            "faces": len(parity),
            "median": float(np.median(parity)) if len(parity) else None,
            "p95": float(np.percentile(parity, 95)) if len(parity) else None,
            "max": float(parity.max()) if len(parity) else None,
            "share_under_0.1": float((parity < 0.1).mean()) if len(parity) else None,
        },
        "verification": {
            "onnx": verification(distances(ours), genuine, folds),
            "face_recognition": verification(distances(theirs), genuine, folds),
        },
        "embedding_stage_same_chips": embed_same_chips(onnx_side.pipeline, samples),
        "speed_ms": {
            "onnx_stages": stage_ms,
            "onnx_per_image": 1000 * onnx_side.seconds / len(images),
            "face_recognition_per_image": 1000 * fr_side.seconds / len(images),
            "speedup_per_image": fr_side.seconds / max(onnx_side.seconds, 1e-9),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=None, help="use this many pairs (default: all)")
    parser.add_argument("--model-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pipeline.json")
    args = parser.parse_args(argv)
    report = run(args.pairs, args.model_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
