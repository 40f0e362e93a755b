"""Protected identity records: the flows, over the vault, the keys and the matcher.

Enrolment seals the record under a fresh data key, puts the templates in a
PROTECTED_IDENTITY gallery (reference ids ``<record id>.<n>``, nothing else
of the person in the matcher) and returns the signed consent receipt, the
recovery code (shown once) and, if the holder allows border verification,
a signed credential. Every later flow names the holder by a credential or
a recovery code (an NGO caseworker may name the record id) and checks the
consent scope it needs first: a refused or withdrawn scope is refused with
ConsentRequired; the other scopes are untouched.

A verification answers the same, field for field, whether the PIN given was
the ordinary or the duress one; the duress PIN only adds a sealed referral
(see referrals.py). Erasure lives in erasure.py.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import numpy.typing as npt

import holder_credential
from enrolment.consent import ConsentDecision, Scope, ScopeGrant, require
from enrolment.custodian import KeyCustodian
from enrolment.errors import (
    HolderNotVerified,
    InvalidRecord,
    PinLocked,
    RecordIntegrityError,
    RecordNotFound,
    WrongGallery,
)
from enrolment.holder_secrets import HolderSecrets, PinKind, new_recovery_code, recovery_tag
from enrolment.kek import KeyEncryptionKeys
from enrolment.receipts import ReceiptKind, StationKey
from enrolment.record import ProtectedRecord
from enrolment.record_cipher import DataKey, RecordCipher
from enrolment.referrals import ReferralDesk
from enrolment.vault import ConsentEntry, RecordVault, StoredRecord
from enrolment.views import MinimalView, minimal_view
from matcher import GalleryPurpose, GallerySpec, Matcher
from store import GalleryNotFound, ReferenceNotFound

__all__ = [
    "Enrolled",
    "EnrolmentSettings",
    "HolderRef",
    "HolderVerified",
    "IssuedCredential",
    "OpenedRecord",
    "ProtectedRecords",
]

log = logging.getLogger(__name__)

_RECORD = "record"
_SECRETS = "secrets"
_TEMPLATES = "templates"


@dataclass(frozen=True)
class EnrolmentSettings:
    credential_valid_days: int = 730
    max_credential_valid_days: int = 3650
    pin_max_failures: int = 5
    pin_lock_s: float = 900.0
    # channel -> caseworker client ids that read its referrals (absent: every caseworker)
    referral_readers: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class HolderRef:
    """Exactly one of: a record id (NGO caseworkers only), a recovery code, a credential's text."""

    record_id: str = ""
    recovery_code: str = field(default="", repr=False)
    credential: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if sum(bool(part) for part in (self.record_id, self.recovery_code, self.credential)) != 1:
            raise InvalidRecord("holder: give exactly one of record_id, recovery_code or credential")


@dataclass(frozen=True)
class IssuedCredential:
    text: str = field(repr=False)
    qr_png: bytes = field(repr=False)
    credential_id: str
    expires_at: datetime


@dataclass(frozen=True)
class Enrolled:
    record_id: str
    recovery_code: str = field(repr=False)
    consent_receipt: str
    credential: IssuedCredential | None


@dataclass(frozen=True)
class HolderVerified:
    record_id: str
    score: float
    threshold: float
    view: MinimalView = field(repr=False)
    record: ProtectedRecord | None = field(repr=False)  # with a PIN (ordinary or duress) only


@dataclass(frozen=True)
class OpenedRecord:
    stored: StoredRecord
    key: DataKey = field(repr=False)
    record: ProtectedRecord = field(repr=False)

    @property
    def record_id(self) -> str:
        return self.stored.record_id


def _templates_to_bytes(templates: npt.NDArray[np.float32]) -> bytes:
    rows, dimension = (int(n) for n in templates.shape)
    body: bytes = templates.astype("<f4").tobytes()
    return rows.to_bytes(4, "little") + dimension.to_bytes(4, "little") + body


def _templates_from_bytes(data: bytes) -> npt.NDArray[np.float32]:
    rows, dimension = int.from_bytes(data[:4], "little"), int.from_bytes(data[4:8], "little")
    if len(data) != 8 + 4 * rows * dimension:
        raise RecordIntegrityError("the record's sealed templates have the wrong length")
    return np.frombuffer(data, "<f4", offset=8).reshape(rows, dimension).astype(np.float32)


def new_record_id() -> str:
    """An opaque id: 96 random bits, no date, no organisation, nothing of the person."""
    return "pr-" + secrets.token_hex(12)


class ProtectedRecords:
    def __init__(
        self,
        vault: RecordVault,
        keys: KeyEncryptionKeys,
        matcher: Matcher,
        station: StationKey,
        issuer: holder_credential.IssuerKey,
        reader: holder_credential.ReaderKey,
        agency_readers: Sequence[holder_credential.ReaderPublicKey],
        lookup_key: bytes,
        settings: EnrolmentSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.vault = vault
        self.cipher = RecordCipher(keys)
        self.custodian = KeyCustodian(vault, keys, self.cipher)
        self.matcher = matcher
        self.station = station
        self._issuer = issuer
        self._reader = reader
        self._recipients = [reader.public, *agency_readers]
        self._trusted = holder_credential.TrustedIssuers([issuer.public])
        self._lookup_key = lookup_key
        self.settings = settings
        self.referrals = ReferralDesk(vault, self.cipher, settings.referral_readers)
        self._clock = clock

    @property
    def issuer_id(self) -> str:
        return self._issuer.issuer_id

    @property
    def issuer_public_pem(self) -> bytes:
        return self._issuer.public_pem()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC).replace(microsecond=0)

    # -- enrolment -------------------------------------------------------------------

    def gallery_spec(self, gallery_id: str) -> GallerySpec:
        spec = self.matcher.spec(gallery_id)
        if spec.purpose is not GalleryPurpose.PROTECTED_IDENTITY:
            raise WrongGallery(f"gallery {gallery_id!r} is not a PROTECTED_IDENTITY gallery")
        return spec

    def enrol(
        self,
        gallery_id: str,
        record: ProtectedRecord,
        templates: Sequence[npt.ArrayLike],
        consent: ConsentDecision,
        pin: str,
        duress_pin: str,
        enrolled_by: str,
        credential_valid_days: int | None = None,
    ) -> Enrolled:
        """Store a new record and its templates; returns the receipt, recovery code and credential."""
        spec = self.gallery_spec(gallery_id)
        require(consent.granted, ScopeGrant(Scope.STORE))
        if not templates:
            raise InvalidRecord("faces: give at least one face image or embedding")
        matrix = np.stack([np.asarray(t, dtype=np.float32).reshape(-1) for t in templates])
        if matrix.shape[1] != spec.dimension or not np.isfinite(matrix).all():
            raise InvalidRecord(f"faces: templates must be {spec.dimension} finite numbers")
        holder_secrets = HolderSecrets.create(pin, duress_pin)
        record_id = new_record_id()
        code = new_recovery_code()
        now = self._clock()
        # Everything that can fail is done before the record is stored: once stored, the holder
        # must leave with their recovery code.
        receipt = self.station.sign(
            ReceiptKind.CONSENT,
            record_id,
            {
                "granted": tuple(sorted(g.label for g in consent.granted)),
                "refused": tuple(sorted(g.label for g in consent.refused)),
                "language": consent.language,
                "text_sha256": consent.text_sha256,
            },
        )
        credential = None
        if ScopeGrant(Scope.VERIFY_AT_BORDER) in consent.granted:
            credential = self._issue(record_id, matrix[0], spec, credential_valid_days)
        references = [(f"{record_id}.{n}", row) for n, row in enumerate(matrix)]
        outcomes = self.matcher.insert_many(gallery_id, references)
        failed = next((error for error in outcomes if error is not None), None)
        if failed is not None:
            self.remove_templates(
                gallery_id, [r for (r, _), e in zip(references, outcomes, strict=True) if not e]
            )
            raise failed
        try:
            with self.custodian.lock:  # no KEK version is destroyed while a new key is wrapped under it
                key, wrapped = self.cipher.new_key(record_id)
                stored = StoredRecord(
                    record_id=record_id,
                    gallery_id=gallery_id,
                    organisation=enrolled_by,
                    templates=len(references),
                    wrapped_key=wrapped,
                    sealed_record=RecordCipher.seal(key, _RECORD, record.to_bytes()),
                    sealed_secrets=RecordCipher.seal(key, _SECRETS, holder_secrets.to_bytes()),
                    sealed_templates=RecordCipher.seal(key, _TEMPLATES, _templates_to_bytes(matrix)),
                    created_at=now,
                )
                entries = [
                    ConsentEntry(g, True, consent.language, consent.text_sha256, now) for g in consent.granted
                ] + [
                    ConsentEntry(g, False, consent.language, consent.text_sha256, now)
                    for g in consent.refused
                ]
                self.vault.insert(stored, recovery_tag(self._lookup_key, code), entries)
        except BaseException:
            self.remove_templates(gallery_id, [r for r, _ in references])
            raise
        log.info("protected record %s enrolled in %s with %d templates", record_id, gallery_id, len(matrix))
        return Enrolled(record_id, code, receipt.to_text(), credential)

    def remove_templates(self, gallery_id: str, reference_ids: Sequence[str]) -> int:
        """Delete the templates from the gallery (store and index); those already gone are skipped."""
        removed = 0
        for reference_id in reference_ids:
            try:
                self.matcher.delete(gallery_id, reference_id)
                removed += 1
            except (ReferenceNotFound, GalleryNotFound):
                pass
        return removed

    # -- finding and opening a record ------------------------------------------------

    def locate(self, holder: HolderRef, may_name_record: bool) -> str:
        """The record id the holder proved (or the caseworker named)."""
        if holder.record_id:
            if not may_name_record:
                raise HolderNotVerified("the holder must present a recovery code or a credential")
            return holder.record_id
        if holder.recovery_code:
            try:
                return self.vault.find_by_recovery_tag(recovery_tag(self._lookup_key, holder.recovery_code))
            except RecordNotFound:
                raise HolderNotVerified("the recovery code is not valid") from None
        credential = holder_credential.verify(holder.credential, self._trusted, self._reader, self.now())
        return credential.record_id

    def open(self, record_id: str, stored: StoredRecord | None = None) -> OpenedRecord:
        """Unwrap the record's data key and open the record (`stored`: its row, if already read)."""
        stored = stored or self.vault.get(record_id)
        key = self.cipher.data_key(record_id, stored.wrapped_key)
        record = ProtectedRecord.from_bytes(RecordCipher.open(key, _RECORD, stored.sealed_record))
        return OpenedRecord(stored, key, record)

    def consents_in_force(self, record_id: str) -> list[ScopeGrant]:
        return [entry.grant for entry in self.vault.consents(record_id) if entry.in_force]

    # -- credentials -----------------------------------------------------------------

    def issue_credential(self, record_id: str, valid_days: int | None) -> IssuedCredential:
        require(self.consents_in_force(record_id), ScopeGrant(Scope.VERIFY_AT_BORDER))
        opened = self.open(record_id)
        templates = _templates_from_bytes(
            RecordCipher.open(opened.key, _TEMPLATES, opened.stored.sealed_templates)
        )
        spec = self.matcher.spec(opened.stored.gallery_id)
        return self._issue(record_id, templates[0], spec, valid_days)

    def _issue(
        self, record_id: str, template: npt.NDArray[np.float32], spec: GallerySpec, valid_days: int | None
    ) -> IssuedCredential:
        days = valid_days or self.settings.credential_valid_days
        if not 1 <= days <= self.settings.max_credential_valid_days:
            raise InvalidRecord(
                f"credential validity must be 1 to {self.settings.max_credential_valid_days} days"
            )
        now = self.now()
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
        checked = holder_credential.verify(text, self._trusted, self._reader, now)
        return IssuedCredential(
            text, holder_credential.qr_png(text), checked.credential_id, checked.expires_at
        )

    # -- verification and disclosure -------------------------------------------------

    def verify_holder(
        self,
        record_id: str,
        live: npt.ArrayLike,
        pin: str,
        verified_by: str,
        context: str,
        needs_consent: bool,
    ) -> HolderVerified:
        """The holder's live face against their templates; with a PIN, the full record.

        An ordinary and a duress PIN give the same answer; the duress PIN also
        raises a referral. A non-matching face or a wrong PIN raises HolderNotVerified.
        """
        if needs_consent:
            require(self.consents_in_force(record_id), ScopeGrant(Scope.VERIFY_AT_BORDER))
        stored = self.vault.get(record_id)
        best = None
        for reference_id in stored.reference_ids:
            result = self.matcher.verify(stored.gallery_id, reference_id, live)
            if best is None or result.metric.higher_is_closer == (result.score > best.score):
                best = result
        if best is None or not best.match:
            raise HolderNotVerified("the live face does not match the holder's record")
        opened = self.open(record_id, stored)
        full = None
        if pin:
            full = opened.record
            if self._check_pin(opened, pin) is PinKind.DURESS:
                self.referrals.raise_referral(
                    opened.key, opened.record.contact.referral_channel, verified_by, context, self._clock()
                )
        view = minimal_view(opened.record, self._today())
        return HolderVerified(record_id, best.score, best.threshold, view, full)

    def _today(self) -> date:
        return self.now().date()

    def _check_pin(self, opened: OpenedRecord, pin: str) -> PinKind:
        now = self._clock()
        locked_until = self.vault.pin_locked_until(opened.record_id)
        if locked_until > now:
            raise PinLocked(f"PIN checks for this record are locked for {int(locked_until - now) + 1} s")
        holder_secrets = HolderSecrets.from_bytes(
            RecordCipher.open(opened.key, _SECRETS, opened.stored.sealed_secrets)
        )
        try:
            kind = holder_secrets.check(pin)
        except HolderNotVerified:
            self.vault.pin_failed(
                opened.record_id, now, self.settings.pin_max_failures, self.settings.pin_lock_s
            )
            raise
        self.vault.pin_passed(opened.record_id)
        return kind

    def share(self, record_id: str, organisation: str) -> ProtectedRecord:
        require(self.consents_in_force(record_id), ScopeGrant(Scope.SHARE, organisation))
        return self.open(record_id).record

    # -- duplicate check -------------------------------------------------------------

    def check_duplicate(
        self, gallery_id: str, probe: npt.ArrayLike, top_k: int
    ) -> tuple[list[tuple[str, float, bool]], float, int]:
        """The closest records among those whose holders allow the duplicate check.

        Returns (record id, score, match) best first, the threshold, and how many records were searched.
        """
        spec = self.gallery_spec(gallery_id)
        consenting = self.vault.records_in(gallery_id, ScopeGrant(Scope.DUPLICATE_CHECK))
        references = [f"{record_id}.{n}" for record_id, count in consenting for n in range(count)]
        threshold = spec.threshold
        best: dict[str, tuple[float, bool]] = {}
        chunk = self.matcher.limits.max_restrict_to
        for start in range(0, len(references), chunk):
            (result,) = self.matcher.identify(
                gallery_id, np.asarray(probe, np.float32)[None, :], top_k, references[start : start + chunk]
            )
            threshold = result.threshold
            for candidate in result.candidates:
                record_id = candidate.reference_id.rsplit(".", 1)[0]
                known = best.get(record_id)
                if known is None or spec.metric.higher_is_closer == (candidate.score > known[0]):
                    best[record_id] = (candidate.score, candidate.match)
        ranked = sorted(best.items(), key=lambda item: item[1][0], reverse=spec.metric.higher_is_closer)
        return [(rid, score, match) for rid, (score, match) in ranked[:top_k]], threshold, len(consenting)
