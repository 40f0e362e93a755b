"""The holder's step of an enrolment, sealed into the caseworker's form: the console keeps nothing.

The holder decides consent and sets their PIN and duress PIN on the first step; the caseworker
fills in the record on the second. Between the two the holder's answers travel inside the
caseworker's form as one opaque field: AES-256-GCM under a key made at start-up and never written
anywhere, bound (associated data) to the SHA-256 of the person's client certificate and stamped
with the time it was sealed. The caseworker's page holds only ciphertext, so the PINs are never
shown to them, never in a page's source, never logged; another certificate's form, a forged or
altered field, an old one (older than the form lifetime) or one from before a restart does not
open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from safepassage.console.refusals import FormRefused

__all__ = ["HolderAnswers", "HolderStepSeal"]

_NONCE_BYTES = 12
_CONTEXT = b"safepassage-console-holder-step:"


@dataclass(frozen=True)
class HolderAnswers:
    """What the holder decided on their step: the consent shown and each scope, and their PINs."""

    language: str  # BCP 47: the consent's and the printed page's language
    consent_text: str
    granted: tuple[str, ...]
    refused: tuple[str, ...]
    pin: str = field(repr=False)
    duress_pin: str = field(repr=False)


class HolderStepSeal:
    def __init__(self, lifetime_s: float, clock: Callable[[], float] = time.time) -> None:
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self._lifetime_s = lifetime_s
        self._clock = clock

    @staticmethod
    def _bound_to(certificate: bytes) -> bytes:
        return _CONTEXT + hashlib.sha256(certificate).digest()

    def seal(self, certificate: bytes, answers: HolderAnswers) -> str:
        body = {
            "sealed_at": int(self._clock()),
            "language": answers.language,
            "consent_text": answers.consent_text,
            "granted": list(answers.granted),
            "refused": list(answers.refused),
            "pin": answers.pin,
            "duress_pin": answers.duress_pin,
        }
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, json.dumps(body).encode("utf-8"), self._bound_to(certificate))
        return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, certificate: bytes, token: str) -> HolderAnswers:
        """The holder's answers, or FormRefused when the field is not one sealed for this person now."""
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._bound_to(certificate))
        except (ValueError, UnicodeEncodeError, binascii.Error, InvalidTag):
            raise FormRefused(
                "the holder's step is not one this console sealed for this certificate: start again"
            ) from None
        body = json.loads(plain)
        age = self._clock() - int(body["sealed_at"])
        if not 0 <= age <= self._lifetime_s:
            raise FormRefused("the holder's step is too old: start the enrolment again")
        return HolderAnswers(
            language=str(body["language"]),
            consent_text=str(body["consent_text"]),
            granted=tuple(str(s) for s in body["granted"]),
            refused=tuple(str(s) for s in body["refused"]),
            pin=str(body["pin"]),
            duress_pin=str(body["duress_pin"]),
        )
