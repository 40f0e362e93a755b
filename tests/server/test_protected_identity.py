"""Protected identity records end to end: a real mutual-TLS server, real faces, real files.

Enrolment with consent, the holder credential checked offline on an officer's
device (the edge pipeline, the issuer's public key, the agency's reader key),
the officer's minimal view and the PIN's full record, the duress PIN, consent
withdrawal, erasure by crypto-shredding with a backup taken before it, key
rotation, and tampering with the vault file. Live faces are images with the
capturing device's signed statement (tests/server/protected_helpers.py).
Attacks on these flows: test_protected_attacks.py.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from safepassage import credential as holder_credential
from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.audit import TransparencyLog
from safepassage.enrolment import KeyDestroyed, ReceiptKind, RecordVault, WrongKey, verify_receipt
from safepassage.enrolment.record_cipher import RecordCipher
from safepassage.enrolment.vault_file import backup_vault
from safepassage.server.identity import Role
from tests.server.protected_helpers import (
    DURESS_PIN,
    GALLERY,
    HOLDER,
    OTHER,
    PIN,
    THIRD,
    enrol,
    person,
    signed_live,
)

pytestmark = pytest.mark.server
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def agency_reader(tmp_path_factory: pytest.TempPathFactory) -> holder_credential.ReaderKey:
    return holder_credential.ReaderKey.load_or_create(tmp_path_factory.mktemp("agency") / "reader.pem")


@pytest.fixture(scope="module")
def world(server_factory, clients_for, agency_reader, tmp_path_factory, faces_dir, role_pki):  # type: ignore[no-untyped-def]
    public = tmp_path_factory.mktemp("agency-public") / "reader.pub.pem"
    public.write_bytes(agency_reader.public_pem())
    service, port, config = server_factory(
        **{
            "enrolment.agency_reader_keys": [str(public)],
            # Only caseworker ngo-1 reads this channel's referrals.
            "enrolment.referral_readers": {"la-strada-hotline": ["ngo-1"]},
        }
    )
    clients = clients_for(port)
    clients.admin.galleries.CreateGallery(
        mpb.CreateGalleryRequest(gallery_id=GALLERY, purpose=mpb.PROTECTED_IDENTITY)
    )
    holder = person(faces_dir, HOLDER)
    enrolled = enrol(clients.ngo, holder, "Sita", "Tamang", "PA1234567")
    return service, clients, config, holder, enrolled


@pytest.fixture(scope="module")
def other_caseworker(world, role_pki):  # type: ignore[no-untyped-def]
    """A caseworker of another organisation."""
    from safepassage.api.v1 import protected_identity_pb2_grpc as ppb_grpc

    issued = role_pki.pki.issue_client("ngo-2", Role.NGO_CASEWORKER, organisation="other-ngo")
    channel = role_pki.channel_with(world[1].port, issued)
    yield ppb_grpc.ProtectedIdentityServiceStub(channel)
    channel.close()


def _code(call: Any) -> tuple[Code, str]:
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return Code.OK, ""


def _verify(
    role_pki: Any, role: Role, holder: pb.HolderRef, image: bytes, pin: str = ""
) -> pb.VerifyHolderRequest:
    """A VerifyHolder request as the device of `role` sends it: a signed live capture."""
    live = signed_live(role_pki.clients[role], image, "head_turn" if role is Role.KIOSK else "supervised")
    return pb.VerifyHolderRequest(
        holder=holder, live=mpb.Probe(image=live.image), live_statement=live.statement, pin=pin
    )


def _public_keys(clients: Any) -> pb.PublicKeys:
    answer: pb.PublicKeys = clients.officer.protected.GetPublicKeys(pb.GetPublicKeysRequest())
    return answer


def test_enrolment_returns_a_signed_receipt_a_recovery_code_and_a_readable_qr(world) -> None:  # type: ignore[no-untyped-def]
    _, clients, _, _, enrolled = world
    keys = _public_keys(clients)
    receipt = verify_receipt(enrolled.consent_receipt, keys.station_public_pem)
    assert receipt.kind is ReceiptKind.CONSENT and receipt.record_id == enrolled.record_id
    assert "Sita" not in enrolled.consent_receipt and "PA1234567" not in enrolled.consent_receipt
    assert len(enrolled.recovery_code.replace("-", "")) == 20
    assert enrolled.credential.qr_png.startswith(b"\x89PNG")
    assert holder_credential.read_qr(enrolled.credential.qr_png) == enrolled.credential.text


def test_credential_verified_offline_against_live_faces(  # type: ignore[no-untyped-def]
    world, agency_reader, model_dir: Path, faces_dir
) -> None:
    """The officer's device: issuer key + its reader key + the edge pipeline; no server call."""
    import cv2

    from safepassage.camera_edge.holder_check import HolderCheck
    from safepassage.face.pipeline import PipelineSettings, load_pipeline

    _, clients, _, holder, enrolled = world
    keys = _public_keys(clients)
    trusted = holder_credential.TrustedIssuers(
        [holder_credential.IssuerPublicKey.from_pem(keys.issuer_public_pem, keys.issuer_id)]
    )
    check = HolderCheck(load_pipeline(PipelineSettings(model_dir=model_dir)), trusted, agency_reader)
    text = holder_credential.read_qr(enrolled.credential.qr_png)

    def rgb(path: Path) -> np.ndarray:
        pixels = cv2.imread(str(path))
        assert pixels is not None, path
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)

    accepted = check.check(text, rgb(holder.photos[2]))
    assert accepted.score <= accepted.threshold
    with pytest.raises(holder_credential.HolderMismatch):
        check.check(text, rgb(person(faces_dir, OTHER).photos[0]))
    stranger = holder_credential.TrustedIssuers([holder_credential.IssuerKey.generate("someone-else").public])
    with pytest.raises(holder_credential.UnknownIssuer):
        HolderCheck(check.pipeline, stranger, agency_reader).check(text, rgb(holder.photos[2]))


def test_officer_sees_the_minimal_view_and_the_pin_releases_the_record(world, faces_dir, role_pki) -> None:  # type: ignore[no-untyped-def]
    _, clients, _, holder, enrolled = world
    officer = clients.officer.protected
    by_credential = pb.HolderRef(credential=enrolled.credential.text)

    def verify(holder_ref: pb.HolderRef, image: bytes, pin: str = "") -> pb.VerifyHolderRequest:
        return _verify(role_pki, Role.OFFICER, holder_ref, image, pin)

    minimal = officer.VerifyHolder(verify(by_credential, holder.photo(2)))
    assert minimal.decision == mpb.MATCH and minimal.view.family_name == "Tamang"
    assert [d.valid for d in minimal.view.documents] == [True, False]
    assert minimal.view.documents[0].possession == "withheld_by_employer"
    assert not minimal.HasField("record")
    assert "PA1234567" not in str(minimal.view) and "Gulf Construction" not in str(minimal.view)
    full = officer.VerifyHolder(verify(by_credential, holder.photo(2), PIN))
    assert full.record.documents[0].number == "PA1234567"
    assert full.record.entitlements[0].employer == "Gulf Construction Services"
    by_code = pb.HolderRef(recovery_code=enrolled.recovery_code.lower())
    assert officer.VerifyHolder(verify(by_code, holder.photo(3))).record_id
    stranger = person(faces_dir, OTHER).photo(1)
    code, details = _code(lambda: officer.VerifyHolder(verify(by_credential, stranger)))
    assert code == Code.PERMISSION_DENIED and "does not match" in details
    code, details = _code(lambda: officer.VerifyHolder(verify(by_credential, holder.photo(2), "111111")))
    assert code == Code.PERMISSION_DENIED and "wrong PIN" in details
    code, _ = _code(
        lambda: officer.VerifyHolder(verify(pb.HolderRef(recovery_code="X" * 20), holder.photo(2)))
    )
    assert code == Code.PERMISSION_DENIED
    # Officers have no 1:N of any kind over protected records.
    code, _ = _code(
        lambda: clients.officer.matching.Identify(
            mpb.IdentifyRequest(gallery_id=GALLERY, probe=holder.probe(2))
        )
    )
    assert code == Code.PERMISSION_DENIED
    code, _ = _code(
        lambda: officer.CheckDuplicate(pb.CheckDuplicateRequest(gallery_id=GALLERY, probe=holder.probe(2)))
    )
    assert code == Code.PERMISSION_DENIED


def test_duress_pin_looks_ordinary_and_raises_a_referral(world, role_pki) -> None:  # type: ignore[no-untyped-def]
    service, clients, _, holder, enrolled = world
    officer = clients.officer.protected
    before = clients.ngo.protected.ListReferrals(pb.ListReferralsRequest()).referrals
    by_credential = pb.HolderRef(credential=enrolled.credential.text)
    ordinary = officer.VerifyHolder(_verify(role_pki, Role.OFFICER, by_credential, holder.photo(2), PIN))
    duress = officer.VerifyHolder(_verify(role_pki, Role.OFFICER, by_credential, holder.photo(2), DURESS_PIN))
    assert duress == ordinary  # same fields, same values, same status
    after = clients.ngo.protected.ListReferrals(pb.ListReferralsRequest()).referrals
    assert len(after) == len(before) + 1
    raised = after[-1]
    assert raised.record_id == enrolled.record_id and raised.channel == "la-strada-hotline"
    assert raised.raised_by.startswith("officer:") and raised.context == "verification"
    # Officers cannot see referrals; the transparency log tells the two calls apart in nothing.
    assert _code(lambda: officer.ListReferrals(pb.ListReferralsRequest()))[0] == Code.PERMISSION_DENIED
    log = service.transparency_log
    events = [entry.event() for entry in log.entries(0, log.size())]
    verifications = [e for e in events if e.operation.endswith("VerifyHolder")][-2:]
    assert len(verifications) == 2
    assert verifications[0].outcome == verifications[1].outcome == "MATCH"
    assert verifications[0].details == verifications[1].details
    acknowledged = clients.ngo.protected.AcknowledgeReferral(
        pb.AcknowledgeReferralRequest(referral_id=raised.referral_id)
    )
    assert acknowledged.acknowledged_at


def test_withdrawn_consent_refuses_its_scope_and_nothing_else(world, faces_dir, role_pki) -> None:  # type: ignore[no-untyped-def]
    _, clients, _, _, _ = world
    ngo = clients.ngo.protected
    other = person(faces_dir, OTHER)
    enrolled = enrol(clients.ngo, other, "Ram", "Gurung", "PB7654321")
    by_id = pb.HolderRef(record_id=enrolled.record_id)
    found = ngo.CheckDuplicate(pb.CheckDuplicateRequest(gallery_id=GALLERY, probe=other.probe(1)))
    assert found.candidates[0].record_id == enrolled.record_id and found.candidates[0].match

    # The enrolling organisation records a withdrawal on the holder's instruction (narrowing only).
    ngo.ChangeConsent(
        pb.ChangeConsentRequest(
            holder=by_id, consent=pb.ConsentGiven(language="en", text="withdraw", refused=["duplicate_check"])
        )
    )
    after = ngo.CheckDuplicate(pb.CheckDuplicateRequest(gallery_id=GALLERY, probe=other.probe(1)))
    assert enrolled.record_id not in [c.record_id for c in after.candidates]
    assert after.searched == found.searched - 1
    # The other scopes still work: border verification and sharing with the named organisation.
    code = pb.HolderRef(recovery_code=enrolled.recovery_code)
    officer = clients.officer.protected
    assert officer.VerifyHolder(_verify(role_pki, Role.OFFICER, code, other.photo(1))).decision == mpb.MATCH
    shared = ngo.ShareRecord(pb.ShareRecordRequest(holder=code, organisation="la-strada"))
    assert shared.record.details.family_name == "Gurung"
    status, details = _code(
        lambda: ngo.ShareRecord(pb.ShareRecordRequest(holder=code, organisation="other-org"))
    )
    assert status == Code.PERMISSION_DENIED and "own organisation" in details

    # The kiosk, for the holder (recovery code): withdraw border verification.
    changed = clients.kiosk.protected.ChangeConsent(
        pb.ChangeConsentRequest(
            holder=code, consent=pb.ConsentGiven(language="ne-NP", text="फिर्ता", refused=["verify_at_border"])
        )
    )
    assert {s.scope: s.in_force for s in changed.state.scopes}["verify_at_border"] is False
    status, details = _code(
        lambda: officer.VerifyHolder(_verify(role_pki, Role.OFFICER, code, other.photo(1)))
    )
    assert status == Code.PERMISSION_DENIED and "verify_at_border" in details
    status, _ = _code(lambda: ngo.IssueCredential(pb.IssueCredentialRequest(holder=by_id)))
    assert status == Code.PERMISSION_DENIED
    by_credential = pb.HolderRef(credential=enrolled.credential.text)
    status, _ = _code(
        lambda: officer.VerifyHolder(_verify(role_pki, Role.OFFICER, by_credential, other.photo(1)))
    )
    assert status == Code.PERMISSION_DENIED
    # The holder, with their full proof, can still see their own record at the NGO kiosk.
    own = clients.kiosk.protected.VerifyHolder(_verify(role_pki, Role.KIOSK, code, other.photo(2), PIN))
    assert own.record.details.family_name == "Gurung"
    # A kiosk cannot act on a bare record id: the holder must prove themselves.
    assert (
        _code(lambda: clients.kiosk.protected.EraseRecord(pb.EraseRecordRequest(holder=by_id)))[0]
        == Code.PERMISSION_DENIED
    )


def test_refused_scopes_at_enrolment_never_block_the_others(world, faces_dir) -> None:  # type: ignore[no-untyped-def]
    _, clients, _, _, _ = world
    third = person(faces_dir, THIRD)
    enrolled = enrol(
        clients.kiosk,
        third,
        "Maya",
        "Rai",
        "PC1112223",
        granted=["store", "duplicate_check"],
        refused=["verify_at_border"],
    )
    assert not enrolled.HasField("credential")
    found = clients.ngo.protected.CheckDuplicate(
        pb.CheckDuplicateRequest(gallery_id=GALLERY, probe=third.probe(1))
    )
    assert found.candidates[0].record_id == enrolled.record_id
    status, details = _code(
        lambda: enrol(clients.ngo, third, "Maya", "Rai", "PC1112224", granted=["verify_at_border"])
    )
    assert status == Code.PERMISSION_DENIED and "store" in details


def test_erasure_shreds_the_record_and_every_earlier_backup(  # type: ignore[no-untyped-def]
    world, faces_dir, role_pki, tmp_path: Path
) -> None:
    """A copy of every file of the data folder taken before an erasure, plus the live keys, yields
    nothing of the erased person: no template, no name, no document number."""
    service, clients, config, _, _ = world
    victim = person(faces_dir, OTHER)
    enrolled = enrol(clients.ngo, victim, "Bishnu", "Shrestha", "PZ9988776")
    keeper = enrol(clients.ngo, person(faces_dir, THIRD), "Kamala", "Magar", "PK5554443")
    template = service.records.templates.of(enrolled.record_id)[0].copy()
    service.matcher.save_snapshots()
    copy_root = tmp_path / "data-copy"
    vault_copy = copy_root / "vault.sqlite3"
    backup_vault(config.records_path, vault_copy)  # consistent copy of the live vault
    shutil.copytree(config.storage.data_dir, copy_root / "data")  # and a plain copy of every file

    erased = clients.kiosk.protected.EraseRecord(
        pb.EraseRecordRequest(holder=pb.HolderRef(recovery_code=enrolled.recovery_code))
    )
    receipt = verify_receipt(erased.receipt, _public_keys(clients).station_public_pem)
    assert receipt.kind is ReceiptKind.ERASURE and receipt.record_id == enrolled.record_id
    assert str(receipt.body["requested_by"]).startswith("kiosk:kiosk-1")
    assert erased.templates_removed == 1
    status, _ = _code(
        lambda: clients.officer.protected.VerifyHolder(
            _verify(
                role_pki, Role.OFFICER, pb.HolderRef(credential=enrolled.credential.text), victim.photo(1)
            )
        )
    )
    assert status == Code.PERMISSION_DENIED  # its credential is retired with the record
    status, details = _code(
        lambda: clients.ngo.protected.GetConsent(
            pb.GetConsentRequest(holder=pb.HolderRef(record_id=enrolled.record_id))
        )
    )
    assert status == Code.FAILED_PRECONDITION and "erased" in details

    # The template never reached the template store, its WAL or the index snapshots.
    raw = template.astype("<f4").tobytes()
    copied = [p for p in copy_root.rglob("*") if p.is_file()]
    assert copied
    for path in copied + [p for p in config.storage.data_dir.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        assert raw[:64] not in data, path
        for secret in (b"Bishnu", b"Shrestha", b"PZ9988776", b"Kamala", b"PK5554443"):
            assert secret not in data, f"{secret!r} in {path}"
    # No key file lives in the data folder: the copy carries no key.
    assert not [p for p in copied if "key" in p.name.lower() or p.suffix in (".pem", ".json")]
    # Every copy of the vault, opened with the live keys: the erased record's data key (and every
    # other data key in it) is wrapped by a destroyed KEK version.
    for copied_vault in [vault_copy, *copy_root.glob("data/*.sqlite3")]:
        if "protected_records" not in copied_vault.name and copied_vault != vault_copy:
            continue
        opened = RecordVault.open(copied_vault)
        try:
            wrapped = dict(opened.data_keys.wrapped())
            assert enrolled.record_id in wrapped and keeper.record_id in wrapped
            for record_id, key in wrapped.items():
                with pytest.raises(KeyDestroyed):
                    service.records.cipher.data_key(record_id, key)
        finally:
            opened.close()
    # The live records survived the rotation that erasure made.
    still = clients.ngo.protected.ShareRecord(
        pb.ShareRecordRequest(holder=pb.HolderRef(recovery_code=keeper.recovery_code))
    )
    assert still.record.details.family_name == "Magar"


def test_key_rotation_keeps_every_record_readable(world, role_pki) -> None:  # type: ignore[no-untyped-def]
    service, clients, _, holder, enrolled = world
    before = service.records.vault.data_keys.kek_versions_in_use()
    rotated = clients.admin.protected.RotateRecordKeys(pb.RotateRecordKeysRequest())
    assert rotated.kek_version not in before and set(rotated.destroyed) == before
    assert service.records.vault.data_keys.kek_versions_in_use() == {rotated.kek_version}
    answer = clients.officer.protected.VerifyHolder(
        _verify(
            role_pki, Role.OFFICER, pb.HolderRef(credential=enrolled.credential.text), holder.photo(2), PIN
        )
    )
    assert answer.record.details.given_names == "Sita"
    assert (
        _code(lambda: clients.ngo.protected.RotateRecordKeys(pb.RotateRecordKeysRequest()))[0]
        == Code.PERMISSION_DENIED
    )


def test_tampered_or_swapped_ciphertext_is_refused(world, faces_dir) -> None:  # type: ignore[no-untyped-def]
    service, clients, config, _, _ = world
    people = [person(faces_dir, OTHER), person(faces_dir, THIRD)]
    first, second = (enrol(clients.ngo, p, "Tamper", f"Case{n}", f"PT00{n}") for n, p in enumerate(people))
    conn = sqlite3.connect(config.records_path)
    try:
        rows = dict(
            conn.execute(
                "SELECT record_id, sealed_record FROM records WHERE record_id IN (?, ?)",
                (first.record_id, second.record_id),
            ).fetchall()
        )
        conn.execute(
            "UPDATE records SET sealed_record = ? WHERE record_id = ?",
            (rows[second.record_id], first.record_id),
        )
        flipped = bytearray(rows[second.record_id])
        flipped[40] ^= 1
        conn.execute(
            "UPDATE records SET sealed_record = ? WHERE record_id = ?", (bytes(flipped), second.record_id)
        )
        conn.commit()
    finally:
        conn.close()
    for enrolled in (first, second):
        status, details = _code(
            lambda code=enrolled.recovery_code: clients.ngo.protected.ShareRecord(
                pb.ShareRecordRequest(holder=pb.HolderRef(recovery_code=code))
            )
        )
        assert status == Code.DATA_LOSS, details
    # A wrong data key is told apart from tampering: the first record's own blob under the second's key.
    other_key = service.records.cipher.data_key(
        second.record_id, service.records.vault.records.get(second.record_id).wrapped_key
    )
    with pytest.raises(WrongKey):
        RecordCipher.open(other_key, "record", rows[first.record_id])


def test_roles_that_may_not_touch_protected_records(world) -> None:  # type: ignore[no-untyped-def]
    _, clients, _, holder, enrolled = world
    insert = mpb.InsertTemplateRequest(gallery_id=GALLERY, reference_id="direct", template=holder.probe(0))
    assert _code(lambda: clients.ngo.matching.InsertTemplate(insert))[0] == Code.PERMISSION_DENIED
    for role in (Role.OFFICER, Role.CCTV_EDGE, Role.AUDITOR):
        stubs = clients.as_role(role).protected
        assert (
            _code(
                lambda stubs=stubs: stubs.EraseRecord(
                    pb.EraseRecordRequest(holder=pb.HolderRef(recovery_code=enrolled.recovery_code))
                )
            )[0]
            == Code.PERMISSION_DENIED
        )
    assert (
        _code(lambda: clients.as_role(Role.CCTV_EDGE).protected.VerifyHolder(pb.VerifyHolderRequest()))[0]
        == Code.PERMISSION_DENIED
    )


def test_transparency_log_names_records_by_digest_only(world) -> None:  # type: ignore[no-untyped-def]
    service, _, _, _, enrolled = world
    log: TransparencyLog = service.transparency_log
    text = " ".join(str(entry.event()) for entry in log.entries(0, log.size()))
    assert enrolled.record_id not in text and "Tamang" not in text


def test_duress_at_the_kiosk_and_who_reads_referrals(world, other_caseworker, faces_dir, role_pki) -> None:  # type: ignore[no-untyped-def]
    _, clients, _, _, _ = world
    holder = person(faces_dir, THIRD)
    enrolled = enrol(clients.ngo, holder, "Durga", "Thapa", "PD3334445")
    code = pb.HolderRef(recovery_code=enrolled.recovery_code)
    ordinary = clients.kiosk.protected.VerifyHolder(_verify(role_pki, Role.KIOSK, code, holder.photo(1), PIN))
    duress = clients.kiosk.protected.VerifyHolder(
        _verify(role_pki, Role.KIOSK, code, holder.photo(1), DURESS_PIN)
    )
    assert duress == ordinary
    mine = [
        r
        for r in clients.ngo.protected.ListReferrals(pb.ListReferralsRequest()).referrals
        if r.record_id == enrolled.record_id
    ]
    assert [(r.context, r.raised_by.split(":")[0]) for r in mine] == [("kiosk", "kiosk")]
    # A caseworker of another organisation sees nothing of it.
    assert not other_caseworker.ListReferrals(pb.ListReferralsRequest()).referrals
    status, _ = _code(
        lambda: other_caseworker.AcknowledgeReferral(
            pb.AcknowledgeReferralRequest(referral_id=mine[0].referral_id)
        )
    )
    assert status == Code.NOT_FOUND


def test_wrong_pins_lock_the_pin_check(world, faces_dir, role_pki) -> None:  # type: ignore[no-untyped-def]
    _, clients, config, _, _ = world
    holder = person(faces_dir, OTHER)
    enrolled = enrol(clients.ngo, holder, "Hari", "Bhandari", "PL1010101")
    code = pb.HolderRef(recovery_code=enrolled.recovery_code)
    for _ in range(config.enrolment.pin_max_failures):
        request = _verify(role_pki, Role.OFFICER, code, holder.photo(1), "000000")
        assert _code(lambda request=request: clients.officer.protected.VerifyHolder(request))[0] == (
            Code.PERMISSION_DENIED
        )
    request = _verify(role_pki, Role.OFFICER, code, holder.photo(1), PIN)
    status, details = _code(lambda: clients.officer.protected.VerifyHolder(request))
    assert status == Code.PERMISSION_DENIED and "locked" in details
    # Without a PIN the minimal view is still given: the lock guards the full record only.
    request = _verify(role_pki, Role.OFFICER, code, holder.photo(1))
    assert clients.officer.protected.VerifyHolder(request).view.family_name == "Bhandari"
