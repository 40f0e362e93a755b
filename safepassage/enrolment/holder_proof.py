"""Finding a record and weighing what the holder proved in one request.

A request names its record one of three ways: a recovery code (which is also
the holder's proof), a credential (which proves nothing alone), or, for an
NGO caseworker only, the record id. On top of a credential the holder may
add a live capture, which must match the record, and the PIN:

* the credential is checked offline (issuer signature, dates) and against
  the credential registry, so a retired credential (re-issued, or of an
  erased record) is refused whatever else comes with it;
* the live face is a capture the calling device signed (checked by the
  server before it reaches here, and embedded from the image: a vector is
  never a live face); a capture (nearly) identical to one of the record's
  own templates is a replay of the enrolment photo or of a template read
  from a credential, and is refused;
* a PIN is only weighed after a live face matched, so a copied QR code is
  no way to guess PINs; each attempt is reserved in the vault before the
  hash is computed, so parallel guesses cannot pass the lockout; lockouts
  grow, and from the second one the record's organisation gets a referral.

The duress PIN proves the holder like the PIN and looks the same; it also
raises a protection referral to the record's organisation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from safepassage import credential as holder_credential
from safepassage.core.metric import Metric
from safepassage.enrolment.errors import (
    CredentialRetired,
    HolderNotVerified,
    InvalidRecord,
    LiveFaceRefused,
    RecordNotFound,
)
from safepassage.enrolment.holder_secrets import HolderSecrets, PinKind, recovery_tag
from safepassage.enrolment.holder_templates import HolderTemplates
from safepassage.enrolment.record_cipher import DataKey, RecordCipher
from safepassage.enrolment.record_policy import Actor, ActorKind, Proof
from safepassage.enrolment.referrals import ReferralDesk
from safepassage.enrolment.vault import RecordVault
from safepassage.enrolment.vault_records import StoredRecord

__all__ = ["HolderProver", "HolderRef", "LiveFace", "Located", "PinPolicy", "Proved", "locate"]

log = logging.getLogger(__name__)

SECRETS_PART = "secrets"


@dataclass(frozen=True)
class HolderRef:
    """Exactly one of: a record id (NGO caseworkers only), a recovery code, a credential's text."""

    record_id: str = ""
    recovery_code: str = field(default="", repr=False)
    credential: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if sum(map(bool, (self.record_id, self.recovery_code, self.credential))) != 1:
            raise InvalidRecord("holder: give exactly one of record_id, recovery_code or credential")


@dataclass(frozen=True)
class LiveFace:
    """A face the calling device captured now and signed for (checked by the server), embedded."""

    vector: npt.NDArray[np.float32] = field(repr=False)
    liveness: str  # what the device says it checked: "head_turn" or "supervised"


@dataclass(frozen=True)
class Located:
    record_id: str
    organisation: str  # the record's enrolling organisation
    gallery_id: str
    proof: Proof  # what naming it proved: NONE (record id), CREDENTIAL, or HOLDER (recovery code)
    credential_id: str = ""


@dataclass(frozen=True)
class Proved:
    record_id: str
    organisation: str
    proof: Proof
    duress: bool  # the duress PIN was given (the answer must look ordinary)
    score: float | None  # the live face's best score against the record, when one was given
    threshold: float | None


@dataclass(frozen=True)
class PinPolicy:
    max_failures: int = 5
    lock_s: float = 900.0
    referral_after_lockouts: int = 2


def locate(
    vault: RecordVault,
    actor: Actor,
    holder: HolderRef,
    lookup_key: bytes,
    check_credential: Callable[[str], holder_credential.HolderCredential],
) -> Located:
    """The record the request names, and what naming it proved."""
    if holder.record_id:
        if actor.kind is not ActorKind.CASEWORKER:
            raise HolderNotVerified("the holder must present a recovery code or a credential")
        stored = vault.records.get(holder.record_id)
        return Located(stored.record_id, stored.organisation, stored.gallery_id, Proof.NONE)
    if holder.recovery_code:
        try:
            record_id = vault.records.find_by_recovery_tag(recovery_tag(lookup_key, holder.recovery_code))
        except RecordNotFound:
            raise HolderNotVerified("the recovery code is not valid") from None
        stored = vault.records.get(record_id)
        return Located(record_id, stored.organisation, stored.gallery_id, Proof.HOLDER)
    credential = check_credential(holder.credential)
    info = credential.info
    try:
        row = vault.credentials.get(info.credential_id)
    except RecordNotFound:
        raise CredentialRetired("this credential is not on record; ask the NGO for a new one") from None
    if row.record_id is None:
        raise CredentialRetired("this credential was revoked")
    if row.record_id != credential.record_id:
        raise CredentialRetired("this credential is not on record for its holder")
    stored = vault.records.get(row.record_id)
    if row.retired_at is not None:
        raise CredentialRetired(
            "this credential was replaced by a newer one", row.record_id, stored.organisation
        )
    return Located(
        row.record_id, stored.organisation, stored.gallery_id, Proof.CREDENTIAL, info.credential_id
    )


class HolderProver:
    """Weighs a live face and a PIN on top of a located record; raises when they do not prove the holder."""

    def __init__(
        self,
        vault: RecordVault,
        templates: HolderTemplates,
        referrals: ReferralDesk,
        open_key: Callable[[StoredRecord], DataKey],
        channel_of: Callable[[StoredRecord, DataKey], str],
        pins: PinPolicy,
        replay_fraction: float = 0.15,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._vault = vault
        self._templates = templates
        self._referrals = referrals
        self._open_key = open_key
        self._channel_of = channel_of
        self._pins = pins
        self._replay_fraction = replay_fraction
        self._clock = clock

    def prove(
        self,
        located: Located,
        actor: Actor,
        live: LiveFace | None,
        pin: str,
        metric: Metric,
        threshold: float,
        context: str,
    ) -> Proved:
        """What the request proves; `context` names the flow in a duress referral ("verification", ...)."""
        score = None
        proof = located.proof
        if live is not None:
            score = self._match(located.record_id, live, metric, threshold)
            proof = max(proof, Proof.FACE)
        duress = False
        if pin and live is not None:
            duress = self._check_pin(located, actor, pin, context) is PinKind.DURESS
            proof = Proof.HOLDER
        elif pin and proof < Proof.HOLDER:
            # A PIN weighs only after a live face matched: a copied QR code is no PIN oracle.
            raise HolderNotVerified("a PIN is checked only together with a live face that matches")
        return Proved(located.record_id, located.organisation, proof, duress, score, threshold)

    def _match(self, record_id: str, live: LiveFace, metric: Metric, threshold: float) -> float:
        score = self._templates.best_score(record_id, live.vector, metric)
        if metric.higher_is_closer:
            replay = score >= 1.0 - (1.0 - threshold) * self._replay_fraction
        else:
            replay = score <= threshold * self._replay_fraction
        if replay:
            log.warning("live face refused as a replay of a stored template (record %s)", record_id)
            raise LiveFaceRefused(
                "the live face is (nearly) identical to a stored template: a replayed photo or template"
            )
        if not metric.is_match(score, threshold):
            raise HolderNotVerified("the live face does not match the holder's record")
        return score

    def _check_pin(self, located: Located, actor: Actor, pin: str, context: str) -> PinKind:
        now = self._clock()
        # Reserved (counted) before any hash is computed: parallel guesses cannot pass the lockout.
        self._vault.pins.reserve(located.record_id, now, self._pins.max_failures)
        stored = self._vault.records.get(located.record_id)
        key = self._open_key(stored)
        secrets = HolderSecrets.from_bytes(RecordCipher.open(key, SECRETS_PART, stored.sealed_secrets))
        try:
            kind = secrets.check(pin)
        except HolderNotVerified:
            lockout = self._vault.pins.failed(
                located.record_id, self._clock(), self._pins.max_failures, self._pins.lock_s
            )
            if lockout is not None and lockout.lockouts >= self._pins.referral_after_lockouts:
                self._referrals.raise_referral(
                    key, stored.organisation, self._channel_of(stored, key), actor.label, "pin_lockout", now
                )
                log.warning("record %s: PIN lockout %d, referral raised", located.record_id, lockout.lockouts)
            raise
        self._vault.pins.passed(located.record_id)
        if kind is PinKind.DURESS:
            self._referrals.raise_referral(
                key, stored.organisation, self._channel_of(stored, key), actor.label, context, now
            )
        return kind
