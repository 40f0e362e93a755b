"""Holder credentials in the vault: re-issue retires, erasure unlinks, revoked until expiry."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from safepassage.enrolment.credential_registry import CredentialRow
from safepassage.enrolment.errors import RecordErased, RecordExists, RecordNotFound
from safepassage.enrolment.vault import RecordVault
from safepassage.enrolment.vault_erasures import Tombstone
from tests.enrolment.test_vault import T0

DAY = 86_400.0


def test_a_new_credential_retires_the_previous_ones(vault: RecordVault) -> None:
    vault.credentials.add("c-1", "pr-1", T0, T0 + 365 * DAY)
    vault.credentials.add("c-other", "pr-2", T0, T0 + 365 * DAY)
    assert vault.credentials.get("c-1") == CredentialRow("c-1", "pr-1", T0, T0 + 365 * DAY, None)
    assert vault.credentials.revoked(T0) == []

    vault.credentials.add("c-2", "pr-1", T0 + DAY, T0 + 366 * DAY)
    vault.credentials.add("c-3", "pr-1", T0 + 2 * DAY, T0 + 30 * DAY)
    assert vault.credentials.of("pr-1") == [
        CredentialRow("c-1", "pr-1", T0, T0 + 365 * DAY, T0 + DAY),
        CredentialRow("c-2", "pr-1", T0 + DAY, T0 + 366 * DAY, T0 + 2 * DAY),
        CredentialRow("c-3", "pr-1", T0 + 2 * DAY, T0 + 30 * DAY, None),
    ]
    assert vault.credentials.get("c-other").retired_at is None  # another record's is untouched
    assert vault.credentials.revoked(T0 + 2 * DAY) == [("c-1", T0 + 365 * DAY), ("c-2", T0 + 366 * DAY)]
    # Each leaves the list once a copy would fail its own expiry check.
    assert vault.credentials.revoked(T0 + 365 * DAY) == [("c-2", T0 + 366 * DAY)]
    assert vault.credentials.revoked(T0 + 366 * DAY) == []
    assert vault.credentials.get("c-1").revoked(T0 + 2 * DAY) and not vault.credentials.get("c-3").revoked(T0)


def test_erasure_retires_and_unlinks_every_credential(vault: RecordVault, path: Path) -> None:
    vault.credentials.add("c-1", "pr-1", T0, T0 + 365 * DAY)
    vault.credentials.add("c-2", "pr-1", T0 + DAY, T0 + 100 * DAY)
    vault.credentials.add("c-other", "pr-2", T0, T0 + 365 * DAY)
    vault.erasures.erase(Tombstone("pr-1", T0 + 2 * DAY, "holder", "00" * 32))

    assert vault.credentials.get("c-1") == CredentialRow("c-1", None, T0, T0 + 365 * DAY, T0 + DAY)
    assert vault.credentials.get("c-2") == CredentialRow("c-2", None, T0 + DAY, T0 + 100 * DAY, T0 + 2 * DAY)
    assert vault.credentials.revoked(T0 + 2 * DAY) == [("c-1", T0 + 365 * DAY), ("c-2", T0 + 100 * DAY)]
    assert vault.credentials.revoked(T0 + 100 * DAY) == [("c-1", T0 + 365 * DAY)]
    assert vault.credentials.get("c-other").retired_at is None
    with pytest.raises(RecordErased):
        vault.credentials.of("pr-1")
    with pytest.raises(RecordErased):
        vault.credentials.add("c-late", "pr-1", T0 + 3 * DAY, T0 + 365 * DAY)
    conn = sqlite3.connect(path)  # nothing in the file ties the ids to the erased record
    try:
        assert conn.execute("SELECT COUNT(*) FROM credentials WHERE record_id = 'pr-1'").fetchone()[0] == 0
    finally:
        conn.close()


def test_expired_retired_credentials_are_purged(vault: RecordVault) -> None:
    vault.credentials.add("c-1", "pr-1", T0, T0 + 10 * DAY)
    vault.credentials.add("c-2", "pr-1", T0 + DAY, T0 + 20 * DAY)  # current, expires too
    vault.credentials.add("c-3", "pr-2", T0, T0 + 5 * DAY)
    vault.erasures.erase(Tombstone("pr-2", T0 + DAY, "holder", "00" * 32))
    assert vault.credentials.purge(T0 + 9 * DAY) == 1  # c-3: unlinked and expired
    assert vault.credentials.purge(T0 + 30 * DAY) == 1  # c-1; c-2 stays, the record's current one
    assert [c.credential_id for c in vault.credentials.of("pr-1")] == ["c-2"]
    with pytest.raises(RecordNotFound):
        vault.credentials.get("c-1")
    assert vault.credentials.purge(T0 + 30 * DAY) == 0


def test_credential_ids_are_unique_and_records_must_exist(vault: RecordVault) -> None:
    vault.credentials.add("c-1", "pr-1", T0, T0 + DAY)
    with pytest.raises(RecordExists):
        vault.credentials.add("c-1", "pr-2", T0 + 1, T0 + DAY)
    with pytest.raises(RecordExists):  # not even for the same record; and nothing was retired
        vault.credentials.add("c-1", "pr-1", T0 + 1, T0 + DAY)
    assert vault.credentials.get("c-1").retired_at is None
    with pytest.raises(RecordNotFound):
        vault.credentials.add("c-2", "pr-9", T0, T0 + DAY)
    with pytest.raises(RecordNotFound):
        vault.credentials.of("pr-9")
    with pytest.raises(RecordNotFound):
        vault.credentials.get("c-9")
    assert vault.credentials.of("pr-2") == []


def test_credentials_survive_reopening(path: Path, vault: RecordVault) -> None:
    vault.credentials.add("c-1", "pr-1", T0, T0 + DAY)
    vault.credentials.add("c-2", "pr-1", T0 + 1, T0 + DAY)
    vault.close()
    again = RecordVault.open(path)
    try:
        assert again.credentials.revoked(T0 + 1) == [("c-1", T0 + DAY)]
    finally:
        again.close()
