"""The MOSIP Compliance Tool Kit's ABIS cases, re-created locally against a real broker and adapter.

Each test is named by an ABIS30xx id. The numbering is this project's own re-creation of the
CTK's case list (valid inserts, malformed requests, datashare faults, duplicates, CBEFF faults,
identify with expected duplicates, gallery ids, delete then identify); it was not run by the CTK.
Requests travel through ActiveMQ over STOMP; inserts fetch real HTTPS datashares, encrypted as
MOSIP encrypts them, holding JPEG 2000 faces of real LFW photos in ISO/IEC 19794-5 records.
"""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.mosip_datashare import DatashareServer, jpeg_2000_face
from benchmarks.mosip_queues import Answer, Mosip, request
from safepassage.abis.service import AbisService
from safepassage.travel_document import FaceImage, FaceRecordFormat, ImageEncoding
from tests.lfw_embeddings import LfwEmbeddings

SAME_PERSON = "Andre_Agassi"
IMPOSTORS = 120
OTHERS = ("Anna_Kournikova", "Adrien_Brody")


def photo(faces_dir: Path, person: str, index: int = 0) -> Path:
    return sorted((faces_dir / "lfw" / person).glob("*.jpg"))[index]


def new_id() -> str:
    return str(uuid.uuid4())


def insert(mosip: Mosip, datashare: DatashareServer, faces: list[FaceImage], *, as_bytes: bool = True) -> str:
    """Insert a new reference through the queue; returns its referenceId (the insert must succeed)."""
    reference_id = new_id()
    url = datashare.publish_faces(f"/v1/datashare/get/{reference_id}", faces)
    reply = mosip.ask(request("insert", referenceId=reference_id, referenceURL=url), as_bytes=as_bytes)
    assert reply.failure is None, reply.body
    return reference_id


@pytest.fixture(scope="module")
def gallery(
    adapter: AbisService, mosip: Mosip, datashare: DatashareServer, faces_dir: Path
) -> dict[str, str]:
    """Two photos of one person and one of each of two others, inserted under four referenceIds."""
    return {
        "same_0": insert(mosip, datashare, [jpeg_2000_face(photo(faces_dir, SAME_PERSON, 0))]),
        "same_1": insert(
            mosip, datashare, [jpeg_2000_face(photo(faces_dir, SAME_PERSON, 1))], as_bytes=False
        ),
        "other_0": insert(mosip, datashare, [jpeg_2000_face(photo(faces_dir, OTHERS[0]))]),
        "other_1": insert(mosip, datashare, [jpeg_2000_face(photo(faces_dir, OTHERS[1]))]),
    }


def candidates(reply_body: dict[str, object]) -> list[str]:
    listed = reply_body["candidateList"]
    assert isinstance(listed, dict)
    found = [str(c["referenceId"]) for c in listed["candidates"]]
    assert listed["count"] == str(len(found))
    return found


def test_ABIS3000_ping(adapter: AbisService, mosip: Mosip) -> None:
    reply = mosip.ask(request("ping"))
    assert reply.failure is None and reply.body["id"] == "mosip.abis.ping"


def test_ABIS3001_valid_inserts_are_counted(
    adapter: AbisService, mosip: Mosip, gallery: dict[str, str]
) -> None:
    reply = mosip.ask(request("referenceCount"))
    assert reply.failure is None
    assert int(str(reply.body["count"])) >= len(gallery)


@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes", "text"])
def test_ABIS3002_answers_come_in_the_message_type_received(
    adapter: AbisService, mosip: Mosip, as_bytes: bool
) -> None:
    reply = mosip.ask(request("ping"), as_bytes=as_bytes)
    assert reply.as_bytes is as_bytes


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe"], ids=["broken", "array", "not-utf8"])
def test_ABIS3003_malformed_json_is_refused_with_4(adapter: AbisService, mosip: Mosip, body: bytes) -> None:
    before = len(mosip.answers_to(""))
    mosip.send(body)
    deadline_reply = _next_anonymous_answer(mosip, before)
    assert deadline_reply.body["returnValue"] == "2" and deadline_reply.body["failureReason"] == "4"


def _next_anonymous_answer(mosip: Mosip, before: int) -> Answer:
    for _ in range(300):
        found = mosip.answers_to("")
        if len(found) > before:
            return found[before]
        time.sleep(0.1)
    raise AssertionError("no answer to a request without a requestId")


def test_ABIS3004_insert_without_reference_id_is_refused_with_5(
    adapter: AbisService, mosip: Mosip, datashare: DatashareServer
) -> None:
    reply = mosip.ask(request("insert", referenceURL=datashare.url("/v1/datashare/get/x")))
    assert reply.failure == "5"


def test_ABIS3005_request_without_request_id_is_refused_with_6(adapter: AbisService, mosip: Mosip) -> None:
    before = len(mosip.answers_to(""))
    body = request("delete", referenceId=new_id())
    del body["requestId"]
    mosip.send(body)
    reply = _next_anonymous_answer(mosip, before)
    assert reply.body["failureReason"] == "6"


def test_ABIS3006_unreachable_datashare_is_refused_with_7(
    adapter: AbisService, mosip: Mosip, datashare: DatashareServer
) -> None:
    missing = datashare.url("/v1/datashare/get/never-published")
    assert mosip.ask(request("insert", referenceId=new_id(), referenceURL=missing)).failure == "7"
    plain_http = missing.replace("https://", "http://")
    assert mosip.ask(request("insert", referenceId=new_id(), referenceURL=plain_http)).failure == "7"


def test_ABIS3007_insert_without_reference_url_is_refused_with_8(adapter: AbisService, mosip: Mosip) -> None:
    assert mosip.ask(request("insert", referenceId=new_id())).failure == "8"


def test_ABIS3008_request_without_requesttime_is_refused_with_9(adapter: AbisService, mosip: Mosip) -> None:
    body = request("ping")
    del body["requesttime"]
    assert mosip.ask(body).failure == "9"


def test_ABIS3009_duplicate_insert_is_refused_with_10(
    adapter: AbisService, mosip: Mosip, datashare: DatashareServer, gallery: dict[str, str]
) -> None:
    reference_id = gallery["other_0"]
    fetched = len(datashare.fetched)
    url = datashare.url(f"/v1/datashare/get/{reference_id}")
    assert mosip.ask(request("insert", referenceId=reference_id, referenceURL=url)).failure == "10"
    assert len(datashare.fetched) == fetched, "a duplicate must be refused before the datashare is fetched"


def test_ABIS3010_cbeff_without_face_data_is_refused_with_11(
    adapter: AbisService, mosip: Mosip, datashare: DatashareServer, faces_dir: Path
) -> None:
    face = jpeg_2000_face(photo(faces_dir, OTHERS[0]))
    reference_id = new_id()
    url = datashare.publish_faces(f"/v1/datashare/get/{reference_id}", [face], empty_bdb=True)
    assert mosip.ask(request("insert", referenceId=reference_id, referenceURL=url)).failure == "11"


def test_ABIS3011_identify_of_an_unknown_reference_is_refused_with_12(
    adapter: AbisService, mosip: Mosip
) -> None:
    assert mosip.ask(request("identify", referenceId=new_id())).failure == "12"


def test_ABIS3012_wrong_version_is_refused_with_13(adapter: AbisService, mosip: Mosip) -> None:
    assert mosip.ask(request("ping", version="0.9")).failure == "13"


def test_ABIS3013_unknown_id_is_refused_with_14(adapter: AbisService, mosip: Mosip) -> None:
    assert mosip.ask(request("ping", id="mosip.abis.search")).failure == "14"


@pytest.mark.parametrize("moment", ["29/03/2020 07:01", "2020-03-29", "2020-03-29T07:01:24"])
def test_ABIS3014_malformed_requesttime_is_refused_with_15(
    adapter: AbisService, mosip: Mosip, moment: str
) -> None:
    assert mosip.ask(request("ping", requesttime=moment)).failure == "15"


@pytest.mark.parametrize(
    "document",
    [b"<not xml", b"<Other/>", b"<BIR><BIR><BDBInfo><Type>Face</Type></BDBInfo><BDB>QUJD</BDB></BIR></BIR>"],
)
def test_ABIS3015_invalid_cbeff_is_refused_with_16(
    adapter: AbisService, mosip: Mosip, datashare: DatashareServer, document: bytes
) -> None:
    reference_id = new_id()
    url = datashare.publish_plaintext(f"/v1/datashare/get/{reference_id}", document)
    assert mosip.ask(request("insert", referenceId=reference_id, referenceURL=url)).failure == "16"


def test_ABIS3016_expired_datashare_is_refused_with_17(
    adapter: AbisService, mosip: Mosip, datashare: DatashareServer
) -> None:
    url = datashare.publish_expired("/v1/datashare/get/expired")
    assert mosip.ask(request("insert", referenceId=new_id(), referenceURL=url)).failure == "17"
    gone = datashare.publish("/v1/datashare/get/gone", 410, b"")
    assert mosip.ask(request("insert", referenceId=new_id(), referenceURL=gone)).failure == "17"


def test_ABIS3017_image_without_a_face_fails_the_quality_check_with_18(
    adapter: AbisService, mosip: Mosip, datashare: DatashareServer
) -> None:
    out = io.BytesIO()
    Image.new("RGB", (200, 240), (128, 128, 128)).save(
        out, "JPEG2000", quality_mode="rates", quality_layers=[10]
    )
    blank = FaceImage(FaceRecordFormat.ISO_19794_5, ImageEncoding.JPEG_2000, out.getvalue(), 200, 240)
    reference_id = new_id()
    url = datashare.publish_faces(f"/v1/datashare/get/{reference_id}", [blank])
    assert mosip.ask(request("insert", referenceId=reference_id, referenceURL=url)).failure == "18"


def test_ABIS3018_identify_the_whole_database_finds_the_expected_duplicates(
    adapter: AbisService, mosip: Mosip, gallery: dict[str, str]
) -> None:
    for probe, expected in [
        ("same_0", [gallery["same_1"]]),
        ("same_1", [gallery["same_0"]]),
        ("other_0", []),
        ("other_1", []),
    ]:
        reply = mosip.ask(request("identify", referenceId=gallery[probe], flags={"maxResults": "10"}))
        assert reply.failure is None, reply.body
        assert candidates(reply.body) == expected, probe


def test_ABIS3019_identify_within_a_gallery_of_reference_ids(
    adapter: AbisService, mosip: Mosip, gallery: dict[str, str]
) -> None:
    within = {"referenceIds": [{"referenceId": gallery["same_1"]}, {"referenceId": gallery["other_0"]}]}
    reply = mosip.ask(request("identify", referenceId=gallery["same_0"], gallery=within))
    assert candidates(reply.body) == [gallery["same_1"]]
    without = {"referenceIds": [{"referenceId": gallery["other_0"]}, {"referenceId": gallery["other_1"]}]}
    reply = mosip.ask(request("identify", referenceId=gallery["same_0"], gallery=without))
    assert candidates(reply.body) == []


def test_ABIS3020_gallery_ids_not_inserted_are_refused_with_12(
    adapter: AbisService, mosip: Mosip, gallery: dict[str, str]
) -> None:
    within = {"referenceIds": [{"referenceId": gallery["same_1"]}, {"referenceId": new_id()}]}
    assert mosip.ask(request("identify", referenceId=gallery["same_0"], gallery=within)).failure == "12"


def test_ABIS3021_delete_then_identify(
    adapter: AbisService, mosip: Mosip, datashare: DatashareServer, faces_dir: Path
) -> None:
    first = insert(mosip, datashare, [jpeg_2000_face(photo(faces_dir, SAME_PERSON, 2))])
    second = insert(mosip, datashare, [jpeg_2000_face(photo(faces_dir, SAME_PERSON, 3))])
    assert second in candidates(mosip.ask(request("identify", referenceId=first)).body)
    assert mosip.ask(request("delete", referenceId=second)).failure is None
    assert second not in candidates(mosip.ask(request("identify", referenceId=first)).body)
    assert mosip.ask(request("identify", referenceId=second)).failure == "12"
    assert mosip.ask(request("delete", referenceId=second)).failure == "12"


def test_ABIS3022_pending_jobs_at_rest_is_zero(
    adapter: AbisService, mosip: Mosip, gallery: dict[str, str]
) -> None:
    reply = mosip.ask(request("pendingJobs"))
    assert reply.failure is None and reply.body["jobscount"] == "0"


def test_ABIS3023_old_deployments_send_numbers(
    adapter: AbisService, mosip: Mosip, gallery: dict[str, str]
) -> None:
    reply = mosip.ask(
        request("identify", version=1.1, referenceId=gallery["same_0"], flags={"maxResults": 1})
    )
    assert reply.failure is None, reply.body
    assert candidates(reply.body) == [gallery["same_1"]]


def test_ABIS3024_target_fpir_needs_a_calibrated_gallery(
    adapter: AbisService, mosip: Mosip, gallery: dict[str, str]
) -> None:
    reply = mosip.ask(request("identify", referenceId=gallery["same_0"], flags={"targetFPIR": "30"}))
    assert reply.failure == "4"


def test_ABIS3026_target_fpir_follows_the_gallery_calibration(
    adapter: AbisService, mosip: Mosip, gallery: dict[str, str], lfw_embeddings: LfwEmbeddings
) -> None:
    strangers = [p for p in lfw_embeddings.identities() if p not in {SAME_PERSON, *OTHERS}][:IMPOSTORS]
    _, impostors = lfw_embeddings.first_faces(strangers)
    adapter.matcher.calibrate(adapter.references.gallery_id, impostors)
    probe = gallery["other_0"]
    # FPIR 10^(-0.5/10) = 0.89: a threshold that lets most strangers through lists candidates
    # for a probe that the gallery's own threshold (ABIS3018) finds no duplicate of.
    loose = mosip.ask(request("identify", referenceId=probe, flags={"targetFPIR": "0.5"}))
    assert loose.failure is None, loose.body
    assert candidates(loose.body), "the targetFPIR flag did not set the threshold"
    strict = mosip.ask(request("identify", referenceId=gallery["same_0"], flags={"targetFPIR": 10}))
    assert strict.failure is None, strict.body
    assert gallery["same_1"] in candidates(strict.body)


def test_ABIS3025_a_datashare_for_another_partner_is_refused_with_7(
    adapter: AbisService, mosip: Mosip, datashare: DatashareServer, faces_dir: Path
) -> None:
    reference_id = new_id()
    url = datashare.publish_faces(
        f"/v1/datashare/get/{reference_id}", [jpeg_2000_face(photo(faces_dir, OTHERS[0]))]
    )
    status, body = datashare.shares[url.split(str(datashare.server_address[1]), 1)[1]]
    tampered = bytearray(body)
    tampered[-10] ^= 0x01 if tampered[-10] != ord("A") else 0x02
    datashare.publish(f"/v1/datashare/get/{reference_id}", status, bytes(tampered))
    assert mosip.ask(request("insert", referenceId=reference_id, referenceURL=url)).failure == "7"


def test_a_replayed_request_id_gets_the_stored_answer(
    adapter: AbisService, mosip: Mosip, gallery: dict[str, str]
) -> None:
    body = request("identify", referenceId=gallery["same_0"])
    first = mosip.ask(body)
    mosip.send(body)
    for _ in range(300):
        if len(mosip.answers_to(str(body["requestId"]))) == 2:
            break
        time.sleep(0.1)
    again = mosip.answers_to(str(body["requestId"]))
    assert len(again) == 2 and again[1].body == first.body


def test_every_message_is_in_the_transparency_log_without_reference_ids(
    adapter: AbisService, mosip: Mosip, gallery: dict[str, str]
) -> None:
    mosip.ask(request("ping"))
    entries = adapter.audit_log.size()
    assert entries >= len(gallery) + 1
    log_bytes = adapter.config.audit_log_path.read_bytes()
    for reference_id in gallery.values():
        assert reference_id.encode() not in log_bytes
