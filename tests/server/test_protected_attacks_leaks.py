"""Attacks on protected identity records (issue 14), part 2: guessing, probing, stale credentials.

Against a real mutual-TLS server with real faces (set-up: attack_helpers.py).
A parallel burst of wrong PINs; a kiosk and another organisation probing the
gallery for membership (and the fishing detector seeing it); another
organisation reading referrals; an old credential after a re-issue; and the
accountability of every disclosure. Then the legitimate flows, which must
still work: the holder with the recovery code, the holder with credential,
face and PIN at a kiosk, the enrolling NGO. Part 1: test_protected_attacks.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from safepassage import credential as holder_credential
from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.enrolment import ReceiptKind, verify_receipt
from safepassage.server.identity import Role
from tests.pki_helpers import RolePki
from tests.server.attack_helpers import (
    DENIED,
    ELSEWHERE,
    FISHING_MAX_SEARCHES,
    ORGANISATION,
    PIN_LOCK_S,
    PIN_MAX_FAILURES,
    Code,
    World,
    attack_world,
    digest,
    grant,
    in_force,
    ref,
    refused,
    status_of,
    withdraw,
)
from tests.server.protected_helpers import DURESS_PIN, GALLERY, HOLDER, OTHER, PIN, THIRD, verify_request

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def world(
    server_factory: Any, faces_dir: Path, role_pki: RolePki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from attack_world(server_factory, faces_dir, role_pki, tmp_path_factory)


# -- PIN burst -------------------------------------------------------------------------------------------


def _locked_for(details: str) -> int:
    found = re.search(r"locked for (\d+) s", details)
    assert found, details
    return int(found.group(1))


def test_a_parallel_pin_burst_evaluates_at_most_max_failures_and_lockouts_grow(world: World) -> None:
    officer = world.device("atk-officer-burst", Role.OFFICER)
    stranger = world.device("atk-ngo-other2", Role.NGO_CASEWORKER, ELSEWHERE)
    holder = world.people[OTHER]
    enrolled = world.enrol(OTHER, "Burst", "PB0000001")
    rid = enrolled.record_id
    text = enrolled.credential.text
    mark = world.log_size()

    def with_pin(pin: str, photo: int = 2) -> pb.VerifyHolderRequest:
        """The copied QR, a matching photo under a fresh statement of this desk, and a PIN."""
        return verify_request(officer.issued, text, holder.photo(photo), pin)

    guesses = [with_pin(f"{300000 + n}") for n in range(20)]
    with ThreadPoolExecutor(max_workers=len(guesses)) as pool:
        answers = list(pool.map(lambda r: status_of(partial(officer.stub.VerifyHolder, r)), guesses))
    assert {status for status, _ in answers} == {DENIED}, answers
    wrong = [d for _, d in answers if "wrong PIN" in d]
    locked = [d for _, d in answers if "locked" in d or "at once" in d]
    assert len(wrong) == PIN_MAX_FAILURES, answers
    assert len(wrong) + len(locked) == len(guesses), answers
    # Locked now: even the right PIN is refused.
    details = refused(world, officer, "VerifyHolder", partial(officer.stub.VerifyHolder, with_pin(PIN)), rid)
    first = _locked_for(details)
    assert first <= PIN_LOCK_S + 1
    referrals = world.ngo.stub.ListReferrals(pb.ListReferralsRequest()).referrals
    assert not [r for r in referrals if r.record_id == rid], "a referral after the first lockout"
    # The second lockout lasts longer and raises a referral to the record's organisation.
    time.sleep(PIN_LOCK_S + 0.5)
    for n in range(PIN_MAX_FAILURES):
        call = partial(officer.stub.VerifyHolder, with_pin(f"{400000 + n}", photo=3))
        assert "wrong PIN" in refused(world, officer, "VerifyHolder", call, rid)
    details = refused(world, officer, "VerifyHolder", partial(officer.stub.VerifyHolder, with_pin(PIN)), rid)
    second = _locked_for(details)
    assert second > PIN_LOCK_S + 1 and second > first, (first, second)
    listed = world.ngo.stub.ListReferrals(pb.ListReferralsRequest()).referrals
    raised = [(r.context, r.raised_by) for r in listed if r.record_id == rid]
    assert raised == [("pin_lockout", officer.label)]
    elsewhere = stranger.stub.ListReferrals(pb.ListReferralsRequest(include_acknowledged=True)).referrals
    assert not [r for r in elsewhere if r.record_id == rid]
    # Every failure is in the transparency log, under the officer, with the record's hash.
    logged = world.entries(mark, officer.label, "VerifyHolder")
    assert len(logged) == len(guesses) + 2 + PIN_MAX_FAILURES
    assert {e.outcome for e in logged} == {DENIED.name}
    assert {e.details.get("record_sha256") for e in logged} == {digest(rid)}


# -- membership probing -------------------------------------------------------------------------------


def test_duplicate_checks_name_no_other_organisations_records_and_feed_the_fishing_detector(
    world: World,
) -> None:
    kiosk = world.device("atk-kiosk-probe", Role.KIOSK, ORGANISATION)
    fisher = world.device("atk-ngo-fisher", Role.NGO_CASEWORKER, ELSEWHERE)
    holder = world.people[THIRD]
    enrolled = world.enrol(THIRD, "Member", "PM0000001")
    check = pb.CheckDuplicateRequest(gallery_id=GALLERY, probe=holder.probe(1))
    refused(world, kiosk, "CheckDuplicate", partial(kiosk.stub.CheckDuplicate, check), None)
    # The enrolling organisation finds its own record by the photo.
    own = world.ngo.stub.CheckDuplicate(check)
    assert enrolled.record_id in [c.record_id for c in own.candidates]
    # Another organisation learns only that a matching record is held somewhere.
    mark = world.log_size()
    for n in range(FISHING_MAX_SEARCHES + 1):
        probe = pb.CheckDuplicateRequest(gallery_id=GALLERY, probe=holder.probe(1 + n % 3))
        answer = fisher.stub.CheckDuplicate(probe)
        assert not answer.candidates, answer
        assert answer.matches_elsewhere >= 1
    logged = world.entries(mark, fisher.label, "CheckDuplicate")
    assert len(logged) == FISHING_MAX_SEARCHES + 1
    assert all(e.outcome == "MATCH" and e.details.get("candidates") == "0" for e in logged)
    alerts = [e for e in world.events(mark) if e.operation == "alert.fishing" and e.actor == fisher.label]
    assert len(alerts) == 1 and "volume" in alerts[0].details["rules"]


# -- referrals -------------------------------------------------------------------------------------------


def test_another_organisation_neither_lists_nor_acknowledges_referrals(world: World) -> None:
    stranger = world.device("atk-ngo-other2", Role.NGO_CASEWORKER, ELSEWHERE)
    kiosk = world.kiosk
    holder = world.people[HOLDER]
    enrolled = world.enrol(HOLDER, "Referral", "PF0000001")
    rid = enrolled.record_id
    kiosk.stub.VerifyHolder(
        kiosk.verify(ref(recovery_code=enrolled.recovery_code), holder.photo(2), DURESS_PIN)
    )
    mine = world.ngo.stub.ListReferrals(pb.ListReferralsRequest()).referrals
    (raised,) = [r for r in mine if r.record_id == rid]
    mark = world.log_size()
    listed = stranger.stub.ListReferrals(pb.ListReferralsRequest(include_acknowledged=True))
    assert not [r for r in listed.referrals if r.record_id == rid]
    assert not stranger.stub.ListReferrals(pb.ListReferralsRequest(channels=["la-strada-hotline"])).referrals
    logged = world.entries(mark, stranger.label, "ListReferrals")
    assert [e.details.get("referrals") for e in logged] == [str(len(listed.referrals)), "0"]
    acknowledge = pb.AcknowledgeReferralRequest(referral_id=raised.referral_id)
    call = partial(stranger.stub.AcknowledgeReferral, acknowledge)
    refused(world, stranger, "AcknowledgeReferral", call, None, code=Code.NOT_FOUND)
    # Still unread for la-strada.
    (still,) = [
        r for r in world.ngo.stub.ListReferrals(pb.ListReferralsRequest()).referrals if r.record_id == rid
    ]
    assert not still.acknowledged_at


# -- re-issue ----------------------------------------------------------------------------------------------


def test_an_old_credential_is_refused_after_a_reissue_and_listed_as_revoked(world: World) -> None:
    kiosk = world.kiosk
    officer = world.device("atk-officer-oldqr", Role.OFFICER)
    holder = world.people[THIRD]
    enrolled = world.enrol(THIRD, "Reissue", "PV0000001")
    rid = enrolled.record_id
    old = enrolled.credential
    # The holder at la-strada's kiosk: credential + live face + PIN; asks for ten years.
    asked = datetime.now(UTC)
    new = kiosk.stub.IssueCredential(
        pb.IssueCredentialRequest(
            holder=ref(credential=old.text), valid_days=3650, proof=kiosk.proof(holder.photo(2), PIN)
        )
    )
    assert new.credential_id != old.credential_id
    # Never valid longer than the credential chosen at enrolment.
    first = holder_credential.verify(old.text, world.trusted(), world.agency_reader, asked)
    assert datetime.fromisoformat(new.expires_at) <= asked + (first.expires_at - first.issued_at) + timedelta(
        seconds=5
    )
    assert datetime.fromisoformat(new.expires_at) < asked + timedelta(days=3000)
    old_at_desk = partial(
        officer.stub.VerifyHolder, officer.verify(ref(credential=old.text), holder.photo(1))
    )
    details = refused(world, officer, "VerifyHolder", old_at_desk, rid)
    assert "replaced" in details or "revoked" in details
    assert (
        officer.stub.VerifyHolder(officer.verify(ref(credential=new.text), holder.photo(1))).decision
        == mpb.MATCH
    )
    # Offline readers sync the issuer-signed list and refuse the old one.
    listed = officer.stub.GetCredentialRevocations(pb.GetCredentialRevocationsRequest())
    revocations = holder_credential.verify_revocations(listed.signed_list, world.trusted(), datetime.now(UTC))
    assert revocations.is_revoked(old.credential_id) and not revocations.is_revoked(new.credential_id)
    assert listed.revoked == len(revocations) >= 1
    # With the recovery code the holder re-issues again; the second one is retired in turn.
    code = ref(recovery_code=enrolled.recovery_code)
    newest = world.ngo.stub.IssueCredential(pb.IssueCredentialRequest(holder=code))
    second_at_desk = partial(
        officer.stub.VerifyHolder, officer.verify(ref(credential=new.text), holder.photo(1))
    )
    refused(world, officer, "VerifyHolder", second_at_desk, rid)
    answer = officer.stub.VerifyHolder(officer.verify(ref(credential=newest.text), holder.photo(3)))
    assert answer.decision == mpb.MATCH


# -- accountability --------------------------------------------------------------------------------------


def test_disclosures_consent_changes_and_referral_reads_are_logged_with_the_record_and_caller(
    world: World,
) -> None:
    caseworker = world.device("atk-ngo-lastrada", Role.NGO_CASEWORKER, ORGANISATION)
    officer = world.device("atk-officer-trace", Role.OFFICER)
    holder = world.people[HOLDER]
    enrolled = world.enrol(HOLDER, "Trace", "PT0000001")
    rid = enrolled.record_id
    code = ref(recovery_code=enrolled.recovery_code)
    s = caseworker.stub
    mark = world.log_size()
    s.ShareRecord(pb.ShareRecordRequest(holder=code))
    s.IssueCredential(pb.IssueCredentialRequest(holder=code))
    s.ChangeConsent(pb.ChangeConsentRequest(holder=ref(record_id=rid), consent=withdraw("duplicate_check")))
    listed = s.ListReferrals(pb.ListReferralsRequest())
    for operation, proof in (
        ("ShareRecord", "holder"),
        ("IssueCredential", "holder"),
        ("ChangeConsent", "none"),
    ):
        (entry,) = world.entries(mark, caseworker.label, operation)
        assert entry.outcome == "OK"
        assert entry.details.get("record_sha256") == digest(rid), (operation, dict(entry.details))
        assert entry.details.get("organisation") == ORGANISATION and entry.details.get("proof") == proof
    (read,) = world.entries(mark, caseworker.label, "ListReferrals")
    assert read.details.get("referrals") == str(len(listed.referrals))
    # Failed holder checks too: a face that does not match, a wrong PIN, a malformed PIN.
    current = s.IssueCredential(pb.IssueCredentialRequest(holder=code))
    qr = ref(credential=current.text)
    for image, pin in (
        (world.people[OTHER].photo(1), ""),
        (holder.photo(2), "999999"),
        (holder.photo(2), "12"),
    ):
        refused(
            world,
            officer,
            "VerifyHolder",
            partial(officer.stub.VerifyHolder, officer.verify(qr, image, pin)),
            rid,
        )
    # The log names the record by its digest only, and no credential id.
    text = " ".join(str(e) for e in world.events(mark))
    assert rid not in text and "Trace" not in text and current.credential_id not in text


# -- the legitimate flows ---------------------------------------------------------------------------------


def test_the_holder_with_the_recovery_code_reads_grants_and_erases(world: World) -> None:
    kiosk = world.kiosk
    enrolled = world.enrol(
        OTHER, "Recovery", "PL0000001", granted=["store", "verify_at_border"], refused=["duplicate_check"]
    )
    rid = enrolled.record_id
    code = ref(recovery_code=enrolled.recovery_code)
    state = kiosk.stub.GetConsent(pb.GetConsentRequest(holder=code))
    assert state.record_id == rid and not in_force(state)["duplicate_check"]
    granted = kiosk.stub.ChangeConsent(pb.ChangeConsentRequest(holder=code, consent=grant("duplicate_check")))
    assert in_force(granted.state)["duplicate_check"]
    erased = kiosk.stub.EraseRecord(pb.EraseRecordRequest(holder=code))
    receipt = verify_receipt(erased.receipt, world.public_keys().station_public_pem)
    assert receipt.kind is ReceiptKind.ERASURE and receipt.record_id == rid
    assert str(receipt.body["requested_by"]).startswith("kiosk:kiosk-1")
    status, details = status_of(partial(world.consent, rid))
    assert status == Code.FAILED_PRECONDITION and "erased" in details


def test_the_holder_with_credential_face_and_pin_at_a_kiosk_gets_the_full_record(world: World) -> None:
    kiosk = world.kiosk
    holder = world.people[THIRD]
    enrolled = world.enrol(THIRD, "Kiosk", "PK0000001")
    qr = ref(credential=enrolled.credential.text)
    full = kiosk.stub.VerifyHolder(kiosk.verify(qr, holder.photo(2), PIN))
    assert full.decision == mpb.MATCH and full.record_id == enrolled.record_id
    assert full.record.documents[0].number == "PK0000001"
    assert full.record.entitlements[0].employer == "Gulf Construction Services"
    # The same proof reads consent and changes the PIN.
    state = kiosk.stub.GetConsent(pb.GetConsentRequest(holder=qr, proof=kiosk.proof(holder.photo(3), PIN)))
    assert in_force(state)["verify_at_border"]
    kiosk.stub.ChangePin(
        pb.ChangePinRequest(
            holder=qr, proof=kiosk.proof(holder.photo(1), PIN), new_pin="135790", new_duress_pin="246802"
        )
    )
    again = kiosk.stub.VerifyHolder(kiosk.verify(qr, holder.photo(2), "135790"))
    assert again.record.details.family_name == "Kiosk"


def test_the_enrolling_ngo_reads_consent_and_records_a_withdrawal(world: World) -> None:
    ngo = world.ngo
    enrolled = world.enrol(HOLDER, "Enrolling", "PN0000001")
    by_id = ref(record_id=enrolled.record_id)
    assert in_force(ngo.stub.GetConsent(pb.GetConsentRequest(holder=by_id)))["share:la-strada"]
    changed = ngo.stub.ChangeConsent(
        pb.ChangeConsentRequest(holder=by_id, consent=withdraw("share:la-strada"))
    )
    assert not in_force(changed.state)["share:la-strada"]
    receipt = verify_receipt(changed.receipt, world.public_keys().station_public_pem)
    assert receipt.kind is ReceiptKind.CONSENT_CHANGE and receipt.record_id == enrolled.record_id
    assert "share:la-strada" in receipt.body["withdrawn"]
    assert str(receipt.body["requested_by"]).startswith("ngo_caseworker:ngo-1")
