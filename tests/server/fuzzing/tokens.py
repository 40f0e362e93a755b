"""CCTV authorisations: a few real ones from the session PKI, and hostile ones built from them."""

from __future__ import annotations

import json
import random
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from safepassage.server.cctv_authorisation import sign
from safepassage.server.identity import Role
from tests.pki_helpers import RolePki

from .rpcs import CAMERA, P, W


@dataclass(frozen=True)
class Tokens:
    valid: str  # a real authorisation for CAMERA on W
    admin_der: bytes
    camera_der: bytes
    other_gallery: str
    other_camera: str
    expired: str


def b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hostile_token(rng: random.Random, tokens: Tokens) -> tuple[str | None, str]:
    """A CCTV authorisation that must be refused (or the valid one, sometimes)."""
    kind = rng.randrange(13)
    if kind == 0:
        return None, "no authorisation"
    if kind == 1:
        return "", "empty authorisation"
    if kind == 2:
        return "".join(
            rng.choice(string.printable[:94] + " ") for _ in range(rng.randint(1, 300))
        ), "random token"
    if kind == 3:
        return ".".join(
            b64(rng.randbytes(rng.randint(0, 200))) for _ in range(rng.randint(1, 5))
        ), "random parts"
    if kind == 4:
        chars = list(tokens.valid)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice(string.ascii_letters + string.digits + "-_.")
        return "".join(chars), "valid token with changed characters"
    if kind == 5:
        return tokens.valid[: rng.randrange(len(tokens.valid))], "truncated token"
    if kind in (6, 7):
        payloads = [
            b"[]",
            b"5",
            b'"x"',
            b"null",
            b"{}",
            b'{"version": 1}',
            b'{"version": "1"}',
            b'{"version": 1, "cameras": 5}',
            b'{"version": 1, "cameras": ["cam-1"], "extra": 1}',
            b"[" * 2000 + b"]" * 2000,
            b'{"a":' * 800 + b"1" + b"}" * 800,
            b"\xff\xfe",
            rng.randbytes(rng.randint(0, 100)),
            json.dumps({"version": 1, "cameras": [CAMERA], "gallery_id": W, "not_before": "x"}).encode(),
        ]
        payload = rng.choice(payloads)
        cert = tokens.admin_der if kind == 6 else tokens.camera_der
        signature = b64(rng.randbytes(rng.choice([0, 8, 70, 72])))
        return f"{b64(payload)}.{signature}.{b64(cert)}", f"forged payload {payload[:12]!r}"
    if kind == 8:
        body, signed, _ = tokens.valid.split(".")
        return f"{body}.{signed}.{b64(tokens.camera_der)}", "camera's own certificate"
    if kind == 9:
        return rng.choice(
            [tokens.other_gallery, tokens.other_camera, tokens.expired]
        ), "token for another call"
    if kind == 10:
        return "." * rng.randint(0, 10), "dots"
    if kind == 11:
        # A well-formed admin certificate with one field made unreadable.
        name, old, new = rng.choice(
            [
                ("unknown curve", "2a8648ce3d030107", "2a8648ce3d030108"),  # prime256v1 -> .8
                ("unknown key type", "2a8648ce3d0201", "2a8648ce3d0205"),  # id-ecPublicKey -> .5
                ("bad X.509 version", "a003020102", "a003020107"),
            ]
        )
        der = tokens.admin_der.replace(bytes.fromhex(old), bytes.fromhex(new), 1)
        body, signed, _ = tokens.valid.split(".")
        return f"{body}.{signed}.{b64(der)}", f"certificate with {name}"
    return tokens.valid, "valid authorisation"


def make_tokens(pki: RolePki) -> Tokens:
    admin = pki.clients[Role.ADMIN]
    camera = pki.clients[Role.CCTV_EDGE]
    admin_cert = x509.load_pem_x509_certificate(admin.cert_pem)
    key = load_pem_private_key(admin.key_pem, None)

    def token(gallery: str = W, cameras: Sequence[str] = (CAMERA,), now: float | None = None) -> str:
        return sign(
            gallery_id=gallery,
            cameras=cameras,
            legal_basis="fuzz test",
            valid_for_s=3600,
            admin_cert=admin_cert,
            admin_key=key,  # type: ignore[arg-type]
            now=now,
        )

    return Tokens(
        valid=token(),
        admin_der=admin_cert.public_bytes(Encoding.DER),
        camera_der=x509.load_pem_x509_certificate(camera.cert_pem).public_bytes(Encoding.DER),
        other_gallery=token(gallery=P),
        other_camera=token(cameras=("cam-2",)),
        expired=token(now=time.time() - 7200),
    )
