"""The PKI, mutual TLS and the caller check, against a real gRPC server on a free port.

The server here is minimal (the health service behind an interceptor that
calls `caller_of`), so that what is tested is the PKI and the handshake, not
the matching service.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from safepassage.cli.client import ClientFiles
from safepassage.cli.pki_command import add_pki_parser, run
from safepassage.core import atomic_file
from safepassage.core.errors import AlreadyExists, InvalidInput, NotFound, Unauthenticated, Unavailable
from safepassage.server.certificate_index import CertificateKind
from safepassage.server.identity import Caller, Role
from safepassage.server.peer import (
    ClientCertificateExpired,
    ClientCertificateRevoked,
    InvalidClientCertificate,
    NoClientCertificate,
    PeerAuthenticator,
    caller_of,
    client_credentials,
    server_credentials,
)
from safepassage.server.pki_folder import PkiCorrupt, format_serial
from safepassage.server.pki_issuance import IssuedCert, Pki
from safepassage.server.revocation import RevocationList
from tests.pki_helpers import CHANNEL_OPTIONS, CLIENT_IDS, ORGANISATIONS, RolePki, foreign_cert

CHECK = health_pb2.HealthCheckRequest()
SERVING = health_pb2.HealthCheckResponse.SERVING
SHORT = datetime.timedelta(seconds=2)


class Authenticate(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """What the real server's interceptor will do: no Caller, no call."""

    def __init__(self, authenticator: PeerAuthenticator) -> None:
        self.authenticator = authenticator
        self.callers: list[Caller] = []
        self.reached = 0  # calls that got past the handshake, accepted or not
        self._lock = threading.Lock()

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        behaviour = handler.unary_unary

        def checked(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                self.reached += 1
            try:
                caller = self.authenticator.caller(context)
            except Unauthenticated as error:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, str(error))
            with self._lock:
                self.callers.append(caller)
            return behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(
            checked,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class MtlsServer:
    def __init__(self, pki_folder: Path) -> None:
        self.interceptor = Authenticate(PeerAuthenticator.from_pki(pki_folder))
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[self.interceptor])
        servicer = health.HealthServicer()
        servicer.set("", SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, self.server)
        self.port = self.server.add_secure_port("127.0.0.1:0", server_credentials(pki_folder))
        assert self.port
        self.server.start()

    @property
    def last_caller(self) -> Caller:
        return self.interceptor.callers[-1]


@pytest.fixture(scope="module")
def server(role_pki: RolePki) -> Iterator[MtlsServer]:
    running = MtlsServer(role_pki.folder)
    yield running
    running.server.stop(grace=None)


def check(channel: grpc.Channel) -> int:
    with channel:
        return int(health_pb2_grpc.HealthStub(channel).Check(CHECK, timeout=10).status)


def refused(channel: grpc.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised, channel:
        health_pb2_grpc.HealthStub(channel).Check(CHECK, timeout=10)
    return raised.value.code()


def refused_at_handshake(server: MtlsServer, channel: grpc.Channel) -> bool:
    """Refused before any call reached the server's interceptor."""
    before = server.interceptor.reached
    return refused(channel) == grpc.StatusCode.UNAVAILABLE and server.interceptor.reached == before


# -- the handshake and the per-call check, end to end ---------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_each_role_is_accepted_as_itself(role_pki: RolePki, server: MtlsServer, role: Role) -> None:
    assert check(role_pki.channel_for(server.port, role)) == SERVING
    issued = role_pki.clients[role]
    organisation = ORGANISATIONS.get(role, "")
    assert server.last_caller == Caller(
        CLIENT_IDS[role], role, issued.serial, issued.fingerprint, organisation
    )
    assert server.last_caller.label == f"{role.value}:{CLIENT_IDS[role]}"


def test_no_client_certificate_is_refused_at_the_handshake(role_pki: RolePki, server: MtlsServer) -> None:
    assert refused_at_handshake(server, role_pki.channel_with(server.port, None))


def test_foreign_ca_is_refused_at_the_handshake(
    role_pki: RolePki, server: MtlsServer, tmp_path: Path
) -> None:
    # Same id and role as a real client: only the CA differs.
    stranger = foreign_cert(tmp_path / "other", "officer-1", Role.OFFICER)
    assert refused_at_handshake(server, role_pki.channel_with(server.port, stranger))


def test_expired_certificate_is_refused_at_the_handshake(role_pki: RolePki, server: MtlsServer) -> None:
    expired = role_pki.expired("officer-expired", Role.OFFICER)
    assert refused_at_handshake(server, role_pki.channel_with(server.port, expired))


def test_not_yet_valid_certificate_is_refused_at_the_handshake(role_pki: RolePki, server: MtlsServer) -> None:
    early = role_pki.not_yet_valid("officer-early", Role.OFFICER)
    assert refused_at_handshake(server, role_pki.channel_with(server.port, early))


def test_server_certificate_cannot_pass_for_a_client(role_pki: RolePki, server: MtlsServer) -> None:
    # Issued by the same CA, but serverAuth only.
    server_cert = role_pki.pki.issue_server(["localhost"])
    assert refused_at_handshake(server, role_pki.channel_with(server.port, server_cert))


def test_revocation_is_honoured_on_the_very_next_call(role_pki: RolePki, server: MtlsServer) -> None:
    issued = role_pki.pki.issue_client("officer-leaving", Role.OFFICER)
    channel = role_pki.channel_with(server.port, issued)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        assert stub.Check(CHECK, timeout=10).status == SERVING
        revoked = role_pki.pki.revoke("officer-leaving")
        assert [r.serial for r in revoked] == [issued.serial]
        # The same connection, already past its handshake: refused per call.
        with pytest.raises(grpc.RpcError) as raised:
            stub.Check(CHECK, timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (raised.value.details() or "")
    # A new connection passes the handshake (gRPC knows no revocations) and is refused too.
    assert refused(role_pki.channel_with(server.port, issued)) == grpc.StatusCode.UNAUTHENTICATED
    # Nobody else is affected.
    assert check(role_pki.channel_for(server.port, Role.OFFICER)) == SERVING


def test_expiry_during_a_connection_is_caught_per_call(role_pki: RolePki, server: MtlsServer) -> None:
    now = datetime.datetime.now(datetime.UTC)
    brief = role_pki.pki.issue_client(
        "kiosk-brief",
        Role.KIOSK,
        valid_from=now - datetime.timedelta(minutes=1),
        valid_until=now + SHORT,
        organisation="la-strada",
    )
    with role_pki.channel_with(server.port, brief) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        assert stub.Check(CHECK, timeout=10).status == SERVING
        time.sleep((now + SHORT - datetime.datetime.now(datetime.UTC)).total_seconds() + 1.1)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Check(CHECK, timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "valid only" in (raised.value.details() or "")


# -- caller_of on its own ---------------------------------------------------------------------------


class FakeContext:
    def __init__(self, pem: bytes | None) -> None:
        self.properties: dict[str, list[bytes]] = {"transport_security_type": [b"ssl"]}
        if pem is not None:
            self.properties["x509_pem_cert"] = [pem]

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.properties


def caller_from(role_pki: RolePki, pem: bytes | None) -> Caller:
    authenticator = PeerAuthenticator.from_pki(role_pki.folder)
    return caller_of(FakeContext(pem), authenticator.revocations, authenticator.ca)  # type: ignore[arg-type]


def hand_made(
    role_pki: RolePki, subject: x509.Name, usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH
) -> tuple[bytes, bytes]:
    """A certificate (PEM) and its key (PEM) that the CA itself signed, made by hand with the CA key.

    Its contents may be ones `issue_client` would never produce: a certificate
    from before organisations, an unknown role, a person's name.
    """
    ca_key = serialization.load_pem_private_key(role_pki.pki.paths.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(role_pki.pki.ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def signed_by_ca(role_pki: RolePki, subject: x509.Name, usage: x509.ObjectIdentifier) -> bytes:
    """A certificate the CA itself signed, with contents `issue_client` would never produce."""
    return hand_made(role_pki, subject, usage)[0]


def subject(ou: str | None, cn: str, *organisations: str) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SafePassage")]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, o) for o in organisations]
    if ou is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def test_caller_of_checks_every_part_of_the_certificate(role_pki: RolePki, tmp_path: Path) -> None:
    officer = role_pki.clients[Role.OFFICER]
    assert caller_from(role_pki, officer.cert_pem).client_id == "officer-1"
    with pytest.raises(NoClientCertificate):
        caller_from(role_pki, None)
    with pytest.raises(InvalidClientCertificate, match="parsed"):
        caller_from(role_pki, b"-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n")
    with pytest.raises(InvalidClientCertificate, match="CA"):
        caller_from(role_pki, foreign_cert(tmp_path / "other", "officer-1", Role.OFFICER).cert_pem)
    with pytest.raises(ClientCertificateExpired):
        caller_from(role_pki, role_pki.expired("officer-old", Role.OFFICER).cert_pem)
    with pytest.raises(ClientCertificateExpired):
        caller_from(role_pki, role_pki.not_yet_valid("officer-new", Role.OFFICER).cert_pem)
    with pytest.raises(InvalidClientCertificate, match="not a client certificate"):
        caller_from(role_pki, role_pki.pki.issue_server(["localhost"]).cert_pem)
    client_auth = ExtendedKeyUsageOID.CLIENT_AUTH
    with pytest.raises(InvalidClientCertificate, match="role 'pilot' is unknown"):
        caller_from(role_pki, signed_by_ca(role_pki, subject("pilot", "pilot-1"), client_auth))
    with pytest.raises(InvalidClientCertificate, match="organisational unit"):
        caller_from(role_pki, signed_by_ca(role_pki, subject(None, "officer-9"), client_auth))
    with pytest.raises(InvalidClientCertificate, match="not a client id"):
        caller_from(role_pki, signed_by_ca(role_pki, subject("officer", "Jane Doe"), client_auth))
    with pytest.raises(InvalidClientCertificate, match="not a client certificate"):
        caller_from(
            role_pki, signed_by_ca(role_pki, subject("officer", "officer-9"), ExtendedKeyUsageOID.SERVER_AUTH)
        )
    # Every one of them is an Unauthenticated for the error interceptor.
    assert issubclass(ClientCertificateRevoked, Unauthenticated)


# -- organisations ----------------------------------------------------------------------------------

CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
BAD_ORGANISATIONS = (
    "La-Strada",
    "la strada",
    "la_strada",
    "la.strada",
    "-la-strada",
    "l",
    "a" * 64,
    "la-strada\n",
    "ла-страда",
    "la-strada/../x",
)


def hand_made_channel(port: int, role_pki: RolePki, cert_and_key: tuple[bytes, bytes]) -> grpc.Channel:
    credentials = client_credentials(role_pki.ca_pem, *cert_and_key)
    return grpc.secure_channel(f"localhost:{port}", credentials, options=CHANNEL_OPTIONS)


@pytest.mark.parametrize(
    ("role", "organisation"),
    [
        (Role.NGO_CASEWORKER, "helping-hands"),
        (Role.KIOSK, "la-strada"),
        (Role.OFFICER, "border-police-2"),  # optional for other roles
        (Role.AUDITOR, None),
    ],
)
def test_the_organisation_reaches_the_caller(
    role_pki: RolePki, server: MtlsServer, role: Role, organisation: str | None
) -> None:
    issued = role_pki.pki.issue_client(f"org-{role.value}", role, replace=True, organisation=organisation)
    assert issued.organisation == (organisation or "")
    certificate = x509.load_pem_x509_certificate(issued.cert_pem)
    # O stays the deployment's; the organisation has an attribute of its own.
    assert [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "SafePassage"
    ]
    assert [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER)] == (
        [organisation] if organisation else []
    )
    assert check(role_pki.channel_with(server.port, issued)) == SERVING
    assert server.last_caller == Caller(
        issued.client_id, role, issued.serial, issued.fingerprint, organisation or ""
    )


@pytest.mark.parametrize("role", [Role.NGO_CASEWORKER, Role.KIOSK])
def test_caseworker_and_kiosk_without_an_organisation_are_refused_at_issuance(
    tmp_path: Path, role: Role
) -> None:
    pki = Pki.init(tmp_path / "pki")
    for missing in (None, ""):
        with pytest.raises(InvalidInput, match=f"role {role.value} needs an organisation"):
            pki.issue_client("client-1", role, organisation=missing)
    assert [r.kind for r in pki.list()] == [CertificateKind.SERVER]  # nothing recorded
    assert not pki.paths.client_cert("client-1").exists() and not pki.paths.client_key("client-1").exists()


@pytest.mark.parametrize("role", [Role.NGO_CASEWORKER, Role.KIOSK])
def test_caseworker_and_kiosk_without_an_organisation_are_refused_at_authentication(
    role_pki: RolePki, server: MtlsServer, role: Role
) -> None:
    # As a certificate issued before organisations: signed by the CA, no organizationIdentifier.
    old = hand_made(role_pki, subject(role.value, f"old-{role.value}"))
    before = server.interceptor.reached
    with pytest.raises(grpc.RpcError) as raised, hand_made_channel(server.port, role_pki, old) as channel:
        health_pb2_grpc.HealthStub(channel).Check(CHECK, timeout=10)
    assert server.interceptor.reached == before + 1  # past the handshake, refused by the per-call check
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert f"role {role.value} needs an organisation" in (raised.value.details() or "")
    # The same kind of certificate naming its organisation is let in.
    current = hand_made(role_pki, subject(role.value, f"new-{role.value}", "la-strada"))
    assert check(hand_made_channel(server.port, role_pki, current)) == SERVING
    assert server.last_caller.organisation == "la-strada" and server.last_caller.role is role
    # Roles that do not act for an organisation need none.
    officer = hand_made(role_pki, subject("officer", "officer-old"))
    assert check(hand_made_channel(server.port, role_pki, officer)) == SERVING
    assert server.last_caller.organisation == ""


def test_a_malformed_organisation_is_refused(role_pki: RolePki, tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki")
    for bad in BAD_ORGANISATIONS:
        for role in (Role.NGO_CASEWORKER, Role.OFFICER):
            with pytest.raises(InvalidInput, match="not an organisation id"):
                pki.issue_client("client-9", role, organisation=bad)
    assert [r.kind for r in pki.list()] == [CertificateKind.SERVER]
    assert pki.issue_client("ngo-9", Role.NGO_CASEWORKER, organisation="a" * 63).organisation == "a" * 63
    assert pki.issue_client("kiosk-9", Role.KIOSK, organisation="42").organisation == "42"
    # The CA's signature does not make a malformed, or a second, organisation acceptable.
    for bad in ("La Strada", "-la-strada", "la_strada", "x"):
        with pytest.raises(InvalidClientCertificate, match="not an organisation id"):
            caller_from(
                role_pki, signed_by_ca(role_pki, subject("ngo_caseworker", "ngo-9", bad), CLIENT_AUTH)
            )
        with pytest.raises(InvalidClientCertificate, match="not an organisation id"):
            caller_from(role_pki, signed_by_ca(role_pki, subject("officer", "officer-9", bad), CLIENT_AUTH))
    two = subject("ngo_caseworker", "ngo-9", "la-strada", "other-org")
    with pytest.raises(InvalidClientCertificate, match="more than one organisation"):
        caller_from(role_pki, signed_by_ca(role_pki, two, CLIENT_AUTH))


def test_the_index_keeps_the_organisation_and_reads_indexes_from_before(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki")
    pki.issue_client("ngo-4", Role.NGO_CASEWORKER, organisation="la-strada")
    pki.issue_client("officer-4", Role.OFFICER)
    listed = {r.client_id: r.organisation for r in Pki.open(pki.folder).list()}
    assert listed == {"localhost": "", "ngo-4": "la-strada", "officer-4": ""}
    document = json.loads(pki.paths.index.read_bytes())
    entries = document["certificates"]
    assert {e["client_id"]: e["organisation"] for e in entries} == {
        "localhost": None,
        "ngo-4": "la-strada",
        "officer-4": None,
    }

    # An index written before organisations has no such key: it loads, every organisation "".
    for entry in entries:
        del entry["organisation"]
    atomic_file.replace(pki.paths.index, json.dumps(document).encode())
    assert {r.client_id: r.organisation for r in Pki.open(pki.folder).list()} == {
        "localhost": "",
        "ngo-4": "",
        "officer-4": "",
    }
    # ... and takes new certificates, old entries kept.
    pki.issue_client("kiosk-4", Role.KIOSK, organisation="la-strada")
    assert [(r.client_id, r.organisation) for r in pki.list()] == [
        ("localhost", ""),
        ("ngo-4", ""),
        ("officer-4", ""),
        ("kiosk-4", "la-strada"),
    ]

    # An organisation the PKI would never write means the index is not its own.
    document = json.loads(pki.paths.index.read_bytes())
    document["certificates"][-1]["organisation"] = "La Strada"
    atomic_file.replace(pki.paths.index, json.dumps(document).encode())
    with pytest.raises(PkiCorrupt):
        pki.list()


# -- the PKI folder ----------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_the_layout_with_private_keys_private(tmp_path: Path) -> None:
    changes: list[tuple[str, dict[str, str]]] = []
    pki = Pki.init(
        tmp_path / "pki", ["gate.example", "10.0.0.5"], on_change=lambda op, m: changes.append((op, m))
    )
    folder = pki.folder
    assert {p.name for p in folder.iterdir()} >= {
        "ca.pem",
        "ca-key.pem",
        "server.pem",
        "server-key.pem",
        "clients",
        "index.json",
        "revoked.json",
    }
    assert mode(folder) == 0o700 and mode(folder / "clients") == 0o700
    assert mode(folder / "ca-key.pem") == 0o600 and mode(folder / "server-key.pem") == 0o600
    assert mode(folder / "index.json") == 0o600 and mode(folder / "revoked.json") == 0o600
    assert not (folder / "DEVELOPMENT").exists() and not pki.development
    ca = pki.ca_cert
    assert ca.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3650
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server = x509.load_pem_x509_certificate((folder / "server.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["gate.example"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert [op for op, _ in changes] == ["pki.init", "certificate.issue"]
    assert changes[1][1]["kind"] == "server" and changes[1][1]["serial"] == format_serial(
        server.serial_number
    )

    with pytest.raises(AlreadyExists):
        Pki.init(folder)
    assert Pki.init(folder, exist_ok=True).ca_cert == ca  # the CA is never replaced
    assert Pki.open(folder).ca_cert == ca
    os.chmod(folder / "ca-key.pem", 0o644)
    with pytest.raises(Exception, match="chmod 600"):
        Pki.open(folder)


def test_issue_client_writes_a_role_certificate(tmp_path: Path) -> None:
    changes: list[tuple[str, dict[str, str]]] = []
    pki = Pki.init(tmp_path / "pki")
    pki.on_change = lambda op, m: changes.append((op, m))
    issued = pki.issue_client("kiosk-7", Role.KIOSK, days=30, organisation="la-strada")
    assert issued.cert_path == pki.folder / "clients" / "kiosk-7.pem"
    assert issued.cert_path.read_bytes() == issued.cert_pem
    # The key is the client's: handed back, never left in the PKI folder.
    assert issued.key_path is None and b"PRIVATE KEY" in issued.key_pem
    assert not pki.paths.client_key("kiosk-7").exists()
    assert issued.key_pem.decode() not in repr(issued)
    certificate = x509.load_pem_x509_certificate(issued.cert_pem)
    assert certificate.subject.rfc4514_string() == "CN=kiosk-7,OU=kiosk,2.5.4.97=la-strada,O=SafePassage"
    assert issued.organisation == "la-strada"
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert 29 <= (certificate.not_valid_after_utc - certificate.not_valid_before_utc).days <= 31
    assert certificate.serial_number.bit_length() > 64  # random, not a counter
    assert changes == [
        (
            "certificate.issue",
            {
                "kind": "client",
                "client_id": "kiosk-7",
                "role": "kiosk",
                "organisation": "la-strada",
                "serial": format_serial(issued.serial),
                "not_after": changes[0][1]["not_after"],
            },
        )
    ]
    assert not any("PRIVATE" in value for _, metadata in changes for value in metadata.values())

    with pytest.raises(AlreadyExists, match="already has a valid certificate"):
        pki.issue_client("kiosk-7", Role.KIOSK, organisation="la-strada")
    again = pki.issue_client("kiosk-7", "kiosk", replace=True, organisation="la-strada")
    assert again.serial != issued.serial
    for bad in ("Kiosk-7", "", "-kiosk", "kiosk 7", "../kiosk", "a" * 64, "kiosk-7-key", "jane.doe@x"):
        with pytest.raises(InvalidInput):
            pki.issue_client(bad, Role.KIOSK, organisation="la-strada")
    with pytest.raises(InvalidInput, match="unknown role"):
        pki.issue_client("pilot-1", "pilot")
    with pytest.raises(InvalidInput):
        pki.issue_client("kiosk-8", Role.KIOSK, days=0, organisation="la-strada")
    with pytest.raises(InvalidInput, match="outlive the CA"):
        pki.issue_client(
            "kiosk-8",
            Role.KIOSK,
            valid_until=pki.ca_cert.not_valid_after_utc + datetime.timedelta(days=1),
            organisation="la-strada",
        )


def test_revoke_by_id_or_serial_and_list(tmp_path: Path) -> None:
    changes: list[tuple[str, dict[str, str]]] = []
    pki = Pki.init(tmp_path / "pki", on_change=lambda op, m: changes.append((op, m)))
    revocations = pki.revocations()
    first = pki.issue_client("ngo-3", Role.NGO_CASEWORKER, organisation="la-strada")
    second = pki.issue_client("ngo-3", Role.NGO_CASEWORKER, replace=True, organisation="la-strada")
    other = pki.issue_client("auditor-2", Role.AUDITOR)
    assert not revocations.is_revoked(first.serial)

    assert [r.serial for r in pki.revoke(format_serial(first.serial).lower())] == [first.serial]
    assert revocations.is_revoked(first.serial) and not revocations.is_revoked(second.serial)
    assert changes[-1][0] == "certificate.revoke" and changes[-1][1]["serial"] == format_serial(first.serial)
    assert [r.serial for r in pki.revoke("ngo-3")] == [second.serial]  # the first was revoked already
    assert pki.revoke("ngo-3") == []
    assert pki.revoke(other.serial)[0].client_id == "auditor-2"
    assert revocations.serials() == {first.serial, second.serial, other.serial}
    with pytest.raises(NotFound):
        pki.revoke("nobody-1")

    listed = {r.serial: r for r in Pki.open(pki.folder).list()}
    assert listed[first.serial].revoked and listed[first.serial].status() == "revoked"
    assert listed[other.serial].role is Role.AUDITOR
    servers = [r for r in listed.values() if r.kind is CertificateKind.SERVER]
    assert len(servers) == 1 and not servers[0].revoked and servers[0].status() == "valid"
    document = json.loads((pki.folder / "revoked.json").read_text())
    assert {entry["serial"] for entry in document["revoked"]} == {
        format_serial(s) for s in (first.serial, second.serial, other.serial)
    }
    assert not list(pki.folder.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_revocation_list_reloads_on_change_and_fails_closed(tmp_path: Path) -> None:
    pki = Pki.init(tmp_path / "pki")
    issued: IssuedCert = pki.issue_client("cam-9", Role.CCTV_EDGE)
    revocations = RevocationList.open(pki.folder)
    for _ in range(3):  # unchanged file: answered from memory
        assert not revocations.is_revoked(issued.serial)
    # Another process (the CLI) revokes: seen at once.
    Pki.open(pki.folder).revoke("cam-9")
    assert revocations.is_revoked(issued.serial)
    atomic_file.replace(pki.folder / "revoked.json", b"{not json")
    with pytest.raises(PkiCorrupt):
        revocations.is_revoked(issued.serial)
    (pki.folder / "revoked.json").unlink()
    with pytest.raises(Unavailable):
        revocations.is_revoked(issued.serial)


# -- the command -------------------------------------------------------------------------------------


def pki_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="safepassage")
    add_pki_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["pki", *argv]))


def test_pki_command_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = str(tmp_path / "pki")
    assert pki_cli("init", "--pki-dir", folder, "--server-name", "localhost", "--server-name", "::1") == 0
    out = capsys.readouterr().out
    assert "initialised the PKI" in out and "localhost, ::1" in out

    assert pki_cli("init", "--pki-dir", folder) == 2
    assert "already holds a PKI" in capsys.readouterr().err

    assert pki_cli("issue", "officer-0042", "--role", "officer", "--pki-dir", folder) == 2
    assert "--bundle PATH" in capsys.readouterr().err  # a deployment's PKI keeps no client keys
    bundle = str(tmp_path / "officer-0042")
    assert pki_cli("issue", "officer-0042", "--role", "officer", "--pki-dir", folder, "--bundle", bundle) == 0
    out = capsys.readouterr().out
    assert out.startswith("issued officer-0042 (officer): serial ")
    assert f"--pki-dir {bundle} --client officer-0042" in out and "key:" not in out

    assert (
        pki_cli("issue", "Jane Doe", "--role", "officer", "--pki-dir", folder, "--bundle", bundle + "-2") == 2
    )
    assert "not an opaque id" in capsys.readouterr().err
    assert not Path(bundle + "-2").exists()  # a refused issue leaves no bundle behind

    assert pki_cli("list", "--pki-dir", folder) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("localhost") and "(server)" in lines[0] and lines[0].endswith("valid")
    assert lines[1].startswith("officer-0042") and " officer " in lines[1] and lines[1].endswith("valid")

    assert pki_cli("revoke", "officer-0042", "--pki-dir", folder) == 0
    assert capsys.readouterr().out.startswith("revoked serial ")
    assert pki_cli("revoke", "officer-0042", "--pki-dir", folder) == 0
    assert "already revoked" in capsys.readouterr().out
    assert pki_cli("revoke", "nobody", "--pki-dir", folder) == 2
    capsys.readouterr()

    assert pki_cli("list", "--json", "--pki-dir", folder) == 0
    rows = json.loads(capsys.readouterr().out)
    officer = next(row for row in rows if row["client_id"] == "officer-0042")
    assert officer["role"] == "officer" and officer["revoked"] and officer["status"] == "revoked"

    assert pki_cli("issue-server", "gate.example", "--pki-dir", folder) == 0
    assert "issued server gate.example" in capsys.readouterr().out
    assert pki_cli("list", "--pki-dir", str(tmp_path / "missing")) == 2
    assert "pki init" in capsys.readouterr().err


def test_pki_command_issues_and_lists_organisations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = str(tmp_path / "pki")
    assert pki_cli("init", "--pki-dir", folder) == 0
    capsys.readouterr()

    with pytest.raises(SystemExit):
        pki_cli("issue", "--help")
    usage = " ".join(capsys.readouterr().out.split())
    assert "--organisation ORG" in usage and "required for ngo_caseworker and kiosk" in usage

    def bundle(name: str) -> tuple[str, str]:
        return "--bundle", str(tmp_path / "bundles" / name)

    for role in ("ngo_caseworker", "kiosk"):
        assert pki_cli("issue", "client-7", "--role", role, "--pki-dir", folder, *bundle("client-7")) == 2
        err = capsys.readouterr().err
        assert err == f"error: the role {role} needs an organisation (--organisation ORG, e.g. la-strada)\n"
    bad = ("--organisation", "La Strada", *bundle("ngo-0007"))
    assert pki_cli("issue", "ngo-0007", "--role", "ngo_caseworker", *bad, "--pki-dir", folder) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: organisation 'La Strada' is not an organisation id") and err.count("\n") == 1
    )
    assert not (tmp_path / "pki" / "clients" / "ngo-0007.pem").exists()

    good = ("--organisation", "la-strada", *bundle("ngo-0007"))
    assert pki_cli("issue", "ngo-0007", "--role", "ngo_caseworker", *good, "--pki-dir", folder) == 0
    assert capsys.readouterr().out.startswith("issued ngo-0007 (ngo_caseworker, la-strada): serial ")
    assert pki_cli("issue", "officer-0007", "--role", "officer", "--pki-dir", folder, *bundle("o7")) == 0
    assert capsys.readouterr().out.startswith("issued officer-0007 (officer): serial ")

    # The certificate the command wrote authenticates as a caseworker of la-strada.
    authenticator = PeerAuthenticator.from_pki(tmp_path / "pki")
    pem = (tmp_path / "pki" / "clients" / "ngo-0007.pem").read_bytes()
    caller = caller_of(FakeContext(pem), authenticator.revocations, authenticator.ca)  # type: ignore[arg-type]
    assert (caller.client_id, caller.role, caller.organisation) == (
        "ngo-0007",
        Role.NGO_CASEWORKER,
        "la-strada",
    )

    assert pki_cli("list", "--pki-dir", folder) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert lines["ngo-0007"][1:3] == ["ngo_caseworker", "la-strada"]
    assert lines["officer-0007"][1:3] == ["officer", "-"]
    assert lines["localhost"][1:3] == ["(server)", "-"]

    assert pki_cli("list", "--json", "--pki-dir", folder) == 0
    rows = {row["client_id"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["ngo-0007"]["organisation"] == "la-strada"
    assert rows["officer-0007"]["organisation"] is None and rows["localhost"]["organisation"] is None


# -- client keys: handed to the client, not kept (issue #15, finding 10) ------------------------------


def private_keys_in(folder: Path) -> set[str]:
    return {
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and b"PRIVATE KEY" in path.read_bytes()
    }


def test_pki_issue_bundle_leaves_no_key_behind_and_the_bundle_makes_a_real_mtls_call(
    role_pki: RolePki, server: MtlsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "handover" / "auditor-bundled"
    folder = str(role_pki.folder)
    assert (
        pki_cli("issue", "auditor-bundled", "--role", "auditor", "--pki-dir", folder, "--bundle", str(bundle))
        == 0
    )
    capsys.readouterr()
    # The PKI folder keeps the CA's and the server's keys, and no client's.
    assert private_keys_in(role_pki.folder) == {"ca-key.pem", "server-key.pem"}
    assert (role_pki.folder / "clients" / "auditor-bundled.pem").exists()
    assert {str(p.relative_to(bundle)) for p in bundle.rglob("*")} == {
        "ca.pem",
        "clients",
        "clients/auditor-bundled.pem",
        "clients/auditor-bundled-key.pem",
    }
    assert mode(bundle.parent) == mode(bundle) == mode(bundle / "clients") == 0o700
    assert mode(bundle / "clients" / "auditor-bundled-key.pem") == 0o600
    # The bundle is a client's PKI folder: what `--pki-dir BUNDLE --client ID` reads.
    files = ClientFiles.resolve(bundle, "auditor-bundled")
    credentials = client_credentials(files.ca.read_bytes(), files.cert.read_bytes(), files.key.read_bytes())
    channel = grpc.secure_channel(f"localhost:{server.port}", credentials, options=CHANNEL_OPTIONS)
    assert check(channel) == SERVING
    assert (server.last_caller.client_id, server.last_caller.role) == ("auditor-bundled", Role.AUDITOR)


def test_a_bundle_is_a_new_folder_outside_the_pki(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "pki"
    Pki.init(folder)
    taken = tmp_path / "taken"
    taken.mkdir()
    for destination, says in ((folder / "clients" / "x", "inside the PKI folder"), (taken, "already exists")):
        assert (
            pki_cli(
                "issue",
                "officer-5",
                "--role",
                "officer",
                "--pki-dir",
                str(folder),
                "--bundle",
                str(destination),
            )
            == 2
        )
        assert says in capsys.readouterr().err
    assert [r.client_id for r in Pki.open(folder).list() if r.kind is CertificateKind.CLIENT] == []
    assert list(taken.iterdir()) == [] and not (folder / "clients" / "x").exists()


def test_only_the_development_pki_keeps_client_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the server makes on its first run (`make serve`), so `--client dev-admin` works at once."""
    folder = tmp_path / "pki"
    development = Pki.init(folder, development=True)
    assert development.development and Pki.open(folder).development
    assert "Never use it for a deployment" in (folder / "DEVELOPMENT").read_text()
    kept = development.issue_client("dev-admin", Role.ADMIN)
    assert kept.key_path == folder / "clients" / "dev-admin-key.pem" and mode(kept.key_path) == 0o600
    assert kept.key_path.read_bytes() == kept.key_pem
    assert pki_cli("issue", "officer-1", "--role", "officer", "--pki-dir", str(folder)) == 0
    assert "development PKI" in capsys.readouterr().out
    assert (folder / "clients" / "officer-1-key.pem").exists()
    # A bundle asked for even here: the key goes to the bundle only.
    bundle = tmp_path / "officer-2"
    assert (
        pki_cli("issue", "officer-2", "--role", "officer", "--pki-dir", str(folder), "--bundle", str(bundle))
        == 0
    )
    assert not (folder / "clients" / "officer-2-key.pem").exists()
    assert (bundle / "clients" / "officer-2-key.pem").exists()


def test_client_keys_an_earlier_version_left_in_the_pki_are_pointed_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "pki"
    pki = Pki.init(folder)
    issued = pki.issue_client("admin-7", Role.ADMIN)
    left = pki.paths.client_key("admin-7")
    atomic_file.replace(left, issued.key_pem)  # as `pki issue` wrote it before bundles
    assert Pki.open(folder).stray_client_keys() == [left]
    assert pki_cli("list", "--pki-dir", str(folder)) == 0
    err = capsys.readouterr().err
    assert "admin-7-key.pem" in err and "can act as those clients" in err
    # Deleting the key here is safe only once the client connects with its bundle: the message says how.
    assert "--bundle PATH" in err and "--pki-dir PATH --client ID" in err
    left.unlink()
    assert pki_cli("list", "--pki-dir", str(folder)) == 0
    assert capsys.readouterr().err == ""
