"""The administrator's certificate calls (AdministrationService): issue, list, revoke.

The person's own calls over the console's loopback channel (gateway.py): the service's matrix
lets only administrators make them, and logs each under the administrator. Protobuf types stop
here. An issued certificate's private key arrives in the answer and is the only copy: the console
turns it into the downloads of one page (certificate_bundle.py) and keeps nothing.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from safepassage.api.v1 import administration_pb2 as adpb
from safepassage.api.v1 import administration_pb2_grpc as adpb_grpc
from safepassage.console.gateway import ServiceGateway

__all__ = ["CertificateGateway", "CertificateSummary", "NewCertificate"]


@dataclass(frozen=True)
class CertificateSummary:
    serial: str
    kind: str  # client, server, console
    client_id: str
    role: str  # "" for server and console certificates
    organisation: str
    not_after: str  # UTC
    issued_at: str  # UTC
    revoked_at: str  # UTC, "" when not revoked
    status: str  # valid, revoked, expired, not yet valid


@dataclass(frozen=True)
class NewCertificate:
    certificate: CertificateSummary
    certificate_pem: bytes
    private_key_pem: bytes = field(repr=False)
    ca_pem: bytes = b""


class CertificateGateway:
    def __init__(self, gateway: ServiceGateway) -> None:
        self._gateway = gateway
        self._administration = adpb_grpc.AdministrationServiceStub(gateway.channel)

    def issue(self, person: bytes, client_id: str, role: str, organisation: str, days: int) -> NewCertificate:
        request = adpb.IssueCertificateRequest(
            client_id=client_id, role=role, organisation=organisation, days=days
        )
        answer = self._gateway.call(self._administration.IssueCertificate, request, person)
        return NewCertificate(
            _summary(answer.certificate), answer.certificate_pem, answer.private_key_pem, answer.ca_pem
        )

    def listed(self, person: bytes) -> list[CertificateSummary]:
        answer = self._gateway.call(
            self._administration.ListCertificates, adpb.ListCertificatesRequest(), person
        )
        return [_summary(entry) for entry in answer.certificates]

    def revoke(self, person: bytes, target: str) -> list[str]:
        request = adpb.RevokeCertificateRequest(target=target)
        return list(self._gateway.call(self._administration.RevokeCertificate, request, person).serials)


def _summary(entry: adpb.CertificateEntry) -> CertificateSummary:
    return CertificateSummary(
        serial=entry.serial,
        kind=entry.kind,
        client_id=entry.client_id,
        role=entry.role,
        organisation=entry.organisation,
        not_after=_moment(entry.not_after),
        issued_at=_moment(entry.issued_at),
        revoked_at=_moment(entry.revoked_at) if entry.HasField("revoked_at") else "",
        status=entry.status,
    )


def _moment(stamp: Timestamp) -> str:
    return stamp.ToDatetime(tzinfo=datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
