"""VerifyDocument through a real server over mutual TLS: real LFW faces in DG2 (both record formats,
JPEG and JPEG 2000) under SODs of a test CSCA the server trusts from its CSCA folder. The holder
matches, another person does not, and a swapped photo, a foreign CSCA or an expired Document Signer
is refused in the answer with its reason; the log holds the outcome and no personal data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import travel_document_pb2 as tpb
from safepassage.api.v1 import travel_document_pb2_grpc as tpb_grpc
from safepassage.cli.main import main as cli_main
from safepassage.core.private_files import PRIVATE_FILE_MODE
from safepassage.server.identity import Role
from safepassage.travel_document import FaceRecordFormat, ImageEncoding, TrustStoreError
from tests.pki_helpers import RolePki
from tests.travel_document.issuer import (
    NOW,
    YEAR,
    Authority,
    Chip,
    issue_chip,
    make_csca,
    make_signer,
    photo_of,
)

pytestmark = pytest.mark.server
HOLDER, OTHER = "Tony_Blair", "Bill_Gates"
OPERATION = "TravelDocumentService/VerifyDocument"


@dataclass(frozen=True)
class World:
    service: object
    port: int
    csca: Authority
    signer: Authority
    officer: tpb_grpc.TravelDocumentServiceStub
    kiosk: tpb_grpc.TravelDocumentServiceStub


@pytest.fixture(scope="module")
def world(server_factory, clients_for, tmp_path_factory) -> World:  # type: ignore[no-untyped-def]
    csca = make_csca()
    folder = tmp_path_factory.mktemp("csca")
    (folder / "utopia.pem").write_bytes(csca.pem())
    service, port, _ = server_factory(**{"travel_documents.csca_dir": str(folder)})
    clients = clients_for(port)
    return World(
        service,
        port,
        csca,
        make_signer(csca),
        tpb_grpc.TravelDocumentServiceStub(clients.officer.channel),
        tpb_grpc.TravelDocumentServiceStub(clients.kiosk.channel),
    )


def verify(
    stub: tpb_grpc.TravelDocumentServiceStub, chip: Chip, live: bytes, *, sod: bool = True, dg1: bool = True
) -> tpb.VerifyDocumentResponse:
    document = tpb.TravelDocument(dg2=chip.dg2, sod=chip.sod if sod else b"", dg1=chip.dg1 if dg1 else b"")
    answer: tpb.VerifyDocumentResponse = stub.VerifyDocument(
        tpb.VerifyDocumentRequest(document=document, probe=pb.Probe(image=live)), timeout=60
    )
    return answer


@pytest.mark.parametrize(
    ("record_format", "encoding"),
    [
        (FaceRecordFormat.ISO_19794_5, ImageEncoding.JPEG),
        (FaceRecordFormat.ISO_19794_5, ImageEncoding.JPEG_2000),
        (FaceRecordFormat.ISO_39794_5, ImageEncoding.JPEG),
        (FaceRecordFormat.ISO_39794_5, ImageEncoding.JPEG_2000),
    ],
    ids=["19794-jpeg", "19794-jp2", "39794-jpeg", "39794-jp2"],
)
def test_the_holder_matches_the_chip_photo(
    world: World, faces_dir: Path, record_format: FaceRecordFormat, encoding: ImageEncoding
) -> None:
    chip = issue_chip(
        photo_of(faces_dir, HOLDER, 1), world.signer, encoding=encoding, record_format=record_format
    )
    answer = verify(world.officer, chip, photo_of(faces_dir, HOLDER, 2))
    assert answer.decision == pb.MATCH and answer.face_match
    assert answer.metric == pb.L2 and 0 < answer.score <= answer.threshold == pytest.approx(0.6)
    proof = answer.passive_authentication
    assert proof.status == tpb.PA_PASSED and list(proof.data_groups) == [1, 2] and proof.country == "UT"
    assert answer.face_record_format == record_format.value and answer.image_format == encoding.value
    assert answer.HasField("box") and answer.document_expired  # the specimen expired in 2012


def test_another_person_does_not_match(world: World, faces_dir: Path) -> None:
    chip = issue_chip(
        photo_of(faces_dir, HOLDER, 1), world.signer, record_format=FaceRecordFormat.ISO_39794_5
    )
    answer = verify(world.kiosk, chip, photo_of(faces_dir, OTHER, 1))
    assert answer.decision == pb.NO_MATCH and not answer.face_match and answer.score > answer.threshold
    assert answer.passive_authentication.status == tpb.PA_PASSED


def test_a_swapped_photo_is_refused_though_the_faces_match(world: World, faces_dir: Path) -> None:
    genuine = issue_chip(photo_of(faces_dir, HOLDER, 1), world.signer)
    impostor = issue_chip(photo_of(faces_dir, OTHER, 1), world.signer)
    swapped = Chip(genuine.dg1, impostor.dg2, genuine.sod)
    answer = verify(world.officer, swapped, photo_of(faces_dir, OTHER, 2))
    assert answer.face_match  # the impostor matches the photo they put in the chip...
    assert answer.decision == pb.NO_MATCH  # ...and is refused
    proof = answer.passive_authentication
    assert (proof.status, proof.failure) == (tpb.PA_FAILED, tpb.DATA_GROUP_HASH_MISMATCH)
    assert "DG2" in proof.detail


def test_a_broken_chain_is_refused(world: World, faces_dir: Path) -> None:
    holder, live = photo_of(faces_dir, HOLDER, 1), photo_of(faces_dir, HOLDER, 2)
    foreign = issue_chip(holder, make_signer(make_csca("XX", "CSCA Elsewhere")))
    expired_signer = make_signer(world.csca, not_before=NOW - 6 * YEAR, not_after=NOW - YEAR)
    expired = issue_chip(holder, expired_signer)
    for chip, reason in ((foreign, tpb.CSCA_UNKNOWN), (expired, tpb.DOCUMENT_SIGNER_EXPIRED)):
        answer = verify(world.officer, chip, live)
        assert answer.decision == pb.NO_MATCH and answer.face_match
        assert (answer.passive_authentication.status, answer.passive_authentication.failure) == (
            tpb.PA_FAILED,
            reason,
        )


def test_without_a_sod_the_answer_says_not_checked(world: World, faces_dir: Path) -> None:
    chip = issue_chip(photo_of(faces_dir, HOLDER, 1), world.signer)
    answer = verify(world.officer, chip, photo_of(faces_dir, HOLDER, 2), sod=False, dg1=False)
    assert answer.decision == pb.MATCH
    assert answer.passive_authentication.status == tpb.PA_NOT_CHECKED
    assert not answer.HasField("document_expired")


def test_unreadable_chip_data_is_invalid_argument(world: World, faces_dir: Path) -> None:
    chip = issue_chip(photo_of(faces_dir, HOLDER, 1), world.signer)
    live = photo_of(faces_dir, HOLDER, 2)
    for document, named in (
        (Chip(chip.dg1, chip.dg2[:-40], chip.sod), "DG2"),
        (Chip(chip.dg1, b"", chip.sod), "dg2"),
        (Chip(chip.dg1[:-1], chip.dg2, chip.sod), "DG1"),
        (Chip(chip.dg1, chip.dg2, chip.sod[:-5]), "SOD"),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            verify(world.officer, document, live)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
        assert named in (refused.value.details() or "")


def test_a_portrait_without_a_face_is_failed_precondition(world: World, faces_dir: Path) -> None:
    dogs = (faces_dir / "group" / "dlib" / "dogs.jpg").read_bytes()
    chip = issue_chip(dogs, world.signer)
    with pytest.raises(grpc.RpcError) as refused:
        verify(world.officer, chip, photo_of(faces_dir, HOLDER, 2))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "chip's portrait" in (refused.value.details() or "")


def test_the_log_holds_outcomes_and_no_personal_data(world: World, faces_dir: Path) -> None:
    log = world.service.transparency_log  # type: ignore[attr-defined]
    before = log.size()
    genuine = issue_chip(photo_of(faces_dir, HOLDER, 1), world.signer)
    impostor = issue_chip(photo_of(faces_dir, OTHER, 1), world.signer)
    verify(world.officer, genuine, photo_of(faces_dir, HOLDER, 2))
    verify(world.officer, Chip(genuine.dg1, impostor.dg2, genuine.sod), photo_of(faces_dir, OTHER, 2))
    entries = [e for e in log.entries(before, log.size()) if e.event().operation == OPERATION]
    passed, swapped = (e.event() for e in entries)
    assert passed.outcome == "MATCH" and passed.details["passive_authentication"] == "PA_PASSED"
    assert swapped.outcome == "NO_MATCH" and swapped.details["pa_failure"] == "DATA_GROUP_HASH_MISMATCH"
    assert swapped.details["face_decision"] == "MATCH"
    # The same passport, by a keyed hash only: linkable by the operator, unreadable to anyone else.
    assert passed.details["document_hmac_sha256"] == swapped.details["document_hmac_sha256"]
    assert passed.actor.startswith("officer:") and passed.details["threshold_source"] == "MODEL"
    for entry in entries:
        text = entry.data.decode()
        for personal in ("ERIKSSON", "ANNA", "L898902C3", "740812", "UTO"):
            assert personal not in text
        json.loads(text)


def test_the_officers_decision_on_a_check_joins_its_entry_and_holds_no_note(
    world: World, faces_dir: Path
) -> None:
    log = world.service.transparency_log  # type: ignore[attr-defined]
    before = log.size()
    chip = issue_chip(photo_of(faces_dir, HOLDER, 1), world.signer)
    answer = verify(world.officer, chip, photo_of(faces_dir, HOLDER, 2))
    assert answer.check_id.startswith("chk_") and len(answer.check_id) == 52
    note = "Passport ERIKSSON L898902C3 looked re-laminated; sent to the second line"
    decision = tpb.RecordDocumentDecisionRequest(
        check_id=answer.check_id,
        service_decision=answer.decision,
        passive_authentication=answer.passive_authentication.status,
        decision=pb.REVIEW_REFER,
        reason=pb.REASON_SECONDARY_INSPECTION,
        note=note,
    )
    assert world.officer.RecordDocumentDecision(decision).recorded_at.seconds > 0
    events = [e.event() for e in log.entries(before, log.size())]
    check = next(e for e in events if e.operation == OPERATION)
    decided = next(e for e in events if e.operation.endswith("/RecordDocumentDecision"))
    assert check.details["check_id"] == decided.details["check_id"] == answer.check_id
    assert decided.actor == check.actor and decided.outcome == "OK"
    assert (
        decided.details["decision"] == "REVIEW_REFER"
        and decided.details["reason"] == "REASON_SECONDARY_INSPECTION"
    )
    assert decided.details["passive_authentication"] == "PA_PASSED" and "note_hmac_sha256" in decided.details
    logged = json.dumps(dict(decided.details))
    assert "ERIKSSON" not in logged and "re-laminated" not in logged
    # Incomplete or malformed decisions are refused, named, and logged as refused; kiosks decide nothing.
    # A decision names only a check the service made for this officer, with the answer it gave.
    invented = "chk_" + "0123456789abcdef" * 3
    for field, bad in (
        ("check_id", "not-a-check"),
        ("reason", pb.REVIEW_REASON_UNSPECIFIED),
        ("check_id", invented),
        ("service_decision", pb.NO_MATCH),
        ("passive_authentication", tpb.PA_NOT_CHECKED),
    ):
        wrong = tpb.RecordDocumentDecisionRequest()
        wrong.CopyFrom(decision)
        setattr(wrong, field, bad)
        with pytest.raises(grpc.RpcError) as refusal:
            world.officer.RecordDocumentDecision(wrong)
        assert refusal.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in (
            refusal.value.details() or ""
        )
    # Another caller's check (an e-gate kiosk's), with its own answer: not this officer's to decide on.
    gate = verify(world.kiosk, chip, photo_of(faces_dir, HOLDER, 2))
    theirs = tpb.RecordDocumentDecisionRequest()
    theirs.CopyFrom(decision)
    theirs.check_id = gate.check_id
    with pytest.raises(grpc.RpcError) as refusal:
        world.officer.RecordDocumentDecision(theirs)
    assert refusal.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "made for you" in (
        refusal.value.details() or ""
    )
    with pytest.raises(grpc.RpcError) as refusal:
        world.kiosk.RecordDocumentDecision(decision)
    assert refusal.value.code() == grpc.StatusCode.PERMISSION_DENIED
    outcomes = [e.event().outcome for e in log.entries(before, log.size())]
    assert outcomes.count("INVALID_ARGUMENT") == 6 and outcomes.count("PERMISSION_DENIED") == 1


def test_the_command_line_prints_decision_distance_and_proof(
    world: World, faces_dir: Path, role_pki: RolePki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    genuine = issue_chip(photo_of(faces_dir, HOLDER, 1), world.signer, encoding=ImageEncoding.JPEG_2000)
    impostor = issue_chip(photo_of(faces_dir, OTHER, 1), world.signer)
    files = {}
    for name, data in (("dg1.bin", genuine.dg1), ("dg2.bin", genuine.dg2), ("sod.bin", genuine.sod)):
        files[name] = tmp_path / name
        files[name].write_bytes(data)
    (tmp_path / "swapped-dg2.bin").write_bytes(impostor.dg2)
    (tmp_path / "live.jpg").write_bytes(photo_of(faces_dir, HOLDER, 2))
    officer = role_pki.clients[Role.OFFICER]
    (tmp_path / "officer.pem").write_bytes(officer.cert_pem)
    key = tmp_path / "officer-key.pem"
    key.write_bytes(officer.key_pem)
    key.chmod(PRIVATE_FILE_MODE)
    connection = ["--server", f"localhost:{world.port}", "--ca", str(role_pki.ca_file)]
    connection += ["--cert", str(tmp_path / "officer.pem"), "--key", str(key)]
    base = ["verify-document", "--dg1", str(files["dg1.bin"]), "--sod", str(files["sod.bin"])]
    assert cli_main([*base, "--dg2", str(files["dg2.bin"]), str(tmp_path / "live.jpg"), *connection]) == 0
    out = capsys.readouterr().out
    assert out.startswith("MATCH  distance ") and "passive authentication PA_PASSED" in out
    status = cli_main(
        [*base, "--dg2", str(tmp_path / "swapped-dg2.bin"), str(tmp_path / "live.jpg"), *connection]
    )
    out = capsys.readouterr().out
    assert status == 1 and out.startswith("NO_MATCH") and "PA_FAILED (DATA_GROUP_HASH_MISMATCH)" in out
    live = str(tmp_path / "live.jpg")
    assert cli_main(["verify-document", "--dg2", str(tmp_path / "missing.bin"), live, *connection]) == 2
    assert "missing.bin" in capsys.readouterr().err


def test_required_passive_authentication_and_no_csca(server_factory, clients_for, faces_dir) -> None:  # type: ignore[no-untyped-def]
    _, port, _ = server_factory(**{"travel_documents.require_passive_authentication": True})
    stub = tpb_grpc.TravelDocumentServiceStub(clients_for(port).officer.channel)
    chip = issue_chip(photo_of(faces_dir, HOLDER, 1), make_signer(make_csca()))
    live = photo_of(faces_dir, HOLDER, 2)
    for with_sod, named in ((False, "requires passive authentication"), (True, "travel_documents.csca_dir")):
        with pytest.raises(grpc.RpcError) as refused:
            verify(stub, chip, live, sod=with_sod)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert named in (refused.value.details() or "")


def test_a_bad_csca_folder_refuses_the_start(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TrustStoreError, match="does not exist"):
        server_factory(**{"travel_documents.csca_dir": str(tmp_path / "no-such-folder")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrustStoreError, match="holds no CSCA"):
        server_factory(**{"travel_documents.csca_dir": str(tmp_path / "empty")})
