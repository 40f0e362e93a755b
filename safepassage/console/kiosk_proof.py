"""The holder's proof carried from one kiosk page to the next, sealed, for a short while only.

The console keeps nothing between requests (no session, no cookie), and a holder at the kiosk should
not type their recovery code again for each change. So the page that shows their record carries
what they gave in its forms, sealed: AES-256-GCM under a key made at start-up and never written,
bound (as associated data) to the SHA-256 of the kiosk's certificate and the time it was sealed.
The page never holds the code in clear; a sealed proof opens only for the same kiosk, only while
younger than its lifetime (the kiosk's idle time and a minute), and never after a restart. Each
page the holder moves to seals it afresh, so an active holder keeps going and an idle screen's forms
are dead soon after the screen went back to the start.

Beside it the forms carry what the page showed of the record (its id and its scopes), sealed the same
way under another binding: a holder with a card proves themselves with a fresh head turn for each
call (a live statement is accepted once), so the page that follows a call that returns no record (a
new PIN, "back" from a new card) or a head turn that failed shows the record as last answered rather
than asking the service, and the holder's face, again.
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
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from safepassage.console.kiosk_gateway import HolderProof, RecordConsent, ScopeState
from safepassage.console.refusals import FormRefused

__all__ = ["FIELD", "SHOWN_FIELD", "ProofSeal"]

# The hidden fields the kiosk's forms carry the sealed proof, and the record as shown, in.
FIELD = "holder_proof"
SHOWN_FIELD = "shown_record"
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
    def _bound(kind: str, issued: int, certificate: bytes) -> bytes:
        return f"{kind}:{issued}:".encode() + hashlib.sha256(certificate).digest()

    def _seal(self, kind: str, certificate: bytes, body: object) -> str:
        issued = int(self._clock())
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, json.dumps(body).encode(), self._bound(kind, issued, certificate))
        return f"{issued}.{_b64(nonce + sealed)}"

    def _open(self, kind: str, certificate: bytes, token: str) -> Any:
        issued_text, _, sealed_text = token.partition(".")
        try:
            issued = int(issued_text)
            sealed = _unb64(sealed_text)
            bound = self._bound(kind, issued, certificate)
            body = self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], bound)
        except (ValueError, binascii.Error, InvalidTag):
            raise FormRefused("the page's proof of the holder is not one this kiosk was given") from None
        if not 0 <= self._clock() - issued <= self._lifetime_s:
            raise FormRefused("the page was left too long: start again")
        return json.loads(body)

    def seal(self, certificate: bytes, proof: HolderProof) -> str:
        body = {"recovery_code": proof.recovery_code, "credential": proof.credential, "pin": proof.pin}
        return self._seal("kiosk-proof", certificate, body)

    def open(self, certificate: bytes, token: str | None) -> HolderProof:
        """The proof sealed for this kiosk's certificate within the lifetime; FormRefused otherwise."""
        if not token:
            raise FormRefused("the page carries no proof of the holder: start again")
        fields = self._open("kiosk-proof", certificate, token)
        return HolderProof(fields["recovery_code"], fields["credential"], fields["pin"])

    def seal_shown(self, certificate: bytes, consent: RecordConsent) -> str:
        scopes = [[s.scope, s.granted, s.in_force, s.decided_at, s.withdrawn_at] for s in consent.scopes]
        return self._seal("kiosk-shown", certificate, {"record_id": consent.record_id, "scopes": scopes})

    def open_shown(self, certificate: bytes, token: str | None) -> RecordConsent | None:
        """The record as this kiosk's page last showed it; None when the form carries none."""
        if not token:
            return None
        fields = self._open("kiosk-shown", certificate, token)
        scopes = tuple(
            ScopeState(str(scope), bool(granted), bool(in_force), str(decided), str(withdrawn))
            for scope, granted, in_force, decided, withdrawn in fields["scopes"]
        )
        return RecordConsent(str(fields["record_id"]), scopes)
