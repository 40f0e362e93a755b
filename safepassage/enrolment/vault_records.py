"""Record rows of the record vault, and their wrapped data keys.

Nothing personal is stored in clear: a record's details and the holder's secrets are sealed under
its own data key (safepassage.enrolment.record_cipher), kept here only wrapped by the
key-encryption key (safepassage.enrolment.kek). The clear columns are ids, times, the enrolling
organisation, the template count and a lookup tag (an HMAC of the recovery code). A record and its
wrapped key are written in one transaction with the record's first consents
(safepassage.enrolment.vault_consents), and erased together (safepassage.enrolment.vault_erasures);
an erased record's id is never reused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from safepassage.enrolment.consent import ScopeGrant
from safepassage.enrolment.errors import RecordExists, RecordNotFound
from safepassage.enrolment.kek import WrappedKey
from safepassage.enrolment.vault_consents import ConsentEntry, put_consent_rows
from safepassage.enrolment.vault_file import VaultFile

__all__ = ["DataKeys", "RecordRows", "StoredRecord"]

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


class RecordRows:
    """The records table (with each record's wrapped key, read together)."""

    def __init__(self, file: VaultFile) -> None:
        self._file = file

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
                put_consent_rows(conn, record.record_id, consents)
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

    def consenting(self, gallery_id: str, grant: ScopeGrant) -> list[tuple[str, int]]:
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


class DataKeys:
    """The data_keys table: each live record's data key, wrapped under a KEK version."""

    def __init__(self, file: VaultFile) -> None:
        self._file = file

    def wrapped(self, not_version: int | None = None) -> list[tuple[str, WrappedKey]]:
        """Every live record's wrapped data key (those under another KEK version than `not_version`)."""
        with self._file.read("read wrapped keys") as conn:
            rows = conn.execute(
                "SELECT record_id, kek_version, wrapped_key FROM data_keys WHERE kek_version IS NOT ?",
                (not_version,),
            ).fetchall()
        return [(str(r[0]), WrappedKey(int(r[1]), bytes(r[2]))) for r in rows]

    def replace(self, rewrapped: Iterable[tuple[str, WrappedKey]]) -> None:
        with self._file.write("store rewrapped keys") as conn:
            conn.executemany(
                "UPDATE data_keys SET kek_version = ?, wrapped_key = ? WHERE record_id = ?",
                [(w.kek_version, w.blob, record_id) for record_id, w in rewrapped],
            )

    def kek_versions_in_use(self) -> set[int]:
        with self._file.read("read KEK versions") as conn:
            return {int(r[0]) for r in conn.execute("SELECT DISTINCT kek_version FROM data_keys")}
