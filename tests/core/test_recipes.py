"""The recipes below the domain (safepassage.core): envelope, key files, atomic files, SQLite errors."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from safepassage.core import atomic_file, key_files
from safepassage.core.errors import DataIntegrityError, FailedPrecondition, InvalidInput, Unavailable
from safepassage.core.sealing import Aead, AuthenticationFailed, Envelope, SealingKey
from safepassage.core.sqlite import Database, SqliteErrors, classify


class Damaged(DataIntegrityError):
    pass


class OtherKey(FailedPrecondition):
    pass


class Refused(FailedPrecondition):
    pass


ENVELOPE = Envelope(version=7, key_id_size=4, damaged=Damaged, wrong_key=OtherKey, label=b"test\x00")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_envelope_binds_its_header_context_and_key() -> None:
    secret = os.urandom(32)
    key = SealingKey(ENVELOPE, secret, b"kid1")
    blob = key.seal(b"plain", b"row 1")
    assert blob[:5] == b"\x07kid1" and len(blob) == ENVELOPE.overhead + 5
    assert key.open(blob, b"row 1") == b"plain"
    with pytest.raises(Damaged, match="authentication failed"):
        key.open(blob, b"row 2", where="row 2")
    with pytest.raises(Damaged, match="unknown sealing version 8"):
        key.open(b"\x08" + blob[1:], b"row 1")
    with pytest.raises(Damaged, match="truncated"):
        key.open(blob[: ENVELOPE.overhead - 1], b"row 1")
    with pytest.raises(OtherKey, match="another key"):
        SealingKey(ENVELOPE, os.urandom(32), b"kid2").open(blob, b"row 1")
    relabelled = SealingKey(Envelope(7, 4, Damaged, OtherKey, label=b"other\x00"), secret, b"kid1")
    with pytest.raises(Damaged):  # the label is part of the associated data
        relabelled.open(blob, b"row 1")
    unbound = SealingKey(
        Envelope(7, 4, Damaged, OtherKey, label=b"test\x00", bind_header=False), secret, b"kid1"
    )
    with pytest.raises(Damaged):  # so is the header, where the format binds it
        unbound.open(blob, b"row 1")


def test_the_bare_aead_raises_on_anything_that_does_not_authenticate() -> None:
    aead = Aead(Aead.generate_key())
    sealed = aead.seal(b"chunk", b"aad")
    assert aead.open(sealed, b"aad") == b"chunk"
    for bad in (sealed[:-1] + bytes([sealed[-1] ^ 1]), sealed[:20], b""):
        with pytest.raises(AuthenticationFailed):
            aead.open(bad, b"aad")
    with pytest.raises(ValueError):
        Aead(b"short")


def test_create_never_replaces_and_replace_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "new" / "key"
    assert atomic_file.create(path, b"first")
    assert not atomic_file.create(path, b"second")
    assert path.read_bytes() == b"first" and _mode(path) == 0o600 and _mode(path.parent) == 0o700
    atomic_file.replace(path, b"third")
    assert path.read_bytes() == b"third" and _mode(path) == 0o600
    with pytest.raises(RuntimeError), atomic_file.replacing(path) as out:
        out.write(b"half")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"third" and os.listdir(path.parent) == ["key"]
    public = tmp_path / "shared" / "list"
    atomic_file.replace(public, b"x", mode=0o644)
    assert _mode(public) == 0o644


def test_key_files_load_raw_or_base64_and_refuse_others(tmp_path: Path) -> None:
    raw = tmp_path / "raw.key"
    assert key_files.create_key(raw, "test key", Refused)
    text = tmp_path / "text.key"
    assert key_files.create_key(text, "test key", Refused, text=True)
    assert len(key_files.load_key(raw, "test key", Refused)) == 32
    assert len(key_files.load_key(text, "test key", Refused)) == 32
    with pytest.raises(Refused, match="holds 45 bytes, expected 32"):
        key_files.load_key(text, "test key", Refused, text=False)
    raw.chmod(0o644)
    with pytest.raises(Refused, match=f"chmod 600 {raw}"):
        key_files.load_key(raw, "test key", Refused)
    with pytest.raises(Refused, match="cannot read the test key file"):
        key_files.load_key(tmp_path / "missing", "test key", Refused)
    pem = tmp_path / "pem"
    pem.write_text("not a key")
    pem.chmod(0o600)
    with pytest.raises(Refused, match="not an unencrypted PEM private key"):
        key_files.load_private_pem(pem, "test key", Refused)


class Busy(Unavailable):
    pass


class Broken(DataIntegrityError):
    pass


class Misused(InvalidInput):
    pass


def test_sqlite_errors_fall_into_the_core_categories(tmp_path: Path) -> None:
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
    corrupt = sqlite3.DatabaseError("malformed")
    corrupt.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
    assert classify(busy) is Unavailable and classify(corrupt) is DataIntegrityError
    passing, mapping = SqliteErrors(Busy, Broken), SqliteErrors(Busy, Broken, other=Misused)
    for error, expected in ((busy, Busy), (corrupt, Broken)):
        with pytest.raises(expected, match="cannot write a row"), passing.during("write a row"):
            raise error
    with pytest.raises(sqlite3.IntegrityError), passing.during("write a row"):
        raise sqlite3.IntegrityError("UNIQUE constraint failed")
    with pytest.raises(Misused), mapping.during("write a row"):
        raise sqlite3.IntegrityError("UNIQUE constraint failed")


def test_a_database_rolls_back_a_failed_write_and_erases_for_good(tmp_path: Path) -> None:
    errors = SqliteErrors(Busy, Broken)
    path = tmp_path / "data" / "file.sqlite3"
    database = Database.open(path, errors, lambda conn: conn.execute("CREATE TABLE t (x)"), action="prepare")
    try:
        assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
        with database.write("add") as conn:
            conn.execute("INSERT INTO t VALUES (1), (2)")
        with pytest.raises(RuntimeError), database.write("add") as conn:
            conn.execute("INSERT INTO t VALUES (3)")
            raise RuntimeError("abandoned")
        assert database.erase("drop one", "DELETE FROM t WHERE x = ?", (1,)) == 1
        with database.read("count") as conn:
            assert conn.execute("SELECT x FROM t").fetchall() == [(2,)]
        database.backup(tmp_path / "copy" / "file.sqlite3", "back up")
    finally:
        database.close()
    copy = sqlite3.connect(tmp_path / "copy" / "file.sqlite3")
    try:
        assert copy.execute("SELECT x FROM t").fetchall() == [(2,)]
    finally:
        copy.close()
