"""ProtectedIdentityService's role matrix against a real mutual-TLS server: every RPC x every role
(and, for the two that name a gallery, each gallery purpose), each allow and each deny."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.matcher import GalleryPurpose
from safepassage.server.authorization import GALLERY_FREE, MATRIX, PROTECTED_IDENTITY_OPERATIONS, Operation
from safepassage.server.identity import Role
from safepassage.server.protected_identity import ProtectedIdentityServicer
from tests.server.policy_promises import promised
from tests.server.protected_helpers import (
    ALL_SCOPES,
    CONSENT_TEXT,
    DURESS_PIN,
    GALLERY,
    HOLDER,
    OTHER,
    PIN,
    Person,
    enrol,
    person,
    record_message,
    signed_live,
)

pytestmark = pytest.mark.server
Code = grpc.StatusCode
WATCHLIST = "w"
GALLERY_OF = {GalleryPurpose.PROTECTED_IDENTITY: GALLERY, GalleryPurpose.WATCHLIST: WATCHLIST}
SERVICE = pb.DESCRIPTOR.services_by_name["ProtectedIdentityService"]


@dataclass(frozen=True)
class World:
    service: Any
    clients: Any
    holder: Person
    other: Person
    enrolled: pb.EnrolRecordResponse
    referral_id: int
    role_pki: Any


@pytest.fixture(scope="module")
def world(server_factory, clients_for, faces_dir, role_pki) -> World:  # type: ignore[no-untyped-def]
    service, port, _ = server_factory()
    clients = clients_for(port)
    clients.admin.galleries.CreateGallery(
        mpb.CreateGalleryRequest(gallery_id=GALLERY, purpose=mpb.PROTECTED_IDENTITY)
    )
    clients.admin.galleries.CreateGallery(
        mpb.CreateGalleryRequest(gallery_id=WATCHLIST, purpose=mpb.WATCHLIST)
    )
    holder = person(faces_dir, HOLDER)
    enrolled = enrol(clients.ngo, holder, "Sita", "Tamang", "PA1234567")
    # A duress verification raises the referral that AcknowledgeReferral names.
    clients.officer.protected.VerifyHolder(
        _verify(
            role_pki, Role.OFFICER, pb.HolderRef(recovery_code=enrolled.recovery_code), holder, DURESS_PIN
        )
    )
    (referral,) = clients.ngo.protected.ListReferrals(pb.ListReferralsRequest()).referrals
    return World(service, clients, holder, person(faces_dir, OTHER), enrolled, referral.referral_id, role_pki)


def _verify(role_pki: Any, role: Role, holder_ref: pb.HolderRef, holder: Person, pin: str = "") -> Any:
    """A VerifyHolder request with a live capture signed by the device of `role`."""
    live = signed_live(
        role_pki.clients[role], holder.photo(2), "head_turn" if role is Role.KIOSK else "supervised"
    )
    return pb.VerifyHolderRequest(
        holder=holder_ref, live=mpb.Probe(image=live.image), live_statement=live.statement, pin=pin
    )


def _enrol_request(gallery: str, holder: Person, family: str) -> pb.EnrolRecordRequest:
    return pb.EnrolRecordRequest(
        gallery_id=gallery,
        record=record_message("Role", family, "PR0000001", holder.photo(0), holder.photo(1)),
        faces=[holder.probe(0)],
        consent=pb.ConsentGiven(language="en", text=CONSENT_TEXT, granted=ALL_SCOPES),
        pin=PIN,
        duress_pin=DURESS_PIN,
    )


def _call(
    stubs: Any, role: Role, world: World, operation: Operation, gallery: str, case: str, erase_code: str
) -> Any:
    """A request valid enough that an allowed role gets OK; refused roles never reach the servicer."""
    p = stubs.protected
    by_code = pb.HolderRef(recovery_code=world.enrolled.recovery_code)
    calls: dict[Operation, Callable[[], Any]] = {
        Operation.ENROL_RECORD: lambda: p.EnrolRecord(_enrol_request(gallery, world.holder, case)),
        Operation.GET_CONSENT: lambda: p.GetConsent(pb.GetConsentRequest(holder=by_code)),
        Operation.CHANGE_CONSENT: lambda: p.ChangeConsent(
            pb.ChangeConsentRequest(
                holder=by_code,
                consent=pb.ConsentGiven(language="en", text=CONSENT_TEXT, granted=[f"share:org-{case}"]),
            )
        ),
        Operation.ISSUE_CREDENTIAL: lambda: p.IssueCredential(pb.IssueCredentialRequest(holder=by_code)),
        Operation.CHANGE_PIN: lambda: p.ChangePin(
            pb.ChangePinRequest(holder=by_code, new_pin=PIN, new_duress_pin=DURESS_PIN)
        ),
        Operation.GET_CREDENTIAL_REVOCATIONS: lambda: p.GetCredentialRevocations(
            pb.GetCredentialRevocationsRequest()
        ),
        Operation.VERIFY_HOLDER: lambda: p.VerifyHolder(_verify(world.role_pki, role, by_code, world.holder)),
        Operation.CHECK_DUPLICATE: lambda: p.CheckDuplicate(
            pb.CheckDuplicateRequest(gallery_id=gallery, probe=world.holder.probe(1))
        ),
        Operation.SHARE_RECORD: lambda: p.ShareRecord(pb.ShareRecordRequest(holder=by_code)),
        Operation.ERASE_RECORD: lambda: p.EraseRecord(
            pb.EraseRecordRequest(holder=pb.HolderRef(recovery_code=erase_code))
        ),
        Operation.LIST_REFERRALS: lambda: p.ListReferrals(pb.ListReferralsRequest(include_acknowledged=True)),
        Operation.ACKNOWLEDGE_REFERRAL: lambda: p.AcknowledgeReferral(
            pb.AcknowledgeReferralRequest(referral_id=world.referral_id)
        ),
        Operation.ROTATE_RECORD_KEYS: lambda: p.RotateRecordKeys(pb.RotateRecordKeysRequest()),
        Operation.GET_PUBLIC_KEYS: lambda: p.GetPublicKeys(pb.GetPublicKeysRequest()),
    }
    return calls[operation]()


def _allowed(operation: Operation, role: Role, purpose: GalleryPurpose) -> bool:
    # The README's promise, typed in by hand: never computed from the table under test.
    return promised(operation, role, purpose)


# Erasure last: its allowed cases erase records of their own; the refused ones aim at the shared record.
OPERATIONS = sorted(PROTECTED_IDENTITY_OPERATIONS, key=lambda o: (o is Operation.ERASE_RECORD, o.value))
CASES = [
    (operation, role, purpose)
    for operation, role in itertools.product(OPERATIONS, Role)
    for purpose in (
        (GalleryPurpose.PROTECTED_IDENTITY,)
        if operation in GALLERY_FREE
        else (GalleryPurpose.PROTECTED_IDENTITY, GalleryPurpose.WATCHLIST)
    )
]


def test_the_role_matrix_covers_every_protected_identity_method() -> None:
    methods = {m.name: m for m in SERVICE.methods}
    assert set(methods) == {o.value for o in PROTECTED_IDENTITY_OPERATIONS}
    for name, method in methods.items():
        operation = Operation(name)
        # Exactly one table decides, and it is the gallery table exactly when the request names a gallery.
        assert (operation in GALLERY_FREE) != (operation in MATRIX), name
        assert ("gallery_id" in method.input_type.fields_by_name) == (operation in MATRIX), name
        roles = GALLERY_FREE[operation] if operation in GALLERY_FREE else frozenset(MATRIX[operation])
        assert roles, f"{name}: no role may call it"
        if operation in MATRIX:  # protected records never through a watchlist gallery
            assert all(
                purposes == {GalleryPurpose.PROTECTED_IDENTITY} for purposes in MATRIX[operation].values()
            )
        assert name in vars(ProtectedIdentityServicer), f"{name} is not implemented by the servicer"
    # Officers, CCTV units and auditors have no 1:N and no enrolment over protected records.
    for operation in (Operation.CHECK_DUPLICATE, Operation.ENROL_RECORD):
        assert not {Role.OFFICER, Role.CCTV_EDGE, Role.AUDITOR, Role.ADMIN} & set(MATRIX[operation])
    # And the cases below try every method with every role.
    assert {(o.value, r) for o, r, _ in CASES} == set(itertools.product(methods, Role))


@pytest.mark.parametrize(("operation", "role", "purpose"), CASES, ids=lambda v: getattr(v, "value", str(v)))
def test_every_protected_rpc_and_role(
    world: World, operation: Operation, role: Role, purpose: GalleryPurpose
) -> None:
    allowed = _allowed(operation, role, purpose)
    if purpose is GalleryPurpose.WATCHLIST:
        assert not allowed  # EnrolRecord and CheckDuplicate on a watchlist: refused to every role
    case = f"{operation.value.lower()}-{role.value.replace('_', '-')}-{purpose.value[0]}"
    erase_code = world.enrolled.recovery_code
    victim = ""
    if operation is Operation.ERASE_RECORD and allowed:
        own = enrol(world.clients.ngo, world.other, "Erase", case, "PE0000001")
        erase_code, victim = own.recovery_code, own.record_id
    try:
        _call(world.clients.as_role(role), role, world, operation, GALLERY_OF[purpose], case, erase_code)
        code, details = Code.OK, ""
    except grpc.RpcError as error:
        code, details = error.code(), error.details() or ""
    if allowed:
        assert code not in (Code.PERMISSION_DENIED, Code.UNAUTHENTICATED), details
        assert code == Code.OK, details  # the requests are valid: an allowed role is answered in full
    else:
        assert code == Code.PERMISSION_DENIED, details
        assert role.value in details and operation.value in details
    vault = world.service.records.vault
    vault.records.get(world.enrolled.record_id)  # the shared record is never erased
    if victim:
        assert vault.erasures.tombstone(victim) is not None


def test_a_watchlist_gallery_never_takes_a_protected_record(world: World) -> None:
    """The refusals above changed nothing: the watchlist holds no template, every record is protected."""
    count = world.clients.admin.matching.CountTemplates(mpb.CountTemplatesRequest(gallery_id=WATCHLIST))
    assert count.count == 0
    vault = world.service.records.vault
    record_ids = [record_id for record_id, _ in vault.data_keys.wrapped()]
    assert world.enrolled.record_id in record_ids
    assert {vault.records.get(record_id).gallery_id for record_id in record_ids} == {GALLERY}
