"""MOSIP's side of an insert (tests, the ABIS benchmark): the partner key, encrypted datashares, HTTPS.

The server is real HTTPS under a test CA (the adapter trusts that CA only), answers only requests
carrying the partner's token, and serves what the test publishes: an encrypted datashare, an
expired one (MOSIP's error body), or an HTTP status.
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import json
import secrets
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from PIL import Image

from safepassage.abis.cbeff import write_cbeff
from safepassage.abis.datashare import seal_datashare
from safepassage.travel_document import FaceImage, FaceRecordFormat, ImageEncoding

NOW = datetime.datetime.now(datetime.UTC)


def _certificate(
    subject: str,
    issuer: x509.Name | None,
    public_key: object,
    signing_key: object,
    *,
    ca: bool,
    san: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(signing_key, hashes.SHA256())  # type: ignore[arg-type]


def _pem_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class PartnerFiles:
    key_file: Path
    certificate_file: Path
    certificate: x509.Certificate
    ca_file: Path
    token_file: Path
    token: str


def jpeg_2000_face(photo: Path) -> FaceImage:
    """A photo re-encoded as MOSIP's faces are: JPEG 2000, in an ISO/IEC 19794-5 record's image."""
    out = io.BytesIO()
    with Image.open(photo) as image:
        rgb = image.convert("RGB")
        rgb.save(out, "JPEG2000", quality_mode="rates", quality_layers=[10], irreversible=True)
        width, height = rgb.size
    return FaceImage(FaceRecordFormat.ISO_19794_5, ImageEncoding.JPEG_2000, out.getvalue(), width, height)


class _Handler(BaseHTTPRequestHandler):
    server: DatashareServer

    def do_GET(self) -> None:
        if f"Authorization={self.server.token}" not in (self.headers.get("Cookie") or ""):
            self._reply(401, b'{"errors":[{"errorCode":"KER-ATH-401","message":"Authentication failed"}]}')
            return
        if self.path.startswith("/held/"):
            self.server.gate.wait(timeout=60)  # a datashare that answers only when the test says
        found = self.server.shares.get(self.path)
        if found is None:
            self._reply(404, b"not found")
            return
        self.server.fetched.append(self.path)
        self._reply(*found)

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class DatashareServer(ThreadingHTTPServer):
    """HTTPS on a free port; :meth:`publish` makes a path answer, :meth:`url` names it."""

    def __init__(self, folder: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        folder.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("Test MOSIP CA", None, ca_key.public_key(), ca_key, ca=True)
        tls_key = ec.generate_private_key(ec.SECP256R1())
        tls = _certificate("localhost", ca.subject, tls_key.public_key(), ca_key, ca=False, san=True)
        (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (folder / "tls.pem").write_bytes(tls.public_bytes(serialization.Encoding.PEM))
        (folder / "tls.key").write_bytes(_pem_key(tls_key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(folder / "tls.pem", folder / "tls.key")
        self.socket = context.wrap_socket(self.socket, server_side=True)
        partner_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        partner = _certificate("abis1 partner", ca.subject, partner_key.public_key(), ca_key, ca=False)
        (folder / "partner.key").write_bytes(_pem_key(partner_key))
        (folder / "partner.key").chmod(0o600)
        (folder / "partner.pem").write_bytes(partner.public_bytes(serialization.Encoding.PEM))
        self.token = secrets.token_urlsafe(24)
        (folder / "token").write_text(self.token)
        (folder / "token").chmod(0o600)
        self.partner = PartnerFiles(
            folder / "partner.key",
            folder / "partner.pem",
            partner,
            folder / "ca.pem",
            folder / "token",
            self.token,
        )
        self.shares: dict[str, tuple[int, bytes]] = {}
        self.fetched: list[str] = []
        self.gate = threading.Event()  # paths under /held/ answer once it is set
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def start(self) -> DatashareServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}{path}"

    def publish(self, path: str, status: int, body: bytes) -> str:
        self.shares[path] = (status, body)
        return self.url(path)

    def publish_faces(self, path: str, faces: list[FaceImage], *, empty_bdb: bool = False) -> str:
        """An encrypted datashare of a CBEFF document holding these faces."""
        return self.publish(
            path, 200, seal_datashare(write_cbeff(faces, empty_bdb=empty_bdb), self.partner.certificate)
        )

    def publish_plaintext(self, path: str, plaintext: bytes) -> str:
        """An encrypted datashare of any bytes (a broken CBEFF, for example)."""
        return self.publish(path, 200, seal_datashare(plaintext, self.partner.certificate))

    def publish_expired(self, path: str) -> str:
        body = {"errors": [{"errorCode": "DAT-SER-006", "message": "Data share usuage expired"}]}
        return self.publish(path, 200, json.dumps(body).encode())
