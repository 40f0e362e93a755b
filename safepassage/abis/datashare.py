"""MOSIP's datashare: fetch an insert's biometrics over HTTPS and decrypt them with the partner key.

The referenceURL is fetched with the partner's JWT (MOSIP reads it from the ``Authorization``
cookie; it is sent as a bearer token as well). The body is URL-safe base64 of, as MOSIP 1.2
lays it out::

    "VER_R2" (6) | certificate thumbprint (32, SHA-256 of the partner certificate's DER)
      | RSA-OAEP(SHA-256, MGF1 SHA-256) encrypted AES key (the RSA modulus' size)
    "#KEY_SPLITTER#"
    nonce (12) | AAD (32) | AES-256-GCM ciphertext and tag (AAD authenticated)

Failures earn the spec's reasons: nothing fetched, a refusal, or a body that does not decrypt
under our key: 7; a datashare MOSIP says has expired (HTTP 410, or an error naming expiry): 17.
Nothing of the body is logged. :func:`seal_datashare` is the encrypting side, for tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509 import Certificate

from safepassage.abis.errors import AbisRefusal, FailureReason
from safepassage.core.certificates import to_der

__all__ = ["DatashareClient", "PartnerKey", "open_datashare", "seal_datashare"]

log = logging.getLogger(__name__)

KEY_SPLITTER = b"#KEY_SPLITTER#"
VERSION_BYTES = b"VER_R2"
_THUMBPRINT, _NONCE, _AAD = 32, 12, 32
MAX_DATASHARE_BYTES = 48 << 20
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


@dataclass(frozen=True)
class PartnerKey:
    """The ABIS partner's RSA key and certificate, as registered with MOSIP's partner management."""

    private_key: rsa.RSAPrivateKey
    certificate: Certificate

    @property
    def thumbprint(self) -> bytes:
        return hashlib.sha256(to_der(self.certificate)).digest()


def _unavailable(message: str) -> AbisRefusal:
    return AbisRefusal(FailureReason.DATASHARE_UNAVAILABLE, message)


def open_datashare(body: bytes, key: PartnerKey) -> bytes:
    """The plaintext (CBEFF XML) of a datashare body; raises AbisRefusal(7) if it is not ours or broken."""
    try:
        compact = b"".join(body.split())
        raw = base64.urlsafe_b64decode(compact + b"=" * (-len(compact) % 4))
    except (binascii.Error, ValueError):
        raise _unavailable("the datashare is not base64") from None
    wrapped, splitter, sealed = raw.partition(KEY_SPLITTER)
    if not splitter:
        raise _unavailable("the datashare has no key block")
    if wrapped.startswith(VERSION_BYTES):
        wrapped = wrapped[len(VERSION_BYTES) :]
    key_size = key.private_key.key_size // 8
    if len(wrapped) == _THUMBPRINT + key_size:
        if wrapped[:_THUMBPRINT] != key.thumbprint:
            raise _unavailable("the datashare is encrypted for another partner certificate")
        wrapped = wrapped[_THUMBPRINT:]
    if len(wrapped) != key_size or len(sealed) < _NONCE + _AAD + 16:
        raise _unavailable("the datashare's blocks have the wrong sizes")
    try:
        secret = key.private_key.decrypt(wrapped, _OAEP)
        nonce, aad, ciphertext = sealed[:_NONCE], sealed[_NONCE : _NONCE + _AAD], sealed[_NONCE + _AAD :]
        return AESGCM(secret).decrypt(nonce, ciphertext, aad)
    except (ValueError, InvalidTag):
        raise _unavailable("the datashare does not decrypt under the partner key") from None


def seal_datashare(plaintext: bytes, certificate: Certificate) -> bytes:
    """Encrypt as MOSIP's datashare does, for ``certificate``'s RSA key (tests and benchmarks)."""
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise ValueError("the partner certificate must hold an RSA key")
    secret = AESGCM.generate_key(bit_length=256)
    nonce, aad = os.urandom(_NONCE), os.urandom(_AAD)
    thumbprint = hashlib.sha256(to_der(certificate)).digest()
    wrapped = VERSION_BYTES + thumbprint + public.encrypt(secret, _OAEP)
    sealed = nonce + aad + AESGCM(secret).encrypt(nonce, plaintext, aad)
    return base64.urlsafe_b64encode(wrapped + KEY_SPLITTER + sealed)


def _mosip_error(body: bytes) -> str | None:
    """The error MOSIP answered in a 200 body ({"errors": [{"errorCode", "message"}]}), if any."""
    if not body.lstrip().startswith(b"{"):
        return None
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    if not errors or not isinstance(errors, list) or not isinstance(errors[0], dict):
        return None
    return f"{errors[0].get('errorCode', '')} {errors[0].get('message', '')}"


class DatashareClient:
    """Fetches and decrypts datashares: one TLS context, one token, one partner key."""

    def __init__(self, key: PartnerKey, token: str, tls: ssl.SSLContext, timeout_s: float = 30.0) -> None:
        self._key, self._token, self._tls, self._timeout = key, token, tls, timeout_s

    def fetch(self, url: str) -> bytes:
        """The decrypted CBEFF document at ``url``; raises AbisRefusal (7 or 17)."""
        if urllib.parse.urlsplit(url).scheme != "https":
            raise _unavailable("the referenceURL is not an https URL")
        request = urllib.request.Request(
            url,
            headers={"Cookie": f"Authorization={self._token}", "Authorization": f"Bearer {self._token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._tls) as response:
                body = response.read(MAX_DATASHARE_BYTES + 1)
        except urllib.error.HTTPError as error:
            error.close()
            if error.code == 410:
                raise AbisRefusal(FailureReason.DATASHARE_EXPIRED, "the datashare has expired") from None
            raise _unavailable(f"the datashare answered HTTP {error.code}") from None
        except (urllib.error.URLError, OSError) as error:
            raise _unavailable(f"the datashare cannot be fetched: {type(error).__name__}") from None
        if len(body) > MAX_DATASHARE_BYTES:
            raise _unavailable("the datashare is over the size limit")
        problem = _mosip_error(body)
        if problem is not None:
            if "expire" in problem.lower():
                raise AbisRefusal(FailureReason.DATASHARE_EXPIRED, "the datashare has expired")
            raise _unavailable("the datashare answered an error")
        return open_datashare(body, self._key)
