"""CCTV authorisations and fishing alerts, as the service reads them back from its transparency log.

AdministrationService.ListAuthorisations and ListFishingAlerts, the person's own calls (gateway.py):
administrators and auditors, by the matrix; SignAuthorisation, an administrator's, where the
deployment keeps the CCTV authority's key on the server. Protobuf types stop here.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from safepassage.api.v1 import administration_pb2 as adpb
from safepassage.api.v1 import administration_pb2_grpc as adpb_grpc
from safepassage.console.gateway import ServiceGateway

__all__ = [
    "AuthorisationView",
    "Authorisations",
    "FishingAlertView",
    "NewAuthorisation",
    "OversightGateway",
    "UseView",
]


@dataclass(frozen=True)
class UseView:
    at: str
    camera: str
    outcome: str


@dataclass(frozen=True)
class AuthorisationView:
    authorisation_id: str
    gallery_id: str
    issued_by: str
    signer_serial: str
    cameras: int
    legal_basis_sha256: str
    expires: str  # UTC; "" when the log did not say
    first_used: str  # "" when no camera has presented it yet (signed on this server)
    active: bool
    uses: int
    matches: int
    latest_uses: tuple[UseView, ...]
    signed_for: str = ""  # signed on this server: the administrator who asked (role:id)
    signed_at: str = ""


@dataclass(frozen=True)
class Authorisations:
    listed: list[AuthorisationView]
    complete: bool  # the service read the whole log
    server_signs: bool  # the service signs authorisations (cctv.signing_key_file)


@dataclass(frozen=True)
class NewAuthorisation:
    """An authorisation the service just signed: the token is the file the cameras load."""

    token: str = field(repr=False)
    authorisation_id: str = ""
    gallery_id: str = ""
    cameras: tuple[str, ...] = ()
    not_before: str = ""
    expires: str = ""
    issued_by: str = ""
    signer_serial: str = ""


@dataclass(frozen=True)
class FishingAlertView:
    at: str
    actor: str
    gallery_id: str
    rules: tuple[str, ...]
    searches: int
    no_matches: int
    galleries: int


class OversightGateway:
    def __init__(self, gateway: ServiceGateway) -> None:
        self._gateway = gateway
        self._administration = adpb_grpc.AdministrationServiceStub(gateway.channel)

    def authorisations(self, person: bytes) -> Authorisations:
        answer = self._gateway.call(
            self._administration.ListAuthorisations, adpb.ListAuthorisationsRequest(), person
        )
        views = [
            AuthorisationView(
                authorisation_id=a.authorisation_id,
                gallery_id=a.gallery_id,
                issued_by=a.issued_by,
                signer_serial=a.signer_serial,
                cameras=a.cameras,
                legal_basis_sha256=a.legal_basis_sha256,
                expires=_moment(a.expires) if a.HasField("expires") else "",
                first_used=_moment(a.first_used) if a.HasField("first_used") else "",
                active=a.active,
                uses=a.uses,
                matches=a.matches,
                latest_uses=tuple(UseView(_moment(u.at), u.camera, u.outcome) for u in a.latest_uses),
                signed_for=a.signed_for,
                signed_at=_moment(a.signed_at) if a.HasField("signed_at") else "",
            )
            for a in answer.authorisations
        ]
        return Authorisations(views, answer.complete, answer.server_signs)

    def sign(
        self,
        person: bytes,
        gallery_id: str,
        cameras: list[str],
        legal_basis: str,
        not_before: datetime.datetime | None,
        expires: datetime.datetime,
    ) -> NewAuthorisation:
        request = adpb.SignAuthorisationRequest(
            gallery_id=gallery_id, cameras=cameras, legal_basis=legal_basis
        )
        if not_before is not None:
            request.not_before.FromDatetime(not_before)
        request.expires.FromDatetime(expires)
        answer = self._gateway.call(self._administration.SignAuthorisation, request, person)
        return NewAuthorisation(
            token=answer.token,
            authorisation_id=answer.authorisation_id,
            gallery_id=answer.gallery_id,
            cameras=tuple(answer.cameras),
            not_before=_moment(answer.not_before),
            expires=_moment(answer.expires),
            issued_by=answer.issued_by,
            signer_serial=answer.signer_serial,
        )

    def fishing_alerts(self, person: bytes) -> tuple[list[FishingAlertView], bool]:
        answer = self._gateway.call(
            self._administration.ListFishingAlerts, adpb.ListFishingAlertsRequest(), person
        )
        views = [
            FishingAlertView(
                _moment(a.at), a.actor, a.gallery_id, tuple(a.rules), a.searches, a.no_matches, a.galleries
            )
            for a in answer.alerts
        ]
        return views, answer.complete


def _moment(stamp: Timestamp) -> str:
    return stamp.ToDatetime(tzinfo=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
