"""Referrals belong to the record's organisation: the vault lists them per organisation, and the desk
hides another organisation's (or a closed channel's) referral as absent. Real keyring, cipher and vault."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from safepassage.enrolment.errors import RecordNotFound
from safepassage.enrolment.kek import FileKeyring
from safepassage.enrolment.record_cipher import DataKey, RecordCipher
from safepassage.enrolment.referrals import Referral, ReferralDesk
from safepassage.enrolment.vault import RecordVault
from safepassage.enrolment.vault_erasures import Tombstone
from tests.enrolment.test_vault import T0, _insert, _record

LA_STRADA, OTHER = "la-strada", "other-ngo"


@dataclass
class Desk:
    vault: RecordVault
    desk: ReferralDesk
    keys: dict[str, DataKey]


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    cipher = RecordCipher(FileKeyring.open(tmp_path / "keys" / "kek.json", create=True))
    vault = RecordVault.open(tmp_path / "vault" / "records.sqlite3")
    keys = {}
    for record_id, organisation in (("pr-1", LA_STRADA), ("pr-2", LA_STRADA), ("pr-3", OTHER)):
        key, wrapped = cipher.new_key(record_id)
        _insert(vault, replace(_record(record_id, org=organisation), wrapped_key=wrapped))
        keys[record_id] = key
    # "hotline" is open to every caseworker of the organisation; "private" only to case-1.
    yield Desk(vault, ReferralDesk(vault, cipher, {"private": frozenset({"case-1"})}), keys)
    vault.close()


def _raise(d: Desk, record_id: str, organisation: str, channel: str, at: float, context: str) -> int:
    return d.desk.raise_referral(d.keys[record_id], organisation, channel, "officer:o-7", context, at)


def test_the_vault_lists_one_organisation_s_referrals(desk: Desk) -> None:
    vault = desk.vault
    mine = vault.referrals.add("pr-1", LA_STRADA, "hotline", T0, b"a")
    theirs = vault.referrals.add("pr-3", OTHER, "hotline", T0 + 1, b"b")
    private = vault.referrals.add("pr-2", LA_STRADA, "private", T0 + 2, b"c")
    assert [r.referral_id for r in vault.referrals.for_organisation(LA_STRADA, None, False)] == [
        mine,
        private,
    ]
    assert [r.referral_id for r in vault.referrals.for_organisation(OTHER, None, False)] == [theirs]
    assert [r.referral_id for r in vault.referrals.for_organisation(OTHER, ["private"], False)] == []
    assert vault.referrals.for_organisation("nobody", None, True) == []
    assert vault.referrals.get(theirs).organisation == OTHER  # by id: the caller checks the organisation
    with pytest.raises(RecordNotFound):
        vault.referrals.add("pr-9", LA_STRADA, "hotline", T0, b"d")


def test_the_desk_opens_referrals_for_their_organisation_only(desk: Desk) -> None:
    duress = _raise(desk, "pr-1", LA_STRADA, "hotline", T0, "verification")
    lockout = _raise(desk, "pr-2", LA_STRADA, "hotline", T0 + 1, "pin_lockout")
    theirs = _raise(desk, "pr-3", OTHER, "hotline", T0 + 2, "kiosk")

    listed = desk.desk.list("case-2", LA_STRADA, [], include_acknowledged=False)
    at = datetime.fromtimestamp(T0, UTC)
    assert listed[0] == Referral(
        duress, "pr-1", LA_STRADA, "hotline", at, "officer:o-7", "verification", None
    )
    assert [(r.referral_id, r.context) for r in listed] == [
        (duress, "verification"),
        (lockout, "pin_lockout"),
    ]
    assert [r.referral_id for r in desk.desk.list("case-9", OTHER, ["hotline"], False)] == [theirs]
    assert desk.desk.list("case-2", LA_STRADA, ["elsewhere"], False) == []
    assert desk.desk.list("case-2", "", [], True) == []  # a caller of no organisation reads nothing

    # Another organisation's referral does not exist for this caller, even by id.
    for reader, organisation in (("case-2", LA_STRADA), ("case-2", "")):
        with pytest.raises(RecordNotFound, match=f"no referral {theirs} on a channel"):
            desk.desk.acknowledge(reader, organisation, theirs, T0 + 10)
    assert desk.vault.referrals.get(theirs).acknowledged_at is None
    done = desk.desk.acknowledge("case-9", OTHER, theirs, T0 + 10)
    assert done.organisation == OTHER and done.acknowledged_at == datetime.fromtimestamp(T0 + 10, UTC)


def test_channel_reader_lists_restrict_within_the_organisation(desk: Desk) -> None:
    private = _raise(desk, "pr-1", LA_STRADA, "private", T0, "verification")
    assert [r.referral_id for r in desk.desk.list("case-1", LA_STRADA, [], False)] == [private]
    assert desk.desk.list("case-2", LA_STRADA, [], False) == []
    with pytest.raises(RecordNotFound):
        desk.desk.acknowledge("case-2", LA_STRADA, private, T0)
    with pytest.raises(RecordNotFound):
        desk.desk.acknowledge("case-1", OTHER, private, T0)  # the right reader id, another organisation
    assert desk.desk.acknowledge("case-1", LA_STRADA, private, T0 + 1).acknowledged_at is not None
    assert desk.desk.list("case-1", LA_STRADA, [], False) == []
    assert len(desk.desk.list("case-1", LA_STRADA, [], True)) == 1


def test_referrals_go_with_the_erased_record(desk: Desk) -> None:
    gone = _raise(desk, "pr-1", LA_STRADA, "hotline", T0, "verification")
    kept = _raise(desk, "pr-2", LA_STRADA, "hotline", T0, "verification")
    desk.vault.erasures.erase(Tombstone("pr-1", T0 + 1, "holder", "00" * 32))
    assert [r.referral_id for r in desk.desk.list("case-1", LA_STRADA, [], True)] == [kept]
    with pytest.raises(RecordNotFound):
        desk.desk.acknowledge("case-1", LA_STRADA, gone, T0 + 2)
