"""Holder credentials issued per record, and which of them are revoked.

A holder credential (the signed QR) is checked offline, so it cannot simply be
forgotten when it is replaced: an employer or officer holding an old copy could
go on presenting it. Every credential issued is recorded here; issuing a new one
retires the record's earlier ones, and erasure retires all of them. Retired
credentials still within their validity form the revocation list the issuer
signs; once expired they need no listing and may be purged.

At erasure a credential's ``record_id`` becomes NULL: its id stays listed as
revoked until it expires, and nothing in the vault ties it to the erased record.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from safepassage.enrolment.errors import RecordExists, RecordNotFound
from safepassage.enrolment.vault_file import VaultFile

__all__ = ["CredentialRegistry", "CredentialRow", "unlink_credentials"]

_COLUMNS = "credential_id, record_id, issued_at, expires_at, retired_at"


@dataclass(frozen=True)
class CredentialRow:
    credential_id: str
    record_id: str | None  # None once the record is erased
    issued_at: float
    expires_at: float
    retired_at: float | None  # None while it is the record's current credential

    def revoked(self, now: float) -> bool:
        """Listed as revoked: retired, and a copy would still pass its expiry check."""
        return self.retired_at is not None and self.expires_at > now


def _row(row: tuple[Any, ...]) -> CredentialRow:
    return CredentialRow(
        str(row[0]),
        None if row[1] is None else str(row[1]),
        float(row[2]),
        float(row[3]),
        None if row[4] is None else float(row[4]),
    )


def unlink_credentials(conn: sqlite3.Connection, record_id: str, at: float) -> int:
    """Retire (at `at`, unless already retired) every credential of the record and unlink them.

    Runs inside the caller's write transaction (the erasure's); returns how many.
    """
    return conn.execute(
        "UPDATE credentials SET retired_at = COALESCE(retired_at, ?), record_id = NULL WHERE record_id = ?",
        (at, record_id),
    ).rowcount


class CredentialRegistry:
    """The credentials table."""

    def __init__(self, file: VaultFile) -> None:
        self._file = file

    def add(self, credential_id: str, record_id: str, issued_at: float, expires_at: float) -> None:
        """Record a newly issued credential and retire the record's earlier ones, in one transaction."""
        try:
            with self._file.write("record a credential") as conn:
                self._file.require_record(conn, record_id)
                conn.execute(
                    "UPDATE credentials SET retired_at = ?"
                    " WHERE record_id = ? AND retired_at IS NULL AND credential_id != ?",
                    (issued_at, record_id, credential_id),
                )
                conn.execute(
                    f"INSERT INTO credentials ({_COLUMNS}) VALUES (?, ?, ?, ?, NULL)",
                    (credential_id, record_id, issued_at, expires_at),
                )
        except sqlite3.IntegrityError:
            raise RecordExists(f"credential {credential_id} was already issued") from None

    def get(self, credential_id: str) -> CredentialRow:
        with self._file.read("read a credential") as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM credentials WHERE credential_id = ?", (credential_id,)
            ).fetchone()
        if row is None:
            raise RecordNotFound(f"no credential {credential_id}")
        return _row(row)

    def of(self, record_id: str) -> list[CredentialRow]:
        """The record's credentials, oldest first; RecordNotFound / RecordErased as for the record."""
        with self._file.read("read a record's credentials") as conn:
            self._file.require_record(conn, record_id)
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM credentials WHERE record_id = ? ORDER BY issued_at, credential_id",
                (record_id,),
            ).fetchall()
        return [_row(r) for r in rows]

    def revoked(self, now: float) -> list[tuple[str, float]]:
        """(credential id, expires_at) of every retired credential not yet expired, by id."""
        with self._file.read("list revoked credentials") as conn:
            rows = conn.execute(
                "SELECT credential_id, expires_at FROM credentials"
                " WHERE retired_at IS NOT NULL AND expires_at > ? ORDER BY credential_id",
                (now,),
            ).fetchall()
        return [(str(r[0]), float(r[1])) for r in rows]

    def purge(self, now: float) -> int:
        """Forget retired (or unlinked) credentials that have expired: no list needs them any more.

        A live record's current credential stays even when expired, so its history remains.
        """
        with self._file.write("purge expired credentials") as conn:
            return conn.execute(
                "DELETE FROM credentials"
                " WHERE expires_at <= ? AND (retired_at IS NOT NULL OR record_id IS NULL)",
                (now,),
            ).rowcount
