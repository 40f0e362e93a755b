"""The erasure journal and tombstones of the record vault."""

from __future__ import annotations

from pathlib import Path

import pytest

from safepassage.enrolment.errors import RecordErased, RecordNotFound
from safepassage.enrolment.vault import PendingErasure, RecordVault, Tombstone
from tests.enrolment.test_vault import T0

RECEIPT = '{"kind": "erasure", "record_id": "pr-1", "signature": "..."}'


def test_the_journal_keeps_the_first_request(vault: RecordVault) -> None:
    assert vault.pending_erasures() == []
    vault.begin_erasure("pr-1", "holder", T0)
    vault.begin_erasure("pr-1", "ngo_caseworker:case-1", T0 + 5)  # a retry: the first row stays
    vault.begin_erasure("pr-2", "holder", T0 + 1)
    assert vault.pending_erasures() == [
        PendingErasure("pr-1", "holder", T0),
        PendingErasure("pr-2", "holder", T0 + 1),
    ]
    vault.end_erasure("pr-1")
    vault.end_erasure("pr-1")  # nothing left to end: no error
    assert vault.pending_erasures() == [PendingErasure("pr-2", "holder", T0 + 1)]


def test_the_journal_outlives_the_record(vault: RecordVault, path: Path) -> None:
    vault.begin_erasure("pr-1", "holder", T0)
    vault.erase(Tombstone("pr-1", T0 + 1, "holder", "ab" * 32, RECEIPT))
    vault.close()  # a crash before the last steps
    again = RecordVault.open(path)
    try:
        assert again.pending_erasures() == [PendingErasure("pr-1", "holder", T0)]
        again.begin_erasure("pr-1", "holder", T0 + 9)  # tombstoned: journaling it again is fine
        assert again.pending_erasures() == [PendingErasure("pr-1", "holder", T0)]
        again.end_erasure("pr-1")
        assert again.pending_erasures() == []
        again.begin_erasure("pr-1", "holder", T0 + 10)  # finishing an erasure found later still works
        assert again.pending_erasures() == [PendingErasure("pr-1", "holder", T0 + 10)]
    finally:
        again.close()


def test_an_unknown_record_cannot_be_journaled(vault: RecordVault) -> None:
    with pytest.raises(RecordNotFound):
        vault.begin_erasure("pr-9", "holder", T0)
    assert vault.pending_erasures() == []


def test_the_tombstone_keeps_the_receipt(vault: RecordVault, path: Path) -> None:
    tombstone = Tombstone("pr-1", T0 + 1, "holder", "ab" * 32, RECEIPT)
    vault.erase(tombstone)
    assert vault.tombstone("pr-1") == tombstone
    with pytest.raises(RecordErased):
        vault.erase(Tombstone("pr-1", T0 + 2, "holder", "cd" * 32, "another"))
    assert vault.tombstone("pr-1") == tombstone
    vault.erase(Tombstone("pr-2", T0, "holder", "ef" * 32))  # no receipt given: ""
    assert vault.tombstone("pr-2") == Tombstone("pr-2", T0, "holder", "ef" * 32, "")
    vault.close()
    again = RecordVault.open(path)
    try:
        assert again.tombstone("pr-1") == tombstone
    finally:
        again.close()
