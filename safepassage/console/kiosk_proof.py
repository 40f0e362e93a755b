"""The holder's proof carried from one kiosk page to the next, sealed, for a short while only.

The console keeps nothing between requests (no session, no cookie), and a holder at the kiosk should
not type their recovery code again for each change. So the page that shows their record carries
what they gave in its forms, sealed: AES-256-GCM under a key made at start-up and never written,
bound (as associated data) to the SHA-256 of the kiosk's certificate and the time it was sealed.
The page never holds the code in clear; a sealed proof opens only for the same kiosk, only while
younger than its lifetime (the kiosk's idle time and a minute), and never after a restart. Each
page the holder moves to seals it afresh, so an active holder keeps going and an idle screen's forms
are dead soon after the screen went back to the start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from safepassage.console.kiosk_gateway import HolderProof
from safepassage.console.refusals import FormRefused

__all__ = ["FIELD", "ProofSeal"]

# The hidden field the kiosk's forms carry the sealed proof in.
FIELD = "holder_proof"
_NONCE = 12


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ProofSeal:
    def __init__(self, lifetime_s: float, clock: Callable[[], float] = time.time) -> None:
        self._aead = AESGCM(secrets.token_bytes(32))
        self._lifetime_s = lifetime_s
        self._clock = clock

    @staticmethod
    def _bound(issued: int, certificate: bytes) -> bytes:
        return f"kiosk-proof:{issued}:".encode() + hashlib.sha256(certificate).digest()

    def seal(self, certificate: bytes, proof: HolderProof) -> str:
        issued = int(self._clock())
        nonce = os.urandom(_NONCE)
        body = json.dumps(
            {"recovery_code": proof.recovery_code, "credential": proof.credential, "pin": proof.pin}
        ).encode()
        sealed = self._aead.encrypt(nonce, body, self._bound(issued, certificate))
        return f"{issued}.{_b64(nonce + sealed)}"

    def open(self, certificate: bytes, token: str | None) -> HolderProof:
        """The proof sealed for this kiosk's certificate within the lifetime; FormRefused otherwise."""
        if not token:
            raise FormRefused("the page carries no proof of the holder: start again")
        issued_text, _, sealed_text = token.partition(".")
        try:
            issued = int(issued_text)
            sealed = _unb64(sealed_text)
            body = self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], self._bound(issued, certificate))
        except (ValueError, binascii.Error, InvalidTag):
            raise FormRefused("the page's proof of the holder is not one this kiosk was given") from None
        if not 0 <= self._clock() - issued <= self._lifetime_s:
            raise FormRefused("the page was left too long: start again")
        fields = json.loads(body)
        return HolderProof(fields["recovery_code"], fields["credential"], fields["pin"])
