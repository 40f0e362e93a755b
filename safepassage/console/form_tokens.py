"""CSRF tokens: every form carries one, bound to the person's certificate and to the time it was made.

The console sets no cookie. A page's form carries a token that is an HMAC, under a key made at
start-up and never written anywhere, of the time it was issued and the SHA-256 of the person's
client certificate (the TLS peer the page was served to). A POST is refused before anything else is
done unless its token verifies for the certificate presenting it and is younger than the form
lifetime: another site cannot read the token (same-origin), another person's token is for another
certificate, and a token outlives neither its lifetime nor a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from safepassage.console.refusals import FormRefused

__all__ = ["FIELD", "FormTokens"]

# The hidden field every form carries its token in.
FIELD = "form_token"


class FormTokens:
    def __init__(self, lifetime_s: float, clock: Callable[[], float] = time.time) -> None:
        self._key = secrets.token_bytes(32)
        self._lifetime_s = lifetime_s
        self._clock = clock

    def _mac(self, issued: int, certificate: bytes) -> str:
        message = f"form:{issued}:".encode() + hashlib.sha256(certificate).digest()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self, certificate: bytes) -> str:
        issued = int(self._clock())
        return f"{issued}.{self._mac(issued, certificate)}"

    def check(self, certificate: bytes, token: str | None) -> None:
        """Raise FormRefused unless `token` was issued to `certificate` within the lifetime."""
        if not token:
            raise FormRefused("the form carries no token: reload the page and submit it again")
        issued_text, _, mac = token.partition(".")
        try:
            issued = int(issued_text)
        except ValueError:
            raise FormRefused("the form's token is not one this console issued") from None
        if not hmac.compare_digest(mac, self._mac(issued, certificate)):
            raise FormRefused("the form's token is not one this console issued to this certificate")
        age = self._clock() - issued
        if not 0 <= age <= self._lifetime_s:
            raise FormRefused("the form is too old: reload the page and submit it again")
