"""The record vault: one SQLite file of sealed records, consents, tombstones and referrals.

Nothing personal is stored in clear: a record's details and the holder's
secrets are sealed under its own data key (safepassage.enrolment.record_cipher), kept
here only wrapped by the key-encryption key. The clear columns are ids,
times, consent scopes and hashes, PIN attempt counters, credential ids and
lookup tags (an HMAC of the recovery code). Erasure deletes the row's sealed
parts and wrapped key in one transaction, leaves a tombstone, and truncates the
write-ahead log so the old pages leave it too (``secure_delete`` zeroes them in
the main file).

:class:`RecordVault` is the one object the service holds. It keeps records,
consents and wrapped keys itself and hands the other aggregates to their own
modules, all sharing one :class:`~safepassage.enrolment.vault_file.VaultFile` (connection
and lock): PIN attempts (safepassage.enrolment.pin_attempts), credentials
(safepassage.enrolment.credential_registry), referrals (safepassage.enrolment.vault_referrals), the
erasure journal and tombstones (safepassage.enrolment.vault_erasures). The schema and its
migration are in safepassage.enrolment.vault_schema.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from safepassage.enrolment.consent import Scope, ScopeGrant
from safepassage.enrolment.credential_registry import CredentialRegistry, CredentialRow
from safepassage.enrolment.errors import RecordExists, RecordNotFound
from safepassage.enrolment.kek import WrappedKey
from safepassage.enrolment.pin_attempts import PinAttempts, PinLockout
from safepassage.enrolment.vault_erasures import Erasures, PendingErasure, Tombstone
from safepassage.enrolment.vault_file import VaultFile, backup_vault
from safepassage.enrolment.vault_referrals import ReferralRows, StoredReferral

__all__ = [
    "ConsentEntry",
    "CredentialRow",
    "PendingErasure",
    "PinLockout",
    "RecordVault",
    "StoredRecord",
    "StoredReferral",
    "Tombstone",
    "backup_vault",
]

# Rows per read while streaming sealed templates at start-up (the lock is released between chunks).
_TEMPLATE_CHUNK = 256


@dataclass(frozen=True)
class StoredRecord:
    """A record's row: ids in clear, everything personal sealed."""

    record_id: str
    gallery_id: str
    # The enrolling organisation's id: whose caseworkers may act for the holder and read its referrals.
    # Rows from schema version 1 keep what they had (the enrolling caller's label).
    organisation: str
    templates: int  # its reference ids in the gallery are f"{record_id}.{n}"
    wrapped_key: WrappedKey
    sealed_record: bytes
    sealed_secrets: bytes
    sealed_templates: bytes
    created_at: float
    credential_days: int = 0  # credential validity chosen at enrolment; 0 = unknown (schema version 1)

    @property
    def reference_ids(self) -> list[str]:
        return [f"{self.record_id}.{n}" for n in range(self.templates)]


@dataclass(frozen=True)
class ConsentEntry:
    """One scope's decision: granted or refused, with the text it was given under."""

    grant: ScopeGrant
    granted: bool
    language: str
    text_sha256: str
    decided_at: float
    withdrawn_at: float | None = None

    @property
    def in_force(self) -> bool:
        return self.granted and self.withdrawn_at is None


class RecordVault:
    """Records, consents and wrapped keys; the other aggregates through the same file and lock."""

    def __init__(self, file: VaultFile) -> None:
        """Use :meth:`open`."""
        self._file = file
        self.path = file.path
        self._pins = PinAttempts(file)
        self._credentials = CredentialRegistry(file)
        self._referrals = ReferralRows(file)
        self._erasures = Erasures(file)

    @classmethod
    def open(cls, path: Path) -> RecordVault:
        """Open or create the vault; a schema-1 file is migrated in place (KeyringError if newer)."""
        return cls(VaultFile.open(path))

    def close(self) -> None:
        self._file.close()

    # -- records -------------------------------------------------------------------

    def insert(self, record: StoredRecord, recovery_tag: bytes, consents: Iterable[ConsentEntry]) -> None:
        try:
            with self._file.write("store a record") as conn:
                if conn.execute(
                    "SELECT 1 FROM tombstones WHERE record_id = ?", (record.record_id,)
                ).fetchone():
                    raise RecordExists(f"record {record.record_id} was erased; its id is not reused")
                conn.execute(
                    "INSERT INTO records (record_id, gallery_id, organisation, templates, sealed_record,"
                    " sealed_secrets, sealed_templates, recovery_tag, created_at, credential_days)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.record_id,
                        record.gallery_id,
                        record.organisation,
                        record.templates,
                        record.sealed_record,
                        record.sealed_secrets,
                        record.sealed_templates,
                        recovery_tag,
                        record.created_at,
                        record.credential_days,
                    ),
                )
                conn.execute(
                    "INSERT INTO data_keys (record_id, kek_version, wrapped_key) VALUES (?, ?, ?)",
                    (record.record_id, record.wrapped_key.kek_version, record.wrapped_key.blob),
                )
                self._put_consents(conn, record.record_id, consents)
        except sqlite3.IntegrityError:
            raise RecordExists(f"record {record.record_id} (or its recovery code) already exists") from None

    def get(self, record_id: str) -> StoredRecord:
        with self._file.read("read a record") as conn:
            row = conn.execute(
                "SELECT r.record_id, gallery_id, organisation, templates, kek_version, wrapped_key,"
                " sealed_record, sealed_secrets, sealed_templates, created_at, credential_days"
                " FROM records r JOIN data_keys k ON k.record_id = r.record_id WHERE r.record_id = ?",
                (record_id,),
            ).fetchone()
            if row is None:
                self._file.raise_missing(conn, record_id)
        return StoredRecord(
            record_id=row[0],
            gallery_id=row[1],
            organisation=row[2],
            templates=row[3],
            wrapped_key=WrappedKey(row[4], bytes(row[5])),
            sealed_record=bytes(row[6]),
            sealed_secrets=bytes(row[7]),
            sealed_templates=bytes(row[8]),
            created_at=row[9],
            credential_days=int(row[10]),
        )

    def replace_secrets(self, record_id: str, sealed_secrets: bytes) -> None:
        """Store the holder's new sealed secrets (a PIN change); RecordNotFound / RecordErased."""
        with self._file.write("replace a record's secrets") as conn:
            updated = conn.execute(
                "UPDATE records SET sealed_secrets = ? WHERE record_id = ?", (sealed_secrets, record_id)
            ).rowcount
            if updated == 0:
                self._file.raise_missing(conn, record_id)

    def find_by_recovery_tag(self, tag: bytes) -> str:
        with self._file.read("find a record") as conn:
            row = conn.execute("SELECT record_id FROM records WHERE recovery_tag = ?", (tag,)).fetchone()
        if row is None:
            raise RecordNotFound("no record answers to this recovery code")
        return str(row[0])

    def records_in(self, gallery_id: str, grant: ScopeGrant) -> list[tuple[str, int]]:
        """(id, template count) of the gallery's records whose holders granted `grant`, not withdrawn."""
        with self._file.read("list consenting records") as conn:
            rows = conn.execute(
                "SELECT r.record_id, r.templates FROM records r JOIN consents c ON c.record_id = r.record_id"
                " WHERE r.gallery_id = ? AND c.scope = ? AND c.organisation = ? AND c.granted = 1"
                " AND c.withdrawn_at IS NULL ORDER BY r.record_id",
                (gallery_id, grant.scope.value, grant.organisation),
            ).fetchall()
        return [(str(row[0]), int(row[1])) for row in rows]

    def organisations_in(self, gallery_id: str) -> dict[str, str]:
        """Record id -> enrolling organisation, for every live record of the gallery (ids only, no blobs)."""
        with self._file.read("list the gallery's records") as conn:
            rows = conn.execute(
                "SELECT record_id, organisation FROM records WHERE gallery_id = ?", (gallery_id,)
            ).fetchall()
        return {str(row[0]): str(row[1]) for row in rows}

    def sealed_templates(self) -> Iterator[tuple[str, str, WrappedKey, bytes]]:
        """(record id, gallery id, wrapped key, sealed templates) of every live record, by id.

        For rebuilding the in-memory protected templates at start-up. Read in
        chunks; the lock is not held while the caller works on a chunk, so a
        record inserted or erased meanwhile may or may not be in the stream.
        """
        after = ""
        while True:
            with self._file.read("read sealed templates") as conn:
                rows = conn.execute(
                    "SELECT r.record_id, r.gallery_id, k.kek_version, k.wrapped_key, r.sealed_templates"
                    " FROM records r JOIN data_keys k ON k.record_id = r.record_id"
                    " WHERE r.record_id > ? ORDER BY r.record_id LIMIT ?",
                    (after, _TEMPLATE_CHUNK),
                ).fetchall()
            for row in rows:
                yield str(row[0]), str(row[1]), WrappedKey(int(row[2]), bytes(row[3])), bytes(row[4])
            if len(rows) < _TEMPLATE_CHUNK:
                return
            after = str(rows[-1][0])

    def count(self) -> int:
        with self._file.read("count records") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    # -- consent -------------------------------------------------------------------

    def consents(self, record_id: str) -> list[ConsentEntry]:
        with self._file.read("read consents") as conn:
            self._file.require_record(conn, record_id)
            rows = conn.execute(
                "SELECT scope, organisation, granted, language, text_sha256, decided_at, withdrawn_at"
                " FROM consents WHERE record_id = ? ORDER BY scope, organisation",
                (record_id,),
            ).fetchall()
        return [ConsentEntry(ScopeGrant(Scope(r[0]), r[1]), bool(r[2]), r[3], r[4], r[5], r[6]) for r in rows]

    def put_consents(self, record_id: str, entries: Iterable[ConsentEntry]) -> None:
        """Record new decisions (a later grant replaces a refusal or a withdrawal, and vice versa)."""
        with self._file.write("record consent") as conn:
            self._file.require_record(conn, record_id)
            self._put_consents(conn, record_id, entries)

    @staticmethod
    def _put_consents(conn: sqlite3.Connection, record_id: str, entries: Iterable[ConsentEntry]) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO consents (record_id, scope, organisation, granted, language,"
            " text_sha256, decided_at, withdrawn_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    record_id,
                    e.grant.scope.value,
                    e.grant.organisation,
                    int(e.granted),
                    e.language,
                    e.text_sha256,
                    e.decided_at,
                    e.withdrawn_at,
                )
                for e in entries
            ],
        )

    # -- keys ----------------------------------------------------------------------

    def wrapped_keys(self, not_version: int | None = None) -> list[tuple[str, WrappedKey]]:
        """Every live record's wrapped data key (those under another KEK version than `not_version`)."""
        with self._file.read("read wrapped keys") as conn:
            rows = conn.execute(
                "SELECT record_id, kek_version, wrapped_key FROM data_keys WHERE kek_version IS NOT ?",
                (not_version,),
            ).fetchall()
        return [(str(r[0]), WrappedKey(int(r[1]), bytes(r[2]))) for r in rows]

    def replace_wrapped_keys(self, rewrapped: Iterable[tuple[str, WrappedKey]]) -> None:
        with self._file.write("store rewrapped keys") as conn:
            conn.executemany(
                "UPDATE data_keys SET kek_version = ?, wrapped_key = ? WHERE record_id = ?",
                [(w.kek_version, w.blob, record_id) for record_id, w in rewrapped],
            )

    def kek_versions_in_use(self) -> set[int]:
        with self._file.read("read KEK versions") as conn:
            return {int(r[0]) for r in conn.execute("SELECT DISTINCT kek_version FROM data_keys")}

    # -- PIN attempts (safepassage.enrolment.pin_attempts) -----------------------------------

    def pin_locked_until(self, record_id: str) -> float:
        return self._pins.locked_until(record_id)

    def reserve_pin_attempt(self, record_id: str, now: float, max_failures: int) -> None:
        """Count an attempt before checking it; PinLocked while locked or `max_failures` are counted."""
        self._pins.reserve(record_id, now, max_failures)

    def pin_failed(self, record_id: str, now: float, max_failures: int, lock_s: float) -> PinLockout | None:
        """The reserved attempt was wrong; the lockout it starts (lock_s * 2**(lockouts-1)), if any."""
        return self._pins.failed(record_id, now, max_failures, lock_s)

    def pin_passed(self, record_id: str) -> None:
        self._pins.passed(record_id)

    # -- credentials (safepassage.enrolment.credential_registry) -----------------------------

    def add_credential(self, credential_id: str, record_id: str, issued_at: float, expires_at: float) -> None:
        """Record an issued credential, retiring the record's earlier ones (RecordExists if the id is)."""
        self._credentials.add(credential_id, record_id, issued_at, expires_at)

    def credential(self, credential_id: str) -> CredentialRow:
        return self._credentials.get(credential_id)

    def credentials_of(self, record_id: str) -> list[CredentialRow]:
        return self._credentials.of(record_id)

    def revoked_credentials(self, now: float) -> list[tuple[str, float]]:
        """(credential id, expires_at) of retired credentials still within their validity."""
        return self._credentials.revoked(now)

    def purge_credentials(self, now: float) -> int:
        return self._credentials.purge(now)

    # -- referrals (safepassage.enrolment.vault_referrals) -----------------------------------

    def add_referral(
        self, record_id: str, organisation: str, channel: str, raised_at: float, sealed: bytes
    ) -> int:
        return self._referrals.add(record_id, organisation, channel, raised_at, sealed)

    def referrals(
        self, organisation: str, channels: Iterable[str] | None, include_acknowledged: bool
    ) -> list[StoredReferral]:
        """The organisation's referrals, on `channels` only unless None."""
        return self._referrals.for_organisation(organisation, channels, include_acknowledged)

    def referral(self, referral_id: int) -> StoredReferral:
        return self._referrals.get(referral_id)

    def acknowledge_referral(self, referral_id: int, now: float) -> StoredReferral:
        return self._referrals.acknowledge(referral_id, now)

    # -- erasure (safepassage.enrolment.vault_erasures) and backups ---------------------------

    def begin_erasure(self, record_id: str, requested_by: str, now: float) -> None:
        """Journal an erasure (idempotent); RecordNotFound if the id is neither live nor tombstoned."""
        self._erasures.begin(record_id, requested_by, now)

    def pending_erasures(self) -> list[PendingErasure]:
        return self._erasures.pending()

    def end_erasure(self, record_id: str) -> None:
        self._erasures.end(record_id)

    def erase(self, tombstone: Tombstone) -> None:
        """Delete the record (consents, referrals, key), unlink its credentials, leave the tombstone."""
        self._erasures.erase(tombstone)

    def tombstone(self, record_id: str) -> Tombstone | None:
        return self._erasures.tombstone(record_id)

    def purge_journal(self) -> None:
        """Copy the WAL into the main file (zeroing freed pages) and truncate it to nothing."""
        self._file.purge_journal()

    def backup(self, destination: Path) -> None:
        """A consistent copy of the vault (SQLite's online backup), made while the service runs."""
        self._file.backup(destination)
