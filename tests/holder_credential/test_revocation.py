"""Issuer-signed revocation lists: signing, verifying offline, and a reader refusing a retired credential.

The last tests use real credentials and the real face pipeline: Walter
Mondale's photo 4 is enrolled, photo 8 is the live capture (as in
tests/camera_edge/test_holder_check.py).
"""

from __future__ import annotations

import argparse
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from safepassage.camera_edge.holder_check import HolderCheck
from safepassage.cli.credential_command import add_credential_parser, run_credential, save_revocations
from safepassage.core.metric import Metric
from safepassage.credential import (
    MAX_LIST_BYTES,
    CredentialInfo,
    CredentialRevoked,
    IssuerKey,
    MalformedRevocationList,
    ReaderKey,
    RevocationList,
    RevocationListNotForIssuer,
    RevocationListStale,
    RevocationListTampered,
    TrustedIssuers,
    UnknownIssuer,
    issue,
    sign_revocations,
    verify,
    verify_revocations,
)
from safepassage.face.pipeline import FacePipeline, PipelineSettings, RgbImage, load_pipeline

NOW = datetime(2025, 6, 1, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)
REVOKED_A = "0f" * 16
REVOKED_B = "a1" * 16
NOT_REVOKED = "5c" * 16
HOLDER_ENROLLED = "lfw/Walter_Mondale/Walter_Mondale_0004.jpg"
HOLDER_LIVE = "lfw/Walter_Mondale/Walter_Mondale_0008.jpg"
MODEL = "dlib-resnet-v1"
RECORD_ID = "rec-5e0c8b2a-7d41-4f3a-b6e9-0c2d7a1f4b58"


@pytest.fixture(scope="module")
def issuer() -> IssuerKey:
    return IssuerKey.generate("la-strada")


@pytest.fixture(scope="module")
def trusted(issuer: IssuerKey) -> TrustedIssuers:
    return TrustedIssuers([issuer.public])


@pytest.fixture(scope="module")
def signed(issuer: IssuerKey) -> bytes:
    entries = [(REVOKED_B, NOW + 300 * DAY), (REVOKED_A.upper(), NOW + 10 * DAY)]
    return sign_revocations(issuer, entries, NOW, DAY)


def info(credential_id: str, issuer_id: str = "la-strada") -> CredentialInfo:
    return CredentialInfo(
        credential_id=credential_id,
        issuer_id=issuer_id,
        issuer_key_id="00" * 8,
        issued_at=NOW - DAY,
        expires_at=NOW + 300 * DAY,
        model=MODEL,
        metric=Metric.L2,
        threshold=0.6,
    )


def test_a_list_round_trips(signed: bytes, trusted: TrustedIssuers, issuer: IssuerKey) -> None:
    body, signature, end = signed.split(b"\n")
    assert end == b"" and len(signature) == 86
    fields = json.loads(body)
    assert fields["format"] == "safepassage-revocations/1"
    assert [entry[0] for entry in fields["revoked"]] == [REVOKED_A, REVOKED_B]  # sorted, lower case
    listed = verify_revocations(signed, trusted, NOW + timedelta(hours=2))
    assert isinstance(listed, RevocationList)
    assert (listed.issuer_id, listed.issuer_key_id) == ("la-strada", issuer.key_id)
    assert listed.issued_at == NOW and listed.next_update == NOW + DAY
    assert listed.revoked == {REVOKED_A, REVOKED_B} and len(listed) == 2
    assert listed.is_revoked(REVOKED_A) and listed.is_revoked(REVOKED_B.upper())
    assert not listed.is_revoked(NOT_REVOKED)
    with pytest.raises(CredentialRevoked, match=f"credential {REVOKED_A} is revoked by issuer la-strada"):
        listed.check(info(REVOKED_A))
    listed.check(info(NOT_REVOKED))


def test_an_empty_list_is_a_list(issuer: IssuerKey, trusted: TrustedIssuers) -> None:
    listed = verify_revocations(sign_revocations(issuer, [], NOW, DAY), trusted, NOW)
    assert len(listed) == 0
    listed.check(info(REVOKED_A))


def test_expired_entries_are_dropped(issuer: IssuerKey, trusted: TrustedIssuers) -> None:
    entries = [
        (REVOKED_A, NOW - DAY),  # long expired: no reader accepts it anyway
        (REVOKED_B, NOW - timedelta(minutes=1)),  # verify still accepts it within the clock skew
        (NOT_REVOKED, NOW + DAY),
    ]
    listed = verify_revocations(sign_revocations(issuer, entries, NOW, DAY), trusted, NOW)
    assert listed.revoked == {REVOKED_B, NOT_REVOKED}


def test_a_tampered_entry_breaks_the_signature(signed: bytes, trusted: TrustedIssuers) -> None:
    for old, new in (
        (REVOKED_A.encode(), NOT_REVOKED.encode()),  # swap a revoked id for another (still sorted)
        (b'"next_update":', b'"next_update":1'),  # push the due date ~ far ahead
    ):
        tampered = signed.replace(old, new, 1)
        assert tampered != signed
        with pytest.raises(RevocationListTampered, match="signature"):
            verify_revocations(tampered, trusted, NOW)
    fields = json.loads(signed.split(b"\n")[0])
    fields["revoked"] = fields["revoked"][1:]  # drop a revoked credential, keep the form canonical
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(RevocationListTampered):
        verify_revocations(body + b"\n" + signed.split(b"\n")[1] + b"\n", trusted, NOW)


def test_a_list_of_another_issuer_is_refused(signed: bytes, trusted: TrustedIssuers) -> None:
    impostor = IssuerKey.generate("la-strada")  # same name, another key
    forged = sign_revocations(impostor, [], NOW, DAY)
    with pytest.raises(UnknownIssuer, match=r"revocation list .* not trusted"):
        verify_revocations(forged, trusted, NOW)
    with pytest.raises(UnknownIssuer):
        verify_revocations(signed, TrustedIssuers([IssuerKey.generate("other").public]), NOW)


def test_a_list_covers_its_own_issuers_credentials_only(signed: bytes, trusted: TrustedIssuers) -> None:
    listed = verify_revocations(signed, trusted, NOW)
    with pytest.raises(RevocationListNotForIssuer, match="cannot say"):
        listed.check(info(NOT_REVOKED, issuer_id="other-ngo"))


def test_a_stale_list_is_an_error(signed: bytes, trusted: TrustedIssuers) -> None:
    verify_revocations(signed, trusted, NOW + DAY + timedelta(minutes=4))  # within the grace
    with pytest.raises(RevocationListStale, match="due for renewal"):
        verify_revocations(signed, trusted, NOW + DAY + timedelta(minutes=6))
    with pytest.raises(RevocationListStale, match="after this device's clock"):
        verify_revocations(signed, trusted, NOW - timedelta(hours=1))
    listed = verify_revocations(signed, trusted, NOW)
    with pytest.raises(RevocationListStale):
        listed.require_current(NOW + 2 * DAY)


def test_malformed_lists_are_refused(signed: bytes, trusted: TrustedIssuers, issuer: IssuerKey) -> None:
    body, signature, _ = signed.split(b"\n")
    for broken in (
        b"",
        b"garbage",
        signed[:40],
        signed[:-2],
        body + b"\n",
        body + b"\n" + signature,  # no final line end
        body + b" \n" + signature + b"\n",
        b"{}\n" + signature + b"\n",
        body + b"\n" + signature[:-1] + b"!\n",
    ):
        with pytest.raises(MalformedRevocationList):
            verify_revocations(broken, trusted, NOW)
    with pytest.raises(MalformedRevocationList, match=f"larger than {MAX_LIST_BYTES}"):
        verify_revocations(b"{" + b" " * MAX_LIST_BYTES + b"}\n", trusted, NOW)
    with pytest.raises(MalformedRevocationList, match="32 hex"):
        sign_revocations(issuer, [("not-an-id", NOW)], NOW, DAY)
    with pytest.raises(MalformedRevocationList, match="future"):
        sign_revocations(issuer, [], NOW, timedelta(0))
    with pytest.raises(MalformedRevocationList, match="time zone"):
        verify_revocations(signed, trusted, NOW.replace(tzinfo=None))


# --- an offline reader with real credentials and the real pipeline ---


def rgb(path: Path) -> RgbImage:
    image = cv2.imread(str(path))
    assert image is not None, path
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


@pytest.fixture(scope="module")
def pipeline(model_dir: Path) -> FacePipeline:
    return load_pipeline(PipelineSettings(model_dir=model_dir))


@pytest.fixture(scope="module")
def officer() -> ReaderKey:
    return ReaderKey.generate()


@pytest.fixture(scope="module")
def enrolled(pipeline: FacePipeline, faces_dir: Path) -> np.ndarray:
    faces = pipeline.process(rgb(faces_dir / HOLDER_ENROLLED))
    assert len(faces) == 1
    return faces[0].embedding


def credential(issuer: IssuerKey, officer: ReaderKey, template: np.ndarray) -> tuple[str, str]:
    """A fresh credential's text and id."""
    text = issue(issuer, [officer.public], RECORD_ID, template, MODEL, Metric.L2, 0.6, 365 * DAY)
    return text, verify(text, TrustedIssuers([issuer.public]), officer).credential_id


def test_holder_check_refuses_a_revoked_credential(
    pipeline: FacePipeline,
    issuer: IssuerKey,
    trusted: TrustedIssuers,
    officer: ReaderKey,
    enrolled: np.ndarray,
    faces_dir: Path,
) -> None:
    live = rgb(faces_dir / HOLDER_LIVE)
    retired, retired_id = credential(issuer, officer, enrolled)  # the holder's previous credential
    current, current_id = credential(issuer, officer, enrolled)  # re-issued: the previous one is retired
    now = datetime.now(UTC)
    listed = verify_revocations(
        sign_revocations(issuer, [(retired_id, now + 365 * DAY)], now, DAY), trusted, now
    )
    check = HolderCheck(pipeline, trusted, officer, listed)
    frames = pipeline.times.frames
    with pytest.raises(CredentialRevoked, match=retired_id):
        check.check(retired, live)
    assert pipeline.times.frames == frames  # refused before the face is looked at
    result = check.check(current, live)
    assert result.credential_id == current_id and result.score < 0.6
    with pytest.raises(RevocationListStale):
        check.check(current, live, now=now + 2 * DAY)  # the list went stale while the device ran
    other = IssuerKey.generate("other-ngo")
    both = TrustedIssuers([issuer.public, other.public])
    uncovered, _ = credential(other, officer, enrolled)
    with pytest.raises(RevocationListNotForIssuer):
        HolderCheck(pipeline, both, officer, listed).check(uncovered, live)
    with pytest.raises(UnknownIssuer):
        HolderCheck(pipeline, TrustedIssuers([other.public]), officer, listed)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="safepassage")
    add_credential_parser(parser.add_subparsers(dest="command", required=True))
    return run_credential(parser.parse_args(argv))


def test_the_command_line_saves_a_checked_list_and_refuses_revoked_credentials(
    tmp_path: Path,
    issuer: IssuerKey,
    trusted: TrustedIssuers,
    enrolled: np.ndarray,
    faces_dir: Path,
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reader_file = tmp_path / "device" / "reader.key"
    officer = ReaderKey.load_or_create(reader_file)
    retired, retired_id = credential(issuer, officer, enrolled)
    current, _ = credential(issuer, officer, enrolled)
    now = datetime.now(UTC)
    signed_list = sign_revocations(issuer, [(retired_id, now + 365 * DAY)], now, DAY)

    saved = tmp_path / "device" / "revocations.json"
    assert save_revocations(signed_list, trusted, saved, now).revoked == {retired_id}
    assert saved.read_bytes() == signed_list and stat.S_IMODE(saved.stat().st_mode) == 0o644
    assert [p.name for p in saved.parent.iterdir() if p.name.endswith(".tmp")] == []
    # A list that fails its check never replaces the one the device holds.
    with pytest.raises(RevocationListTampered):
        save_revocations(signed_list.replace(retired_id.encode(), b"0" * 32), trusted, saved, now)
    with pytest.raises(UnknownIssuer):
        save_revocations(sign_revocations(IssuerKey.generate("x"), [], now, DAY), trusted, saved, now)
    assert saved.read_bytes() == signed_list

    issuer_pem = tmp_path / "la-strada.pub.pem"
    issuer_pem.write_bytes(issuer.public_pem())
    texts = {}
    for name, text in (("retired", retired), ("current", current)):
        texts[name] = tmp_path / f"{name}.txt"
        texts[name].write_text(text + "\n")
    common = [
        "--issuer-key",
        str(issuer_pem),
        "--reader-key",
        str(reader_file),
        "--model-dir",
        str(model_dir),
    ]
    face = ["--face", str(faces_dir / HOLDER_LIVE)]
    with_list = [*common, *face, "--revocations", str(saved)]

    assert run_cli(["credential", "verify", "--text", str(texts["retired"]), *common, *face]) == 0
    capsys.readouterr()
    assert run_cli(["credential", "verify", "--text", str(texts["retired"]), *with_list]) == 1
    captured = capsys.readouterr()
    assert (
        "VERIFIED" not in captured.out and f"NOT VERIFIED: credential {retired_id} is revoked" in captured.err
    )
    assert run_cli(["credential", "verify", "--text", str(texts["current"]), *with_list]) == 0
    assert capsys.readouterr().out.startswith("VERIFIED credential ")

    stale = tmp_path / "stale.json"
    stale.write_bytes(sign_revocations(issuer, [], now - 3 * DAY, DAY))
    stale_list = [*common, *face, "--revocations", str(stale)]
    assert run_cli(["credential", "verify", "--text", str(texts["current"]), *stale_list]) == 1
    assert "due for renewal" in capsys.readouterr().err
