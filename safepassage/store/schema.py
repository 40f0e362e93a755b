"""The store's SQL schema and its forward-only migrations.

``schema_migrations`` records each applied version, so a later release appends
a migration to ``_MIGRATIONS`` and existing files upgrade on open. A file whose
version is newer than this code is refused rather than misread.

Version 1::

    store_meta(name PK, value)              key_fingerprint: the master key's 8-byte fingerprint
    galleries(gallery_pk PK, gallery_id UNIQUE, purpose, model_name, dimension,
              metric, threshold, created_at,
              size, generation, digest[32])  the state an index must agree with
    templates(template_id PK AUTOINCREMENT,  AUTOINCREMENT: ids are never reused
              gallery_pk FK ON DELETE CASCADE,
              reference_id, UNIQUE(gallery_pk, reference_id),
              sealed,                        safepassage.store.sealing blob; never plaintext
              row_digest[32],                safepassage.store.digest.template_digest of the row
              enrolled_at)

Version 2 (issue #7)::

    galleries + target_fpir REAL NULL        calibrated threshold policy: the gallery's
                                             threshold follows this FPIR at its current size
              + protection_version INT NULL  template-protection key version (NULL: none)
    gallery_calibrations(gallery_pk PK FK ON DELETE CASCADE,
              calibration BLOB,              safepassage.matcher.calibration.ImpostorScores bytes
              calibrated_at)                 (impostor rank-1 scores; no templates)

Version 3 (issue #15)::

    templates + quarantined TEXT NULL        'out_of_bounds' or 'unreadable': a row kept
                                             aside at start-up (safepassage.store.quarantine), not
                                             indexed, until an operator deletes it;
                                             galleries.size and digest count the other
                                             rows only, so an index agrees with them
    templates_quarantined (gallery_pk, template_id) WHERE quarantined IS NOT NULL

Version 4 (issue #19)::

    captures(capture_id PK AUTOINCREMENT,    a subject enrolled from several captures: each one,
             gallery_pk FK ON DELETE CASCADE,  sealed (safepassage.store.captures); the subject's
             reference_id, sealed,           templates row then holds their fused template (the
             added_at)                       mean), the only one indexed and searched. A subject
    captures_by_subject (gallery_pk, reference_id, capture_id)
                                             of one capture has no rows here (every gallery
                                             written before version 4), so nothing migrates.
    gallery_calibrations + cohort BLOB NULL  the background cohort a calibration kept, sealed
                                             (safepassage.store.cohort); NULL: raw distances
"""

from __future__ import annotations

import logging
import sqlite3
import time

from safepassage.core.sqlite import write_transaction
from safepassage.store.errors import SchemaMismatch

__all__ = ["SCHEMA_VERSION", "apply_schema"]

_log = logging.getLogger(__name__)

_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE store_meta (
                name  TEXT PRIMARY KEY,
                value BLOB NOT NULL
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE galleries (
                gallery_pk  INTEGER PRIMARY KEY,
                gallery_id  TEXT    NOT NULL UNIQUE,
                purpose     TEXT    NOT NULL,
                model_name  TEXT    NOT NULL,
                dimension   INTEGER NOT NULL CHECK (dimension > 0),
                metric      TEXT    NOT NULL,
                threshold   REAL    NOT NULL,
                created_at  REAL    NOT NULL,
                size        INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0),
                generation  INTEGER NOT NULL DEFAULT 0,
                digest      BLOB    NOT NULL CHECK (length(digest) = 32)
            )
            """,
            """
            CREATE TABLE templates (
                template_id   INTEGER PRIMARY KEY AUTOINCREMENT,
                gallery_pk    INTEGER NOT NULL
                              REFERENCES galleries (gallery_pk) ON DELETE CASCADE,
                reference_id  TEXT    NOT NULL,
                sealed        BLOB    NOT NULL,
                row_digest    BLOB    NOT NULL CHECK (length(row_digest) = 32),
                enrolled_at   REAL    NOT NULL,
                UNIQUE (gallery_pk, reference_id)
            )
            """,
            # Serves ordered iteration and the cascade; rowid order within a gallery.
            "CREATE INDEX templates_by_gallery ON templates (gallery_pk, template_id)",
        ),
    ),
    (
        2,
        (
            "ALTER TABLE galleries ADD COLUMN target_fpir REAL"
            " CHECK (target_fpir IS NULL OR (target_fpir > 0 AND target_fpir < 1))",
            "ALTER TABLE galleries ADD COLUMN protection_version INTEGER"
            " CHECK (protection_version IS NULL OR protection_version > 0)",
            """
            CREATE TABLE gallery_calibrations (
                gallery_pk     INTEGER PRIMARY KEY
                               REFERENCES galleries (gallery_pk) ON DELETE CASCADE,
                calibration    BLOB NOT NULL,
                calibrated_at  REAL NOT NULL
            )
            """,
        ),
    ),
    (
        3,
        (
            "ALTER TABLE templates ADD COLUMN quarantined TEXT"
            " CHECK (quarantined IS NULL OR quarantined IN ('out_of_bounds', 'unreadable'))",
            # Partial: holds only quarantined rows, so counting them never scans a gallery.
            "CREATE INDEX templates_quarantined ON templates (gallery_pk, template_id)"
            " WHERE quarantined IS NOT NULL",
        ),
    ),
    (
        4,
        (
            """
            CREATE TABLE captures (
                capture_id    INTEGER PRIMARY KEY AUTOINCREMENT,
                gallery_pk    INTEGER NOT NULL
                              REFERENCES galleries (gallery_pk) ON DELETE CASCADE,
                reference_id  TEXT    NOT NULL,
                sealed        BLOB    NOT NULL,
                added_at      REAL    NOT NULL
            )
            """,
            "CREATE INDEX captures_by_subject ON captures (gallery_pk, reference_id, capture_id)",
            "ALTER TABLE gallery_calibrations ADD COLUMN cohort BLOB",
        ),
    ),
)

SCHEMA_VERSION = _MIGRATIONS[-1][0]

_KEY_FINGERPRINT = "key_fingerprint"


def apply_schema(conn: sqlite3.Connection, fingerprint: bytes) -> int:
    """Create or upgrade the schema in one transaction; check the key belongs to the file.

    Returns the schema version the file had before (0 for a new file). Raises
    SchemaMismatch for a newer schema or a key other than the one the store
    was created with, so a misconfigured server fails at start-up rather than
    on its first decryption.
    """
    with write_transaction(conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        found = int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise SchemaMismatch(
                f"store schema version {found} is newer than this code supports ({SCHEMA_VERSION})"
            )
        for version, statements in _MIGRATIONS:
            if version <= found:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (version, time.time()),
            )
            _log.info("applied store schema migration %d", version)
        _check_fingerprint(conn, fingerprint)
    return found


def _check_fingerprint(conn: sqlite3.Connection, fingerprint: bytes) -> None:
    row = conn.execute("SELECT value FROM store_meta WHERE name = ?", (_KEY_FINGERPRINT,)).fetchone()
    if row is None:
        conn.execute("INSERT INTO store_meta (name, value) VALUES (?, ?)", (_KEY_FINGERPRINT, fingerprint))
        return
    stored = bytes(row[0])
    if stored != fingerprint:
        raise SchemaMismatch(
            "the sealing key does not match this store "
            f"(store key fingerprint {stored.hex()}, given {fingerprint.hex()})"
        )
