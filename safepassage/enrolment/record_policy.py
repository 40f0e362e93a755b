"""Who may do what to a protected record: the whole policy in one table.

The role matrix (safepassage/server/authorization.py) decides which role may
call which operation at all; this policy decides, for one record, whether
this caller with this proof may do this action now. Every protected-record
flow in enrolment asks :func:`authorise` before it reads or changes
anything, and nothing else decides. Its inputs:

* the caller: role kind (caseworker, kiosk, officer), organisation (from
  the certificate), label (for receipts and logs);
* the record: its enrolling organisation, and the consent scopes in force
  (which organisations the holder shares with, border verification);
* what the holder proved in this request.

A holder's proof is the recovery code, or the credential together with a
live capture that matches and the PIN. The credential alone proves nothing,
and with a matching live face it proves only that the person in front of
the device is the holder, which is enough for the minimal view at a border
(if the holder allows it) and for nothing that changes or discloses the
record. The record's own organisation may read its consent state, record a
withdrawal on the holder's instruction (narrowing only) and read its
referrals; no organisation may act on another's records without the
holder's proof.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from safepassage.core.metric import Metric
from safepassage.enrolment.consent import Scope, ScopeGrant, require
from safepassage.enrolment.errors import (
    FaceLivenessRequired,
    HolderNotVerified,
    InvalidRecord,
    RecordAccessDenied,
)
from safepassage.matcher import pairwise_score

__all__ = [
    "LIVE_CAPTURES",
    "Action",
    "Actor",
    "ActorKind",
    "Proof",
    "RecordFacts",
    "admit_enrolment_face",
    "admit_one_person",
    "authorise",
    "may_see_record",
]


class ActorKind(enum.StrEnum):
    CASEWORKER = "caseworker"  # an NGO caseworker's account
    KIOSK = "kiosk"  # an NGO's self-service kiosk
    OFFICER = "officer"  # a border officer's desk


class Proof(enum.IntEnum):
    """What the holder proved in this request, weakest first."""

    NONE = 0  # a caseworker named the record id
    CREDENTIAL = 1  # a credential, nothing else
    FACE = 2  # a credential and a live capture that matched
    HOLDER = 3  # the recovery code, or credential + matching live capture + PIN

    @property
    def label(self) -> str:
        return self.name.lower()


class Action(enum.StrEnum):
    READ_CONSENT = "read_consent"
    WITHDRAW_SCOPE = "withdraw_scope"
    GRANT_SCOPE = "grant_scope"
    ISSUE_CREDENTIAL = "issue_credential"
    CHANGE_PIN = "change_pin"
    SHARE = "share"
    ERASE = "erase"
    VIEW_MINIMAL = "view_minimal"  # the holder at a border desk or a kiosk: who they are, papers' status
    RELEASE_RECORD = "release_record"  # the full record, to the holder's device or the officer


@dataclass(frozen=True)
class Actor:
    label: str  # "role:client-id": how receipts and logs name the caller
    kind: ActorKind
    organisation: str  # "" for roles outside any organisation (officers)


@dataclass(frozen=True)
class RecordFacts:
    organisation: str  # the enrolling organisation
    in_force: frozenset[ScopeGrant]  # the consent scopes the holder has granted and not withdrawn


@dataclass(frozen=True)
class _Rule:
    kinds: frozenset[ActorKind]
    proof: Proof  # the least proof, for any organisation
    own_organisation: Proof | None = None  # a weaker proof the record's own organisation may act on
    consent: Mapping[ActorKind, Scope] | None = None  # the scope that must be in force, per caller kind
    # Caller kinds for which the holder's full proof stands in for that scope (their own kiosk).
    holder_overrides_consent: frozenset[ActorKind] = frozenset()


_NGO = frozenset({ActorKind.CASEWORKER, ActorKind.KIOSK})
_HOLDER_DEVICES = frozenset({ActorKind.KIOSK, ActorKind.OFFICER})
_BORDER = {ActorKind.OFFICER: Scope.VERIFY_AT_BORDER}

POLICY: Mapping[Action, _Rule] = {
    Action.READ_CONSENT: _Rule(_NGO, Proof.HOLDER, own_organisation=Proof.NONE),
    Action.WITHDRAW_SCOPE: _Rule(_NGO, Proof.HOLDER, own_organisation=Proof.NONE),
    Action.GRANT_SCOPE: _Rule(_NGO, Proof.HOLDER),
    Action.ISSUE_CREDENTIAL: _Rule(_NGO, Proof.HOLDER, consent={k: Scope.VERIFY_AT_BORDER for k in _NGO}),
    Action.CHANGE_PIN: _Rule(_NGO, Proof.HOLDER),
    # Sharing: with the caller's own organisation only, if the holder named it (checked below).
    Action.SHARE: _Rule(frozenset({ActorKind.CASEWORKER}), Proof.HOLDER),
    Action.ERASE: _Rule(_NGO, Proof.HOLDER),
    # The minimal view needs the holder's consent to border verification wherever it is shown:
    # a holder who withdrew it has no record to show to whoever holds their credential and a
    # photo. At the NGO's kiosk the holder's full proof (PIN too) still shows them their own.
    Action.VIEW_MINIMAL: _Rule(
        _HOLDER_DEVICES,
        Proof.FACE,
        consent={k: Scope.VERIFY_AT_BORDER for k in _HOLDER_DEVICES},
        holder_overrides_consent=frozenset({ActorKind.KIOSK}),
    ),
    Action.RELEASE_RECORD: _Rule(_HOLDER_DEVICES, Proof.HOLDER, consent=_BORDER),
}


def authorise(action: Action, actor: Actor, record: RecordFacts, proof: Proof) -> None:
    """Return if the actor may do the action on the record with this proof; raise otherwise.

    RecordAccessDenied: this kind of caller never may, or another organisation's caseworker
    without the holder's proof; HolderNotVerified: the holder's proof is missing or too weak;
    ConsentRequired: the scope the action needs is not in force.
    """
    rule = POLICY[action]
    if actor.kind not in rule.kinds:
        raise RecordAccessDenied(f"a {actor.kind.value} may not {action.value.replace('_', ' ')}")
    # Only a caseworker acts for the organisation; a kiosk is the holder's own device.
    own = actor.kind is ActorKind.CASEWORKER and may_see_record(actor, record.organisation)
    least = rule.proof
    if own and rule.own_organisation is not None:
        least = rule.own_organisation
    if proof < least:
        if proof is Proof.NONE and rule.own_organisation is not None:
            # Named by id, by a caseworker of another organisation: say nothing about the record.
            raise RecordAccessDenied(
                "the record belongs to another organisation; the holder must prove it is them"
            )
        raise HolderNotVerified(
            f"to {action.value.replace('_', ' ')} the holder must prove it is them"
            " (recovery code, or credential with a live face and the PIN)"
        )
    overridden = proof is Proof.HOLDER and actor.kind in rule.holder_overrides_consent
    if rule.consent is not None and actor.kind in rule.consent and not overridden:
        require(record.in_force, ScopeGrant(rule.consent[actor.kind]))
    if action is Action.SHARE:
        if not actor.organisation:
            raise RecordAccessDenied("the caller's certificate names no organisation to share with")
        require(record.in_force, ScopeGrant(Scope.SHARE, actor.organisation))


def may_see_record(actor: Actor, record_organisation: str) -> bool:
    """Whether a search may name this record (its id, its score) to the actor: its own organisation's only."""
    return bool(actor.organisation) and actor.organisation == record_organisation


# The liveness check that makes an enrolment's face a live capture where the deployment requires one:
# a head turn (a kiosk's, or the service's own on a browser's frames). Not "supervised": that is the
# enrolling caseworker's own device vouching for itself, the very person this rule must not trust.
LIVE_CAPTURES = frozenset({"head_turn"})


def admit_enrolment_face(liveness: str, live_required: bool) -> None:
    """Return if an enrolment may store a face captured with ``liveness`` ("none": a photo); raise otherwise.

    Where the deployment requires it, a record's face must be a live capture: a corrupt caseworker
    then cannot bind a record, its credential and its PIN to a photo of someone who never came.
    """
    if live_required and liveness not in LIVE_CAPTURES:
        raise FaceLivenessRequired(
            "faces: this deployment enrols only a face that passed a head-turn check (the service's,"
            f" or a kiosk's); {liveness!r} is not one, and a photo alone is refused"
        )


def admit_one_person(
    vectors: Sequence[npt.NDArray[np.float32]], metric: Metric, threshold: float, fields: Sequence[str]
) -> None:
    """Return if every face of an enrolment is the first's person; InvalidRecord naming one that is not.

    The first face is the one a liveness statement vouches for; the others become templates too, and
    the record's face photo is what an officer is shown at a border: neither may be someone else (a
    live accomplice's turn must not carry an absent person's photo into the record).
    """
    first = vectors[0]
    for vector, field in zip(vectors[1:], fields[1:], strict=True):
        if not metric.is_match(pairwise_score(first, vector, metric), threshold):
            raise InvalidRecord(
                f"{field}: not the same person as {fields[0]}; a record holds one person's face"
            )
