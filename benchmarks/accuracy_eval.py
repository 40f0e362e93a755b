"""Identification accuracy of the whole service on real faces, through the real API, saved as JSON.

    uv run python benchmarks/accuracy_eval.py [--out benchmarks/results/accuracy.json]   # about a minute

Protocol (per labelled source; labels are comparable only within a source): identities with two or
more images are enrolled with their first image (in name order) into a watchlist; their other images
are mated searches. Identities with one image are never enrolled: they are non-mated searches, and
any MATCH for them is a false positive. The near-duplicate resizes of obama.jpg are left out.
Admin creates the watchlist and enrols; an officer searches (top 10, the largest face).

A real server in this process (`identify_benchmark.running_server`: mutual TLS, the authorisation
matrix and the transparency log as deployed; rate limits and the fishing detector off, since the run
measures the pipeline, not the policy), the default ONNX face pipeline and the model's default
threshold, 0.6 (dlib's 1:1 threshold). Reported, each as k of n with its 95 % interval
(safepassage/evaluation/intervals.py):

- rank-1 and rank-10: the enrolled person first / among the ten candidates, no threshold;
- missed at 0.6 and 0.5: mated searches where the enrolled person is not among the ten candidates
  within the threshold (what an officer reading the whole candidate list misses: `fnir_at_*`), and
  NIST's rank-1 FNIR, where only the top candidate counts (`fnir_rank1_at_*`);
- FPIR at 0.6 (the service's MATCH decision) and at 0.5: non-mated searches whose top candidate passes.

tests/server/test_accuracy.py runs the same protocol (`measure`) and asserts floors on it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from safepassage.api.v1 import matching_pb2 as pb  # noqa: E402
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc  # noqa: E402
from safepassage.evaluation.intervals import Rate  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "accuracy.json"
# The same portrait as obama.jpg, resized (see the data README): not independent probes.
NEAR_DUPLICATES = {"obama-240p.jpg", "obama-480p.jpg", "obama-720p.jpg", "obama-1080p.jpg", "obama_small.jpg"}
SUFFIXES = {".jpg", ".jpeg", ".png"}
STRICT_THRESHOLD = 0.5
TOP_K = 10


def faces_root() -> Path:
    return Path(os.environ.get("SAFEPASSAGE_FACES_DIR", REPO.parent / "shared" / "data" / "faces"))


def identities(root: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.name not in NEAR_DUPLICATES
        )
        if files:
            found[folder.name] = files
    return found


@dataclass(frozen=True)
class Counts:
    """What one source's searches gave, as counts (the rates and intervals are derived from them)."""

    identities_enrolled: int
    enrolment_failures: int
    mated_searches: int
    nonmated_searches: int
    no_face_found: int
    rank1: int
    rank10: int
    rank1_match: int  # top candidate is the enrolled person and passes the gallery threshold
    flagged: int  # the enrolled person is flagged `match` somewhere in the top ten
    rank1_within_strict: int  # top candidate is the enrolled person within STRICT_THRESHOLD
    within_strict: int  # the enrolled person is among the ten within STRICT_THRESHOLD
    false_match: int  # non-mated search answered MATCH (the top candidate passes the threshold)
    false_match_strict: int  # non-mated search whose top candidate is within STRICT_THRESHOLD

    def rates(self) -> dict[str, float]:
        mated, nonmated = max(self.mated_searches, 1), max(self.nonmated_searches, 1)
        return {
            "identities_enrolled": self.identities_enrolled,
            "enrolment_failures": self.enrolment_failures,
            "mated_searches": self.mated_searches,
            "nonmated_searches": self.nonmated_searches,
            "no_face_found": self.no_face_found,
            "rank1_rate": self.rank1 / mated,
            "rank10_rate": self.rank10 / mated,
            "fnir_at_0.6": 1 - self.flagged / mated,
            "fnir_at_0.5": 1 - self.within_strict / mated,
            "fnir_rank1_at_0.6": 1 - self.rank1_match / mated,
            "fnir_rank1_at_0.5": 1 - self.rank1_within_strict / mated,
            "fpir_at_0.6": self.false_match / nonmated,
            "fpir_at_0.5": self.false_match_strict / nonmated,
        }

    def figures(self) -> dict[str, object]:
        """Every rate as k of n with its unit and 95 % interval."""
        mated = f"mated searches ({self.identities_enrolled} people, several photos each: not independent)"
        nonmated = "non-mated searches (one photo of one never-enrolled person each)"
        rates = {
            "rank1": Rate(self.rank1, self.mated_searches, mated),
            "rank10": Rate(self.rank10, self.mated_searches, mated),
            "fnir_at_0.6": Rate(self.mated_searches - self.flagged, self.mated_searches, mated),
            "fnir_at_0.5": Rate(self.mated_searches - self.within_strict, self.mated_searches, mated),
            "fnir_rank1_at_0.6": Rate(self.mated_searches - self.rank1_match, self.mated_searches, mated),
            "fnir_rank1_at_0.5": Rate(
                self.mated_searches - self.rank1_within_strict, self.mated_searches, mated
            ),
            "fpir_at_0.6": Rate(self.false_match, self.nonmated_searches, nonmated),
            "fpir_at_0.5": Rate(self.false_match_strict, self.nonmated_searches, nonmated),
        }
        return {name: rate.as_dict() for name, rate in rates.items() if rate.n > 0}


def measure(
    galleries: pb_grpc.GalleryServiceStub,
    enroller: pb_grpc.MatchingServiceStub,
    searcher: pb_grpc.MatchingServiceStub,
    name: str,
    root: Path,
) -> Counts:
    """Run the protocol on one labelled folder: `galleries` and `enroller` as admin, `searcher` as officer."""
    people = identities(root)
    # The protocol measures at dlib's 1:1 threshold (and 0.5 apart): named, as a watchlist defaults to 0.5.
    galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id=name, purpose=pb.WATCHLIST, threshold=0.6))
    enrolled = {who: files for who, files in people.items() if len(files) >= 2}
    strangers = [files[0] for files in people.values() if len(files) == 1]

    def enrolments() -> Iterator[pb.InsertTemplateRequest]:
        for who, files in enrolled.items():
            yield pb.InsertTemplateRequest(
                gallery_id=name,
                reference_id=who,
                template=pb.Probe(image=files[0].read_bytes()),
                face_selection=pb.LARGEST,
            )

    bulk = enroller.BulkInsertTemplates(enrolments(), timeout=1800)
    failed = {e.reference_id for e in bulk.errors}

    def search(path: Path) -> pb.FaceResult | None:
        try:
            answer = searcher.Identify(
                pb.IdentifyRequest(
                    gallery_id=name,
                    probe=pb.Probe(image=path.read_bytes()),
                    top_k=TOP_K,
                    face_selection=pb.LARGEST,
                ),
                timeout=60,
            )
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            return None  # no face found: a miss for a mated search, no alarm for a non-mated one
        return answer.faces[0]

    tally = dict.fromkeys(
        ("mated", "no_face", "rank1", "rank10", "rank1_match", "flagged", "rank1_strict", "strict"), 0
    ) | {"nonmated": 0, "false_match": 0, "false_match_strict": 0}
    for who, files in enrolled.items():
        if who in failed:
            continue
        for path in files[1:]:
            tally["mated"] += 1
            face = search(path)
            if face is None:
                tally["no_face"] += 1
                continue
            ranked = [c.reference_id for c in face.candidates]
            top = face.candidates[0] if face.candidates else None
            first = top is not None and top.reference_id == who
            tally["rank1"] += first
            tally["rank10"] += who in ranked
            tally["rank1_match"] += first and top is not None and top.match
            tally["rank1_strict"] += first and top is not None and top.score <= STRICT_THRESHOLD
            tally["flagged"] += any(c.reference_id == who and c.match for c in face.candidates)
            tally["strict"] += any(
                c.reference_id == who and c.score <= STRICT_THRESHOLD for c in face.candidates
            )
    for path in strangers:
        tally["nonmated"] += 1
        face = search(path)
        if face is None:
            tally["no_face"] += 1
            continue
        tally["false_match"] += face.decision == pb.MATCH
        tally["false_match_strict"] += bool(face.candidates) and face.candidates[0].score <= STRICT_THRESHOLD
    return Counts(
        identities_enrolled=len(enrolled) - len(failed),
        enrolment_failures=bulk.failed,
        mated_searches=tally["mated"],
        nonmated_searches=tally["nonmated"],
        no_face_found=tally["no_face"],
        rank1=tally["rank1"],
        rank10=tally["rank10"],
        rank1_match=tally["rank1_match"],
        flagged=tally["flagged"],
        rank1_within_strict=tally["rank1_strict"],
        within_strict=tally["strict"],
        false_match=tally["false_match"],
        false_match_strict=tally["false_match_strict"],
    )


def run(root: Path, model_dir: Path) -> dict[str, object]:
    from benchmarks import identify_benchmark as bench

    started = time.perf_counter()
    sources = {"lfw": root / "lfw", "face_recognition": root / "face_recognition"}
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="accuracy-") as folder:
        stopped: list[float] = []
        with bench.running_server(Path(folder), stopped, {"faces.model_dir": str(model_dir)}) as server:
            for name, path in sources.items():
                counts = measure(
                    server.galleries, server.loader, server.matching, name.replace("_", "-"), path
                )
                results[name] = {"counts": asdict(counts), "figures": counts.figures()}
    return {
        "benchmark": "accuracy",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "settings": {
            "faces_backend": "onnx",
            "threshold": 0.6,
            "strict_threshold": STRICT_THRESHOLD,
            "top_k": TOP_K,
            "face_selection": "LARGEST",
            "left_out": sorted(NEAR_DUPLICATES),
        },
        "sources": results,
        "wall_s": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faces", type=Path, default=None, help="default ../shared/data/faces")
    parser.add_argument("--model-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    report = run(args.faces or faces_root(), args.model_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["sources"], indent=2))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
