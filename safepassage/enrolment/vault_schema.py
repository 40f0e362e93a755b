"""The record vault's schema (version 2) and the in-place migration from version 1.

Version 2 adds, for issue 14:

* ``records.credential_days`` (validity chosen at enrolment; 0 = unknown, rows
  from version 1) and ``records.pin_lockouts`` (lockouts in a row, so each lock
  lasts twice the last one);
* ``credentials``: every holder credential issued, so a re-issue or an erasure
  can revoke the earlier ones (``record_id`` is NULLed at erasure: the id stays
  on the revocation list until it expires, linked to nothing);
* ``pending_erasures``: the erasure journal, so start-up finishes an erasure a
  crash interrupted;
* ``tombstones.receipt``: the signed erasure receipt itself, not only its hash;
* ``referrals.organisation``: the organisation a referral goes to (filled from
  the record's ``organisation`` for version-1 rows).

The migration is one ``BEGIN IMMEDIATE`` transaction (the ``user_version`` bump
included): a crash leaves the file at version 1 or at version 2, never between.
Columns added by ``ALTER TABLE`` go last, and the fresh schema lists them last
too, so a migrated file and a new one have the same tables column for column.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from safepassage.core.sqlite import write_transaction
from safepassage.enrolment.errors import KeyringError

__all__ = ["SCHEMA_VERSION", "prepare_schema"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

# Version 1's tables as version 2 has them (a fresh file only; a version-1 file gets _FROM_V1).
_BASE = (
    """CREATE TABLE IF NOT EXISTS records (
    record_id TEXT PRIMARY KEY,
    gallery_id TEXT NOT NULL,
    organisation TEXT NOT NULL,
    templates INTEGER NOT NULL,
    sealed_record BLOB NOT NULL,
    sealed_secrets BLOB NOT NULL,
    sealed_templates BLOB NOT NULL,
    recovery_tag BLOB NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    pin_failures INTEGER NOT NULL DEFAULT 0,
    pin_locked_until REAL NOT NULL DEFAULT 0,
    credential_days INTEGER NOT NULL DEFAULT 0,
    pin_lockouts INTEGER NOT NULL DEFAULT 0
)""",
    # Apart from the records, so a KEK rotation rewrites 80-byte rows, never the sealed records
    # (a row whose size changes is rewritten whole, document photos included).
    """CREATE TABLE IF NOT EXISTS data_keys (
    record_id TEXT PRIMARY KEY REFERENCES records (record_id) ON DELETE CASCADE,
    kek_version INTEGER NOT NULL,
    wrapped_key BLOB NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS data_keys_by_kek ON data_keys (kek_version)",
    """CREATE TABLE IF NOT EXISTS consents (
    record_id TEXT NOT NULL REFERENCES records (record_id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    organisation TEXT NOT NULL,
    granted INTEGER NOT NULL,
    language TEXT NOT NULL,
    text_sha256 TEXT NOT NULL,
    decided_at REAL NOT NULL,
    withdrawn_at REAL,
    PRIMARY KEY (record_id, scope, organisation)
)""",
    """CREATE TABLE IF NOT EXISTS tombstones (
    record_id TEXT PRIMARY KEY,
    erased_at REAL NOT NULL,
    requested_by TEXT NOT NULL,
    receipt_sha256 TEXT NOT NULL,
    receipt TEXT NOT NULL DEFAULT ''
)""",
    """CREATE TABLE IF NOT EXISTS referrals (
    referral_id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL REFERENCES records (record_id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    raised_at REAL NOT NULL,
    sealed BLOB NOT NULL,
    acknowledged_at REAL,
    organisation TEXT NOT NULL DEFAULT ''
)""",
    "CREATE INDEX IF NOT EXISTS referrals_by_channel ON referrals (channel, acknowledged_at)",
)

# New in version 2 (created by a fresh file and by the migration alike).
_NEW_TABLES = (
    "CREATE INDEX IF NOT EXISTS referrals_by_organisation ON referrals (organisation, acknowledged_at)",
    # record_id is NULL once the record is erased: the credential stays revoked, tied to nobody.
    """CREATE TABLE IF NOT EXISTS credentials (
    credential_id TEXT PRIMARY KEY,
    record_id TEXT REFERENCES records (record_id) ON DELETE SET NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    retired_at REAL
)""",
    "CREATE INDEX IF NOT EXISTS credentials_by_record ON credentials (record_id)",
    "CREATE INDEX IF NOT EXISTS credentials_by_expiry ON credentials (expires_at)",
    # No foreign key: the journal row must outlive the record it erases.
    """CREATE TABLE IF NOT EXISTS pending_erasures (
    record_id TEXT PRIMARY KEY,
    requested_by TEXT NOT NULL,
    started_at REAL NOT NULL
)""",
)

# Version 1 -> 2, in this order, before _NEW_TABLES.
_FROM_V1 = (
    "ALTER TABLE records ADD COLUMN credential_days INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE records ADD COLUMN pin_lockouts INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE tombstones ADD COLUMN receipt TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE referrals ADD COLUMN organisation TEXT NOT NULL DEFAULT ''",
    "UPDATE referrals SET organisation ="
    " (SELECT r.organisation FROM records r WHERE r.record_id = referrals.record_id)",
)


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def prepare_schema(conn: sqlite3.Connection, path: Path) -> int:
    """Create or migrate the vault's tables to SCHEMA_VERSION; returns the version found.

    A file newer than this code is refused (KeyringError, like an unreadable
    keyring: the service cannot run on it). Another process opening the same
    file at the same time waits on the write lock and then finds it migrated.
    """
    with write_transaction(conn):
        found = _version(conn)
        if found > SCHEMA_VERSION:
            raise KeyringError(f"record vault {path} has schema {found}, newer than this code")
        if found == 1:
            for statement in _FROM_V1:
                conn.execute(statement)
        elif found == 0:
            for statement in _BASE:
                conn.execute(statement)
        for statement in _NEW_TABLES:
            conn.execute(statement)
        if found != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    if found == 1:
        log.info("record vault %s migrated from schema 1 to %d", path, SCHEMA_VERSION)
    return found
