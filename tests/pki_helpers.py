"""A test PKI with one client certificate per role, and mutual-TLS channels to a test server.

Use the session fixture `role_pki` (import it into a test module, or list
this module in the root conftest's `pytest_plugins`) and point the server at
`role_pki.folder`; then `role_pki.channel_for(port, Role.OFFICER)` is a
channel authenticated as officer-1. The role certificates are shared by the
whole session: a test that revokes must issue its own certificate first.
ngo-1 and kiosk-1 act for the organisation "la-strada" (`ORGANISATIONS`).
Like a deployment's, this PKI keeps no client keys on disk: each client's key
is in its `IssuedCert.key_pem` only (see `safepassage pki issue --bundle`).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from safepassage.server.identity import Role
from safepassage.server.peer import client_credentials
from safepassage.server.pki_issuance import IssuedCert, Pki

CLIENT_IDS: Mapping[Role, str] = {
    Role.OFFICER: "officer-1",
    Role.CCTV_EDGE: "cam-1",
    Role.KIOSK: "kiosk-1",
    Role.NGO_CASEWORKER: "ngo-1",
    Role.AUDITOR: "auditor-1",
    Role.ADMIN: "admin-1",
}

# The organisation of each role certificate that names one (the roles that need one).
ORGANISATIONS: Mapping[Role, str] = {
    Role.NGO_CASEWORKER: "la-strada",
    Role.KIOSK: "la-strada",
}

# Each channel gets its own connections: with gRPC's global subchannel pool,
# a channel could reuse another's TLS session and so another's certificate.
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]


def mtls_channel(port: int, ca_pem: bytes, issued: IssuedCert | None) -> grpc.Channel:
    """A channel to localhost:port trusting `ca_pem`, presenting `issued` (None: no client certificate)."""
    if issued is None:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    else:
        credentials = client_credentials(ca_pem, issued.cert_pem, issued.key_pem)
    return grpc.secure_channel(f"localhost:{port}", credentials, options=CHANNEL_OPTIONS)


@dataclass
class RolePki:
    """A PKI in a temporary folder and one valid client certificate per role."""

    pki: Pki
    clients: dict[Role, IssuedCert] = field(default_factory=dict)

    @classmethod
    def create(cls, folder: Path) -> RolePki:
        pki = Pki.init(folder)
        return cls(
            pki,
            {
                role: pki.issue_client(client_id, role, organisation=ORGANISATIONS.get(role))
                for role, client_id in CLIENT_IDS.items()
            },
        )

    @property
    def folder(self) -> Path:
        return self.pki.folder

    @property
    def ca_pem(self) -> bytes:
        return self.pki.ca_pem

    @property
    def ca_file(self) -> Path:
        return self.pki.paths.ca_cert

    def credentials(self, role: Role) -> grpc.ChannelCredentials:
        issued = self.clients[role]
        return client_credentials(self.ca_pem, issued.cert_pem, issued.key_pem)

    def channel_for(self, port: int, role: Role) -> grpc.Channel:
        """A channel authenticated as this role's client (officer-1, cam-1, ...)."""
        return mtls_channel(port, self.ca_pem, self.clients[role])

    def channel_with(self, port: int, issued: IssuedCert | None) -> grpc.Channel:
        """A channel presenting any certificate (expired, foreign, ...), or none."""
        return mtls_channel(port, self.ca_pem, issued)

    def expired(self, client_id: str, role: Role, organisation: str | None = None) -> IssuedCert:
        """A certificate of this CA that expired yesterday (organisation: the role's default)."""
        now = datetime.datetime.now(datetime.UTC)
        return self.pki.issue_client(
            client_id,
            role,
            replace=True,
            valid_from=now - datetime.timedelta(days=10),
            valid_until=now - datetime.timedelta(days=1),
            organisation=organisation or ORGANISATIONS.get(role),
        )

    def not_yet_valid(self, client_id: str, role: Role, organisation: str | None = None) -> IssuedCert:
        """A certificate of this CA that becomes valid tomorrow (organisation: the role's default)."""
        now = datetime.datetime.now(datetime.UTC)
        return self.pki.issue_client(
            client_id,
            role,
            replace=True,
            valid_from=now + datetime.timedelta(days=1),
            valid_until=now + datetime.timedelta(days=30),
            organisation=organisation or ORGANISATIONS.get(role),
        )


def foreign_cert(folder: Path, client_id: str, role: Role, organisation: str | None = None) -> IssuedCert:
    """A well-formed client certificate for `role` from another CA (made in `folder`)."""
    return Pki.init(folder).issue_client(
        client_id, role, organisation=organisation or ORGANISATIONS.get(role)
    )


@pytest.fixture(scope="session")
def role_pki(tmp_path_factory: pytest.TempPathFactory) -> RolePki:
    """The session's PKI: a CA, a server certificate for localhost, one client per role."""
    return RolePki.create(tmp_path_factory.mktemp("pki") / "pki")
