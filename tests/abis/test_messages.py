"""The ABIS adapter without a broker: schema reasons, targetFPIR, datashare encryption, CBEFF, journal."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from benchmarks.mosip_datashare import NOW
from benchmarks.mosip_queues import request
from safepassage.abis.cbeff import read_cbeff_faces, write_cbeff
from safepassage.abis.datashare import PartnerKey, open_datashare, seal_datashare
from safepassage.abis.errors import AbisRefusal, FailureReason
from safepassage.abis.journal import JobJournal, JobState
from safepassage.abis.messages import Operation, read_request
from safepassage.travel_document import FaceImage, FaceRecordFormat, ImageEncoding


def _reason(body: dict[str, object] | bytes) -> FailureReason:
    with pytest.raises(AbisRefusal) as refused:
        read_request(body if isinstance(body, bytes) else json.dumps(body).encode())
    return refused.value.reason


def test_target_fpir_is_minus_ten_log10_of_the_rate() -> None:
    parsed = read_request(
        json.dumps(request("identify", referenceId="r1", flags={"targetFPIR": "30"})).encode()
    )
    assert parsed.operation is Operation.IDENTIFY
    assert parsed.fpir == pytest.approx(1e-3)
    assert read_request(
        json.dumps(request("identify", referenceId="r1", flags={"targetFPIR": 20})).encode()
    ).fpir == (pytest.approx(1e-2))


def test_numbers_and_strings_are_both_read() -> None:
    parsed = read_request(
        json.dumps(request("identify", version=1.1, referenceId="r1", flags={"maxResults": 3})).encode()
    )
    assert parsed.max_results == 3
    assert read_request(json.dumps(request("ping", version="1.1")).encode()).operation is Operation.PING


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", FailureReason.INVALID_REQUEST),
        (request("identify", referenceId="r1", flags={"maxResults": "-1"}), FailureReason.INVALID_REQUEST),
        (request("identify", referenceId="r1", flags={"maxResults": 2.5}), FailureReason.INVALID_REQUEST),
        (request("identify", referenceId="r1", gallery={"referenceIds": []}), FailureReason.INVALID_REQUEST),
        (
            request("identify", referenceId="r1", gallery={"referenceIds": [{}]}),
            FailureReason.MISSING_REFERENCE_ID,
        ),
        (request("delete"), FailureReason.MISSING_REFERENCE_ID),
        (request("insert", referenceId="r1", referenceURL=""), FailureReason.MISSING_REFERENCE_URL),
        (request("ping", id=None), FailureReason.INVALID_ID),
        (request("ping", requestId=""), FailureReason.MISSING_REQUEST_ID),
        (request("ping", version=None), FailureReason.INVALID_VERSION),
        (request("ping", requesttime="yesterday"), FailureReason.INVALID_REQUEST_TIME),
    ],
    ids=[
        "not-json",
        "negative-max-results",
        "fractional-max-results",
        "empty-gallery",
        "gallery-item-without-id",
        "delete-without-reference",
        "empty-reference-url",
        "no-id",
        "empty-request-id",
        "no-version",
        "bad-time",
    ],
)
def test_each_fault_earns_its_reason(body: dict[str, object] | bytes, reason: FailureReason) -> None:
    assert _reason(body) is reason


def _partner() -> PartnerKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "partner")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW)
        .sign(key, hashes.SHA256())
    )
    return PartnerKey(key, certificate)


def test_a_datashare_opens_only_under_its_partner_key() -> None:
    ours, theirs = _partner(), _partner()
    sealed = seal_datashare(b"<BIR/>", ours.certificate)
    assert open_datashare(sealed, ours) == b"<BIR/>"
    with pytest.raises(AbisRefusal) as refused:
        open_datashare(sealed, theirs)
    assert refused.value.reason is FailureReason.DATASHARE_UNAVAILABLE
    with pytest.raises(AbisRefusal):
        open_datashare(sealed[:-8] + b"AAAAAAAA", ours)


def test_cbeff_round_trip_and_refusals() -> None:
    jpeg = b"\xff\xd8\xff\xe0" + bytes(64)
    face = FaceImage(FaceRecordFormat.ISO_19794_5, ImageEncoding.JPEG, jpeg, 10, 10)
    [back] = read_cbeff_faces(write_cbeff([face]))
    assert back.data == jpeg and back.encoding is ImageEncoding.JPEG
    with pytest.raises(AbisRefusal) as refused:
        read_cbeff_faces(write_cbeff([face], empty_bdb=True))
    assert refused.value.reason is FailureReason.CBEFF_HAS_NO_DATA
    entity = b'<?xml version="1.0"?><!DOCTYPE BIR [<!ENTITY x "y">]><BIR>&x;</BIR>'
    with pytest.raises(AbisRefusal) as refused:
        read_cbeff_faces(entity)
    assert refused.value.reason is FailureReason.INVALID_CBEFF


def test_the_journal_keeps_answers_counts_pending_jobs_and_purges_old_answers(tmp_path: Path) -> None:
    journal = JobJournal.open(tmp_path / "journal.db")
    try:
        first = journal.receive("r1", "mosip.abis.insert")
        assert first.state is JobState.RECEIVED and journal.pending() == 1
        journal.writing("r1", "ref-1")
        journal.answered("r1", b'{"returnValue":"1"}')
        again = journal.receive("r1", "mosip.abis.insert")
        assert again.state is JobState.ANSWERED and again.answer == b'{"returnValue":"1"}'
        assert again.writes == "ref-1" and journal.pending() == 0
        journal.receive("r2", "mosip.abis.ping")
        assert journal.purge(60.0, now=time.time() + 3600) == 1  # the answered job, not the pending one
        assert journal.pending() == 1 and journal.answers() == 0
    finally:
        journal.close()
    reopened = JobJournal.open(tmp_path / "journal.db")
    assert reopened.pending() == 1
    reopened.close()
