"""Thresholds belong to the gallery: a camera may not choose one, anyone else only a stricter one.

Against a real server over mutual TLS: a camera naming any threshold or
target FPIR is refused and nothing is kept; an officer asking for a looser
threshold than the gallery's (Identify, Verify, IdentifyStream; a target FPIR
that works out looser) is refused, on an L2 gallery (lower is closer) and on
a cosine one (higher is closer); a stricter one works and the transparency
log shows the threshold and its source; and the fishing detector counts what
the gallery's own threshold decided, not what a stricter threshold made of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.audit import LogEvent
from safepassage.matcher import GalleryPurpose, GallerySpec, Metric
from safepassage.server.cctv_authorisation import METADATA_KEY, sign
from safepassage.server.identity import Role
from tests.pki_helpers import RolePki

pytestmark = pytest.mark.server
Code = grpc.StatusCode
DIM = 128
L2, COS, FPIR = "own-l2", "own-cosine", "own-fpir"  # L2 threshold 0.5 (the watchlist default); cosine 0.5
RNG = np.random.default_rng(97)
TEMPLATES = RNG.normal(scale=0.1, size=(10, DIM)).astype(np.float32)
NEAR = TEMPLATES[0] + 0.001  # L2 ~0.01 from templates[0]: a match at any sane threshold
STRANGER = RNG.normal(scale=0.1, size=DIM).astype(np.float32)  # L2 ~1.4 from every template


def emb(vector: np.ndarray) -> pb.Probe:
    return pb.Probe(embedding=pb.Embedding(values=vector.tolist()))


def identify(gallery: str, vector: np.ndarray = NEAR, **kwargs: Any) -> pb.IdentifyRequest:
    return pb.IdentifyRequest(gallery_id=gallery, probe=emb(vector), **kwargs)


def verify(gallery: str, vector: np.ndarray = NEAR, **kwargs: Any) -> pb.VerifyRequest:
    return pb.VerifyRequest(gallery_id=gallery, reference_id="t0", probe=emb(vector), **kwargs)


@dataclass
class World:
    service: Any
    clients: Any
    role_pki: RolePki
    channels: list[grpc.Channel]

    @property
    def officer(self) -> pb_grpc.MatchingServiceStub:
        stub: pb_grpc.MatchingServiceStub = self.clients.officer.matching
        return stub

    def stub(self, client_id: str, role: Role) -> pb_grpc.MatchingServiceStub:
        issued = self.role_pki.pki.issue_client(client_id, role, replace=True)
        channel = self.role_pki.channel_with(self.clients.port, issued)
        self.channels.append(channel)
        return pb_grpc.MatchingServiceStub(channel)

    def camera_stream(self, *requests: pb.IdentifyRequest) -> list[pb.IdentifyStreamResponse]:
        admin = self.role_pki.clients[Role.ADMIN]
        token = sign(
            gallery_id=L2,
            cameras=["cam-1"],
            legal_basis="Order 2026/310 of the border court",
            valid_for_s=3600,
            admin_cert=x509.load_pem_x509_certificate(admin.cert_pem),
            admin_key=load_pem_private_key(admin.key_pem, None),  # type: ignore[arg-type]
        )
        camera = self.clients.as_role(Role.CCTV_EDGE).matching
        return list(camera.IdentifyStream(iter(requests), metadata=[(METADATA_KEY, token)], timeout=30))

    def events(self, since: int = 0) -> list[LogEvent]:
        log = self.service.transparency_log
        return [entry.event() for entry in log.entries(since, log.size())]

    def last(self, actor: str, operation: str) -> LogEvent:
        found = [
            e for e in self.events() if e.actor == actor and e.operation == f"MatchingService/{operation}"
        ]
        return found[-1]


def refused(call: Callable[[], object], says: str = "") -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == Code.PERMISSION_DENIED, info.value.details()
    details = info.value.details() or ""
    assert says in details, details
    return details


@pytest.fixture(scope="module")
def world(server_factory: Any, clients_for: Any, role_pki: RolePki) -> Any:
    service, port, _ = server_factory(
        **{
            # Only the miss-share rule, over a handful of searches: a trawl of 3 misses trips it.
            "fishing.enabled": True,
            "fishing.max_searches": 0,
            "fishing.max_galleries": 0,
            "fishing.no_match_min_searches": 3,
            "fishing.max_no_match_share": 0.5,
        }
    )
    clients = clients_for(port)
    for gallery in (L2, FPIR):
        clients.admin.galleries.CreateGallery(
            pb.CreateGalleryRequest(gallery_id=gallery, purpose=pb.WATCHLIST)
        )
    model = clients.admin.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id=L2)).model
    service.matcher.create_gallery(GallerySpec(COS, GalleryPurpose.WATCHLIST, model, DIM, Metric.COSINE, 0.5))
    for gallery in (L2, COS, FPIR):
        for i, vector in enumerate(TEMPLATES):
            service.matcher.insert(gallery, f"t{i}", vector)
    # Calibrated so that a target FPIR of 0.25 means a threshold near 0.3 (stricter than 0.5) and one
    # of 0.75 a threshold near 1.4 (looser): half the impostors come close to a template, half do not.
    directions = RNG.normal(size=(10, DIM)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    close = TEMPLATES + directions * np.linspace(0.2, 0.4, 10, dtype=np.float32)[:, None]
    far = RNG.normal(scale=0.1, size=(10, DIM)).astype(np.float32)
    clients.admin.galleries.CalibrateGallery(
        pb.CalibrateGalleryRequest(gallery_id=FPIR, impostors=[emb(v) for v in (*close, *far)])
    )
    made = World(service, clients, role_pki, [])
    yield made
    for channel in made.channels:
        channel.close()


def test_a_camera_may_not_name_a_threshold_and_nothing_is_kept(world: World) -> None:
    kept, replies = world.service.kept_probes.count(), world.service.stream_replies.count()
    mark = world.service.transparency_log.size()
    # Looser (the stranger would match at 2.0), stricter, or a target FPIR: all refused outright.
    for asked in ({"threshold": 2.0}, {"threshold": 0.1}, {"target_fpir": 0.01}):
        refused(
            lambda asked=asked: world.camera_stream(identify(L2, STRANGER, request_id="cam-t", **asked)),  # type: ignore[misc]
            "role cctv_edge may not choose the threshold of IdentifyStream",
        )
    assert world.service.kept_probes.count() == kept and world.service.stream_replies.count() == replies
    refusals = [
        e for e in world.events(mark) if e.actor == "cctv_edge:cam-1" and e.operation.endswith("Stream")
    ]
    assert [(e.outcome, e.gallery_id) for e in refusals] == [("PERMISSION_DENIED", L2)] * 3
    # Without a threshold the camera searches at the gallery's: the stranger is no hit, nothing is kept.
    (answer,) = world.camera_stream(identify(L2, STRANGER, request_id="cam-own"))
    assert answer.result.decision == pb.NO_MATCH and answer.probe_id == 0
    assert world.service.kept_probes.count() == kept


def test_an_officer_may_not_loosen_the_threshold(world: World) -> None:
    says = "looser than the gallery's own (higher, l2)"
    refused(lambda: world.officer.Identify(identify(L2, STRANGER, threshold=2.0)), says)
    refused(lambda: world.officer.Identify(identify(L2, threshold=0.51)), says)
    refused(lambda: world.officer.Verify(verify(L2, STRANGER, threshold=2.0)), says)
    refused(
        lambda: list(world.officer.IdentifyStream(iter([identify(L2, threshold=0.9, request_id="o1")]))), says
    )
    # Cosine: higher is closer, so a lower threshold is the looser one.
    says = "looser than the gallery's own (lower, cosine)"
    refused(lambda: world.officer.Identify(identify(COS, threshold=0.3)), says)
    refused(lambda: world.officer.Verify(verify(COS, threshold=0.3)), says)
    # A target FPIR is judged by the threshold it works out to.
    refused(lambda: world.officer.Identify(identify(FPIR, STRANGER, target_fpir=0.75)), "looser")


def test_an_officer_may_tighten_it_and_the_log_shows_the_source(world: World) -> None:
    actor = "officer:officer-1"
    answer = world.officer.Identify(identify(L2, threshold=0.3))
    assert answer.decision == pb.MATCH and answer.threshold == pytest.approx(0.3)
    assert answer.threshold_source == pb.REQUEST_THRESHOLD
    entry = world.last(actor, "Identify")
    assert (entry.outcome, entry.gallery_id) == ("MATCH", L2)
    assert entry.details["threshold_source"] == "REQUEST"
    assert entry.details["threshold_micro"] == "300000"
    # The gallery's own threshold, named as it is (float32 on the wire), is not looser.
    world.officer.Identify(identify(L2, threshold=0.5))
    world.officer.Identify(identify(L2))
    entry = world.last(actor, "Identify")
    assert (entry.details["threshold_source"], entry.details["threshold_micro"]) == ("GALLERY", "500000")
    verified = world.officer.Verify(verify(L2, threshold=0.05))
    assert verified.decision == pb.MATCH
    entry = world.last(actor, "Verify")
    assert (entry.details["threshold_source"], entry.details["threshold_micro"]) == ("REQUEST", "50000")
    assert world.officer.Identify(identify(COS, threshold=0.9)).threshold == pytest.approx(0.9)
    assert world.last(actor, "Identify").details["threshold_source"] == "REQUEST"
    strict = world.officer.Identify(identify(FPIR, target_fpir=0.25))
    assert strict.threshold_source == pb.TARGET_FPIR and strict.threshold < 0.5
    assert world.last(actor, "Identify").details["threshold_source"] == "TARGET_FPIR"
    (streamed,) = world.officer.IdentifyStream(iter([identify(L2, threshold=0.2, request_id="tight-1")]))
    assert streamed.result.threshold == pytest.approx(0.2)
    entry = world.last(actor, "IdentifyStream")
    assert (entry.details["threshold_source"], entry.details["threshold_micro"]) == ("REQUEST", "200000")


def test_fishing_counts_what_the_gallery_threshold_decided(world: World) -> None:
    """A stricter threshold turns hits into misses: those must not look like a trawl, nor a trawl's
    misses be hidden by a looser view of them."""
    strict = world.stub("officer-strict", Role.OFFICER)
    trawler = world.stub("officer-trawl", Role.OFFICER)
    for _ in range(4):
        # A hit by the gallery's threshold, a miss by the request's near-zero one.
        assert strict.Identify(identify(L2, threshold=0.0001)).decision == pb.NO_MATCH
        assert trawler.Identify(identify(L2, STRANGER)).decision == pb.NO_MATCH
    entry = world.last("officer:officer-strict", "Identify")
    assert (entry.outcome, entry.details["gallery_decision"]) == ("NO_MATCH", "MATCH")
    alerts = {e.actor for e in world.events() if e.operation == "alert.fishing"}
    assert "officer:officer-trawl" in alerts
    assert "officer:officer-strict" not in alerts
