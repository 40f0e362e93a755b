"""Micro-batching benchmark: gRPC Identify under many concurrent clients, with and without the batcher.

It enrols seeded synthetic 128-d templates (identify_benchmark.py's data: shaped
like dlib face descriptors, half the probes mated) into one watchlist of a real
SafePassage server started in this process (mutual TLS with a PKI made for the
run, the authorisation matrix and the transparency log on as deployed; rate
limits and the fishing detector off: the benchmark measures capacity, not
policy), then drives Identify from `--clients` concurrent clients, each on its
own mutual-TLS channel (as separate cameras and desks are), each calling again
as soon as it has its answer, for `--seconds`:

    unbatched      matching.batching.enabled = false: every call searches on its own
    batched_w<N>   matching.batching.enabled = true with N batch workers
                   (one setting per value of --batch-workers)

Each setting gets a server of its own (identify_benchmark.running_server with
config overrides), on the same store: the first loads the templates over
BulkInsertTemplates, the later ones start from what it left (store and index
snapshot). The server has `--server-threads` RPC threads (at least the client
count, so that every client's call can wait in the batcher at once). By default
the gallery is searched exactly (`matching.index.exact_below` above the size):
micro-batching exists for the exact scan, which reads every vector once per
search; `--index policy` keeps the configured index policy instead. The JSON
records the index kind each setting searched; a run whose index was swapped by
a background rebuild while it measured is refused.

Reported per setting: throughput (answered calls / wall time), latency p50 /
p99 / mean / max as the clients saw it, speedup over unbatched, and the
batcher's own figures (search calls, mean and largest batch). Every answer's
top-1 is checked against the unbatched run's for the same probe, and the
unbatched answers against the numpy brute-force reference on a sample.
Client and server share this process (one GIL) and the machine's cores.
Results: benchmarks/results/batching.json and a Markdown table on stdout.

    uv run python benchmarks/batching_benchmark.py                  # 1M, 32 clients: about 7 min
    uv run python benchmarks/batching_benchmark.py --size 100000 --seconds 10 --out /tmp/batching.json
"""

from __future__ import annotations

import os

# One OpenMP thread per FAISS search, before faiss loads (see identify_benchmark.py).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from benchmarks import identify_benchmark as bench
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "batching.json"
WARMUP_CALLS_PER_CLIENT = 2
# The issue's acceptance targets for micro-batching at 1M under 32 clients.
TARGET_SPEEDUP = 3.0
TARGET_P99_MS = 500.0


@dataclass(frozen=True)
class Options:
    size: int
    clients: int
    seconds: float
    queries: int
    batch_workers: list[tuple[int, int]]  # (workers, FAISS threads per batch search)
    max_wait_ms: float
    max_batch: int
    server_threads: int
    index: str  # "exact" or "policy"
    load_streams: int
    exact_sample: int
    seed: int
    out: Path
    data_dir: Path | None


@dataclass(frozen=True)
class Setting:
    name: str
    batching: bool
    batch_workers: int | None  # None when unbatched
    batch_threads: int = 1

    def overrides(self, options: Options) -> dict[str, object]:
        values: dict[str, object] = {
            "listen.max_workers": options.server_threads,
            "matching.batching.enabled": self.batching,
            "matching.batching.max_wait_ms": options.max_wait_ms,
            "matching.batching.max_batch": options.max_batch,
        }
        if self.batch_workers is not None:
            values["matching.batching.workers"] = self.batch_workers
            values["matching.batching.threads"] = self.batch_threads
        if options.index == "exact":
            values["matching.index.exact_below"] = options.size + 1
        return values


def settings_of(options: Options) -> list[Setting]:
    return [
        Setting("unbatched", False, None),
        *(
            Setting(f"batched_w{n}" + (f"t{t}" if t > 1 else ""), True, n, t)
            for n, t in options.batch_workers
        ),
    ]


# -- clients --------------------------------------------------------------------------------------


@dataclass
class Sample:
    latencies_s: list[float]
    answers: dict[int, bench.Top1]  # the first answer for each probe
    calls: int
    seconds: float


def drive(
    server: bench.Server, requests: Sequence[pb.IdentifyRequest], clients: int, seconds: float
) -> Sample:
    """`clients` threads, each on its own channel, calling Identify back to back for `seconds`.

    Client c sends probes c, c + clients, c + 2 clients, ... (cycling through
    the pool), so concurrent calls carry different probes.
    """
    channels = [bench.client_channel(server.port, server.ca_pem, server.officer) for _ in range(clients)]
    stubs = [pb_grpc.MatchingServiceStub(channel) for channel in channels]
    pool = len(requests)
    try:
        for c, stub in enumerate(stubs):  # TLS handshakes and first calls outside the timing
            for w in range(WARMUP_CALLS_PER_CLIENT):
                stub.Identify(requests[(c + w * clients) % pool])
        barrier = threading.Barrier(clients)
        latencies: list[list[float]] = [[] for _ in range(clients)]
        answers: list[list[tuple[int, bench.Top1]]] = [[] for _ in range(clients)]
        spans: list[tuple[float, float]] = [(0.0, 0.0)] * clients

        def client(c: int) -> None:
            stub, own, found = stubs[c], latencies[c], answers[c]
            barrier.wait()
            began = time.perf_counter()
            deadline = began + seconds
            probe = c
            while (started := time.perf_counter()) < deadline:
                top1 = bench.response_top1(stub.Identify(requests[probe % pool]))
                own.append(time.perf_counter() - started)
                found.append((probe % pool, top1))
                probe += clients
            spans[c] = (began, time.perf_counter())

        with ThreadPoolExecutor(clients) as executor:
            list(executor.map(client, range(clients)))
    finally:
        for channel in channels:
            channel.close()
    first: dict[int, bench.Top1] = {}
    for own_answers in answers:
        for probe, top1 in own_answers:
            first.setdefault(probe, top1)
    wall = max(end for _, end in spans) - min(begin for begin, _ in spans)
    return Sample([x for own in latencies for x in own], first, sum(map(len, answers)), wall)


# -- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    name: str
    batching: bool
    batch_workers: int | None
    index_kind: str
    clients: int
    calls: int
    seconds: float
    qps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    speedup: float | None  # qps / unbatched qps
    search_calls: int | None  # the batcher's searches during the run (None: no batcher)
    mean_batch: float | None  # probes per search call
    largest_batch: int | None  # since the server started
    top1_checked: int  # probes also answered by the unbatched run
    top1_agreement: float | None  # share of those with the same top-1 (or a tie)
    meets_targets: bool | None  # speedup >= TARGET_SPEEDUP and p99 < TARGET_P99_MS
    server_start_s: float  # the later servers start from the first one's store and snapshot
    server_stop_s: float
    load_average: tuple[float, float, float]  # of the machine after the run: others' work shows here


def summarise(
    setting: Setting,
    sample: Sample,
    batches: tuple[int, int, int] | None,
    truth: dict[int, bench.Top1],
    unbatched_qps: float | None,
    index_kind: str,
    start_s: float,
    stop_s: float,
    clients: int,
) -> Measurement:
    """`batches`: (search calls, probes searched, largest batch) of the batcher during the run."""
    milliseconds = np.asarray(sample.latencies_s) * 1000.0
    qps = sample.calls / sample.seconds
    p99 = float(np.percentile(milliseconds, 99))
    checked = [p for p in sample.answers if p in truth]
    agreed = sum(bench.same_top1(sample.answers[p], truth[p]) for p in checked)
    speedup = qps / unbatched_qps if unbatched_qps else None
    return Measurement(
        name=setting.name,
        batching=setting.batching,
        batch_workers=setting.batch_workers,
        index_kind=index_kind,
        clients=clients,
        calls=sample.calls,
        seconds=sample.seconds,
        qps=qps,
        p50_ms=float(np.percentile(milliseconds, 50)),
        p99_ms=p99,
        mean_ms=float(milliseconds.mean()),
        max_ms=float(milliseconds.max()),
        speedup=speedup,
        search_calls=batches[0] if batches else None,
        mean_batch=batches[1] / batches[0] if batches and batches[0] else None,
        largest_batch=batches[2] if batches else None,
        top1_checked=len(checked),
        top1_agreement=agreed / len(checked) if checked else None,
        meets_targets=(speedup >= TARGET_SPEEDUP and p99 < TARGET_P99_MS)
        if setting.batching and speedup
        else None,
        server_start_s=start_s,
        server_stop_s=stop_s,
        load_average=os.getloadavg(),
    )


def optional(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(size: int, measurements: Sequence[Measurement]) -> str:
    lines = [
        "| N | setting | index | clients | q/s | speedup | p50 ms | p99 ms | mean batch | largest batch"
        " | top-1 = unbatched |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in measurements:
        lines.append(
            f"| {size:,} | {m.name} | {m.index_kind} | {m.clients} | {m.qps:,.1f}"
            f" | {optional(m.speedup, '.2f')}x | {m.p50_ms:.1f} | {m.p99_ms:.1f}"
            f" | {optional(m.mean_batch, '.1f')} | {optional(m.largest_batch, 'd')}"
            f" | {optional(m.top1_agreement, '.1%')} |"
        )
    return "\n".join(lines)


# -- the run ------------------------------------------------------------------------------------------


def batcher_counts(server: bench.Server) -> tuple[int, int, int] | None:
    stats = server.service.matcher.batch_stats()
    return None if stats is None else (stats.batches, stats.queries, stats.largest_batch)


def describe(server: bench.Server) -> pb.Gallery:
    return server.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id=bench.GALLERY))


def load_gallery(server: bench.Server, dataset: bench.Dataset, streams: int) -> bench.Load:
    created = server.galleries.CreateGallery(
        pb.CreateGalleryRequest(gallery_id=bench.GALLERY, purpose=pb.WATCHLIST)
    )
    if created.dimension != bench.DIMENSION or created.metric != pb.L2:
        raise RuntimeError(f"the server's model is not 128-d L2: {created}")
    bench.log(f"size {len(dataset.templates):,}: loading over gRPC")
    load = bench.bulk_insert(server.loader, dataset.templates, streams)
    bench.log(f"  loaded {load.templates:,} in {load.seconds:.1f} s ({load.per_second:,.0f}/s)")
    return load


def checked_gallery(server: bench.Server, options: Options) -> pb.Gallery:
    gallery = describe(server)
    if gallery.size != options.size:
        raise RuntimeError(f"the gallery holds {gallery.size} templates, not {options.size}")
    if options.index == "exact" and gallery.index_kind != "flat":
        raise RuntimeError(
            f"asked for exact search, the server built {gallery.index_kind!r}:"
            " is matching.index.exact_below passed to the matcher's index policy?"
        )
    return gallery


@dataclass
class Run:
    """What the settings measured so far, on one store."""

    options: Options
    dataset: bench.Dataset
    requests: list[pb.IdentifyRequest]
    folder: Path
    load: bench.Load | None = None
    gallery: pb.Gallery | None = None
    truth: dict[int, bench.Top1] | None = None  # the unbatched run's answers
    measurements: list[Measurement] = field(default_factory=list)

    def measure(self, setting: Setting) -> Measurement:
        options = self.options
        stopped: list[float] = []
        with bench.running_server(self.folder, stopped, setting.overrides(options)) as server:
            if self.load is None:
                self.load = load_gallery(server, self.dataset, options.load_streams)
            gallery = self.gallery = checked_gallery(server, options)
            bench.log(f"{setting.name}: {options.clients} clients for {options.seconds:g} s")
            before = batcher_counts(server)
            sample = drive(server, self.requests, options.clients, options.seconds)
            after = batcher_counts(server)
            kind_after = describe(server).index_kind
            start_s = server.start_s
        if kind_after != gallery.index_kind:
            # A background rebuild swapped the index mid-run: the figures would mix two indexes.
            raise RuntimeError(f"the index went from {gallery.index_kind!r} to {kind_after!r} during the run")
        batches = (after[0] - before[0], after[1] - before[1], after[2]) if before and after else None
        if self.truth is None:
            self.truth = dict(sample.answers)
        unbatched = self.measurements[0].qps if self.measurements else None
        m = summarise(
            setting,
            sample,
            batches,
            self.truth,
            unbatched,
            gallery.index_kind,
            start_s,
            stopped[0],
            options.clients,
        )
        self.measurements.append(m)
        bench.log(
            f"  {m.qps:,.1f} q/s, p50 {m.p50_ms:.1f} ms, p99 {m.p99_ms:.1f} ms,"
            f" mean batch {optional(m.mean_batch, '.1f')}"
        )
        return m


def run_benchmark(options: Options) -> dict[str, object]:
    began = time.perf_counter()
    machine = bench.machine_info()
    bench.log(f"size {options.size:,}: generating data")
    dataset = bench.synthetic_dataset(options.size, options.queries, options.seed + options.size)
    with tempfile.TemporaryDirectory(prefix="batching-bench-", dir=options.data_dir) as folder:
        run = Run(options, dataset, bench.identify_requests(dataset.probes), Path(folder))
        for setting in settings_of(options):
            run.measure(setting)
    load, gallery, truth, measurements = run.load, run.gallery, run.truth, run.measurements
    assert load is not None and gallery is not None and truth is not None
    exact_checked, exact_agreed = bench.exact_agreement(dataset, truth, options.exact_sample)
    report: dict[str, object] = {
        "benchmark": "batching",
        "machine": machine,
        "settings": {
            "size": options.size,
            "clients": options.clients,
            "seconds": options.seconds,
            "queries": options.queries,
            "top_k": bench.TOP_K,
            "dimension": bench.DIMENSION,
            "metric": "l2",
            "index": options.index,
            "batch_workers": options.batch_workers,
            "max_wait_ms": options.max_wait_ms,
            "max_batch": options.max_batch,
            "server_threads": options.server_threads,
            "blas_threshold": int(faiss.cvar.distance_compute_blas_threshold),
            "load_streams": options.load_streams,
            "exact_sample": options.exact_sample,
            "seed": options.seed,
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "channel_per_client": True,
            "tls": True,
            "mutual_tls": True,
            "rate_limits": False,
            "client_and_server": "one process",
            "targets": {"speedup": TARGET_SPEEDUP, "p99_ms": TARGET_P99_MS},
        },
        "load": asdict(load),
        "data": asdict(bench.data_stats(dataset, truth, gallery.threshold)),
        "correctness": {
            "unbatched_vs_exact_checked": exact_checked,
            "unbatched_vs_exact_agreement": exact_agreed,
        },
        "measurements": [asdict(m) for m in measurements],
        "total_seconds": time.perf_counter() - began,
    }
    bench.write_json(options.out, report)
    print(markdown_table(options.size, measurements))
    print(
        f"\nunbatched top-1 = exact search on {optional(exact_agreed, '.0%')} of {exact_checked}"
        f" sampled probes; total {report['total_seconds']:.0f} s; results in {options.out}"
    )
    return report


# -- command line ----------------------------------------------------------------------------------------


def positive_ints(text: str) -> list[tuple[int, int]]:
    """Batch workers per setting, each optionally with FAISS threads per search: "1,2,1x2"."""
    try:
        values = [
            (int(part.split("x")[0]), int(part.split("x")[1]) if "x" in part else 1)
            for part in text.split(",")
            if part.strip()
        ]
    except (ValueError, IndexError) as error:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,2,1x2 (workers[xthreads]): {error}") from error
    if not values or min(min(v) for v in values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 1,2,1x2")
    return values


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1_000_000, help="templates in the gallery")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients, one channel each")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per setting")
    parser.add_argument("--queries", type=int, default=2000, help="probes the clients cycle through")
    parser.add_argument(
        "--batch-workers",
        type=positive_ints,
        default=[(1, 1)],
        help="batched settings to run: workers, or workers x FAISS threads per batch (1,2,1x2)",
    )
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="matching.batching.max_wait_ms")
    parser.add_argument("--max-batch", type=int, default=64, help="matching.batching.max_batch")
    parser.add_argument("--server-threads", type=int, default=64, help="listen.max_workers (>= --clients)")
    parser.add_argument(
        "--index",
        choices=["exact", "policy"],
        default="exact",
        help="exact: flat search at every size; policy: the configured matching.index policy",
    )
    parser.add_argument("--load-streams", type=int, default=1, help="concurrent BulkInsertTemplates streams")
    parser.add_argument("--exact-sample", type=int, default=20, help="probes checked against numpy search")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the temporary store goes")
    args = parser.parse_args(argv)
    if min(args.size, args.clients, args.queries, args.max_batch, args.load_streams) < 1:
        parser.error("--size, --clients, --queries, --max-batch and --load-streams must be positive")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.server_threads < args.clients:
        parser.error(
            "--server-threads must be at least --clients, or calls queue before the batcher sees them"
        )
    return Options(
        size=args.size,
        clients=args.clients,
        seconds=args.seconds,
        queries=args.queries,
        batch_workers=args.batch_workers,
        max_wait_ms=args.max_wait_ms,
        max_batch=args.max_batch,
        server_threads=args.server_threads,
        index=args.index,
        load_streams=args.load_streams,
        exact_sample=args.exact_sample,
        seed=args.seed,
        out=args.out,
        data_dir=args.data_dir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    run_benchmark(parse_options(argv))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
