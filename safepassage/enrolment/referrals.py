"""Protection referrals: what a duress PIN or repeated PIN lockouts raise, and who reads them.

A holder forced to release their record enters the duress PIN: the answer
on the officer's or kiosk's screen is the ordinary one, and a referral goes
to the NGO channel named in the record's contact. From the second PIN lockout
in a row a referral goes there too (context "pin_lockout"): someone keeps
guessing. The referral says where (the device or officer account), when and in
which flow; it is sealed under the record's data key, so it dies with the
record at erasure, and the vault shows only its organisation, channel and
times in clear. It is never written to the transparency log or the server log
with anything that tells it apart from an ordinary verification.

A referral belongs to the record's enrolling organisation: only that
organisation's caseworkers list or acknowledge it, and to anyone else it does
not exist (RecordNotFound, not PermissionDenied, so its existence leaks
nothing). Within the organisation, a channel may further be limited to a list
of caseworker client ids; a channel not configured is open to all of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from safepassage.enrolment.errors import RecordIntegrityError, RecordNotFound
from safepassage.enrolment.record_cipher import DataKey, RecordCipher
from safepassage.enrolment.vault import RecordVault
from safepassage.enrolment.vault_referrals import StoredReferral

__all__ = ["Referral", "ReferralDesk"]

_PART = "referral"


@dataclass(frozen=True)
class Referral:
    referral_id: int
    record_id: str
    organisation: str  # the record's enrolling organisation: the only one that sees it
    channel: str
    raised_at: datetime
    raised_by: str  # caller label: role and device or account id
    context: str  # "verification", "kiosk" or "pin_lockout"
    acknowledged_at: datetime | None


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).replace(microsecond=0)


class ReferralDesk:
    def __init__(
        self,
        vault: RecordVault,
        cipher: RecordCipher,
        readers: Mapping[str, frozenset[str]],
    ) -> None:
        self._vault = vault
        self._cipher = cipher
        self._readers = readers

    def raise_referral(
        self, key: DataKey, organisation: str, channel: str, raised_by: str, context: str, now: float
    ) -> int:
        """Seal and store a referral to the record's `organisation` on `channel`; its id."""
        payload = json.dumps({"raised_by": raised_by, "context": context}, sort_keys=True).encode()
        sealed = RecordCipher.seal(key, _PART, payload)
        return self._vault.referrals.add(key.record_id, organisation, channel, now, sealed)

    def may_read(self, reader_id: str, channel: str) -> bool:
        """The channel's reader list, where configured (on top of the organisation check)."""
        allowed = self._readers.get(channel)
        return allowed is None or reader_id in allowed

    def list(
        self, reader_id: str, organisation: str, channels: list[str], include_acknowledged: bool
    ) -> list[Referral]:
        """The organisation's referrals the reader may read (on `channels` only, unless empty)."""
        if not organisation:  # a caller of no organisation reads none, not those of "" (schema 1 rows)
            return []
        stored = self._vault.referrals.for_organisation(organisation, channels or None, include_acknowledged)
        return [self._open(r) for r in stored if self.may_read(reader_id, r.channel)]

    def acknowledge(self, reader_id: str, organisation: str, referral_id: int, now: float) -> Referral:
        """Mark it read; another organisation's or channel's referral is reported as absent."""
        absent = RecordNotFound(f"no referral {referral_id} on a channel this caller reads")
        try:
            found = self._vault.referrals.get(referral_id)
        except RecordNotFound:
            raise absent from None
        if (
            not organisation
            or found.organisation != organisation
            or not self.may_read(reader_id, found.channel)
        ):
            raise absent
        return self._open(self._vault.referrals.acknowledge(referral_id, now))

    def _open(self, stored: StoredReferral) -> Referral:
        record = self._vault.records.get(stored.record_id)
        key = self._cipher.data_key(record.record_id, record.wrapped_key)
        try:
            payload = json.loads(RecordCipher.open(key, _PART, stored.sealed))
            raised_by, context = str(payload["raised_by"]), str(payload["context"])
        except (ValueError, KeyError, TypeError):
            raise RecordIntegrityError(f"referral {stored.referral_id} is unreadable") from None
        raised_at = _time(stored.raised_at)
        assert raised_at is not None
        return Referral(
            stored.referral_id,
            stored.record_id,
            stored.organisation,
            stored.channel,
            raised_at,
            raised_by,
            context,
            _time(stored.acknowledged_at),
        )
