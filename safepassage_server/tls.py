"""TLS for the gRPC server: configured certificates, or development ones made on first run.

Development certificates are a private CA and a server certificate signed by
it, for the configured names. Clients trust the CA file (``<data_dir>/tls/ca.pem``).
They are for a developer's machine only; deployments configure real files
(mutual TLS with client roles comes with the security issue).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from safepassage_core.errors import FailedPrecondition
from safepassage_server.config import Config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    cert_file: Path
    key_file: Path
    ca_file: Path | None


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SafePassage development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def generate_dev_certificates(folder: Path, server_names: tuple[str, ...]) -> TlsFiles:
    """A development CA and a server certificate signed by it, valid for one year."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("SafePassage development CA"))
        .issuer_name(_name("SafePassage development CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(server_names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(_san(server_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "server.pem", folder / "server-key.pem", folder / "ca.pem")
    pem = serialization.Encoding.PEM
    _write(
        files.key_file,
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        private=True,
    )
    _write(files.cert_file, server_cert.public_bytes(pem))
    assert files.ca_file is not None
    _write(files.ca_file, ca_cert.public_bytes(pem))
    # The CA key is not kept: nothing else may be signed with it.
    log.warning("generated development TLS certificates in %s (trust %s in clients)", folder, files.ca_file)
    return files


def tls_files(config: Config) -> TlsFiles:
    """The certificate files to serve with, generating development ones if allowed."""
    tls = config.tls
    if tls.cert_file is not None and tls.key_file is not None:
        return TlsFiles(tls.cert_file, tls.key_file, tls.ca_file)
    folder = config.tls_dir
    dev = TlsFiles(folder / "server.pem", folder / "server-key.pem", folder / "ca.pem")
    if dev.cert_file.exists() and dev.key_file.exists():
        return dev
    if not tls.generate_dev_certs:
        raise FailedPrecondition("TLS is on but no certificate is configured and generate_dev_certs is false")
    return generate_dev_certificates(folder, tls.server_names)


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    try:
        key, cert = files.key_file.read_bytes(), files.cert_file.read_bytes()
    except OSError as error:
        raise FailedPrecondition(f"cannot read TLS files: {error}") from None
    return grpc.ssl_server_credentials([(key, cert)])
