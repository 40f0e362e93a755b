"""What the service's own head-turn check costs per call (CaptureService.CheckLiveness's work).

The browser behind the console records the turn and sends every frame; the service decodes each,
runs the detector, the parallax check (up to two more detector runs on a patch) and, on a pass,
embeds the frontal and the turned frame (server/head_turn_check.py). Measured here on the shared
Hamilton clip's turn (frames 93 to 141, the performer turning to his right; 640 px wide), JPEG at
quality 85 as a browser's canvas gives, at 15 and at 30 frames a second (25 and 49 frames), each
run `--repeats` times through HeadTurnCheck (no gRPC: the transport adds a few ms for ~0.5-1 MB),
plus the same frames asked to turn the other way (fails early, at the wrong-direction frame).
Reported: wall time per call (p50/p95), per frame, the bytes sent, and the outcome.

    uv run python benchmarks/liveness_service.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.liveness_eval import HAMILTON, faces_root
from benchmarks.machine_profile import machine_info
from safepassage import face as faces
from safepassage.camera_edge.liveness import TurnDirection
from safepassage.face.onnx_embedder import OnnxEmbedder
from safepassage.face.pipeline import PipelineSettings
from safepassage.server.decode_budget import DecodeBudget
from safepassage.server.head_turn_check import HeadTurnCheck, RecordedFrame

RESULTS = Path(__file__).resolve().parent / "results" / "liveness_service.json"
FIRST, LAST, CLIP_FPS = 93, 141, 30.0


def recorded(root: Path, step: int) -> list[RecordedFrame]:
    capture = cv2.VideoCapture(str(root / HAMILTON))
    frames: list[RecordedFrame] = []
    try:
        for index in range(LAST + 1):
            ok, image = capture.read()
            if not ok:
                raise SystemExit(f"{root / HAMILTON} has no frame {index}")
            if index >= FIRST and (index - FIRST) % step == 0:
                ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
                at_ms = round((index - FIRST) * 1000 / CLIP_FPS)
                frames.append(RecordedFrame(encoded.tobytes(), at_ms))
    finally:
        capture.release()
    return frames


def measure(
    check: HeadTurnCheck, frames: list[RecordedFrame], side: TurnDirection, repeats: int
) -> dict[str, object]:
    times, outcome = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        outcome = check.run(side, frames, elapsed_s=60.0)
        times.append(time.perf_counter() - started)
    assert outcome is not None
    data = np.asarray(times) * 1000
    return {
        "frames_sent": len(frames),
        "bytes_sent": sum(len(f.image) for f in frames),
        "asked": side.value,
        "passed": outcome.passed,
        "failed_check": outcome.failed_check.value if outcome.failed_check else None,
        "frames_read": outcome.frames,
        "p50_ms": round(float(np.percentile(data, 50)), 1),
        "p95_ms": round(float(np.percentile(data, 95)), 1),
        "per_frame_read_ms": round(float(np.percentile(data, 50)) / outcome.frames, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    root = faces_root()
    embedder = OnnxEmbedder(PipelineSettings(model_dir=args.model_dir))
    check = HeadTurnCheck(embedder, faces.ImageLimits(), DecodeBudget(256 * 1024 * 1024, 5.0))
    runs = []
    for fps, step in ((15, 2), (30, 1)):
        frames = recorded(root, step)
        for side in (TurnDirection.RIGHT, TurnDirection.LEFT):
            run = {"fps": fps, **measure(check, frames, side, args.repeats)}
            runs.append(run)
            print(json.dumps(run))
    report = {"machine": machine_info(), "repeats": args.repeats, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
