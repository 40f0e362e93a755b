"""The edge device's mutual-TLS channel to the matching server, with its files checked first.

A device's certificate, key and the deployment's CA are checked when the
client starts, so that an expired certificate, a key of another certificate
or a missing CA file is a clear error on the console rather than an endless
"unavailable" from a TLS handshake the server refuses. The server still makes
the decision (revocation, role); this only catches what the device can know.

The private key must be readable by its owner only (a device's key lets anyone
who reads it act as the device). Plaintext, for tests, goes only to a server
on this machine: `localhost` or a loopback address (:func:`is_loopback`).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography.x509.oid import NameOID

from safepassage.camera_edge.errors import CredentialsError, EdgeConfigError
from safepassage.core import certificates, key_files
from safepassage.core.private_files import read_private
from safepassage.core.signing import SignatureInvalid

log = logging.getLogger(__name__)
_MESSAGE_LIMIT = 4 * 1024 * 1024
_MAX_PEM = 64 * 1024
_PLAINTEXT_SCHEMES = ("dns:///", "ipv4:", "ipv6:")


def is_loopback(address: str) -> bool:
    """Whether a gRPC target (``host:port``, ``[v6]:port``, ``dns:///host:port``) is this machine.

    Only ``localhost`` and loopback IPs count; anything else, or anything this
    cannot read (a DNS authority, a list of addresses, a unix socket), does not.
    """
    target = address.strip()
    for scheme in _PLAINTEXT_SCHEMES:
        if target.startswith(scheme):
            target = target[len(scheme) :]
            break
    if target.startswith("["):
        host, bracket, _ = target[1:].partition("]")
        if not bracket:
            return False
    else:
        host = target.rsplit(":", 1)[0] if target.count(":") == 1 else target
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_plaintext_address(address: str) -> None:
    """Refuse plaintext to an address off this machine: embeddings would cross the network in clear."""
    if not is_loopback(address):
        raise EdgeConfigError(
            f"plaintext is only for a server on this machine (localhost or a loopback address), and"
            f" {address!r} is not one: remove plaintext = true and give ca, cert and key for mutual TLS"
        )


@dataclass(frozen=True)
class DeviceCredentials:
    """PEM bytes of the CA, the device's certificate and its private key, checked together."""

    ca: bytes
    cert: bytes
    key: bytes
    device_id: str  # the certificate's common name
    not_after: datetime.datetime

    @classmethod
    def load(cls, ca: Path, cert: Path, key: Path, now: datetime.datetime | None = None) -> DeviceCredentials:
        ca_pem, cert_pem = _read(ca, "CA certificate"), _read(cert, "certificate")
        key_pem = _read(key, "key", private=True)
        authority = certificates.parse_pem(ca_pem, f"{ca} (the deployment's CA)", CredentialsError)
        certificate = certificates.parse_pem(cert_pem, f"{cert} (the device's certificate)", CredentialsError)
        private_key = key_files.parse_private_pem(key_pem, str(key), CredentialsError)
        if not certificates.holds_key(certificate, private_key):
            raise CredentialsError(f"the key {key} does not belong to the certificate {cert}")
        if certificate.issuer != authority.subject:
            raise CredentialsError(f"the certificate {cert} was not issued by the CA in {ca}")
        try:
            certificates.check_issued_by(certificate, authority)
        except SignatureInvalid as error:
            raise CredentialsError(f"the certificate {cert} does not verify against {ca}: {error}") from None
        now = now or datetime.datetime.now(datetime.UTC)
        if now < certificate.not_valid_before_utc:
            raise CredentialsError(
                f"the certificate {cert} is not valid before {certificate.not_valid_before_utc}"
            )
        if now >= certificate.not_valid_after_utc:
            raise CredentialsError(f"the certificate {cert} expired on {certificate.not_valid_after_utc}")
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        device_id = str(names[0].value) if names else ""
        return cls(ca_pem, cert_pem, key_pem, device_id, certificate.not_valid_after_utc)

    def __repr__(self) -> str:
        return f"DeviceCredentials(device_id={self.device_id!r}, not_after={self.not_after.isoformat()})"


def _read(path: Path, what: str, *, private: bool = False) -> bytes:
    try:
        if private and path.exists():  # a missing file gets the hint below
            return read_private(path, f"device's {what}", limit=_MAX_PEM, error=CredentialsError)
        return path.read_bytes()
    except OSError as error:
        raise CredentialsError(
            f"cannot read the device's {what} {path}: {error.strerror or error};"
            " `safepassage pki issue <device> --role cctv_edge`"
            " (or `--role kiosk --organisation ORG`) makes one"
        ) from None


def open_channel(
    address: str,
    credentials: DeviceCredentials | None,
    *,
    server_name: str | None = None,
) -> grpc.Channel:
    """A channel to `address`: mutual TLS with `credentials`, or plaintext when None (loopback only)."""
    options: list[tuple[str, int | str]] = [
        ("grpc.max_send_message_length", _MESSAGE_LIMIT),
        ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
        # Poor links: notice a dead connection in tens of seconds, not at the TCP timeout.
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 30_000),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    if credentials is None:
        check_plaintext_address(address)
        log.warning("edge channel to %s is plaintext (tests on loopback only)", address)
        return grpc.insecure_channel(address, options=options)
    channel_credentials = grpc.ssl_channel_credentials(
        root_certificates=credentials.ca,
        private_key=credentials.key,
        certificate_chain=credentials.cert,
    )
    return grpc.secure_channel(address, channel_credentials, options=options)
