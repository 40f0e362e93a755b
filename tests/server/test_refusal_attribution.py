"""Every kind of refusal at admission is logged under the certificate's client AND the request's gallery.

A real server over mutual TLS with the rate limiter on (small limits, refills
too slow to matter during the test): a role the matrix refuses, a gallery of
the wrong purpose, a CCTV stream with no or an invalid authorisation, a rate
limit and a daily budget, each for a unary call and for a stream (whose
refusal before any message names the gallery of its first message). Each
refusal's transparency-log entry must name the authenticated caller and the
gallery the request named, so an auditor sees who was refused what.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
from safepassage.server.cctv_authorisation import METADATA_KEY, sign
from safepassage.server.identity import Role
from safepassage.server.pki_issuance import IssuedCert
from tests.pki_helpers import ORGANISATIONS, RolePki

pytestmark = pytest.mark.server
Code = grpc.StatusCode
DIM = 128
WATCH, PROTECTED, ELSEWHERE = "attr-watch", "attr-protected", "attr-elsewhere"
KNOWN = np.random.default_rng(71).normal(scale=0.1, size=DIM).astype(np.float32)
# Officers: a burst of 2 searches, then one more in 1000 s; cameras: 2 a day; kiosks: 1 a day.
LIMITS = {
    "officer": {"search": {"client": {"per_s": 0.001, "burst": 2}}},
    "cctv_edge": {"search": {"client": {"per_s": 100, "burst": 100, "per_day": 2}}},
    "kiosk": {"search": {"client": {"per_s": 100, "burst": 100, "per_day": 1}}},
}


def probe() -> pb.Probe:
    return pb.Probe(embedding=pb.Embedding(values=KNOWN.tolist()))


def identify(gallery: str, request_id: str = "") -> pb.IdentifyRequest:
    return pb.IdentifyRequest(gallery_id=gallery, probe=probe(), request_id=request_id)


def token_for(admin: IssuedCert, gallery: str, cameras: tuple[str, ...]) -> str:
    return sign(
        gallery_id=gallery,
        cameras=list(cameras),
        legal_basis="Order 2026/301 of the border court",
        valid_for_s=3600,
        admin_cert=x509.load_pem_x509_certificate(admin.cert_pem),
        admin_key=load_pem_private_key(admin.key_pem, None),  # type: ignore[arg-type]
    )


@dataclass
class World:
    service: Any
    port: int
    role_pki: RolePki
    channels: list[grpc.Channel]

    def client(self, client_id: str, role: Role) -> tuple[str, pb_grpc.MatchingServiceStub]:
        """A fresh certificate of its own (so each refusal has its own limits): label and stub."""
        issued = self.role_pki.pki.issue_client(
            client_id, role, organisation=ORGANISATIONS.get(role), replace=True
        )
        channel = self.role_pki.channel_with(self.port, issued)
        self.channels.append(channel)
        return f"{role.value}:{client_id}", pb_grpc.MatchingServiceStub(channel)

    def token(self, gallery: str, camera: str) -> str:
        return token_for(self.role_pki.clients[Role.ADMIN], gallery, (camera,))

    def events(self, since: int) -> list[LogEvent]:
        log = self.service.transparency_log
        return [entry.event() for entry in log.entries(since, log.size())]

    def refused(
        self, label: str, operation: str, gallery: str, code: Code, call: Callable[[], object]
    ) -> str:
        """Make the call: it must fail with `code` and leave one entry under `label` naming `gallery`."""
        mark = self.service.transparency_log.size()
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == code, f"{operation} by {label}: {info.value.details()!r}"
        # A stream's answered messages have entries of their own (MATCH, NO_MATCH): the refusal is one.
        logged = [
            e
            for e in self.events(mark)
            if e.operation == f"MatchingService/{operation}" and e.actor == label and e.outcome == code.name
        ]
        assert [e.gallery_id for e in logged] == [gallery], (
            f"{operation} by {label} refused ({info.value.details()!r}) but logged as"
            f" {[(e.actor, e.outcome, e.gallery_id) for e in self.events(mark)]}"
        )
        return info.value.details() or ""


@pytest.fixture(scope="module")
def world(server_factory: Any, clients_for: Any, role_pki: RolePki) -> Iterator[World]:
    service, port, _ = server_factory(**{"limits.enabled": True, "limits.roles": LIMITS})
    clients = clients_for(port)
    clients.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id=WATCH, purpose=pb.WATCHLIST))
    clients.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id=ELSEWHERE, purpose=pb.WATCHLIST))
    clients.admin.galleries.CreateGallery(
        pb.CreateGalleryRequest(gallery_id=PROTECTED, purpose=pb.PROTECTED_IDENTITY)
    )
    clients.admin.matching.InsertTemplate(
        pb.InsertTemplateRequest(gallery_id=WATCH, reference_id="known", template=probe())
    )
    made = World(service, port, role_pki, [])
    yield made
    for channel in made.channels:
        channel.close()


def test_a_role_refusal_names_the_caller_and_the_gallery(world: World) -> None:
    auditor, stub = world.client("auditor-attr", Role.AUDITOR)
    says = world.refused(
        auditor, "Identify", WATCH, Code.PERMISSION_DENIED, lambda: stub.Identify(identify(WATCH))
    )
    assert "role auditor may not call Identify" in says
    # A stream the role may not open at all: its first message names the gallery.
    kiosk, kiosk_stub = world.client("kiosk-attr-role", Role.KIOSK)
    world.refused(
        kiosk,
        "IdentifyStream",
        WATCH,
        Code.PERMISSION_DENIED,
        lambda: list(kiosk_stub.IdentifyStream(iter([identify(WATCH, "r1")]), timeout=30)),
    )
    officer, officer_stub = world.client("officer-attr-role", Role.OFFICER)
    world.refused(
        officer,
        "BulkInsertTemplates",
        WATCH,
        Code.PERMISSION_DENIED,
        lambda: officer_stub.BulkInsertTemplates(
            iter([pb.InsertTemplateRequest(gallery_id=WATCH, reference_id="x", template=probe())]), timeout=30
        ),
    )


def test_a_purpose_refusal_names_the_caller_and_the_gallery(world: World) -> None:
    officer, stub = world.client("officer-attr-purpose", Role.OFFICER)
    says = world.refused(
        officer, "Identify", PROTECTED, Code.PERMISSION_DENIED, lambda: stub.Identify(identify(PROTECTED))
    )
    assert "protected_identity galleries" in says
    world.refused(
        officer,
        "IdentifyStream",
        PROTECTED,
        Code.PERMISSION_DENIED,
        lambda: list(stub.IdentifyStream(iter([identify(PROTECTED, "p1")]), timeout=30)),
    )


def test_a_missing_or_invalid_cctv_authorisation_names_the_camera_and_the_gallery(world: World) -> None:
    # Each case from a camera of its own: a refused message still counts against a camera's budget.
    cases = [
        ("cam-attr-none", None, "needs a signed authorisation"),
        ("cam-attr-malformed", "x.y.z", "malformed"),
        # Signed, but for another gallery, or for another camera.
        ("cam-attr-gallery", world.token(ELSEWHERE, "cam-attr-gallery"), f"covers gallery {ELSEWHERE!r}"),
        ("cam-attr-camera", world.token(WATCH, "cam-other"), "does not name camera 'cam-attr-camera'"),
    ]
    for client_id, token, reason in cases:
        camera, stub = world.client(client_id, Role.CCTV_EDGE)
        metadata = [(METADATA_KEY, token)] if token else []
        says = world.refused(
            camera,
            "IdentifyStream",
            WATCH,
            Code.PERMISSION_DENIED,
            lambda stub=stub, metadata=metadata: list(  # type: ignore[misc]
                stub.IdentifyStream(iter([identify(WATCH, "c1")]), metadata=metadata, timeout=30)
            ),
        )
        assert reason in says


def test_a_rate_limit_refusal_names_the_caller_and_the_gallery(world: World) -> None:
    officer, stub = world.client("officer-attr-rate", Role.OFFICER)
    stub.Identify(identify(WATCH))
    stub.Identify(identify(WATCH))
    says = world.refused(
        officer, "Identify", WATCH, Code.RESOURCE_EXHAUSTED, lambda: stub.Identify(identify(WATCH))
    )
    assert says.startswith("rate limit for client officer:officer-attr-rate reached")
    # A stream: the message that finds the bucket empty is refused, naming its own gallery.
    streamer, stream_stub = world.client("officer-attr-rate-stream", Role.OFFICER)
    messages = [identify(WATCH, "s1"), identify(WATCH, "s2"), identify(ELSEWHERE, "s3")]
    world.refused(
        streamer,
        "IdentifyStream",
        ELSEWHERE,
        Code.RESOURCE_EXHAUSTED,
        lambda: list(stream_stub.IdentifyStream(iter(messages), timeout=30)),
    )


def test_a_daily_budget_refusal_names_the_caller_and_the_gallery(world: World) -> None:
    kiosk, stub = world.client("kiosk-attr-daily", Role.KIOSK)

    def verify() -> object:
        return stub.Verify(pb.VerifyRequest(gallery_id=WATCH, reference_id="known", probe=probe()))

    verify()
    says = world.refused(kiosk, "Verify", WATCH, Code.RESOURCE_EXHAUSTED, verify)
    assert says.startswith("daily budget of 1 searches for client kiosk:kiosk-attr-daily used")
    camera, camera_stub = world.client("cam-attr-daily", Role.CCTV_EDGE)
    token = ((METADATA_KEY, world.token(WATCH, "cam-attr-daily")),)
    messages = [identify(WATCH, f"d{i}") for i in range(3)]
    says = world.refused(
        camera,
        "IdentifyStream",
        WATCH,
        Code.RESOURCE_EXHAUSTED,
        lambda: list(camera_stub.IdentifyStream(iter(messages), metadata=token, timeout=30)),
    )
    assert says.startswith("daily budget of 2 searches for client cctv_edge:cam-attr-daily used")


def test_a_refused_request_naming_no_gallery_logs_only_a_pseudonym(world: World) -> None:
    """The id of a gallery that does not exist is text the caller chose: it enters the log keyed."""
    auditor, stub = world.client("auditor-attr-unknown", Role.AUDITOR)
    chosen = "maria-lopez-1985"
    mark = world.service.transparency_log.size()
    with pytest.raises(grpc.RpcError) as info:
        stub.Identify(identify(chosen))
    assert info.value.code() == Code.PERMISSION_DENIED
    (entry,) = [e for e in world.events(mark) if e.actor == auditor]
    assert entry.gallery_id == "" and len(entry.details["gallery_hmac_sha256"]) == 64
    log = world.service.transparency_log
    assert not any(chosen.encode() in e.data for e in log.entries(0, log.size()))
