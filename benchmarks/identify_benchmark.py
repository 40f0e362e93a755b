"""Identify benchmark: the gRPC service against bare FAISS search on the same data.

For each gallery size it generates seeded synthetic 128-d templates shaped like
dlib face descriptors, starts a real SafePassage server in this process (mutual
TLS, as deployed, with a PKI made for the run: an admin and an officer client
certificate), loads the templates as admin through BulkInsertTemplates, and
times 1:N identification of the same probes, searched as officer, at each layer:

    faiss                  safepassage.matcher.FlatIndex.search, one query at a time (the floor)
    faiss_concurrent       the same from several threads
    matcher                Matcher.identify in process: FAISS + store lookups, no gRPC
    grpc_unary             Identify over TLS, one client, one call at a time
    grpc_unary_concurrent  Identify from several client threads on one channel
    grpc_stream            IdentifyStream, one request in flight at a time
    grpc_stream_pipelined  IdentifyStream, requests sent without waiting for answers

Every answer's top-1 is checked against bare FAISS's for the same probe, and
bare FAISS is checked against the numpy brute-force reference on a sample.
Client and server share this process (and its GIL) and the machine's cores:
the gRPC figures include the client's own costs, as a caller on the same
machine would see them. Rate limits and the fishing detector are off for the
run (limits.enabled and fishing.enabled false): the benchmark measures the
service's capacity, not its policy, and a deployment's limits would cap the
figures at whatever they are set to. Authentication, the authorisation matrix
and the transparency log stay on, as deployed. Results: a table on stdout and
a JSON file.

    uv run python benchmarks/identify_benchmark.py --sizes 10000,100000,1000000
"""

from __future__ import annotations

import os

# One OpenMP thread per FAISS search: on two cores, searches get their
# parallelism from concurrent calls, not from OpenMP (faiss issue #2953; see
# README.md). OpenMP reads this once, when faiss is loaded, and it then holds
# for every thread, the server's RPC workers included; faiss.omp_set_num_threads
# would pin only the thread that calls it. Set OMP_NUM_THREADS to measure another value.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import contextlib
import datetime
import json
import logging
import platform
import queue
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import faiss
import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf import __version__ as protobuf_version

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.app import create_server
from safepassage.matcher import FlatIndex, Matcher, Metric, exact_search
from safepassage.server.config import load_config
from safepassage.server.identity import Role
from safepassage.server.pki_issuance import IssuedCert, Pki
from safepassage.server.service import Service

Vectors = npt.NDArray[np.float32]
Top1 = tuple[str, float]  # (reference id, score) of the closest candidate
Query = Callable[[int], Top1]  # searches probe number i
T = TypeVar("T")

DIMENSION = 128
GALLERY = "benchmark"
TOP_K = 5
WARMUP_QUERIES = 5
PIPELINE_DEPTH = 8  # requests in flight on the pipelined stream
NOISE_CHUNK = 65_536
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "identify.json"

# Synthetic descriptors, after dlib's 128-d face descriptor (threshold 0.6):
# two captures of one face lie about 0.4 apart, two people's faces about 1.0.
MATED_DISTANCE = 0.4
IDENTITY_DISTANCE = 0.95
# Identity centres spread along a decaying spectrum (standard deviation of
# component j proportional to j**-SPECTRUM_DECAY): faces fill far fewer than
# 128 effective dimensions, so near non-mated neighbours grow with the gallery.
SPECTRUM_DECAY = 0.5
MATED_FRACTION = 0.5
MAX_COMPONENT = 0.99


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def reference_id(index: int) -> str:
    return f"t{index:07d}"


# -- synthetic data ----------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    templates: Vectors  # (size, d); template i is enrolled as reference_id(i)
    probes: Vectors  # (queries, d)
    mates: npt.NDArray[np.int64]  # (queries,): the enrolled mate of each probe, -1 for none


def identity_spread(dimension: int) -> Vectors:
    """Standard deviation of identity centres per component, scaled to IDENTITY_DISTANCE."""
    spectrum = np.arange(1, dimension + 1, dtype=np.float64) ** -SPECTRUM_DECAY
    spectrum *= IDENTITY_DISTANCE / np.sqrt(2.0 * np.sum(spectrum**2))
    return spectrum.astype(np.float32)


def add_capture_noise(rng: np.random.Generator, vectors: Vectors) -> None:
    """In place: isotropic noise putting two captures of one centre MATED_DISTANCE apart."""
    sigma = np.float32(MATED_DISTANCE / np.sqrt(2.0 * vectors.shape[1]))
    for start in range(0, len(vectors), NOISE_CHUNK):
        block = vectors[start : start + NOISE_CHUNK]
        block += rng.standard_normal(block.shape, dtype=np.float32) * sigma


def synthetic_dataset(size: int, queries: int, seed: int) -> Dataset:
    """Enrolled templates and probes: mated probes are fresh captures of enrolled identities."""
    rng = np.random.default_rng(seed)
    spread = identity_spread(DIMENSION)
    templates = rng.standard_normal((size, DIMENSION), dtype=np.float32)
    templates *= spread
    mated = round(queries * MATED_FRACTION)
    mates = rng.choice(size, size=mated, replace=mated > size).astype(np.int64)
    strangers = rng.standard_normal((queries - mated, DIMENSION), dtype=np.float32) * spread
    probes = np.concatenate([templates[mates], strangers])
    add_capture_noise(rng, templates)
    add_capture_noise(rng, probes)
    # The service refuses templates beyond what the model can produce (safepassage/matcher/vector_bounds.py:
    # dlib's components lie in [-1, 1]); about one component in 10^4 of this spread lies beyond.
    np.clip(templates, -MAX_COMPONENT, MAX_COMPONENT, out=templates)
    np.clip(probes, -MAX_COMPONENT, MAX_COMPONENT, out=probes)
    order = rng.permutation(queries)
    mate_of = np.concatenate([mates, np.full(queries - mated, -1, dtype=np.int64)])
    return Dataset(templates, np.ascontiguousarray(probes[order]), mate_of[order])


# -- the service ---------------------------------------------------------------------


@dataclass
class Server:
    service: Service
    galleries: pb_grpc.GalleryServiceStub  # as admin
    loader: pb_grpc.MatchingServiceStub  # as admin: enrols into the watchlist
    matching: pb_grpc.MatchingServiceStub  # as officer: searches it
    start_s: float
    port: int  # for channels of the caller's own (client_channel)
    ca_pem: bytes
    officer: IssuedCert


# Each channel gets its own connections: with gRPC's global subchannel pool,
# a channel could reuse another's TLS session and so another's certificate.
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]


def client_channel(port: int, ca_pem: bytes, issued: IssuedCert) -> grpc.Channel:
    """A mutual-TLS channel to the server, authenticated by `issued`'s certificate."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=issued.key_pem, certificate_chain=issued.cert_pem
    )
    return grpc.secure_channel(f"localhost:{port}", credentials, options=CHANNEL_OPTIONS)


@contextlib.contextmanager
def running_server(
    data_dir: Path, stopped: list[float], overrides: Mapping[str, object] | None = None
) -> Iterator[Server]:
    """A real server on a free port with mutual TLS, and admin and officer clients of a PKI made
    for the run (in `data_dir`); its stop time goes to `stopped`. `overrides` are config values
    (dotted keys, as load_config takes them) applied over the benchmark's own."""
    pki_dir = data_dir / "pki"
    pki = Pki.init(pki_dir, exist_ok=True)
    admin = pki.issue_client("bench-admin", Role.ADMIN, replace=True)
    officer = pki.issue_client("bench-officer", Role.OFFICER, replace=True)
    started = time.perf_counter()
    config = load_config(
        None,
        {
            # The keys go beside the data (storage.keys_dir: <data_dir>-keys), both inside the run's folder.
            "storage.data_dir": str(data_dir / "data"),
            "listen.port": 0,
            "storage.snapshot_interval_s": 0,
            "tls.pki_dir": str(pki_dir),
            # Capacity, not policy: the limits would cap the figures at their settings.
            "limits.enabled": False,
            "fishing.enabled": False,
            **(overrides or {}),
        },
    )
    service, port = create_server(config)
    service.start()
    admin_channel = client_channel(port, pki.ca_pem, admin)
    officer_channel = client_channel(port, pki.ca_pem, officer)
    try:
        yield Server(
            service,
            pb_grpc.GalleryServiceStub(admin_channel),
            pb_grpc.MatchingServiceStub(admin_channel),
            pb_grpc.MatchingServiceStub(officer_channel),
            time.perf_counter() - started,
            port,
            pki.ca_pem,
            officer,
        )
    finally:
        for channel in (admin_channel, officer_channel):
            channel.close()
        stopping = time.perf_counter()
        service.stop(grace_s=1)
        stopped.append(time.perf_counter() - stopping)


def embedding(vector: Vectors) -> pb.Probe:
    return pb.Probe(embedding=pb.Embedding(values=vector.tolist()))


@dataclass(frozen=True)
class Load:
    method: str
    streams: int
    templates: int
    seconds: float
    per_second: float


def insert_requests(templates: Vectors, start: int, stop: int) -> Iterator[pb.InsertTemplateRequest]:
    for i in range(start, stop):
        if i > start and i % 200_000 == 0:
            log(f"  ... {i:,} sent")
        yield pb.InsertTemplateRequest(
            gallery_id=GALLERY, reference_id=reference_id(i), template=embedding(templates[i])
        )


def in_threads(work: Callable[[int], T], threads: int) -> list[T]:
    """work(0..threads-1), in the calling thread when there is only one."""
    if threads == 1:
        return [work(0)]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(work, range(threads)))


def bulk_insert(stub: pb_grpc.MatchingServiceStub, templates: Vectors, streams: int) -> Load:
    """Load every template through BulkInsertTemplates, in `streams` concurrent streams."""
    bounds = np.linspace(0, len(templates), streams + 1).astype(int)

    def send(stream: int) -> pb.BulkInsertResponse:
        return stub.BulkInsertTemplates(insert_requests(templates, bounds[stream], bounds[stream + 1]))

    started = time.perf_counter()
    responses = in_threads(send, streams)
    seconds = time.perf_counter() - started
    inserted = sum(r.inserted for r in responses)
    if inserted != len(templates):
        errors = [e for r in responses for e in r.errors[:3]]
        raise RuntimeError(f"bulk insert stored {inserted} of {len(templates)} templates: {errors}")
    return Load("grpc BulkInsertTemplates", streams, inserted, seconds, inserted / seconds)


# -- the queries at each layer ---------------------------------------------------------


def faiss_query(index: FlatIndex, probes: Vectors) -> Query:
    def query(i: int) -> Top1:
        hits = index.search(probes[i : i + 1], TOP_K)
        return reference_id(int(hits.ids[0, 0])), float(hits.scores[0, 0])

    return query


def matcher_query(matcher: Matcher, probes: Vectors) -> Query:
    def query(i: int) -> Top1:
        best = matcher.identify(GALLERY, probes[i : i + 1], TOP_K)[0].candidates[0]
        return best.reference_id, best.score

    return query


def identify_requests(probes: Vectors) -> list[pb.IdentifyRequest]:
    """Built before timing, so the figures exclude building request messages.

    No request ids: the same requests are sent in several runs, and a stream answer to a
    repeated id is a replay from the server's ledger, not a search. A stream answers in order.
    """
    return [pb.IdentifyRequest(gallery_id=GALLERY, probe=embedding(p), top_k=TOP_K) for p in probes]


def response_top1(response: pb.IdentifyResponse) -> Top1:
    best = response.faces[0].candidates[0]
    return best.reference_id, best.score


def stream_top1(response: pb.IdentifyStreamResponse) -> Top1:
    if response.WhichOneof("outcome") != "result":
        raise RuntimeError(f"IdentifyStream request {response.request_id} failed: {response.error.message}")
    return response_top1(response.result)


def unary_query(stub: pb_grpc.MatchingServiceStub, requests: Sequence[pb.IdentifyRequest]) -> Query:
    def query(i: int) -> Top1:
        return response_top1(stub.Identify(requests[i]))

    return query


@contextlib.contextmanager
def stream_query(
    stub: pb_grpc.MatchingServiceStub, requests: Sequence[pb.IdentifyRequest]
) -> Iterator[Query]:
    """One IdentifyStream kept open; each query sends one request and waits for its answer."""
    outbox: queue.Queue[pb.IdentifyRequest | None] = queue.Queue()
    responses = iter(stub.IdentifyStream(iter(outbox.get, None)))

    def query(i: int) -> Top1:
        outbox.put(requests[i])
        return stream_top1(next(responses))

    try:
        yield query
    finally:
        outbox.put(None)
        for _ in responses:
            pass


# -- timing ------------------------------------------------------------------------------


@dataclass
class Run:
    latencies_s: list[float]  # empty where single calls cannot be timed
    seconds: float
    answers: dict[int, Top1]


def closed_loop(query: Query, count: int, threads: int, time_limit_s: float) -> Run:
    """Probes 0..count-1 shared among `threads` callers, each waiting for one answer before
    the next call, until all are done or the time limit passes; after a short warm-up."""
    for i in range(min(WARMUP_QUERIES, count)):
        query(i)
    answers: dict[int, Top1] = {}
    latencies: list[list[float]] = [[] for _ in range(threads)]
    deadline = time.perf_counter() + time_limit_s

    def caller(thread: int) -> None:
        for i in range(thread, count, threads):
            if time.perf_counter() >= deadline:
                return
            started = time.perf_counter()
            answers[i] = query(i)
            latencies[thread].append(time.perf_counter() - started)

    started = time.perf_counter()
    in_threads(caller, threads)
    return Run([x for own in latencies for x in own], time.perf_counter() - started, answers)


def pipelined_stream(
    stub: pb_grpc.MatchingServiceStub, requests: Sequence[pb.IdentifyRequest], time_limit_s: float
) -> Run:
    """One IdentifyStream with up to PIPELINE_DEPTH requests in flight: throughput only."""
    deadline = time.perf_counter() + time_limit_s
    in_flight = threading.Semaphore(PIPELINE_DEPTH)

    def outgoing() -> Iterator[pb.IdentifyRequest]:
        for request in requests:
            in_flight.acquire()
            if time.perf_counter() >= deadline:
                return
            yield request

    answers: dict[int, Top1] = {}
    started = time.perf_counter()
    for position, response in enumerate(stub.IdentifyStream(outgoing())):
        in_flight.release()
        answers[position] = stream_top1(response)
    return Run([], time.perf_counter() - started, answers)


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    name: str
    threads: int
    queries: int
    seconds: float
    qps: float
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    baseline: str | None  # the bare-FAISS measurement this one is compared with
    latency_ratio_p50: float | None  # p50 / baseline p50
    slowdown: float | None  # baseline qps / qps
    top1_checked: int  # answers whose probe has a bare-FAISS reference answer
    top1_agreement: float | None  # share of those whose top-1 equals bare FAISS's


def same_top1(a: Top1, b: Top1) -> bool:
    """Same reference, or a tie within float32 rounding."""
    return a[0] == b[0] or abs(a[1] - b[1]) <= 1e-5 * max(1.0, abs(a[1]))


def agreement(answers: dict[int, Top1], truth: dict[int, Top1]) -> tuple[int, float | None]:
    checked = [i for i in answers if i in truth]
    if not checked:
        return 0, None
    return len(checked), sum(answers[i][0] == truth[i][0] for i in checked) / len(checked)


def summarise(
    name: str, threads: int, run: Run, truth: dict[int, Top1], baseline: Measurement | None
) -> Measurement:
    milliseconds = np.asarray(run.latencies_s) * 1000.0
    timed = milliseconds.size > 0
    qps = len(run.answers) / run.seconds
    p50 = float(np.percentile(milliseconds, 50)) if timed else None
    checked, agreed = agreement(run.answers, truth)
    return Measurement(
        name=name,
        threads=threads,
        queries=len(run.answers),
        seconds=run.seconds,
        qps=qps,
        p50_ms=p50,
        p99_ms=float(np.percentile(milliseconds, 99)) if timed else None,
        mean_ms=float(milliseconds.mean()) if timed else None,
        baseline=baseline.name if baseline else None,
        latency_ratio_p50=p50 / baseline.p50_ms if baseline and baseline.p50_ms and p50 else None,
        slowdown=baseline.qps / qps if baseline else None,
        top1_checked=checked,
        top1_agreement=agreed,
    )


@dataclass(frozen=True)
class DataStats:
    """What the synthetic gallery looks like to 1:N search (from bare FAISS's answers)."""

    threshold: float
    probes: int
    mated_probes: int
    mated_top1_distance_p50: float | None
    non_mated_top1_distance_p50: float | None
    mated_rank1_hit_rate: float | None  # top-1 is the mate, within the threshold
    non_mated_false_match_rate: float | None  # top-1 within the threshold


def data_stats(dataset: Dataset, truth: dict[int, Top1], threshold: float) -> DataStats:
    mated = [i for i in truth if dataset.mates[i] >= 0]
    strangers = [i for i in truth if dataset.mates[i] < 0]

    def median(indexes: list[int]) -> float | None:
        return float(np.median([truth[i][1] for i in indexes])) if indexes else None

    def share(indexes: list[int], hit: Callable[[int], bool]) -> float | None:
        return sum(map(hit, indexes)) / len(indexes) if indexes else None

    return DataStats(
        threshold=threshold,
        probes=len(truth),
        mated_probes=len(mated),
        mated_top1_distance_p50=median(mated),
        non_mated_top1_distance_p50=median(strangers),
        mated_rank1_hit_rate=share(
            mated, lambda i: truth[i][0] == reference_id(int(dataset.mates[i])) and truth[i][1] <= threshold
        ),
        non_mated_false_match_rate=share(strangers, lambda i: truth[i][1] <= threshold),
    )


@dataclass(frozen=True)
class Correctness:
    faiss_vs_exact_checked: int
    faiss_vs_exact_agreement: float | None
    grpc_top1_checked: int
    grpc_top1_agreement: float | None  # over every gRPC answer checked


def exact_agreement(dataset: Dataset, truth: dict[int, Top1], sample: int) -> tuple[int, float | None]:
    """Bare FAISS's top-1 against safepassage.matcher.exact_search (numpy, float64) for a sample of probes."""
    chosen = sorted(truth)[:sample]
    if not chosen:
        return 0, None
    ids = np.arange(len(dataset.templates), dtype=np.int64)
    hits = exact_search(dataset.templates, ids, dataset.probes[chosen], 1, Metric.L2)
    exact = [(reference_id(int(hits.ids[j, 0])), float(hits.scores[j, 0])) for j in range(len(chosen))]
    return len(chosen), sum(same_top1(truth[i], e) for i, e in zip(chosen, exact, strict=True)) / len(chosen)


@dataclass(frozen=True)
class SizeResult:
    size: int
    load: Load
    server_start_s: float
    server_stop_s: float  # includes writing the encrypted index snapshot
    data: DataStats
    correctness: Correctness
    measurements: list[Measurement]
    peak_rss_mib: float  # of the whole process so far (client, server and bare index)
    load_average: tuple[float, float, float]  # of the machine after measuring: others' work shows here


@dataclass(frozen=True)
class Options:
    sizes: list[int]
    queries: int
    concurrency: int
    time_limit_s: float
    load_streams: int
    exact_sample: int
    seed: int
    out: Path
    data_dir: Path | None
    batching: tuple[str, ...] = ("on", "off")


class SizeRun:
    """The measurements of one gallery size, each compared with its bare-FAISS baseline."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.truth: dict[int, Top1] = {}
        self.measurements: list[Measurement] = []
        self.grpc_answers: list[tuple[int, Top1]] = []

    def closed(self, name: str, query: Query, threads: int, baseline: str | None) -> None:
        run = closed_loop(query, self.options.queries, threads, self.options.time_limit_s)
        self.record(name, threads, run, baseline)

    def record(self, name: str, threads: int, run: Run, baseline: str | None) -> None:
        if name == "faiss":
            self.truth = dict(run.answers)
        if name.startswith("grpc"):
            self.grpc_answers.extend(run.answers.items())
        base = next((m for m in self.measurements if m.name == baseline), None)
        measurement = summarise(name, threads, run, self.truth, base)
        self.measurements.append(measurement)
        log(f"  {format_row(measurement)}")

    def correctness(self, dataset: Dataset) -> Correctness:
        checked = [(i, a) for i, a in self.grpc_answers if i in self.truth]
        agreed = sum(a[0] == self.truth[i][0] for i, a in checked) / len(checked) if checked else None
        exact_checked, exact_agreed = exact_agreement(dataset, self.truth, self.options.exact_sample)
        return Correctness(exact_checked, exact_agreed, len(checked), agreed)


# Micro-batching as shipped, then off: measurement names of the "off" runs end in OFF_SUFFIX.
BATCHING_MODES: dict[str, Mapping[str, object]] = {
    "on": {},
    "off": {"matching.batching.enabled": False},
}
OFF_SUFFIX = "_batching_off"


def measure_size(size: int, options: Options) -> SizeResult:
    log(f"size {size:,}: generating data")
    dataset = synthetic_dataset(size, options.queries, options.seed + size)
    bare = FlatIndex(DIMENSION, Metric.L2)
    bare.add(np.arange(size, dtype=np.int64), dataset.templates)
    requests = identify_requests(dataset.probes)
    concurrency = options.concurrency
    stopped: list[float] = []
    run = SizeRun(options)
    starts: list[float] = []
    load: Load | None = None
    threshold = 0.0
    with tempfile.TemporaryDirectory(prefix="identify-bench-", dir=options.data_dir) as folder:
        for mode in options.batching:
            # The same data folder each time: a later server loads the gallery the first one stored.
            with running_server(Path(folder), stopped, BATCHING_MODES[mode]) as server:
                starts.append(server.start_s)
                if load is None:
                    gallery = server.galleries.CreateGallery(
                        pb.CreateGalleryRequest(gallery_id=GALLERY, purpose=pb.WATCHLIST)
                    )
                    if gallery.dimension != DIMENSION or gallery.metric != pb.L2:
                        raise RuntimeError(f"the server's model is not 128-d L2: {gallery}")
                    threshold = gallery.threshold
                    log(f"size {size:,}: loading over gRPC")
                    load = bulk_insert(server.loader, dataset.templates, options.load_streams)
                    log(f"  loaded {load.templates:,} in {load.seconds:.1f} s ({load.per_second:,.0f}/s)")
                    run.closed("faiss", faiss_query(bare, dataset.probes), 1, None)
                    run.closed("faiss_concurrent", faiss_query(bare, dataset.probes), concurrency, None)
                log(f"size {size:,}: micro-batching {mode}")
                suffix = "" if mode == "on" else OFF_SUFFIX
                stub = server.matching
                matcher = server.service.matcher
                run.closed("matcher" + suffix, matcher_query(matcher, dataset.probes), 1, "faiss")
                run.closed("grpc_unary" + suffix, unary_query(stub, requests), 1, "faiss")
                run.closed(
                    "grpc_unary_concurrent" + suffix,
                    unary_query(stub, requests),
                    concurrency,
                    "faiss_concurrent",
                )
                with stream_query(stub, requests) as streamed:
                    run.closed("grpc_stream" + suffix, streamed, 1, "faiss")
                pipelined = pipelined_stream(stub, requests, options.time_limit_s)
                run.record("grpc_stream_pipelined" + suffix, 1, pipelined, "faiss")
    assert load is not None  # options.batching is never empty
    return SizeResult(
        size=size,
        load=load,
        server_start_s=starts[0],
        server_stop_s=stopped[0],
        data=data_stats(dataset, run.truth, threshold),
        correctness=run.correctness(dataset),
        measurements=run.measurements,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        load_average=os.getloadavg(),
    )


# -- report ------------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor()


def faiss_threads_in_new_threads() -> int:
    """OpenMP threads of a FAISS search made from a new thread, such as the server's RPC workers."""
    with ThreadPoolExecutor(1) as pool:
        return int(pool.submit(faiss.omp_get_max_threads).result())


def machine_info() -> dict[str, object]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "grpcio": grpc.__version__,
        "protobuf": protobuf_version,
    }


HEADER = (
    f"{'measurement':<22} {'thr':>3} {'queries':>7} {'q/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
    f" {'x p50':>6} {'slower':>6} {'top-1':>6}"
)


def optional(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_row(m: Measurement) -> str:
    return (
        f"{m.name:<22} {m.threads:>3} {m.queries:>7} {m.qps:>8.1f} {optional(m.p50_ms, '8.2f'):>8}"
        f" {optional(m.p99_ms, '8.2f'):>8} {optional(m.latency_ratio_p50, '6.1f'):>6}"
        f" {optional(m.slowdown, '6.1f'):>6} {optional(m.top1_agreement, '6.0%'):>6}"
    )


def format_size(result: SizeResult) -> str:
    load, data, check = result.load, result.data, result.correctness
    lines = [
        f"== {result.size:,} templates: loaded over {load.method} x{load.streams} in {load.seconds:.1f} s"
        f" ({load.per_second:,.0f}/s); server start {result.server_start_s:.1f} s,"
        f" stop {result.server_stop_s:.1f} s; peak RSS {result.peak_rss_mib:,.0f} MiB;"
        f" load average {result.load_average[0]:.1f}",
        f"   data: mated top-1 distance p50 {optional(data.mated_top1_distance_p50, '.3f')},"
        f" non-mated {optional(data.non_mated_top1_distance_p50, '.3f')};"
        f" rank-1 hits {optional(data.mated_rank1_hit_rate, '.1%')},"
        f" false matches {optional(data.non_mated_false_match_rate, '.1%')} at {data.threshold:.2f}",
        f"   top-1: gRPC = FAISS {optional(check.grpc_top1_agreement, '.1%')} of {check.grpc_top1_checked};"
        f" FAISS = exact {optional(check.faiss_vs_exact_agreement, '.1%')} of {check.faiss_vs_exact_checked}",
        HEADER,
        *(format_row(m) for m in result.measurements),
    ]
    return "\n".join(lines)


def write_json(path: Path, report: dict[str, object]) -> None:
    """Atomically: a half-written results file never replaces a good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(path)


def run_benchmark(options: Options) -> dict[str, object]:
    started = time.perf_counter()
    machine = machine_info()
    results = [measure_size(size, options) for size in options.sizes]
    report: dict[str, object] = {
        "benchmark": "identify",
        "machine": machine,
        "settings": {
            "sizes": options.sizes,
            "queries": options.queries,
            "top_k": TOP_K,
            "dimension": DIMENSION,
            "metric": "l2",
            "concurrency": options.concurrency,
            "time_limit_s": options.time_limit_s,
            "load_streams": options.load_streams,
            "pipeline_depth": PIPELINE_DEPTH,
            "exact_sample": options.exact_sample,
            "batching_modes": list(options.batching),
            "seed": options.seed,
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "faiss_threads_per_search": faiss_threads_in_new_threads(),
            "tls": True,
            "mutual_tls": True,
            "rate_limits": False,
            "mated_fraction": MATED_FRACTION,
            "client_and_server": "one process",
        },
        "results": [asdict(r) for r in results],
        "total_seconds": time.perf_counter() - started,
    }
    write_json(options.out, report)
    print("\n\n".join(format_size(r) for r in results))
    print(f"\ntotal {report['total_seconds']:.0f} s; results in {options.out}")
    return report


def sizes(text: str) -> list[int]:
    values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("sizes are positive integers, e.g. 10000,100000")
    return values


def batching_modes(text: str) -> tuple[str, ...]:
    modes = tuple(part.strip() for part in text.split(",") if part.strip())
    if not modes or any(mode not in BATCHING_MODES for mode in modes) or len(set(modes)) < len(modes):
        raise argparse.ArgumentTypeError("batching modes are on and/or off, e.g. on,off")
    return modes


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=sizes, default=[10_000, 100_000, 1_000_000], help="gallery sizes")
    parser.add_argument("--queries", type=int, default=1000, help="probes per size (half of them mated)")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads for concurrent runs")
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds at most per measurement")
    parser.add_argument("--load-streams", type=int, default=1, help="concurrent BulkInsertTemplates streams")
    parser.add_argument("--exact-sample", type=int, default=20, help="probes checked against numpy search")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the temporary stores go")
    parser.add_argument(
        "--batching",
        type=batching_modes,
        default=("on", "off"),
        help="micro-batching modes to measure, in order: on (as shipped), off; default on,off",
    )
    args = parser.parse_args(argv)
    if min(args.queries, args.concurrency, args.load_streams) < 1:
        parser.error("--queries, --concurrency and --load-streams must be positive")
    return Options(
        sizes=args.sizes,
        queries=args.queries,
        concurrency=args.concurrency,
        time_limit_s=args.time_limit,
        load_streams=args.load_streams,
        exact_sample=args.exact_sample,
        seed=args.seed,
        out=args.out,
        data_dir=args.data_dir,
        batching=args.batching,
    )


def main(argv: Sequence[str] | None = None) -> int:
    run_benchmark(parse_options(argv))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
