"""The whole authorisation matrix against a real mutual-TLS server: every RPC x every role x
each gallery purpose, each allow and each deny; and clients without a valid certificate."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from safepassage.api.v1 import access_pb2 as apb
from safepassage.api.v1 import access_pb2_grpc as apb_grpc
from safepassage.api.v1 import administration_pb2 as adpb
from safepassage.api.v1 import administration_pb2_grpc as adpb_grpc
from safepassage.api.v1 import capture_pb2 as cpb
from safepassage.api.v1 import capture_pb2_grpc as cpb_grpc
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.api.v1 import protected_identity_pb2 as ppb
from safepassage.api.v1 import travel_document_pb2 as tpb
from safepassage.api.v1 import travel_document_pb2_grpc as tpb_grpc
from safepassage.matcher import GalleryPurpose
from safepassage.server.authorization import GALLERY_FREE, PROTECTED_IDENTITY_OPERATIONS, Operation
from safepassage.server.cctv_authorisation import METADATA_KEY, sign
from safepassage.server.identity import Role
from tests.pki_helpers import RolePki, foreign_cert
from tests.server.policy_promises import PROMISES, promised
from tests.travel_document.issuer import issue_chip, make_csca, make_signer, photo_of

pytestmark = pytest.mark.server
DIM = 128
GALLERY = {GalleryPurpose.WATCHLIST: "w", GalleryPurpose.PROTECTED_IDENTITY: "p"}
PB_PURPOSE = {
    GalleryPurpose.WATCHLIST: pb.WATCHLIST,
    GalleryPurpose.PROTECTED_IDENTITY: pb.PROTECTED_IDENTITY,
}
Code = grpc.StatusCode


def emb(seed: int) -> pb.Probe:
    return pb.Probe(
        embedding=pb.Embedding(values=np.random.default_rng(seed).normal(scale=0.1, size=DIM).tolist())
    )


@pytest.fixture(scope="module")
def world(server_factory, clients_for, role_pki: RolePki, faces_dir: Path):  # type: ignore[no-untyped-def]
    service, port, _ = server_factory()
    clients = clients_for(port)
    for purpose, gallery in GALLERY.items():
        clients.admin.galleries.CreateGallery(
            pb.CreateGalleryRequest(gallery_id=gallery, purpose=PB_PURPOSE[purpose])
        )
    clients.admin.matching.InsertTemplate(
        pb.InsertTemplateRequest(gallery_id="w", reference_id="known", template=emb(1))
    )
    # Protected templates enter only through EnrolRecord; here directly, as a target to reach.
    service.matcher.insert("p", "known", np.asarray(emb(1).embedding.values))
    admin = role_pki.clients[Role.ADMIN]
    token = sign(
        gallery_id="w",
        cameras=["cam-1"],
        legal_basis="test order 1",
        valid_for_s=3600,
        admin_cert=x509.load_pem_x509_certificate(admin.cert_pem),
        admin_key=load_pem_private_key(admin.key_pem, None),  # type: ignore[arg-type]
    )
    # A passport chip (DG2 only: no CSCA is configured here) and its holder's live face.
    chip = issue_chip(photo_of(faces_dir, "Tony_Blair", 1), make_signer(make_csca()))
    document = tpb.VerifyDocumentRequest(
        document=tpb.TravelDocument(dg2=chip.dg2), probe=pb.Probe(image=photo_of(faces_dir, "Tony_Blair", 2))
    )
    return port, clients, token, service, document


def _setup_target(
    clients: Any, service: Any, operation: Operation, purpose: GalleryPurpose, case: str
) -> str:
    """Throwaway state for operations that change or need something, made by an allowed role."""
    gallery = GALLERY[purpose]
    if operation is Operation.DELETE_GALLERY:
        gallery = f"gone-{case}"
        clients.admin.galleries.CreateGallery(
            pb.CreateGalleryRequest(gallery_id=gallery, purpose=PB_PURPOSE[purpose])
        )
    if operation is Operation.DELETE_TEMPLATE:
        service.matcher.insert(gallery, case, np.asarray(emb(2).embedding.values))
    return gallery


def _call(
    stubs: Any,
    operation: Operation,
    gallery: str,
    purpose: GalleryPurpose,
    case: str,
    token: str,
    document: tpb.VerifyDocumentRequest,
) -> Any:
    m, g = stubs.matching, stubs.galleries
    admin = adpb_grpc.AdministrationServiceStub(stubs.channel)
    calls: dict[Operation, Callable[[], Any]] = {
        Operation.CREATE_GALLERY: lambda: g.CreateGallery(
            pb.CreateGalleryRequest(gallery_id=f"new-{case}", purpose=PB_PURPOSE[purpose])
        ),
        Operation.LIST_GALLERIES: lambda: g.ListGalleries(pb.ListGalleriesRequest()),
        Operation.DESCRIBE_GALLERY: lambda: g.DescribeGallery(pb.DescribeGalleryRequest(gallery_id=gallery)),
        Operation.DELETE_GALLERY: lambda: g.DeleteGallery(pb.DeleteGalleryRequest(gallery_id=gallery)),
        Operation.CALIBRATE_GALLERY: lambda: g.CalibrateGallery(
            pb.CalibrateGalleryRequest(gallery_id=gallery, impostors=[emb(9), emb(10)])
        ),
        Operation.RENEW_TEMPLATE_PROTECTION: lambda: g.RenewTemplateProtection(
            pb.RenewTemplateProtectionRequest()
        ),
        Operation.INSERT_TEMPLATE: lambda: m.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id=gallery, reference_id=case, template=emb(3))
        ),
        Operation.BULK_INSERT_TEMPLATES: lambda: m.BulkInsertTemplates(
            iter([pb.InsertTemplateRequest(gallery_id=gallery, reference_id=f"{case}-b", template=emb(4))])
        ),
        Operation.DELETE_TEMPLATE: lambda: m.DeleteTemplate(
            pb.DeleteTemplateRequest(gallery_id=gallery, reference_id=case)
        ),
        Operation.COUNT_TEMPLATES: lambda: m.CountTemplates(pb.CountTemplatesRequest(gallery_id=gallery)),
        Operation.IDENTIFY: lambda: m.Identify(pb.IdentifyRequest(gallery_id=gallery, probe=emb(1))),
        Operation.VERIFY: lambda: m.Verify(
            pb.VerifyRequest(gallery_id=gallery, reference_id="known", probe=emb(1))
        ),
        Operation.IDENTIFY_STREAM: lambda: list(
            m.IdentifyStream(
                iter([pb.IdentifyRequest(gallery_id=gallery, probe=emb(1), request_id="q")]),
                metadata=[(METADATA_KEY, token)],
            )
        ),
        Operation.CONFIRM_MATCH: lambda: m.ConfirmMatch(
            pb.ConfirmMatchRequest(gallery_id=gallery, probe_id=987654)
        ),
        Operation.DISMISS_MATCH: lambda: m.DismissMatch(
            pb.DismissMatchRequest(gallery_id=gallery, probe_id=987654)
        ),
        Operation.LIST_KEPT_HITS: lambda: m.ListKeptHits(pb.ListKeptHitsRequest(gallery_id=gallery)),
        Operation.GET_REFERENCE_IMAGE: lambda: m.GetReferenceImage(
            pb.GetReferenceImageRequest(gallery_id=gallery, reference_id="known")
        ),
        Operation.RECORD_DECISION: lambda: m.RecordDecision(
            pb.RecordDecisionRequest(
                gallery_id=gallery,
                search=pb.SEARCH_IDENTIFY,
                service_decision=pb.MATCH,
                decision=pb.REVIEW_CONFIRM,
                reason=pb.REASON_SAME_PERSON,
            )
        ),
        Operation.DESCRIBE_CALLER: lambda: apb_grpc.AccessServiceStub(stubs.channel).DescribeCaller(
            apb.DescribeCallerRequest()
        ),
        Operation.VERIFY_DOCUMENT: lambda: tpb_grpc.TravelDocumentServiceStub(stubs.channel).VerifyDocument(
            document, timeout=60
        ),
        Operation.ISSUE_CERTIFICATE: lambda: admin.IssueCertificate(
            adpb.IssueCertificateRequest(client_id=f"issued-{case}", role="officer")
        ),
        Operation.LIST_CERTIFICATES: lambda: admin.ListCertificates(adpb.ListCertificatesRequest()),
        Operation.LIST_AUTHORISATIONS: lambda: admin.ListAuthorisations(adpb.ListAuthorisationsRequest()),
        # This server keeps no CCTV authority key: an allowed caller is answered FAILED_PRECONDITION.
        Operation.SIGN_AUTHORISATION: lambda: admin.SignAuthorisation(
            adpb.SignAuthorisationRequest(gallery_id=gallery, cameras=["cam-1"], legal_basis="Order 1")
        ),
        Operation.LIST_FISHING_ALERTS: lambda: admin.ListFishingAlerts(adpb.ListFishingAlertsRequest()),
        Operation.LIST_TREE_HEADS: lambda: admin.ListTreeHeads(adpb.ListTreeHeadsRequest()),
        Operation.LIST_LOG_ENTRIES: lambda: admin.ListLogEntries(adpb.ListLogEntriesRequest(count=1)),
        Operation.GET_CONSISTENCY_PROOF: lambda: admin.GetConsistencyProof(
            adpb.GetConsistencyProofRequest(first=0, second=0)
        ),
        Operation.ASSESS_CAPTURE: lambda: cpb_grpc.CaptureServiceStub(stubs.channel).AssessCapture(
            cpb.AssessCaptureRequest(image=document.probe.image)
        ),
        Operation.RECORD_DOCUMENT_DECISION: lambda: tpb_grpc.TravelDocumentServiceStub(
            stubs.channel
        ).RecordDocumentDecision(
            tpb.RecordDocumentDecisionRequest(
                # A check this role made, where it may check documents (an officer): its answer's.
                check_id=(check := _document_check(stubs, document)).check_id,
                service_decision=check.decision,
                passive_authentication=check.passive_authentication.status,
                decision=pb.REVIEW_CONFIRM,
                reason=pb.REASON_SAME_PERSON,
            )
        ),
        Operation.START_LIVENESS: lambda: cpb_grpc.CaptureServiceStub(stubs.channel).StartLiveness(
            cpb.StartLivenessRequest()
        ),
        # A challenge drawn as an allowed role (officer) and answered with a still photo: no turn.
        Operation.CHECK_LIVENESS: lambda: cpb_grpc.CaptureServiceStub(stubs.channel).CheckLiveness(
            cpb.CheckLivenessRequest(
                challenge=_challenge(stubs),
                frames=[cpb.LivenessFrame(image=document.probe.image, at_ms=ms) for ms in (0, 100)],
            )
        ),
        # Nobody holds this id: an allowed caller is answered NOT_FOUND, and nothing is revoked.
        Operation.REVOKE_CERTIFICATE: lambda: admin.RevokeCertificate(
            adpb.RevokeCertificateRequest(target=f"nobody-{case}")
        ),
    }
    return calls[operation]()


def _document_check(stubs: Any, document: tpb.VerifyDocumentRequest) -> tpb.VerifyDocumentResponse:
    """A chip check made by the calling role, or a well-formed answer of none where it may not check."""
    try:
        answer: tpb.VerifyDocumentResponse = tpb_grpc.TravelDocumentServiceStub(stubs.channel).VerifyDocument(
            document, timeout=60
        )
    except grpc.RpcError:
        return tpb.VerifyDocumentResponse(
            check_id="chk_" + "a" * 48,
            decision=pb.MATCH,
            passive_authentication=tpb.PassiveAuthentication(status=tpb.PA_NOT_CHECKED),
        )
    return answer


def _challenge(stubs: Any) -> bytes:
    """A liveness challenge drawn by the calling role, or by nobody (empty) where it may not draw one."""
    try:
        answer = cpb_grpc.CaptureServiceStub(stubs.channel).StartLiveness(cpb.StartLivenessRequest())
    except grpc.RpcError:
        return b""
    challenge: bytes = answer.challenge
    return challenge


# ProtectedIdentityService has its own role tests (tests/server/test_protected_authorization.py).
MATCHING_OPERATIONS = [o for o in Operation if o not in PROTECTED_IDENTITY_OPERATIONS]
CASES = [
    (operation, role, purpose)
    for operation, role in itertools.product(MATCHING_OPERATIONS, Role)
    for purpose in ((GalleryPurpose.WATCHLIST,) if operation in GALLERY_FREE else tuple(GalleryPurpose))
]


def test_the_promise_table_names_every_operation_once() -> None:
    assert set(PROMISES) == set(Operation)
    for operation, cells in PROMISES.items():
        # "*" (no gallery named) exactly for the operations that name none.
        assert ("*" in cells) <= (operation in GALLERY_FREE), operation
        assert all(cell in ("*", "-") for cell in cells) == (operation in GALLERY_FREE), operation


def test_the_matrix_covers_every_rpc() -> None:
    methods = {
        m.name
        for api in (pb, ppb, apb, tpb, adpb, cpb)
        for s in api.DESCRIPTOR.services_by_name.values()
        for m in s.methods
    }
    assert methods == {o.value for o in Operation}
    assert {m.name for m in ppb.DESCRIPTOR.services_by_name["ProtectedIdentityService"].methods} == {
        o.value for o in PROTECTED_IDENTITY_OPERATIONS
    }


@pytest.mark.parametrize(("operation", "role", "purpose"), CASES, ids=lambda v: getattr(v, "value", str(v)))
def test_every_rpc_role_and_purpose(world, operation: Operation, role: Role, purpose: GalleryPurpose) -> None:  # type: ignore[no-untyped-def]
    _, clients, token, service, document = world
    allowed = promised(operation, role, purpose)  # the README's promise, not the table under test
    case = f"{operation.value.lower()}-{role.value.replace('_', '-')}-{purpose.value[0]}"
    gallery = _setup_target(clients, service, operation, purpose, case)
    try:
        _call(clients.as_role(role), operation, gallery, purpose, case, token, document)
        code = Code.OK
    except grpc.RpcError as error:
        code, details = error.code(), error.details()
    if operation is Operation.SIGN_AUTHORISATION and allowed:
        assert code == Code.FAILED_PRECONDITION and "cctv.signing_key_file" in (details or ""), details
    elif allowed:
        # ConfirmMatch or DismissMatch of a probe that was never kept is NOT_FOUND: allowed, and answered.
        assert code in (Code.OK, Code.NOT_FOUND), details
    else:
        assert code == Code.PERMISSION_DENIED
        assert role.value in (details or "")
    if operation is Operation.DELETE_GALLERY and not allowed:
        clients.admin.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id=gallery))  # still there


def _health(channel: grpc.Channel) -> Code:
    try:
        pb_grpc.GalleryServiceStub(channel).ListGalleries(pb.ListGalleriesRequest(), timeout=10)
    except grpc.RpcError as error:
        return error.code()
    return Code.OK


def test_clients_without_a_valid_certificate_are_refused(world, role_pki: RolePki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = world[0]
    with role_pki.channel_with(port, None) as channel:
        assert _health(channel) == Code.UNAVAILABLE  # no client certificate: the handshake fails
    with role_pki.channel_with(port, role_pki.expired("admin-expired", Role.ADMIN)) as channel:
        assert _health(channel) == Code.UNAVAILABLE
    with role_pki.channel_with(port, foreign_cert(tmp_path / "other-ca", "admin-1", Role.ADMIN)) as channel:
        assert _health(channel) == Code.UNAVAILABLE
    fresh = role_pki.pki.issue_client("admin-revoked", Role.ADMIN)
    with role_pki.channel_with(port, fresh) as channel:
        assert _health(channel) == Code.OK
        role_pki.pki.revoke("admin-revoked")
        assert _health(channel) == Code.UNAUTHENTICATED  # the very next call, same connection
