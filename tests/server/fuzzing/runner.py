"""Running the cases: sending them from threads, tallying statuses, and the server's state."""

from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.server.identity import Role
from tests.pki_helpers import RolePki

from .plan import PLAN
from .rpcs import ALLOWED, CODE_NAMES, DIM, OK, RESPONSE_TYPES, STREAMS, Case, P, W, path_of

THREADS = 4
CALL_TIMEOUT_S = 60.0


@dataclass
class Outcome:
    status: str
    items: list[str]
    inserted: int = 0
    kept: int = 0
    details: str = ""


def identity(data: bytes) -> bytes:
    return data


def serializer(raw: bool) -> Callable[[Any], bytes]:
    return identity if raw else (lambda message: message.SerializeToString())


def execute(channel: grpc.Channel, case: Case) -> Outcome:
    path = path_of(case.rpc)
    decode = RESPONSE_TYPES[case.rpc].FromString
    kwargs: dict[str, Any] = {"timeout": CALL_TIMEOUT_S}
    if case.metadata:
        kwargs["metadata"] = case.metadata
    items: list[str] = []
    inserted = kept = 0
    try:
        shape = STREAMS.get(case.rpc, "unary")
        if shape == "unary":
            channel.unary_unary(path, request_serializer=serializer(case.raw), response_deserializer=decode)(
                case.request, **kwargs
            )
        elif shape == "stream_unary":
            response = channel.stream_unary(
                path, request_serializer=serializer(case.raw), response_deserializer=decode
            )(iter(case.request), **kwargs)
            inserted = response.inserted
            items = [CODE_NAMES.get(e.code, f"code {e.code}") for e in response.errors]
            items += ["(unreported)"] * (response.failed - len(response.errors))
        else:
            responses = channel.stream_stream(
                path, request_serializer=serializer(case.raw), response_deserializer=decode
            )(iter(case.request), **kwargs)
            for response in responses:
                if response.WhichOneof("outcome") == "error":
                    items.append(CODE_NAMES.get(response.error.code, f"code {response.error.code}"))
                else:
                    items.append(OK)
                kept += response.probe_id != 0
    except grpc.RpcError as error:
        return Outcome(error.code().name, items, inserted, kept, error.details() or "")
    return Outcome(OK, items, inserted, kept)


def stored_state(service: Any, clients: Any) -> dict[str, Any]:
    """Everything stored that the fuzzing must leave alone, as the API and the store see it."""
    galleries = clients.admin.galleries.ListGalleries(pb.ListGalleriesRequest()).galleries
    state: dict[str, Any] = {
        "galleries": sorted(
            (
                g.gallery_id,
                g.purpose,
                g.model,
                g.dimension,
                g.metric,
                g.threshold,
                g.size,
                g.created_at.ToNanoseconds(),
            )
            for g in galleries
        ),
        "kept_probes": service.kept_probes.count(),
    }
    probes = [[math.sin(seed + i) * 0.1 for i in range(DIM)] for seed in range(4)]
    for gallery in (W, P):
        stored = service.template_store.galleries.state(gallery)
        state[gallery] = {
            "store": (stored.size, stored.generation, stored.digest_hex),
            "index": service.matcher.count(gallery),
            "count": clients.admin.matching.CountTemplates(
                pb.CountTemplatesRequest(gallery_id=gallery)
            ).count,
            # Watchlists through the API; protected galleries have no 1:N RPC, so the matcher itself.
            "answers": [
                [
                    (c.reference_id, c.score, c.rank, c.match)
                    for c in _identify(service, clients, gallery, probe)
                ]
                for probe in probes
            ],
        }
    return state


def serving(port: int, pki: RolePki) -> bool:
    """Health SERVING, and the gRPC server still answers a fresh connection's real call."""
    channel = pki.channel_for(port, Role.ADMIN)
    try:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        listed = channel.unary_unary(
            path_of("ListGalleries"),
            request_serializer=pb.ListGalleriesRequest.SerializeToString,
            response_deserializer=pb.ListGalleriesResponse.FromString,
        )(pb.ListGalleriesRequest(), timeout=10)
        return health.status == health_pb2.HealthCheckResponse.SERVING and len(listed.galleries) == 2
    finally:
        channel.close()


def run_all(clients: Any, cases: Sequence[Case]) -> list[Outcome]:
    channels = {role: clients.as_role(role).channel for role in Role}

    def run(case: Case) -> Outcome:
        return execute(channels[case.role], case)

    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="fuzz") as pool:
        return list(pool.map(run, cases, chunksize=16))


def stop_within(service: Any, seconds: float) -> bool:
    """Stop the server (as its fixture would) but give up waiting after `seconds`."""
    stopper = threading.Thread(target=service.stop, kwargs={"grace_s": 1}, name="fuzz-stop", daemon=True)
    stopper.start()
    stopper.join(seconds)
    return not stopper.is_alive()


def summarise(cases: Sequence[Case], outcomes: Sequence[Outcome]) -> dict[str, Any]:
    status_by_rpc: dict[str, Counter[str]] = defaultdict(Counter)
    items_by_rpc: dict[str, Counter[str]] = defaultdict(Counter)
    unexpected: Counter[str] = Counter()
    examples: list[str] = []
    for case, outcome in zip(cases, outcomes, strict=True):
        status_by_rpc[case.rpc][outcome.status] += 1
        for item in outcome.items:
            items_by_rpc[case.rpc][item] += 1
        for status in (outcome.status, *outcome.items):
            if status in ALLOWED:
                continue
            group = f"{case.rpc} -> {status}: {case.kind}"
            unexpected[group] += 1
            if unexpected[group] <= 2:
                shown = f" bytes={case.request[:48]!r}" if isinstance(case.request, bytes) else ""
                examples.append(f"{case.rpc} -> {status}: {case.label}{shown} [{outcome.details[:80]}]")
    raw = sum(case.raw for case in cases)
    return {
        "requests": len(cases),
        "structured_requests": len(cases) - raw,
        "raw_requests": raw,
        "stream_messages": sum(len(c.request) for c in cases if c.rpc in STREAMS),
        "image_requests": sum(1 for c in cases if c.images),
        "rpcs": list(PLAN),
        "status_by_rpc": {rpc: dict(sorted(status_by_rpc[rpc].items())) for rpc in PLAN},
        "stream_items_by_rpc": {rpc: dict(sorted(items_by_rpc[rpc].items())) for rpc in STREAMS},
        "status_totals": dict(sorted(sum(status_by_rpc.values(), Counter()).items())),
        "unexpected": sum(unexpected.values()),
        "unexpected_by_kind": dict(sorted(unexpected.items())),
        "unexpected_examples": examples,
        "templates_inserted": sum(o.inserted for o in outcomes),
        "probes_kept": sum(o.kept for o in outcomes),
    }


def _identify(service: Any, clients: Any, gallery: str, probe: list[float]) -> list[Any]:
    if gallery == W:
        request = pb.IdentifyRequest(
            gallery_id=gallery, probe=pb.Probe(embedding=pb.Embedding(values=probe)), top_k=100
        )
        return list(clients.officer.matching.Identify(request).faces[0].candidates)
    (result,) = service.matcher.identify(gallery, [probe], top_k=100)
    return list(result.candidates)
