"""Consent rows of the record vault: per record, each scope's decision in clear.

A decision names its scope (and the organisation a scope grants to), whether it was granted, the
language and the SHA-256 of the text it was given under, and when it was decided or withdrawn; no
personal data. A later decision on the same scope replaces the earlier one (a grant replaces a
refusal or a withdrawal, and vice versa). The rows die with the record (foreign key cascade at
erasure). A record's first decisions are written in the transaction that stores the record
(safepassage.enrolment.vault_records), through :func:`put_consent_rows`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from safepassage.enrolment.consent import Scope, ScopeGrant
from safepassage.enrolment.vault_file import VaultFile

__all__ = ["ConsentEntry", "ConsentRows", "put_consent_rows"]


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


class ConsentRows:
    """The consents table."""

    def __init__(self, file: VaultFile) -> None:
        self._file = file

    def of(self, record_id: str) -> list[ConsentEntry]:
        """The record's decisions, by scope; RecordNotFound / RecordErased."""
        with self._file.read("read consents") as conn:
            self._file.require_record(conn, record_id)
            rows = conn.execute(
                "SELECT scope, organisation, granted, language, text_sha256, decided_at, withdrawn_at"
                " FROM consents WHERE record_id = ? ORDER BY scope, organisation",
                (record_id,),
            ).fetchall()
        return [ConsentEntry(ScopeGrant(Scope(r[0]), r[1]), bool(r[2]), r[3], r[4], r[5], r[6]) for r in rows]

    def put(self, record_id: str, entries: Iterable[ConsentEntry]) -> None:
        """Record new decisions (a later grant replaces a refusal or a withdrawal, and vice versa)."""
        with self._file.write("record consent") as conn:
            self._file.require_record(conn, record_id)
            put_consent_rows(conn, record_id, entries)


def put_consent_rows(conn: sqlite3.Connection, record_id: str, entries: Iterable[ConsentEntry]) -> None:
    """Write decisions inside the caller's write transaction."""
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
