"""The erasure journal and tombstones of the record vault."""

from __future__ import annotations

from pathlib import Path

import pytest

from safepassage.enrolment.errors import RecordErased, RecordNotFound
from safepassage.enrolment.vault import RecordVault
from safepassage.enrolment.vault_erasures import PendingErasure, Tombstone
from tests.enrolment.test_vault import T0

RECEIPT = '{"kind": "erasure", "record_id": "pr-1", "signature": "..."}'


def test_the_journal_keeps_the_first_request(vault: RecordVault) -> None:
    assert vault.erasures.pending() == []
    vault.erasures.begin("pr-1", "holder", T0)
    vault.erasures.begin("pr-1", "ngo_caseworker:case-1", T0 + 5)  # a retry: the first row stays
    vault.erasures.begin("pr-2", "holder", T0 + 1)
    assert vault.erasures.pending() == [
        PendingErasure("pr-1", "holder", T0),
        PendingErasure("pr-2", "holder", T0 + 1),
    ]
    vault.erasures.end("pr-1")
    vault.erasures.end("pr-1")  # nothing left to end: no error
    assert vault.erasures.pending() == [PendingErasure("pr-2", "holder", T0 + 1)]


def test_the_journal_outlives_the_record(vault: RecordVault, path: Path) -> None:
    vault.erasures.begin("pr-1", "holder", T0)
    vault.erasures.erase(Tombstone("pr-1", T0 + 1, "holder", "ab" * 32, RECEIPT))
    vault.close()  # a crash before the last steps
    again = RecordVault.open(path)
    try:
        assert again.erasures.pending() == [PendingErasure("pr-1", "holder", T0)]
        again.erasures.begin("pr-1", "holder", T0 + 9)  # tombstoned: journaling it again is fine
        assert again.erasures.pending() == [PendingErasure("pr-1", "holder", T0)]
        again.erasures.end("pr-1")
        assert again.erasures.pending() == []
        again.erasures.begin("pr-1", "holder", T0 + 10)  # finishing an erasure found later still works
        assert again.erasures.pending() == [PendingErasure("pr-1", "holder", T0 + 10)]
    finally:
        again.close()


def test_an_unknown_record_cannot_be_journaled(vault: RecordVault) -> None:
    with pytest.raises(RecordNotFound):
        vault.erasures.begin("pr-9", "holder", T0)
    assert vault.erasures.pending() == []


def test_the_tombstone_keeps_the_receipt(vault: RecordVault, path: Path) -> None:
    tombstone = Tombstone("pr-1", T0 + 1, "holder", "ab" * 32, RECEIPT)
    vault.erasures.erase(tombstone)
    assert vault.erasures.tombstone("pr-1") == tombstone
    with pytest.raises(RecordErased):
        vault.erasures.erase(Tombstone("pr-1", T0 + 2, "holder", "cd" * 32, "another"))
    assert vault.erasures.tombstone("pr-1") == tombstone
    vault.erasures.erase(Tombstone("pr-2", T0, "holder", "ef" * 32))  # no receipt given: ""
    assert vault.erasures.tombstone("pr-2") == Tombstone("pr-2", T0, "holder", "ef" * 32, "")
    vault.close()
    again = RecordVault.open(path)
    try:
        assert again.erasures.tombstone("pr-1") == tombstone
    finally:
        again.close()
