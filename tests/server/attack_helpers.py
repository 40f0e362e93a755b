"""Shared set-up for the attack suite on protected records (test_protected_attacks*.py).

A real mutual-TLS server with an agency reader key, a short PIN lock, the
fishing detector on with a small volume limit, and devices: the session PKI's
role clients (ngo-1, kiosk-1, officer-1) and attacker certificates issued on
demand (client ids "atk-..."). `refused` makes one call that must fail and
checks the transparency-log entry it left: the caller's label and, where the
server knows the record, the record's hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from safepassage import credential as holder_credential
from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.api.v1 import matching_pb2_grpc as mpb_grpc
from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.api.v1 import protected_identity_pb2_grpc as ppb_grpc
from safepassage.audit import LogEvent
from safepassage.server.identity import Role
from safepassage.server.pki_issuance import IssuedCert
from tests.pki_helpers import RolePki
from tests.server.protected_helpers import (
    GALLERY,
    HOLDER,
    OTHER,
    PIN,
    THIRD,
    Person,
    enrol,
    person,
    signed_live,
)

Code = grpc.StatusCode
DENIED = Code.PERMISSION_DENIED
ORGANISATION = "la-strada"  # ngo-1's and kiosk-1's
ELSEWHERE = "other-ngo"
PIN_LOCK_S = 3.0  # the first lockout; the second lasts twice as long
PIN_MAX_FAILURES = 5
FISHING_MAX_SEARCHES = 5


def digest(record_id: str) -> str:
    """How the transparency log names a protected record."""
    return hashlib.sha256(record_id.encode()).hexdigest()


@dataclass(frozen=True)
class Device:
    """A client of the server: its certificate (whose key signs its captures) and its stub."""

    issued: IssuedCert
    role: Role
    stub: ppb_grpc.ProtectedIdentityServiceStub

    @property
    def client_id(self) -> str:
        return self.issued.record.client_id

    @property
    def label(self) -> str:
        return f"{self.role.value}:{self.client_id}"

    def live(self, image: bytes, liveness: str | None = None) -> pb.LiveCapture:
        """The image with this device's signed statement (kiosks: head_turn; others: supervised)."""
        chosen = liveness or ("head_turn" if self.role is Role.KIOSK else "supervised")
        return signed_live(self.issued, image, chosen)

    def proof(self, image: bytes, pin: str) -> pb.HolderProof:
        return pb.HolderProof(live=self.live(image), pin=pin)

    def verify(self, holder: pb.HolderRef, image: bytes, pin: str = "") -> pb.VerifyHolderRequest:
        live = self.live(image)
        return pb.VerifyHolderRequest(
            holder=holder, live=mpb.Probe(image=live.image), live_statement=live.statement, pin=pin
        )


@dataclass(frozen=True)
class _Stubs:
    """What protected_helpers.enrol calls: `.protected`."""

    protected: ppb_grpc.ProtectedIdentityServiceStub


@dataclass
class World:
    service: Any
    port: int
    role_pki: RolePki
    agency_reader: holder_credential.ReaderKey
    people: dict[str, Person]
    channels: list[grpc.Channel] = field(default_factory=list)
    devices: dict[str, Device] = field(default_factory=dict)

    def device(self, client_id: str, role: Role, organisation: str | None = None) -> Device:
        """A device with a certificate of its own (issued once), or a role's shared one (ngo-1, ...)."""
        if client_id in self.devices:
            return self.devices[client_id]
        if client_id == self.role_pki.clients[role].record.client_id:
            issued = self.role_pki.clients[role]
        else:
            issued = self.role_pki.pki.issue_client(client_id, role, organisation=organisation, replace=True)
        channel = self.role_pki.channel_with(self.port, issued)
        self.channels.append(channel)
        made = self.devices[client_id] = Device(issued, role, ppb_grpc.ProtectedIdentityServiceStub(channel))
        return made

    @property
    def ngo(self) -> Device:
        return self.device("ngo-1", Role.NGO_CASEWORKER)

    @property
    def kiosk(self) -> Device:
        return self.device("kiosk-1", Role.KIOSK)

    @property
    def officer(self) -> Device:
        return self.device("officer-1", Role.OFFICER)

    def log_size(self) -> int:
        size: int = self.service.transparency_log.size()
        return size

    def events(self, since: int = 0) -> list[LogEvent]:
        log = self.service.transparency_log
        return [entry.event() for entry in log.entries(since, log.size())]

    def entries(self, since: int, actor: str, operation: str) -> list[LogEvent]:
        """Log entries since `since` of `operation` (e.g. "VerifyHolder") called by `actor`."""
        return [e for e in self.events(since) if e.actor == actor and e.operation.endswith(f"/{operation}")]

    def enrol(
        self,
        who: str,
        family: str,
        number: str,
        granted: list[str] | None = None,
        refused: list[str] | None = None,
    ) -> pb.EnrolRecordResponse:
        """A record enrolled by ngo-1 (la-strada) from the person's photo 0 (verify with 1..3)."""
        return enrol(_Stubs(self.ngo.stub), self.people[who], "Test", family, number, granted, refused)

    def consent(self, record_id: str) -> pb.ConsentState:
        """The record's consent state, as its own caseworker (ngo-1) reads it."""
        state: pb.ConsentState = self.ngo.stub.GetConsent(
            pb.GetConsentRequest(holder=pb.HolderRef(record_id=record_id))
        )
        return state

    def public_keys(self) -> pb.PublicKeys:
        keys: pb.PublicKeys = self.officer.stub.GetPublicKeys(pb.GetPublicKeysRequest())
        return keys

    def trusted(self) -> holder_credential.TrustedIssuers:
        keys = self.public_keys()
        return holder_credential.TrustedIssuers(
            [holder_credential.IssuerPublicKey.from_pem(keys.issuer_public_pem, keys.issuer_id)]
        )

    def still_verifies(self, enrolled: pb.EnrolRecordResponse, photo: bytes) -> None:
        """The holder's credential, face and PIN still release the full record at a border desk."""
        officer = self.officer
        request = officer.verify(pb.HolderRef(credential=enrolled.credential.text), photo, PIN)
        answer = officer.stub.VerifyHolder(request)
        assert answer.decision == mpb.MATCH and answer.record.details.family_name


def attack_world(
    server_factory: Any, faces_dir: Path, role_pki: RolePki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """The server and its protected gallery (for a module-scoped fixture); channels closed after."""
    agency_reader = holder_credential.ReaderKey.load_or_create(
        tmp_path_factory.mktemp("atk-agency") / "reader.pem"
    )
    public = tmp_path_factory.mktemp("atk-agency-public") / "reader.pub.pem"
    public.write_bytes(agency_reader.public_pem())
    service, port, _ = server_factory(
        **{
            "enrolment.agency_reader_keys": [str(public)],
            # Only caseworker ngo-1 reads this channel's referrals (and only la-strada's).
            "enrolment.referral_readers": {"la-strada-hotline": ["ngo-1"]},
            "enrolment.pin_max_failures": PIN_MAX_FAILURES,
            "enrolment.pin_lock_s": PIN_LOCK_S,
            "fishing.enabled": True,
            "fishing.max_searches": FISHING_MAX_SEARCHES,
            # A PIN burst runs all at once.
            "listen.max_workers": 32,
        }
    )
    people = {name: person(faces_dir, name) for name in (HOLDER, OTHER, THIRD)}
    world = World(service, port, role_pki, agency_reader, people)
    admin = role_pki.channel_for(port, Role.ADMIN)
    world.channels.append(admin)
    mpb_grpc.GalleryServiceStub(admin).CreateGallery(
        mpb.CreateGalleryRequest(gallery_id=GALLERY, purpose=mpb.PROTECTED_IDENTITY)
    )
    yield world
    for channel in world.channels:
        channel.close()


def status_of(call: Callable[[], object]) -> tuple[Code, str]:
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return Code.OK, ""


def refused(
    world: World,
    device: Device,
    operation: str,
    call: Callable[[], object],
    record_id: str | None,
    code: Code = DENIED,
) -> str:
    """Make the call: it must fail with `code` and leave one log entry under the caller, with the
    record's hash when `record_id` is given. Returns the error's details."""
    mark = world.log_size()
    status, details = status_of(call)
    assert status == code, f"{operation} by {device.label}: {status.name} {details!r}, expected {code.name}"
    logged = world.entries(mark, device.label, operation)
    if len(logged) != 1:
        same = [(e.actor, e.outcome) for e in world.events(mark) if e.operation.endswith(f"/{operation}")]
        raise AssertionError(
            f"{operation} by {device.label}: {len(logged)} log entries under it; all: {same}"
        )
    assert logged[0].outcome == code.name
    if record_id is not None:
        assert logged[0].details.get("record_sha256") == digest(record_id), (
            f"{operation} by {device.label} refused ({details!r}) without the record's hash in the log:"
            f" {dict(logged[0].details)}"
        )
    return details


def ref(record_id: str = "", recovery_code: str = "", credential: str = "") -> pb.HolderRef:
    if record_id:
        return pb.HolderRef(record_id=record_id)
    if recovery_code:
        return pb.HolderRef(recovery_code=recovery_code)
    return pb.HolderRef(credential=credential)


def grant(*scopes: str) -> pb.ConsentGiven:
    return pb.ConsentGiven(language="en", text="I agree to this too.", granted=list(scopes))


def withdraw(*scopes: str) -> pb.ConsentGiven:
    return pb.ConsentGiven(language="en", text="I withdraw this.", refused=list(scopes))


def in_force(state: pb.ConsentState) -> dict[str, bool]:
    return {s.scope: s.in_force for s in state.scopes}
