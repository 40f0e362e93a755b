"""Protection referrals: what a duress PIN raises, and where the NGO reads it.

A holder forced to release their record enters the duress PIN: the answer
on the officer's or kiosk's screen is the ordinary one, and a referral goes
to the NGO channel named in the record's contact. The referral says where
(the device or officer account), when and in which flow; it is sealed under
the record's data key, so it dies with the record at erasure, and the vault
shows only its channel and times in clear. It is never written to the
transparency log or the server log with anything that tells it apart from
an ordinary verification.

Who reads a channel is configured per channel (caseworker client ids); a
channel not configured is open to every NGO caseworker of the deployment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from enrolment.errors import RecordIntegrityError, RecordNotFound
from enrolment.record_cipher import DataKey, RecordCipher
from enrolment.vault import RecordVault, StoredReferral

__all__ = ["Referral", "ReferralDesk"]

_PART = "referral"


@dataclass(frozen=True)
class Referral:
    referral_id: int
    record_id: str
    channel: str
    raised_at: datetime
    raised_by: str  # caller label: role and device or account id
    context: str  # "verification" or "kiosk"
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

    def raise_referral(self, key: DataKey, channel: str, raised_by: str, context: str, now: float) -> int:
        payload = json.dumps({"raised_by": raised_by, "context": context}, sort_keys=True).encode()
        sealed = RecordCipher.seal(key, _PART, payload)
        return self._vault.add_referral(key.record_id, channel, now, sealed)

    def may_read(self, reader_id: str, channel: str) -> bool:
        allowed = self._readers.get(channel)
        return allowed is None or reader_id in allowed

    def list(self, reader_id: str, channels: list[str], include_acknowledged: bool) -> list[Referral]:
        stored = self._vault.referrals(channels or None, include_acknowledged)
        return [self._open(r) for r in stored if self.may_read(reader_id, r.channel)]

    def acknowledge(self, reader_id: str, referral_id: int, now: float) -> Referral:
        # Another channel's referral is reported as absent, not as forbidden.
        absent = RecordNotFound(f"no referral {referral_id} on a channel this caller reads")
        try:
            found = self._vault.referral(referral_id)
        except RecordNotFound:
            raise absent from None
        if not self.may_read(reader_id, found.channel):
            raise absent
        return self._open(self._vault.acknowledge_referral(referral_id, now))

    def _open(self, stored: StoredReferral) -> Referral:
        record = self._vault.get(stored.record_id)
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
            stored.channel,
            raised_at,
            raised_by,
            context,
            _time(stored.acknowledged_at),
        )
