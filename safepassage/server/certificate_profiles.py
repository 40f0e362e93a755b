"""What SafePassage certificates look like: who they may name, subject names, server names, extensions.

Every subject has O=SafePassage and a CN (a client's id, a server's first name, or the CA's name
with a random suffix that tells deployments' CAs apart); a client's also has OU=role and, for the
roles that act for an organisation, organizationIdentifier=ORG (read back by identity.py). Keys
are P-256. The CA may sign leaves only (path length 0) and lives ten years; leaves are not CAs,
may only sign (the TLS handshake), and name their issuer's key. Issued certificates start
``CLOCK_SKEW`` in the past so that a client whose clock is slightly behind can use a certificate
issued a moment ago. A request that names what no certificate may name (a client id that is not
an opaque id, an unknown role, an organisation missing or malformed) is InvalidCertificateRequest.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from safepassage.server.certificate_index import CLIENT_ID
from safepassage.server.identity import ORGANISATION_ID, ORGANISATION_ROLES, Role
from safepassage.server.pki_folder import InvalidCertificateRequest

__all__ = [
    "CA_DAYS",
    "CLOCK_SKEW",
    "CONSOLE_ID",
    "ORGANIZATION",
    "ca_certificate",
    "check_client_id",
    "check_organisation",
    "console_subject",
    "leaf",
    "new_key",
    "role_of",
    "server_names",
    "subject",
]

ORGANIZATION = "SafePassage"
CA_DAYS = 3652  # ten years
# Issued certificates start a little in the past so that a client whose clock
# is slightly behind can use a certificate issued a moment ago.
CLOCK_SKEW = datetime.timedelta(minutes=5)
# The console's certificate's CN and OU (no client id may take it: see check_client_id).
CONSOLE_ID = "console"

_DNS_NAME = re.compile(r"[A-Za-z0-9*]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")

_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def subject(common_name: str, role: Role | None = None, organisation: str = "") -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]
    if organisation:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, organisation))
    if role is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def console_subject() -> x509.Name:
    """The console's subject: OU "console" is no role, so its certificate never passes for a caller."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, CONSOLE_ID),
            x509.NameAttribute(NameOID.COMMON_NAME, CONSOLE_ID),
        ]
    )


def server_names(names: Sequence[str]) -> x509.SubjectAlternativeName:
    """The SANs of a server certificate: IPs as IPs, anything else checked as a DNS name."""
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if not _DNS_NAME.fullmatch(name):
                raise InvalidCertificateRequest(
                    f"server name {name!r} is neither a DNS name nor an IP"
                ) from None
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def ca_certificate(ca_key: ec.EllipticCurvePrivateKey, now: datetime.datetime) -> x509.Certificate:
    """A new self-signed CA certificate for `ca_key`, valid from now for CA_DAYS."""
    # A random suffix tells deployments' CAs apart in issuer names and logs.
    ca_name = subject(f"SafePassage CA {secrets.token_hex(4)}")
    return (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def leaf(
    name: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_public_key: ec.EllipticCurvePublicKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.CertificateBuilder:
    """A leaf certificate of the CA, to be given its extended key usage and signed."""
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_LEAF_KEY_USAGE, critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public_key), critical=False)
    )


def check_client_id(client_id: str) -> str:
    if not CLIENT_ID.fullmatch(client_id):
        raise InvalidCertificateRequest(
            f"client id {client_id!r} is not an opaque id: 1-63 characters of a-z 0-9 . _ -,"
            " starting with a letter or digit"
        )
    # clients/ID-key.pem must never be the certificate of another client.
    if client_id.endswith("-key"):
        raise InvalidCertificateRequest(f"client id {client_id!r} may not end in '-key'")
    # `safepassage pki revoke console` names the console's own certificate.
    if client_id == CONSOLE_ID:
        raise InvalidCertificateRequest(f"client id {client_id!r} is the console's own")
    return client_id


def check_organisation(role: Role, organisation: str | None) -> str:
    """The organisation id for a certificate of `role` ("" for none), or InvalidCertificateRequest.

    NGO caseworkers and kiosks act for one organisation, and the server binds
    them to its records by this id: issuing them without one is refused.
    """
    if organisation is None or organisation == "":
        if role in ORGANISATION_ROLES:
            raise InvalidCertificateRequest(
                f"the role {role.value} needs an organisation (--organisation ORG, e.g. la-strada)"
            )
        return ""
    if not ORGANISATION_ID.fullmatch(organisation):
        raise InvalidCertificateRequest(
            f"organisation {organisation!r} is not an organisation id: 2-63 characters of a-z 0-9 -,"
            " starting with a letter or digit"
        )
    return organisation


def role_of(value: Role | str) -> Role:
    try:
        return Role(value)
    except ValueError:
        roles = ", ".join(role.value for role in Role)
        raise InvalidCertificateRequest(f"unknown role {value!r} (roles: {roles})") from None
