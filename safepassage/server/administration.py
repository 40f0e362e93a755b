"""AdministrationService: the deployment's certificates issued, listed and revoked by an administrator.

The same PKI code as `safepassage pki issue | list | revoke` on the server's host
(pki_issuance.py, revocation.py), reached as calls: the access interceptor has already decided the
caller may make them (administrators only, authorization.py) and logs each under the caller, with
what the certificate is (call_outcome.py), never a key.

The CA key is read from the PKI folder for each issue and dropped after it, as the CLI does: a
server whose folder holds only the CA certificate (the CA key kept offline) refuses issuing with
FAILED_PRECONDITION, and listing and revoking still work (they need no CA key).

An issued certificate's private key is made here, returned in the answer and kept nowhere, even by
a development PKI (which keeps its command-line clients' keys in clients/): the administrator hands
it over (the console as a passphrase-protected PKCS#12 file). A revocation is in force from the
revoked certificate's next call on: the server's revocation list rereads revoked.json when it
changes (revocation.py).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from safepassage.api.v1 import administration_pb2 as adpb
from safepassage.api.v1 import administration_pb2_grpc as adpb_grpc
from safepassage.audit import TransparencyLog
from safepassage.core.errors import FailedPrecondition
from safepassage.server import log_reading
from safepassage.server.cctv_authority import SETTING, CctvAuthority, Galleries
from safepassage.server.certificate_index import CertificateRecord, certificates
from safepassage.server.oversight_records import AuthorisationSeen, read_oversight
from safepassage.server.pki_folder import PkiPaths, format_serial, read_ca
from safepassage.server.pki_issuance import Pki
from safepassage.server.revocation import read_revoked, revoke

__all__ = ["AdministrationServicer"]

DEFAULT_DAYS = 365


class AdministrationServicer(adpb_grpc.AdministrationServiceServicer):
    def __init__(
        self,
        pki_folder: Path,
        transparency_log: TransparencyLog,
        authority: CctvAuthority | None = None,
        galleries: Galleries | None = None,
    ) -> None:
        self._folder = pki_folder
        self._paths = PkiPaths(pki_folder)
        self._log = transparency_log
        # Set only where the deployment chose to sign CCTV authorisations on the server (cctv_authority.py).
        self._authority = authority
        self._galleries = galleries

    def IssueCertificate(
        self, request: adpb.IssueCertificateRequest, context: grpc.ServicerContext
    ) -> adpb.IssuedCertificate:
        pki = Pki.open(self._folder)
        issued = pki.issue_client(
            request.client_id,
            request.role,
            request.days or DEFAULT_DAYS,
            replace=request.replace,
            organisation=request.organisation or None,
            keep_key=False,
        )
        return adpb.IssuedCertificate(
            certificate=_entry(issued.record),
            certificate_pem=issued.cert_pem,
            private_key_pem=issued.key_pem,
            ca_pem=pki.ca_pem,
        )

    def ListCertificates(
        self, request: adpb.ListCertificatesRequest, context: grpc.ServicerContext
    ) -> adpb.ListCertificatesResponse:
        records = certificates(self._paths, read_revoked(self._paths))
        return adpb.ListCertificatesResponse(certificates=[_entry(record) for record in records])

    def RevokeCertificate(
        self, request: adpb.RevokeCertificateRequest, context: grpc.ServicerContext
    ) -> adpb.RevokeCertificateResponse:
        read_ca(self._folder)  # a folder that is no PKI is refused before anything is written
        revoked = revoke(self._paths, request.target.strip())
        return adpb.RevokeCertificateResponse(serials=[format_serial(r.serial) for r in revoked])

    def ListAuthorisations(
        self, request: adpb.ListAuthorisationsRequest, context: grpc.ServicerContext
    ) -> adpb.ListAuthorisationsResponse:
        oversight = read_oversight(self._log)
        now = datetime.datetime.now(datetime.UTC)
        return adpb.ListAuthorisationsResponse(
            authorisations=[_authorisation(grant, now) for grant in oversight.authorisations],
            complete=oversight.complete,
            server_signs=self._authority is not None,
        )

    def SignAuthorisation(
        self, request: adpb.SignAuthorisationRequest, context: grpc.ServicerContext
    ) -> adpb.SignedAuthorisation:
        if self._authority is None or self._galleries is None:
            raise FailedPrecondition(
                f"this server does not sign CCTV authorisations ({SETTING} is not set): the authority"
                " signs off the server with `safepassage authorise`"
            )
        signed = self._authority.sign(
            self._galleries,
            request.gallery_id,
            list(request.cameras),
            request.legal_basis,
            request.not_before.seconds if request.HasField("not_before") else None,
            request.expires.seconds if request.HasField("expires") else 0,
        )
        grant = signed.authorisation
        return adpb.SignedAuthorisation(
            token=signed.token,
            authorisation_id=grant.authorisation_id,
            gallery_id=grant.gallery_id,
            cameras=grant.cameras,
            not_before=Timestamp(seconds=grant.not_before),
            expires=Timestamp(seconds=grant.expires),
            issued_by=grant.issued_by,
            signer_serial=grant.signer_serial,
        )

    def ListFishingAlerts(
        self, request: adpb.ListFishingAlertsRequest, context: grpc.ServicerContext
    ) -> adpb.ListFishingAlertsResponse:
        oversight = read_oversight(self._log)
        return adpb.ListFishingAlertsResponse(
            alerts=[
                adpb.FishingAlert(
                    at=_timestamp(alert.at),
                    actor=alert.actor,
                    gallery_id=alert.gallery_id,
                    rules=alert.rules,
                    searches=alert.searches,
                    no_matches=alert.no_matches,
                    galleries=alert.galleries,
                )
                for alert in oversight.alerts
            ],
            complete=oversight.complete,
        )

    def ListTreeHeads(
        self, request: adpb.ListTreeHeadsRequest, context: grpc.ServicerContext
    ) -> adpb.ListTreeHeadsResponse:
        return log_reading.tree_heads(self._log, request)

    def ListLogEntries(
        self, request: adpb.ListLogEntriesRequest, context: grpc.ServicerContext
    ) -> adpb.ListLogEntriesResponse:
        return log_reading.log_entries(self._log, request)

    def GetConsistencyProof(
        self, request: adpb.GetConsistencyProofRequest, context: grpc.ServicerContext
    ) -> adpb.GetConsistencyProofResponse:
        return log_reading.consistency_proof(self._log, request)


def _authorisation(grant: AuthorisationSeen, now: datetime.datetime) -> adpb.AuthorisationRecord:
    record = adpb.AuthorisationRecord(
        authorisation_id=grant.authorisation_id,
        gallery_id=grant.gallery_id,
        issued_by=grant.issued_by,
        signer_serial=grant.signer_serial,
        cameras=grant.cameras,
        legal_basis_sha256=grant.legal_basis_sha256,
        signed_for=grant.signed_for,
        active=grant.active(now),
        uses=grant.uses,
        matches=grant.matches,
        latest_uses=[
            adpb.AuthorisationUse(at=_timestamp(use.at), camera=use.camera, outcome=use.outcome)
            for use in grant.latest_uses
        ],
    )
    if grant.expires is not None:
        record.expires.CopyFrom(_timestamp(grant.expires))
    if grant.first_used is not None:
        record.first_used.CopyFrom(_timestamp(grant.first_used))
    if grant.signed_at is not None:
        record.signed_at.CopyFrom(_timestamp(grant.signed_at))
    return record


def _entry(record: CertificateRecord) -> adpb.CertificateEntry:
    entry = adpb.CertificateEntry(
        serial=format_serial(record.serial),
        kind=record.kind.value,
        client_id=record.client_id,
        role=record.role.value if record.role else "",
        organisation=record.organisation,
        not_before=_timestamp(record.not_before),
        not_after=_timestamp(record.not_after),
        issued_at=_timestamp(record.issued_at),
        status=record.status(),
    )
    if record.revoked_at is not None:
        entry.revoked_at.CopyFrom(_timestamp(record.revoked_at))
    return entry


def _timestamp(moment: datetime.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(datetime.UTC))
    return stamp
