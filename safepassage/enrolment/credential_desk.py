"""Holder credentials: issuing, retiring, and the revocation list offline readers sync.

Every credential issued is registered in the vault (id, record, dates). A new
one retires the previous one of the same record in the same transaction, and
erasure retires them all, so a copied QR code stops working online the
moment the holder gets a new one. Offline readers cannot ask: they sync the
issuer-signed list of retired ids that are not yet expired
(safepassage.credential.revocation) and refuse what it names.

A re-issued credential is never valid longer than the validity chosen at
enrolment (the deployment's default for records enrolled before that was
kept), so whoever forces a re-issue cannot mint a ten-year credential.

The server log names credentials by id only, never beside a record id: a
log line pairing them would turn each later verification into a sighting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from safepassage import credential as holder_credential
from safepassage.enrolment.errors import InvalidRecord
from safepassage.enrolment.vault import RecordVault
from safepassage.matcher import GallerySpec

__all__ = ["CredentialDesk", "IssuedCredential"]

log = logging.getLogger(__name__)

REVOCATION_LIST_VALIDITY = timedelta(days=1)


@dataclass(frozen=True)
class IssuedCredential:
    text: str = field(repr=False)
    qr_png: bytes = field(repr=False)
    credential_id: str
    expires_at: datetime
    issued_at: datetime


class CredentialDesk:
    def __init__(
        self,
        vault: RecordVault,
        issuer: holder_credential.IssuerKey,
        reader: holder_credential.ReaderKey,
        agency_readers: Sequence[holder_credential.ReaderPublicKey],
        default_days: int,
        max_days: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._vault = vault
        self._issuer = issuer
        self._reader = reader
        self._recipients = [reader.public, *agency_readers]
        self.trusted = holder_credential.TrustedIssuers([issuer.public])
        self._default_days = default_days
        self._max_days = max_days
        self._clock = clock

    @property
    def issuer_id(self) -> str:
        return self._issuer.issuer_id

    @property
    def issuer_public_pem(self) -> bytes:
        return self._issuer.public_pem()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC).replace(microsecond=0)

    def days_for(self, requested: int | None, enrolled_days: int) -> int:
        """The validity of a credential: as asked, within the record's own (or the default) validity."""
        cap = enrolled_days or self._default_days
        days = requested or cap
        if not 1 <= days <= self._max_days:
            raise InvalidRecord(f"credential validity must be 1 to {self._max_days} days")
        return min(days, cap)

    def check(self, text: str) -> holder_credential.HolderCredential:
        """Signature, issuer and dates (the caller checks the registry)."""
        return holder_credential.verify(text, self.trusted, self._reader, self._now())

    def issue(
        self, record_id: str, template: npt.NDArray[np.float32], spec: GallerySpec, days: int
    ) -> IssuedCredential:
        """Sign a credential and make it the record's only valid one."""
        issued = self.sign(record_id, template, spec, days)
        self.register(record_id, issued)
        return issued

    def sign(
        self, record_id: str, template: npt.NDArray[np.float32], spec: GallerySpec, days: int
    ) -> IssuedCredential:
        """A signed credential, not yet registered (enrolment signs before it stores anything)."""
        now = self._now()
        text = holder_credential.issue(
            self._issuer,
            self._recipients,
            record_id=record_id,
            template=template,
            model=spec.model_name,
            metric=spec.metric.value,
            threshold=spec.threshold,
            valid_for=timedelta(days=days),
            now=now,
        )
        info = self.check(text).info
        return IssuedCredential(
            text, holder_credential.qr_png(text), info.credential_id, info.expires_at, now
        )

    def register(self, record_id: str, issued: IssuedCredential) -> None:
        """Make `issued` the record's only valid credential (the previous one is retired)."""
        self._vault.credentials.add(
            issued.credential_id, record_id, issued.issued_at.timestamp(), issued.expires_at.timestamp()
        )
        # No id here: a credential id in the server log next to record lines would make sightings.
        log.info("a credential was issued")

    def revocations(self) -> tuple[bytes, int]:
        """The signed list of retired, unexpired credential ids, and how many it names."""
        now = self._now()
        revoked = [
            (credential_id, datetime.fromtimestamp(expires_at, UTC))
            for credential_id, expires_at in self._vault.credentials.revoked(now.timestamp())
        ]
        signed = holder_credential.sign_revocations(self._issuer, revoked, now, REVOCATION_LIST_VALIDITY)
        return signed, len(revoked)
