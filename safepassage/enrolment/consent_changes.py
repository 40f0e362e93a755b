"""Changing consent after enrolment: granting scopes, withdrawing them.

Each scope stands alone: withdrawing one leaves the others as they were, and
from the moment it is withdrawn the service refuses what it allowed (the
duplicate check stops searching the record, credentials stop being issued
and verified at the border, sharing with that organisation stops).
Withdrawing "store" is the holder asking for erasure, and erases the record.
Granting needs the holder's proof; the record's own organisation may record a
withdrawal on the holder's instruction (narrowing only); the record policy
decides. Every change returns a receipt signed by the station, like the
first one, naming who asked and with what proof.
"""

from __future__ import annotations

from dataclasses import dataclass

from safepassage.enrolment.consent import ConsentText, Scope, ScopeGrant
from safepassage.enrolment.erasure import Erased, erase
from safepassage.enrolment.errors import InvalidConsent
from safepassage.enrolment.holder_proof import Located, Proved
from safepassage.enrolment.receipts import ReceiptKind
from safepassage.enrolment.record_policy import Action, Actor
from safepassage.enrolment.service import ProtectedRecords
from safepassage.enrolment.vault_consents import ConsentEntry

__all__ = ["ConsentChanged", "change_consent"]


@dataclass(frozen=True)
class ConsentChanged:
    record_id: str
    entries: tuple[ConsentEntry, ...]  # the state afterwards (empty when erased)
    receipt: str
    erased: Erased | None


def change_consent(
    records: ProtectedRecords,
    actor: Actor,
    proved: Proved | Located,
    text: ConsentText,
    grant: frozenset[ScopeGrant],
    withdraw: frozenset[ScopeGrant],
) -> ConsentChanged:
    if not grant and not withdraw:
        raise InvalidConsent("consent: name at least one scope to grant or withdraw")
    if grant & withdraw:
        raise InvalidConsent("consent: a scope cannot be granted and withdrawn at once")
    if ScopeGrant(Scope.STORE) in grant:
        raise InvalidConsent("consent: 'store' is given at enrolment; it can only be withdrawn")
    records.authorise(Action.GRANT_SCOPE if grant else Action.WITHDRAW_SCOPE, actor, proved)
    record_id = proved.record_id
    now = records.now()
    before = {entry.grant: entry for entry in records.vault.consents.of(record_id)}
    body: dict[str, str | tuple[str, ...]] = {
        "granted": tuple(sorted(g.label for g in grant)),
        "withdrawn": tuple(sorted(g.label for g in withdraw)),
        "language": text.language,
        "text_sha256": text.sha256,
        "requested_by": f"{actor.label} ({proved.proof.label})",
    }
    if ScopeGrant(Scope.STORE) in withdraw:
        receipt = records.station.sign(ReceiptKind.CONSENT_CHANGE, record_id, body, now=now).to_text()
        erased = erase(records, actor, proved)
        return ConsentChanged(record_id, (), receipt, erased)
    stamp = now.timestamp()
    changes = [ConsentEntry(g, True, text.language, text.sha256, stamp) for g in grant]
    for g in withdraw:
        previous = before.get(g)
        if previous is not None and previous.granted:
            changes.append(
                ConsentEntry(g, True, previous.language, previous.text_sha256, previous.decided_at, stamp)
            )
        else:
            changes.append(ConsentEntry(g, False, text.language, text.sha256, stamp))
    records.vault.consents.put(record_id, changes)
    receipt = records.station.sign(ReceiptKind.CONSENT_CHANGE, record_id, body, now=now).to_text()
    return ConsentChanged(record_id, tuple(records.vault.consents.of(record_id)), receipt, None)
