"""Fuzzing: over 10,000 generated bad and hostile requests across every RPC.

The server must answer each with a status it means (never INTERNAL, UNKNOWN or
UNAVAILABLE), stay up (health SERVING, still answering afterwards) and leave
the stored data exactly as it was.

Two kinds of request, from one seeded generator (the seed is printed; set
SAFEPASSAGE_FUZZ_SEED to replay another):

1. structured: real protobuf messages with hostile fields (empty, huge,
   unicode, control-character and look-alike ids; NaN, infinite, denormal and
   out-of-range floats; wrong dimensions; random, truncated and corrupted
   JPEG bytes; PNG and JPEG headers claiming huge sizes; out-of-range top_k,
   thresholds and enum values; oversized restrict_to lists; forged CCTV
   authorisations), mostly sent by a role the authorisation matrix allows,
   so that they reach validation, and some by roles it does not;
2. raw: byte strings sent as the serialized request to every method path
   (random bytes, truncated and mutated encodings, invalid UTF-8, bad wire
   types, length prefixes past the end, deep group nesting).

Every write (create, insert, delete) is built to fail: it carries at least
one defect that the server must refuse (bad or unknown gallery, bad or
existing reference id, bad template, bad face selection, a role that may not
write there), and raw mutations of writes start from galleries that a few
byte edits cannot turn into a real one. Searches may succeed now and then
(a weird but valid probe); they change nothing stored.

Figures: a table printed at the end; with SAFEPASSAGE_WRITE_RESULTS=1 they are
also written to benchmarks/results/fuzz.json.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from benchmarks.fuzz_report import render
from safepassage.api.v1 import matching_pb2 as pb
from tests.pki_helpers import RolePki
from tests.server.fuzzing.corpus import load_images, normal_vector
from tests.server.fuzzing.plan import PLAN, Generator
from tests.server.fuzzing.rpcs import DIM, IMAGE_LIMIT, MESSAGE_LIMIT, REFS, P, W
from tests.server.fuzzing.runner import THREADS, run_all, serving, stop_within, stored_state, summarise
from tests.server.fuzzing.tokens import make_tokens

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

SEED = int(os.environ.get("SAFEPASSAGE_FUZZ_SEED", "20240917"))
WRITE_RESULTS = os.environ.get("SAFEPASSAGE_WRITE_RESULTS") == "1"
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "fuzz.json"


def test_fuzzing_leaves_the_server_up_and_the_data_unchanged(
    server_factory: Any,
    clients_for: Any,
    role_pki: RolePki,
    faces_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.perf_counter()
    limits = {"listen.max_message_bytes": MESSAGE_LIMIT, "faces.max_image_bytes": IMAGE_LIMIT}
    service, port, config = server_factory(**limits)
    clients = clients_for(port)
    rng = random.Random(SEED ^ 0x5EED)
    admin = clients.admin
    admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id=W, purpose=pb.WATCHLIST))
    admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id=P, purpose=pb.PROTECTED_IDENTITY))
    for reference in REFS[W]:
        admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(
                gallery_id=W,
                reference_id=reference,
                template=pb.Probe(embedding=pb.Embedding(values=normal_vector(rng))),
            )
        )
    # Protected templates enter only through EnrolRecord, with consent; here, directly, as data to guard.
    for reference in REFS[P]:
        service.matcher.insert(P, reference, normal_vector(rng))
    assert admin.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id=W)).dimension == DIM
    before = stored_state(service, clients)
    assert serving(port, role_pki)

    cases = Generator(SEED, load_images(faces_dir), make_tokens(role_pki)).cases()
    generated = time.perf_counter()
    outcomes = run_all(clients, cases)
    fuzzed = time.perf_counter()

    after = stored_state(service, clients)
    up = serving(port, role_pki)
    # Stopped here rather than by the fixture, so a shutdown that never completes fails the test
    # instead of hanging the run; then the stored data is read back by a fresh server.
    stopped = stop_within(service, 30)
    reopened = None
    if stopped:
        again, again_port, _ = server_factory(data_dir=config.storage.data_dir, **limits)
        reopened = stored_state(again, clients_for(again_port)) == before
    elapsed = time.perf_counter() - started

    results: dict[str, Any] = {
        "seed": SEED,
        **summarise(cases, outcomes),
        "client_threads": THREADS,
        "runtime_s": round(elapsed, 1),
        "fuzz_phase_s": round(fuzzed - generated, 1),
        "requests_per_s": round(len(cases) / (fuzzed - generated), 1),
        "serving_after": up,
        "state_unchanged": after == before,
        "stopped_cleanly": stopped,
        "state_unchanged_after_restart": reopened,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "grpc": grpc.__version__,
            "platform": sys.platform,
        },
    }
    with capsys.disabled():
        print("\n" + render(results))
    if WRITE_RESULTS:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    assert results["requests"] >= 10_000
    assert all(results["status_by_rpc"][rpc] for rpc in PLAN), "every RPC was fuzzed"
    assert not results["unexpected"], "statuses outside the allowed set:\n" + "\n".join(
        f"{count:6d}  {group}" for group, count in results["unexpected_by_kind"].items()
    )
    assert results["templates_inserted"] == 0 and results["probes_kept"] == 0
    assert up, "the server stopped serving"
    assert after == before, "the stored data changed"
    assert stopped, "the server did not shut down within 30 s after the fuzzing"
    assert reopened, "a server reopened on the same data sees other data"
