"""Attacks on protected identity records (issue 14), part 1: who may act, and what a live face is.

Against a real mutual-TLS server with real faces (set-up: attack_helpers.py).
A caseworker of another organisation; the enrolling organisation's caseworker
acting without the holder; an employer holding the QR credential at a kiosk;
an officer with a copied QR and an agency reader key replaying the
credential's template; replayed photos and forged, foreign, stale or reused
capture statements. Each attack fails with the right gRPC status and leaves a
transparency-log entry naming the caller and the record's hash; nothing
changes. Part 2 (PIN burst, probing, referrals, retired credentials,
traceability, legitimate flows): test_protected_attacks_leaks.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safepassage import credential as holder_credential
from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.enrolment import ReceiptKind, verify_receipt
from safepassage.server.identity import Role
from tests.pki_helpers import RolePki
from tests.server.attack_helpers import (
    ELSEWHERE,
    ORGANISATION,
    PIN_MAX_FAILURES,
    Code,
    World,
    attack_world,
    grant,
    in_force,
    ref,
    refused,
    withdraw,
)
from tests.server.protected_helpers import HOLDER, OTHER, PIN, THIRD

pytestmark = pytest.mark.server
Attacks = list[tuple[str, Callable[[], object]]]


@pytest.fixture(scope="module")
def world(
    server_factory: Any, faces_dir: Path, role_pki: RolePki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from attack_world(server_factory, faces_dir, role_pki, tmp_path_factory)


# -- caseworkers -------------------------------------------------------------------------------------


def test_another_organisations_caseworker_cannot_act_on_a_record_by_id(world: World) -> None:
    stranger = world.device("atk-ngo-other", Role.NGO_CASEWORKER, ELSEWHERE)
    enrolled = world.enrol(
        HOLDER,
        "Stranger",
        "PS0000001",
        granted=["store", "verify_at_border", "share:la-strada"],
        refused=["duplicate_check"],
    )
    rid = enrolled.record_id
    by_id = ref(record_id=rid)
    before = world.consent(rid)
    s = stranger.stub
    new_pin = pb.ChangePinRequest(holder=by_id, new_pin="123456", new_duress_pin="654321")
    attacks: Attacks = [
        ("GetConsent", partial(s.GetConsent, pb.GetConsentRequest(holder=by_id))),
        (
            "ChangeConsent",
            partial(
                s.ChangeConsent,
                pb.ChangeConsentRequest(holder=by_id, consent=grant(f"share:{ELSEWHERE}", "duplicate_check")),
            ),
        ),
        (
            "ChangeConsent",
            partial(s.ChangeConsent, pb.ChangeConsentRequest(holder=by_id, consent=withdraw("store"))),
        ),
        ("ShareRecord", partial(s.ShareRecord, pb.ShareRecordRequest(holder=by_id, organisation=ELSEWHERE))),
        ("ShareRecord", partial(s.ShareRecord, pb.ShareRecordRequest(holder=by_id))),
        ("EraseRecord", partial(s.EraseRecord, pb.EraseRecordRequest(holder=by_id))),
        (
            "IssueCredential",
            partial(s.IssueCredential, pb.IssueCredentialRequest(holder=by_id, valid_days=3650)),
        ),
        ("ChangePin", partial(s.ChangePin, new_pin)),
    ]
    for operation, call in attacks:
        refused(world, stranger, operation, call, rid)
    # Nothing changed: the same consent, the same credential, the same PIN.
    assert world.consent(rid) == before
    world.still_verifies(enrolled, world.people[HOLDER].photo(2))


def test_the_enrolling_caseworker_reads_and_narrows_but_only_the_holder_grants_shares_or_erases(
    world: World,
) -> None:
    ngo = world.ngo
    enrolled = world.enrol(OTHER, "Own", "PS0000002")
    rid = enrolled.record_id
    by_id = ref(record_id=rid)
    s = ngo.stub
    assert in_force(s.GetConsent(pb.GetConsentRequest(holder=by_id)))["duplicate_check"]
    new_pin = pb.ChangePinRequest(holder=by_id, new_pin="123456", new_duress_pin="654321")
    attacks: Attacks = [
        (
            "ChangeConsent",
            partial(s.ChangeConsent, pb.ChangeConsentRequest(holder=by_id, consent=grant("share:x-org"))),
        ),
        ("ShareRecord", partial(s.ShareRecord, pb.ShareRecordRequest(holder=by_id))),
        ("IssueCredential", partial(s.IssueCredential, pb.IssueCredentialRequest(holder=by_id))),
        ("EraseRecord", partial(s.EraseRecord, pb.EraseRecordRequest(holder=by_id))),
        ("ChangePin", partial(s.ChangePin, new_pin)),
    ]
    for operation, call in attacks:
        refused(world, ngo, operation, call, rid)
    # Recording a withdrawal on the holder's instruction: allowed; the receipt names who asked.
    changed = s.ChangeConsent(pb.ChangeConsentRequest(holder=by_id, consent=withdraw("duplicate_check")))
    assert not in_force(changed.state)["duplicate_check"]
    receipt = verify_receipt(changed.receipt, world.public_keys().station_public_pem)
    assert "ngo_caseworker:ngo-1" in str(receipt.body["requested_by"])
    # With the holder's recovery code the same caseworker may grant, share and erase.
    code = ref(recovery_code=enrolled.recovery_code)
    granted = s.ChangeConsent(pb.ChangeConsentRequest(holder=code, consent=grant("duplicate_check")))
    assert in_force(granted.state)["duplicate_check"]
    shared = s.ShareRecord(pb.ShareRecordRequest(holder=code))
    assert shared.record.details.family_name == "Own" and shared.record.documents[0].number == "PS0000002"
    erased = s.EraseRecord(pb.EraseRecordRequest(holder=code))
    assert verify_receipt(erased.receipt, world.public_keys().station_public_pem).kind is ReceiptKind.ERASURE


def test_a_record_is_shared_only_with_the_callers_own_organisation_even_with_the_holders_proof(
    world: World,
) -> None:
    stranger = world.device("atk-ngo-other", Role.NGO_CASEWORKER, ELSEWHERE)
    ngo = world.ngo
    enrolled = world.enrol(THIRD, "Share", "PS0000003")
    rid = enrolled.record_id
    code = ref(recovery_code=enrolled.recovery_code)
    # la-strada's caseworker, with the holder's code, for another organisation.
    share_elsewhere = pb.ShareRecordRequest(holder=code, organisation=ELSEWHERE)
    details = refused(world, ngo, "ShareRecord", partial(ngo.stub.ShareRecord, share_elsewhere), rid)
    assert "own organisation" in details
    # Another organisation's caseworker with the holder's code: the holder never named it.
    for organisation in ("", ELSEWHERE, ORGANISATION):
        request = pb.ShareRecordRequest(holder=code, organisation=organisation)
        refused(world, stranger, "ShareRecord", partial(stranger.stub.ShareRecord, request), rid)
    # Once the holder names it (with their code, at la-strada's kiosk), it may share there.
    world.kiosk.stub.ChangeConsent(pb.ChangeConsentRequest(holder=code, consent=grant(f"share:{ELSEWHERE}")))
    assert stranger.stub.ShareRecord(share_elsewhere).record.details.family_name == "Share"


# -- the QR credential alone --------------------------------------------------------------------------


def test_a_qr_credential_alone_changes_and_discloses_nothing_at_a_kiosk(world: World) -> None:
    kiosk = world.device("atk-kiosk-qr", Role.KIOSK, ORGANISATION)
    holder = world.people[HOLDER]
    enrolled = world.enrol(HOLDER, "Bearer", "PQ0000001")
    rid = enrolled.record_id
    qr = ref(credential=enrolled.credential.text)
    before = world.consent(rid)
    s = kiosk.stub
    with_face = kiosk.proof(holder.photo(3), "")  # the employer has a photo of the holder, not the PIN
    new_pin = pb.ChangePinRequest(holder=qr, new_pin="123456", new_duress_pin="654321")
    attacks: Attacks = [
        ("GetConsent", partial(s.GetConsent, pb.GetConsentRequest(holder=qr))),
        (
            "ChangeConsent",
            partial(
                s.ChangeConsent, pb.ChangeConsentRequest(holder=qr, consent=withdraw("verify_at_border"))
            ),
        ),
        (
            "ChangeConsent",
            partial(s.ChangeConsent, pb.ChangeConsentRequest(holder=qr, consent=grant("share:x-org"))),
        ),
        ("EraseRecord", partial(s.EraseRecord, pb.EraseRecordRequest(holder=qr))),
        (
            "IssueCredential",
            partial(s.IssueCredential, pb.IssueCredentialRequest(holder=qr, valid_days=3650)),
        ),
        ("ChangePin", partial(s.ChangePin, new_pin)),
        ("EraseRecord", partial(s.EraseRecord, pb.EraseRecordRequest(holder=qr, proof=with_face))),
    ]
    for operation, call in attacks:
        refused(world, kiosk, operation, call, rid)
    # A PIN beside the QR but no live face is never weighed: no PIN oracle, no attempt counted.
    for n in range(PIN_MAX_FAILURES + 1):
        guess = pb.EraseRecordRequest(holder=qr, proof=pb.HolderProof(pin=f"{200000 + n}"))
        details = refused(world, kiosk, "EraseRecord", partial(s.EraseRecord, guess), rid)
        assert "wrong PIN" not in details
    assert world.consent(rid) == before
    world.still_verifies(enrolled, holder.photo(2))  # not locked, same PIN, same credential


def test_qr_and_a_photo_show_nothing_once_the_holder_withdrew_border_verification(world: World) -> None:
    kiosk = world.device("atk-kiosk-qr", Role.KIOSK, ORGANISATION)
    officer = world.device("atk-officer-qr", Role.OFFICER)
    holder = world.people[OTHER]
    enrolled = world.enrol(OTHER, "Withdrawn", "PQ0000002")
    rid = enrolled.record_id
    qr = ref(credential=enrolled.credential.text)
    shown = kiosk.stub.VerifyHolder(kiosk.verify(qr, holder.photo(2)))
    assert shown.decision == mpb.MATCH and not shown.HasField("record")
    # The holder asks la-strada to record the withdrawal.
    world.ngo.stub.ChangeConsent(
        pb.ChangeConsentRequest(holder=ref(record_id=rid), consent=withdraw("verify_at_border"))
    )
    for device in (kiosk, officer):
        request = device.verify(qr, holder.photo(2))
        refused(world, device, "VerifyHolder", partial(device.stub.VerifyHolder, request), rid)


# -- replays ------------------------------------------------------------------------------------------


def test_embeddings_and_the_credentials_template_are_never_a_live_face(world: World) -> None:
    officer = world.device("atk-officer-replay", Role.OFFICER)
    enrolled = world.enrol(HOLDER, "Replay", "PR0000001")
    rid = enrolled.record_id
    qr = ref(credential=enrolled.credential.text)
    # An officer with a copied QR opens the sealed template with the agency's reader key.
    opened = holder_credential.verify(
        enrolled.credential.text, world.trusted(), world.agency_reader, datetime.now(UTC)
    )
    template = np.asarray(opened.template, dtype=np.float32)
    random = np.random.default_rng(14).standard_normal(template.shape).astype(np.float32)
    random /= np.linalg.norm(random)
    for vector in (random, template):
        probe = mpb.Probe(embedding=mpb.Embedding(values=vector.tolist()))
        # A statement this device signed over the vector's bytes changes nothing.
        statement = holder_credential.sign_capture(
            officer.issued.key_pem, officer.client_id, vector.tobytes(), holder_credential.Liveness.SUPERVISED
        )
        for request in (
            pb.VerifyHolderRequest(holder=qr, live=probe),
            pb.VerifyHolderRequest(holder=qr, live=probe, pin=PIN),
            pb.VerifyHolderRequest(holder=qr, live=probe, live_statement=statement, pin=PIN),
        ):
            details = refused(
                world, officer, "VerifyHolder", partial(officer.stub.VerifyHolder, request), rid
            )
            assert "embedding" in details


def test_the_enrolment_photo_replayed_as_a_live_capture_is_refused(world: World) -> None:
    officer = world.device("atk-officer-replay", Role.OFFICER)
    kiosk = world.device("atk-kiosk-replay", Role.KIOSK, ORGANISATION)
    holder = world.people[THIRD]
    enrolled = world.enrol(THIRD, "Photo", "PR0000002")
    rid = enrolled.record_id
    qr = ref(credential=enrolled.credential.text)
    enrolment_photo = holder.photo(0)  # the template's own image, signed as if captured now
    for device in (officer, kiosk):
        request = device.verify(qr, enrolment_photo, PIN)
        details = refused(world, device, "VerifyHolder", partial(device.stub.VerifyHolder, request), rid)
        assert "identical" in details
    erase = pb.EraseRecordRequest(holder=qr, proof=kiosk.proof(enrolment_photo, PIN))
    refused(world, kiosk, "EraseRecord", partial(kiosk.stub.EraseRecord, erase), rid)
    # Another photo of the holder passes: the refusal was the replay, not the face.
    assert officer.stub.VerifyHolder(officer.verify(qr, holder.photo(1))).decision == mpb.MATCH


def test_captures_without_a_valid_fresh_single_use_statement_of_this_device_are_refused(world: World) -> None:
    officer = world.device("atk-officer-replay", Role.OFFICER)
    holder = world.people[HOLDER]
    enrolled = world.enrol(HOLDER, "Statement", "PR0000003")
    rid = enrolled.record_id
    qr = ref(credential=enrolled.credential.text)
    image = holder.photo(2)
    other_key = world.role_pki.clients[Role.KIOSK].key_pem
    supervised = holder_credential.Liveness.SUPERVISED

    def request(statement: bytes) -> pb.VerifyHolderRequest:
        return pb.VerifyHolderRequest(holder=qr, live=mpb.Probe(image=image), live_statement=statement)

    forged = [
        b"",  # no statement
        # signed with another device's key (kiosk-1's), naming this device or the other one
        holder_credential.sign_capture(other_key, officer.client_id, image, supervised),
        holder_credential.sign_capture(other_key, "kiosk-1", image, supervised),
        # this device's key, naming another device
        holder_credential.sign_capture(officer.issued.key_pem, "officer-1", image, supervised),
        # this device's statement over another image
        officer.live(holder.photo(3)).statement,
    ]
    for statement in forged:
        refused(world, officer, "VerifyHolder", partial(officer.stub.VerifyHolder, request(statement)), rid)
    # A capture five minutes old is stale: the device must capture again.
    stale = holder_credential.sign_capture(
        officer.issued.key_pem, officer.client_id, image, supervised, now=time.time() - 300
    )
    stale_call = partial(officer.stub.VerifyHolder, request(stale))
    refused(world, officer, "VerifyHolder", stale_call, rid, code=Code.FAILED_PRECONDITION)
    # A valid statement is accepted once; the same statement again is a replay.
    once = request(officer.live(image).statement)
    assert officer.stub.VerifyHolder(once).decision == mpb.MATCH
    details = refused(world, officer, "VerifyHolder", partial(officer.stub.VerifyHolder, once), rid)
    assert "used before" in details


def test_a_kiosk_must_state_its_head_turn_check(world: World) -> None:
    kiosk = world.device("atk-kiosk-replay", Role.KIOSK, ORGANISATION)
    holder = world.people[OTHER]
    enrolled = world.enrol(OTHER, "Liveness", "PR0000004")
    rid = enrolled.record_id
    code = ref(recovery_code=enrolled.recovery_code)
    for liveness in ("supervised", "none"):
        live = kiosk.live(holder.photo(2), liveness)
        request = pb.VerifyHolderRequest(
            holder=code, live=mpb.Probe(image=live.image), live_statement=live.statement, pin=PIN
        )
        details = refused(world, kiosk, "VerifyHolder", partial(kiosk.stub.VerifyHolder, request), rid)
        assert "head_turn" in details
    answer = kiosk.stub.VerifyHolder(kiosk.verify(code, holder.photo(2), PIN))
    assert answer.record.details.family_name == "Liveness"
