"""A newly issued certificate as the files a person takes away: PKCS#12 for a browser, PEM for the CLI.

Made in memory from the service's answer, offered as downloads inside the one page that shows them
(``data:`` links, so the console keeps no copy to serve later and the page is sent ``no-store``):

- ``ID.p12``: the certificate, its key and the CA, the key encrypted (AES-256, PBKDF2) under a
  passphrase made here and shown once on that page; browsers and smart-card tools import it;
- ``ID-bundle.zip``: the layout `safepassage pki issue --bundle` writes (ca.pem,
  clients/ID.pem, clients/ID-key.pem), for the command line's ``--pki-dir PATH --client ID``; its
  key is unencrypted, as the CLI's bundle is: hand it over as you would a key file.
"""

from __future__ import annotations

import base64
import io
import secrets
import zipfile
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from safepassage.console.certificate_gateway import NewCertificate
from safepassage.console.refusals import ServiceUnreachable

__all__ = ["Downloads", "downloads_of"]

# 20 characters of base32: 100 bits, typed from the screen without ambiguity (no 0/O, 1/l).
_PASSPHRASE_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
_PASSPHRASE_LENGTH = 20


@dataclass(frozen=True)
class Downloads:
    passphrase: str = field(repr=False)
    pkcs12_name: str
    pkcs12_link: str = field(repr=False)  # a data: URL
    pem_name: str
    pem_link: str = field(repr=False)


def _passphrase() -> str:
    raw = "".join(secrets.choice(_PASSPHRASE_ALPHABET) for _ in range(_PASSPHRASE_LENGTH))
    return "-".join(raw[i : i + 5] for i in range(0, _PASSPHRASE_LENGTH, 5))


def downloads_of(issued: NewCertificate) -> Downloads:
    client_id = issued.certificate.client_id
    certificate = x509.load_pem_x509_certificate(issued.certificate_pem)
    authority = x509.load_pem_x509_certificate(issued.ca_pem)
    key = serialization.load_pem_private_key(issued.private_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ServiceUnreachable("the service returned a key of an unexpected kind")
    passphrase = _passphrase()
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(100_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(passphrase.encode("ascii"))
    )
    p12 = pkcs12.serialize_key_and_certificates(
        client_id.encode("utf-8"), key, certificate, [authority], encryption
    )
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("ca.pem", issued.ca_pem)
        bundle.writestr(f"clients/{client_id}.pem", issued.certificate_pem)
        bundle.writestr(f"clients/{client_id}-key.pem", issued.private_key_pem)
    return Downloads(
        passphrase=passphrase,
        pkcs12_name=f"{client_id}.p12",
        pkcs12_link=_data_url("application/x-pkcs12", p12),
        pem_name=f"{client_id}-bundle.zip",
        pem_link=_data_url("application/zip", archive.getvalue()),
    )


def _data_url(media_type: str, body: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(body).decode('ascii')}"
