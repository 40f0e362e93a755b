"""Erasure by crypto-shredding.

The holder (with their recovery code) or the enrolling NGO on their behalf
asks; the service then, in this order:
1. removes the record's templates from the gallery (store rows and index;
   at the end the store's WAL is truncated and the index snapshot rewritten);
2. rotates the key-encryption key: every *other* record's data key is
   rewrapped under a new version (enrolment.custodian);
3. signs the erasure receipt (record id, time, templates removed, the KEK
   versions about to be destroyed), deletes the record's row (sealed parts
   and wrapped data key) leaving a tombstone with the receipt's hash, and
   truncates the vault's write-ahead log;
4. destroys the old KEK versions, so a backup taken before the erasure can
   no longer be decrypted, this record's data key included.
A crash between steps leaves either the record intact (retry the erasure)
or the record gone and an old version alive (destroyed by the next rotation).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from enrolment.receipts import ReceiptKind
from enrolment.service import ProtectedRecords
from enrolment.vault import Tombstone

__all__ = ["Erased", "erase"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Erased:
    record_id: str
    receipt: str  # signed JSON for the holder
    templates_removed: int
    kek_versions_destroyed: tuple[int, ...]


def erase(records: ProtectedRecords, record_id: str, requested_by: str) -> Erased:
    """Erase one record for good; `requested_by` is "holder" or the caseworker's label."""
    stored = records.vault.get(record_id)  # RecordNotFound / RecordErased before anything changes
    removed = records.remove_templates(stored.gallery_id, stored.reference_ids)
    receipts: list[str] = []

    def shred(doomed: tuple[int, ...]) -> None:
        now = records.now()
        receipt = records.station.sign(
            ReceiptKind.ERASURE,
            record_id,
            {
                "erased_at": now.isoformat(),
                "templates_removed": str(removed),
                "kek_versions_destroyed": tuple(str(v) for v in doomed),
                "requested_by": "holder" if requested_by == "holder" else "ngo",
            },
            now=now,
        ).to_text()
        digest = hashlib.sha256(receipt.encode("utf-8")).hexdigest()
        records.vault.erase(Tombstone(record_id, now.timestamp(), requested_by, digest))
        receipts.append(receipt)

    with records.custodian.lock:
        rotation = records.custodian.rotate(before_destroy=shred)
    # The gallery's store file, its WAL and the index snapshot must not keep the templates either.
    records.matcher.flush_erasures()
    log.info(
        "record %s erased: %d templates removed, KEK versions %s destroyed",
        record_id,
        removed,
        list(rotation.destroyed),
    )
    return Erased(record_id, receipts[0], removed, rotation.destroyed)
