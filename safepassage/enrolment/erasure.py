"""Erasure by crypto-shredding, journaled so that a crash cannot leave it half done.

The holder asks, with their proof (the record policy decides); the service then:
0. writes the erasure to the vault's journal (pending_erasures);
1. drops the record's templates from memory (the vault is their only copy at
   rest: holder_templates.py);
2. rotates the key-encryption key: every *other* record's data key is
   rewrapped under a new version (safepassage.enrolment.custodian);
3. signs the erasure receipt (record id, time, templates removed, the KEK
   versions about to be destroyed, who asked and with what proof), deletes
   the record's row (sealed parts, wrapped data key, credentials unlinked and
   kept as revoked until they expire) leaving a tombstone that keeps the
   receipt, and truncates the vault's write-ahead log;
4. destroys the old KEK versions, so a backup taken before the erasure can
   no longer be decrypted, this record's data key included;
5. removes the journal entry.
The server completes every journaled erasure at start (``complete_pending``)
before it serves, whichever step a crash interrupted: a record still present
is erased, a tombstone keeps its receipt, old KEK versions are destroyed.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from safepassage.enrolment.holder_proof import Located, Proved
from safepassage.enrolment.receipts import ReceiptKind
from safepassage.enrolment.record_policy import Action, Actor
from safepassage.enrolment.service import ProtectedRecords
from safepassage.enrolment.vault_erasures import Tombstone

__all__ = ["Erased", "complete_erasure", "complete_pending", "erase"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Erased:
    record_id: str
    receipt: str  # signed JSON for the holder
    templates_removed: int
    kek_versions_destroyed: tuple[int, ...]


def erase(records: ProtectedRecords, actor: Actor, proved: Proved | Located) -> Erased:
    """Erase one record for good, if the record policy lets this caller with this proof."""
    records.authorise(Action.ERASE, actor, proved)
    requested_by = f"{actor.label} ({proved.proof.label})"
    records.vault.erasures.begin(proved.record_id, requested_by, records.now().timestamp())
    return complete_erasure(records, proved.record_id, requested_by)


def complete_erasure(records: ProtectedRecords, record_id: str, requested_by: str) -> Erased:
    """Steps 1 to 5 above; safe to run again on a record a crash left anywhere between them."""
    tombstone = records.vault.erasures.tombstone(record_id)
    removed = records.templates.drop(record_id)
    if tombstone is None:
        removed = max(removed, records.vault.records.get(record_id).templates)
    receipts: list[str] = []

    def shred(doomed: tuple[int, ...]) -> None:
        if tombstone is not None:  # the row went before a crash: keep the receipt it was given
            receipts.append(tombstone.receipt)
            return
        now = records.now()
        receipt = records.station.sign(
            ReceiptKind.ERASURE,
            record_id,
            {
                "erased_at": now.isoformat(),
                "templates_removed": str(removed),
                "kek_versions_destroyed": tuple(str(v) for v in doomed),
                "requested_by": requested_by,
            },
            now=now,
        ).to_text()
        digest = hashlib.sha256(receipt.encode("utf-8")).hexdigest()
        records.vault.erasures.erase(Tombstone(record_id, now.timestamp(), requested_by, digest, receipt))
        receipts.append(receipt)

    with records.custodian.lock:
        rotation = records.custodian.rotate(before_destroy=shred)
    records.vault.erasures.end(record_id)
    log.info(
        "record %s erased: %d templates removed, KEK versions %s destroyed",
        record_id,
        removed,
        list(rotation.destroyed),
    )
    return Erased(record_id, receipts[0], removed, rotation.destroyed)


def complete_pending(records: ProtectedRecords) -> int:
    """At start: finish every journaled erasure, and destroy KEK versions a crash left alive."""
    pending = records.vault.erasures.pending()
    for entry in pending:
        complete_erasure(records, entry.record_id, entry.requested_by)
        log.warning("completed an erasure interrupted by a stop (record %s)", entry.record_id)
    if len(records.keys.versions()) > 1:
        # A rotation was interrupted: finish it (rewrap, then destroy what nothing uses).
        records.custodian.rotate()
    return len(pending)
