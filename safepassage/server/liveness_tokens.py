"""The service's own liveness tokens: a head-turn challenge it drew, and its statement that a frame passed.

A browser behind the console cannot sign a capture statement with its certificate's key, so the
service runs the head-turn check itself (capture_quality.py, head_turn_check.py). Two tokens carry
that check between calls, both sealed here (AES-256-GCM through core.sealing) under a key made at
start-up and never written, so only this process can make or open them:

- a **challenge** (StartLiveness): the side the person is asked to turn to, the caller it was drawn
  for (`role:client id`), when, and a nonce. CheckLiveness accepts it once, from that caller, for
  ``challenge_ttl_s``; the frames it is given cannot span longer than the challenge has existed.
- a **statement** (CheckLiveness, when the turn passed): that caller, the SHA-256 of the frontal frame
  the challenge started from, when, and a nonce, behind the marker ``SPLS1.``. A holder proof or an
  enrolment accepts it once, from the same caller, for ``statement_ttl_s``, over exactly that image
  (server/live_capture.py), as it accepts a device's signed capture statement with liveness
  ``head_turn``.

The two are sealed for different contexts, so one never opens as the other. A restart makes a new
key: challenges and statements in flight are refused and the person turns again. Failures raise:
a challenge refused is INVALID_ARGUMENT; a statement refused is the capture statement's own error
(credential.errors: replayed, not fresh, another caller, another image).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from safepassage import credential
from safepassage.camera_edge.liveness import TurnDirection
from safepassage.core.errors import InvalidInput
from safepassage.core.sealing import Aead, Envelope, SealingKey
from safepassage.credential.errors import (
    CaptureDeviceMismatch,
    CaptureImageMismatch,
    CaptureNotFresh,
    CaptureReplayed,
    MalformedCaptureStatement,
)

__all__ = ["SERVICE_STATEMENT_MARKER", "Challenge", "LivenessChallengeRefused", "LivenessTokens"]

SERVICE_STATEMENT_MARKER = b"SPLS1."
_MAX_TOKEN_BYTES = 1024
_CHALLENGE, _STATEMENT = b"challenge", b"statement"


class LivenessChallengeRefused(InvalidInput):
    """A liveness challenge that this service did not issue to this caller, or no longer accepts."""


class _TokenDamaged(InvalidInput):
    """Internal: a token that does not open (reported as the caller's error by the method that opened it)."""


_ENVELOPE = Envelope(
    version=1,
    key_id_size=4,
    damaged=_TokenDamaged,
    wrong_key=_TokenDamaged,
    label=b"safepassage liveness v1:",
    key_name="liveness key",
    binding="token kind",
)


@dataclass(frozen=True)
class Challenge:
    """An opened challenge: who it was drawn for, which side, and when (server clock, seconds)."""

    caller: str
    direction: TurnDirection
    issued_at: float


class LivenessTokens:
    """Makes and opens the challenges and statements of this process; thread-safe."""

    def __init__(
        self,
        challenge_ttl_s: float = 60.0,
        statement_ttl_s: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (challenge_ttl_s > 0 and statement_ttl_s > 0):
            raise ValueError("liveness token lifetimes must be positive")
        self.challenge_ttl_s = challenge_ttl_s
        self.statement_ttl_s = statement_ttl_s
        self._key = SealingKey(_ENVELOPE, Aead.generate_key(), os.urandom(_ENVELOPE.key_id_size))
        self._clock = clock
        # Each nonce is remembered until its token could no longer pass freshness: used once.
        self._challenges = credential.NonceCache()
        self._statements = credential.NonceCache()

    def _seal(self, kind: bytes, body: Mapping[str, object]) -> bytes:
        return self._key.seal(json.dumps(body, sort_keys=True).encode("ascii"), kind)

    def _open(self, kind: bytes, token: bytes, text: str) -> tuple[str, str, float, bytes]:
        """The caller, the ``text`` field, the time issued and the nonce of a token of ``kind``."""
        if len(token) > _MAX_TOKEN_BYTES:
            raise _TokenDamaged("too long")
        body = json.loads(self._key.open(token, kind, where=kind.decode()))
        if not isinstance(body, dict):
            raise _TokenDamaged("not an object")
        caller, value, issued_at, nonce = body["caller"], body[text], body["issued_at"], body["nonce"]
        if not (isinstance(caller, str) and isinstance(value, str) and isinstance(nonce, str)):
            raise _TokenDamaged("fields of the wrong type")
        if not isinstance(issued_at, float | int):
            raise _TokenDamaged("fields of the wrong type")
        return caller, value, float(issued_at), bytes.fromhex(nonce)

    # -- challenges

    def issue_challenge(self, caller: str, direction: TurnDirection) -> bytes:
        """A challenge to turn to ``direction``, for ``caller`` alone."""
        body = {
            "caller": caller,
            "direction": TurnDirection(direction).value,
            "issued_at": self._clock(),
            "nonce": os.urandom(16).hex(),
        }
        return self._seal(_CHALLENGE, body)

    def open_challenge(self, token: bytes, caller: str) -> Challenge:
        """The challenge, spent; LivenessChallengeRefused if foreign, another caller's, old or used before."""
        try:
            owner, side, issued_at, nonce = self._open(_CHALLENGE, token, "direction")
            direction = TurnDirection(side)
        except (_TokenDamaged, KeyError, ValueError):
            raise LivenessChallengeRefused(
                "challenge: not a liveness challenge this server issued (a restart voids them): start again"
            ) from None
        if owner != caller:
            raise LivenessChallengeRefused("challenge: it was issued to another caller: start again")
        now = self._clock()
        if not (math.isfinite(issued_at) and 0 <= now - issued_at <= self.challenge_ttl_s):
            raise LivenessChallengeRefused(
                f"challenge: older than {self.challenge_ttl_s:g} s: start again and turn within that time"
            )
        try:
            self._challenges.use(nonce, issued_at + self.challenge_ttl_s, now)
        except CaptureReplayed:
            raise LivenessChallengeRefused("challenge: it was used before: start again") from None
        return Challenge(owner, direction, issued_at)

    def elapsed_since(self, challenge: Challenge) -> float:
        """Seconds since ``challenge`` was issued, by this server's clock."""
        return max(0.0, self._clock() - challenge.issued_at)

    # -- statements

    def issue_statement(self, caller: str, image: bytes) -> bytes:
        """The service's word that ``image`` is the frontal frame of a head turn ``caller`` just passed."""
        body = {
            "caller": caller,
            "image_sha256": hashlib.sha256(image).hexdigest(),
            "issued_at": self._clock(),
            "nonce": os.urandom(16).hex(),
        }
        return SERVICE_STATEMENT_MARKER + self._seal(_STATEMENT, body)

    def verify_statement(self, statement: bytes, image: bytes, caller: str) -> credential.CaptureStatement:
        """The statement as a capture statement with head-turn liveness, spent; raises as a device's would."""
        if not statement.startswith(SERVICE_STATEMENT_MARKER):
            raise MalformedCaptureStatement("not a liveness statement of this server")
        try:
            owner, digest, issued_at, nonce = self._open(
                _STATEMENT, statement[len(SERVICE_STATEMENT_MARKER) :], "image_sha256"
            )
        except (_TokenDamaged, KeyError, ValueError):
            raise MalformedCaptureStatement(
                "the liveness statement is not one this server issued (a restart voids them): turn again"
            ) from None
        if owner != caller:
            raise CaptureDeviceMismatch("the liveness statement was issued to another caller")
        if hashlib.sha256(image).hexdigest() != digest:
            raise CaptureImageMismatch("the image is not the frame the liveness statement was issued for")
        now = self._clock()
        if not (math.isfinite(issued_at) and 0 <= now - issued_at <= self.statement_ttl_s):
            raise CaptureNotFresh(
                f"the liveness check is more than {self.statement_ttl_s:g} s old: turn again"
            )
        self._statements.use(nonce, issued_at + self.statement_ttl_s, now)
        return credential.CaptureStatement(
            device=owner.partition(":")[2] or owner,
            image_sha256=digest,
            captured_at=math.floor(issued_at),
            liveness=credential.Liveness.HEAD_TURN,
            nonce=nonce.hex(),
        )
