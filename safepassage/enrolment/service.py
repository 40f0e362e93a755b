"""Protected identity records: the flows, over the vault, the keys and the record policy.

Enrolment seals the record under a fresh data key (templates included: the
vault is their only copy at rest, see holder_templates.py) and returns the
signed consent receipt, the recovery code (shown once) and, if the holder
allows border verification, a registered credential. Every later flow first
locates the record and weighs the holder's proof (holder_proof.py), then asks
the record policy (record_policy.py) whether this caller may do this with that
proof; nothing here decides on its own.

A verification answers the same, field for field, whether the PIN given was
the ordinary or the duress one; the duress PIN only adds a sealed referral
(see referrals.py). Erasure lives in erasure.py, consent changes in
consent_changes.py.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from safepassage import credential as holder_credential
from safepassage.enrolment.consent import ConsentDecision, Scope, ScopeGrant, require
from safepassage.enrolment.credential_desk import CredentialDesk, IssuedCredential
from safepassage.enrolment.custodian import KeyCustodian
from safepassage.enrolment.errors import InvalidRecord, RecordAccessDenied, RecordIntegrityError, WrongGallery
from safepassage.enrolment.holder_proof import (
    HolderProver,
    HolderRef,
    LiveFace,
    Located,
    PinPolicy,
    Proved,
    locate,
)
from safepassage.enrolment.holder_secrets import HolderSecrets, new_recovery_code, recovery_tag
from safepassage.enrolment.holder_templates import HolderTemplates
from safepassage.enrolment.kek import KeyEncryptionKeys
from safepassage.enrolment.receipts import ReceiptKind, StationKey
from safepassage.enrolment.record import ProtectedRecord
from safepassage.enrolment.record_cipher import DataKey, RecordCipher
from safepassage.enrolment.record_policy import (
    Action,
    Actor,
    RecordFacts,
    admit_enrolment_face,
    authorise,
    may_see_record,
)
from safepassage.enrolment.referrals import ReferralDesk
from safepassage.enrolment.vault import RecordVault
from safepassage.enrolment.vault_consents import ConsentEntry
from safepassage.enrolment.vault_records import StoredRecord
from safepassage.enrolment.views import MinimalView, minimal_view
from safepassage.matcher import GalleryPurpose, GallerySpec, Matcher

__all__ = [
    "DuplicateCheck",
    "Enrolled",
    "EnrolmentSettings",
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
    pin_referral_after_lockouts: int = 2
    # A live face closer to a stored template than this fraction of the threshold is a replay.
    replay_fraction: float = 0.15
    # channel -> caseworker client ids that read its referrals (absent: the record's organisation)
    referral_readers: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Enrol only faces captured with a liveness check (record_policy.admit_enrolment_face).
    require_face_liveness: bool = False


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
class DuplicateCheck:
    candidates: list[tuple[str, float, bool]]  # the caller's own organisation's: (record id, score, match)
    threshold: float
    searched: int
    matches_elsewhere: int  # matching records of other organisations: a count only


@dataclass(frozen=True)
class OpenedRecord:
    stored: StoredRecord
    key: DataKey = field(repr=False)
    record: ProtectedRecord = field(repr=False)

    @property
    def record_id(self) -> str:
        return self.stored.record_id


def templates_to_bytes(templates: npt.NDArray[np.float32]) -> bytes:
    rows, dimension = (int(n) for n in templates.shape)
    body: bytes = templates.astype("<f4").tobytes()
    return rows.to_bytes(4, "little") + dimension.to_bytes(4, "little") + body


def templates_from_bytes(data: bytes) -> npt.NDArray[np.float32]:
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
        self.keys = keys
        self.cipher = RecordCipher(keys)
        self.custodian = KeyCustodian(vault, keys, self.cipher)
        self.matcher = matcher
        self.station = station
        self.templates = HolderTemplates()
        self.credentials = CredentialDesk(
            vault,
            issuer,
            reader,
            agency_readers,
            settings.credential_valid_days,
            settings.max_credential_valid_days,
            clock,
        )
        self._lookup_key = lookup_key
        self.settings = settings
        self.referrals = ReferralDesk(vault, self.cipher, settings.referral_readers)
        self.prover = HolderProver(
            vault,
            self.templates,
            self.referrals,
            lambda stored: self.cipher.data_key(stored.record_id, stored.wrapped_key),
            lambda stored, key: self._record_of(stored, key).contact.referral_channel,
            PinPolicy(settings.pin_max_failures, settings.pin_lock_s, settings.pin_referral_after_lockouts),
            settings.replay_fraction,
            clock,
        )
        self._clock = clock

    @property
    def issuer_id(self) -> str:
        return self.credentials.issuer_id

    @property
    def issuer_public_pem(self) -> bytes:
        return self.credentials.issuer_public_pem

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC).replace(microsecond=0)

    # -- start-up ----------------------------------------------------------------------

    def load_templates(self) -> int:
        """Fill the in-memory templates from the vault (one data key unwrapped per record)."""
        loaded = 0
        for record_id, gallery_id, wrapped, sealed in self.vault.records.sealed_templates():
            key = self.cipher.data_key(record_id, wrapped)
            self.templates.put(
                record_id, gallery_id, templates_from_bytes(RecordCipher.open(key, _TEMPLATES, sealed))
            )
            loaded += 1
        return loaded

    def purge_store_copies(self) -> int:
        """Delete protected templates an earlier version kept in the matcher's store (and its snapshots)."""
        holding = {
            info.spec.gallery_id
            for info in self.matcher.list_galleries()
            if info.spec.purpose is GalleryPurpose.PROTECTED_IDENTITY and info.size
        }
        if not holding:
            return 0
        removed = sum(
            self._delete_store_copies(gallery_id, record_id)
            for gallery_id in holding
            for record_id in self.vault.records.organisations_in(gallery_id)
        )
        if removed:
            self.matcher.flush_erasures()
            log.info("moved %d protected templates out of the template store", removed)
        return removed

    def _delete_store_copies(self, gallery_id: str, record_id: str) -> int:
        from safepassage.store import GalleryNotFound, ReferenceNotFound

        removed = 0
        for reference_id in self.vault.records.get(record_id).reference_ids:
            try:
                self.matcher.delete(gallery_id, reference_id)
            except (ReferenceNotFound, GalleryNotFound):
                continue
            removed += 1
        return removed

    # -- enrolment -------------------------------------------------------------------

    def gallery_spec(self, gallery_id: str) -> GallerySpec:
        spec = self.matcher.spec(gallery_id)
        if spec.purpose is not GalleryPurpose.PROTECTED_IDENTITY:
            raise WrongGallery(f"gallery {gallery_id!r} is not a PROTECTED_IDENTITY gallery")
        return spec

    def enrol(
        self,
        actor: Actor,
        gallery_id: str,
        record: ProtectedRecord,
        templates: Sequence[npt.ArrayLike],
        consent: ConsentDecision,
        pin: str,
        duress_pin: str,
        credential_valid_days: int | None = None,
        face_liveness: str = "none",
    ) -> Enrolled:
        """Store a new record and its templates; returns the receipt, recovery code and credential.

        ``face_liveness``: the liveness check the first face was captured with ("head_turn",
        "supervised", "none"), as checked by the caller's layer; the consent receipt records it.
        """
        if not actor.organisation:
            raise RecordAccessDenied("the caller's certificate names no organisation to enrol for")
        admit_enrolment_face(face_liveness, self.settings.require_face_liveness)
        spec = self.gallery_spec(gallery_id)
        require(consent.granted, ScopeGrant(Scope.STORE))
        if not templates:
            raise InvalidRecord("faces: give at least one face image")
        matrix = np.stack([np.asarray(t, dtype=np.float32).reshape(-1) for t in templates])
        if matrix.shape[1] != spec.dimension or not np.isfinite(matrix).all():
            raise InvalidRecord(f"faces: templates must be {spec.dimension} finite numbers")
        holder_secrets = HolderSecrets.create(pin, duress_pin)
        days = self.credentials.days_for(credential_valid_days, 0)
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
                "requested_by": actor.label,
                "face_liveness": face_liveness,
            },
        )
        credential = None
        if ScopeGrant(Scope.VERIFY_AT_BORDER) in consent.granted:
            credential = self.credentials.sign(record_id, matrix[0], spec, days)
        with self.custodian.lock:  # no KEK version is destroyed while a new key is wrapped under it
            key, wrapped = self.cipher.new_key(record_id)
            stored = StoredRecord(
                record_id=record_id,
                gallery_id=gallery_id,
                organisation=actor.organisation,
                templates=len(matrix),
                wrapped_key=wrapped,
                sealed_record=RecordCipher.seal(key, _RECORD, record.to_bytes()),
                sealed_secrets=RecordCipher.seal(key, _SECRETS, holder_secrets.to_bytes()),
                sealed_templates=RecordCipher.seal(key, _TEMPLATES, templates_to_bytes(matrix)),
                created_at=now,
                credential_days=days,
            )
            entries = [
                ConsentEntry(g, True, consent.language, consent.text_sha256, now) for g in consent.granted
            ] + [ConsentEntry(g, False, consent.language, consent.text_sha256, now) for g in consent.refused]
            self.vault.records.insert(stored, recovery_tag(self._lookup_key, code), entries)
        self.templates.put(record_id, gallery_id, matrix)
        if credential is not None:
            self.credentials.register(record_id, credential)
        log.info("protected record %s enrolled in %s with %d templates", record_id, gallery_id, len(matrix))
        return Enrolled(record_id, code, receipt.to_text(), credential)

    # -- finding, proving, opening ---------------------------------------------------

    def locate(self, actor: Actor, holder: HolderRef) -> Located:
        return locate(self.vault, actor, holder, self._lookup_key, self.credentials.check)

    def prove(self, located: Located, actor: Actor, live: LiveFace | None, pin: str, context: str) -> Proved:
        spec = self.matcher.spec(located.gallery_id)
        return self.prover.prove(located, actor, live, pin, spec.metric, spec.threshold, context)

    def facts(self, record_id: str, organisation: str) -> RecordFacts:
        return RecordFacts(organisation, frozenset(self.consents_in_force(record_id)))

    def authorise(self, action: Action, actor: Actor, proved: Proved | Located) -> None:
        """The record policy's decision for this caller, record and proof; raises when refused."""
        authorise(action, actor, self.facts(proved.record_id, proved.organisation), proved.proof)

    def _record_of(self, stored: StoredRecord, key: DataKey) -> ProtectedRecord:
        return ProtectedRecord.from_bytes(RecordCipher.open(key, _RECORD, stored.sealed_record))

    def open(self, record_id: str, stored: StoredRecord | None = None) -> OpenedRecord:
        """Unwrap the record's data key and open the record (`stored`: its row, if already read)."""
        stored = stored or self.vault.records.get(record_id)
        key = self.cipher.data_key(record_id, stored.wrapped_key)
        return OpenedRecord(stored, key, self._record_of(stored, key))

    def consents_in_force(self, record_id: str) -> list[ScopeGrant]:
        return [entry.grant for entry in self.vault.consents.of(record_id) if entry.in_force]

    def consent_state(self, actor: Actor, proved: Proved | Located) -> list[ConsentEntry]:
        self.authorise(Action.READ_CONSENT, actor, proved)
        return self.vault.consents.of(proved.record_id)

    # -- credentials and PINs ----------------------------------------------------------

    def issue_credential(self, actor: Actor, proved: Proved, valid_days: int | None) -> IssuedCredential:
        self.authorise(Action.ISSUE_CREDENTIAL, actor, proved)
        opened = self.open(proved.record_id)
        templates = templates_from_bytes(
            RecordCipher.open(opened.key, _TEMPLATES, opened.stored.sealed_templates)
        )
        spec = self.matcher.spec(opened.stored.gallery_id)
        days = self.credentials.days_for(valid_days, opened.stored.credential_days)
        return self.credentials.issue(proved.record_id, templates[0], spec, days)

    def change_pin(self, actor: Actor, proved: Proved, pin: str, duress_pin: str) -> None:
        self.authorise(Action.CHANGE_PIN, actor, proved)
        holder_secrets = HolderSecrets.create(pin, duress_pin)
        opened = self.open(proved.record_id)
        self.vault.records.replace_secrets(
            proved.record_id, RecordCipher.seal(opened.key, _SECRETS, holder_secrets.to_bytes())
        )
        log.info("record %s: PIN changed", proved.record_id)

    # -- verification and disclosure -------------------------------------------------

    def verify_holder(self, actor: Actor, proved: Proved, release: bool) -> HolderVerified:
        """The minimal view for a matching live face; with a PIN (`release`), the full record."""
        self.authorise(Action.VIEW_MINIMAL, actor, proved)
        if release:
            self.authorise(Action.RELEASE_RECORD, actor, proved)
        opened = self.open(proved.record_id)
        view = minimal_view(opened.record, self.now().date())
        assert proved.score is not None and proved.threshold is not None
        return HolderVerified(
            proved.record_id, proved.score, proved.threshold, view, opened.record if release else None
        )

    def share(self, actor: Actor, proved: Proved, organisation: str) -> ProtectedRecord:
        if organisation and organisation != actor.organisation:
            raise RecordAccessDenied("a record is shared only with the caller's own organisation")
        self.authorise(Action.SHARE, actor, proved)
        return self.open(proved.record_id).record

    # -- duplicate check -------------------------------------------------------------

    def check_duplicate(
        self, actor: Actor, gallery_id: str, probe: npt.ArrayLike, top_k: int
    ) -> DuplicateCheck:
        """The closest records among those whose holders allow the duplicate check.

        Only records of the caller's own organisation are named (id, score); matches
        held by other organisations are counted, never named.
        """
        spec = self.gallery_spec(gallery_id)
        consenting = self.vault.records.consenting(gallery_id, ScopeGrant(Scope.DUPLICATE_CHECK))
        organisations = self.vault.records.organisations_in(gallery_id)
        organisation_of = {record_id: organisations[record_id] for record_id, _ in consenting}
        nearest = self.templates.nearest(
            gallery_id,
            np.asarray(probe, np.float32),
            list(organisation_of),
            spec.metric,
            len(organisation_of),
        )
        own: list[tuple[str, float, bool]] = []
        elsewhere = 0
        for found in nearest:
            match = spec.metric.is_match(found.score, spec.threshold)
            if may_see_record(actor, organisation_of[found.record_id]):
                own.append((found.record_id, found.score, match))
            elif match:
                elsewhere += 1
        return DuplicateCheck(own[:top_k], spec.threshold, len(consenting), elsewhere)
