"""Holder credentials without faces: signing, sealing, dates, keys, the text and QR forms, and matching."""

from __future__ import annotations

import os
import stat
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safepassage.core.metric import Metric
from safepassage.credential import (
    CredentialExpired,
    CredentialKeyError,
    CredentialNotYetValid,
    CredentialTampered,
    HolderCredential,
    HolderMismatch,
    IssuerKey,
    IssuerPublicKey,
    MalformedCredential,
    ModelMismatch,
    NotForThisReader,
    ReaderKey,
    ReaderPublicKey,
    TrustedIssuers,
    UnknownIssuer,
    decode_text,
    issue,
    match,
    public_pem_path,
    qr_png,
    read_qr,
    verify,
)
from safepassage.credential.qr import encode_text

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
VALID_FOR = timedelta(days=365)
RECORD_ID = "rec-7f3c2a91-5b1e-4c0d-9a77-2e61f0c4d8b3"
MODEL = "dlib-resnet-v1"
ISSUER_KEY_ID = slice(17, 25)  # bytes of the issuer key id in the binary layout


@pytest.fixture(scope="module")
def issuer() -> IssuerKey:
    return IssuerKey.generate("la-strada")


@pytest.fixture(scope="module")
def officer() -> ReaderKey:
    return ReaderKey.generate()


@pytest.fixture(scope="module")
def server_reader() -> ReaderKey:
    return ReaderKey.generate()


@pytest.fixture(scope="module")
def template() -> np.ndarray:
    vector = np.random.default_rng(7).normal(0, 0.1, 128).astype(np.float32)
    return vector


@pytest.fixture(scope="module")
def trusted(issuer: IssuerKey) -> TrustedIssuers:
    return TrustedIssuers([issuer.public])


@pytest.fixture(scope="module")
def text(issuer: IssuerKey, officer: ReaderKey, server_reader: ReaderKey, template: np.ndarray) -> str:
    readers = [officer.public, server_reader.public]
    return issue(issuer, readers, RECORD_ID, template, MODEL, Metric.L2, 0.6, VALID_FOR, NOW)


def test_round_trip_for_every_reader(
    text: str, trusted: TrustedIssuers, officer: ReaderKey, server_reader: ReaderKey, template: np.ndarray
) -> None:
    assert text.startswith("SP1:") and len(text) < 1400
    for reader in (officer, server_reader):
        credential = verify(text, trusted, reader, NOW)
        assert credential.record_id == RECORD_ID
        assert (
            credential.issuer_id == "la-strada"
            and credential.issuer_key_id == trusted.get(credential.issuer_key_id).key_id
        )
        assert (credential.model, credential.metric, credential.threshold) == (MODEL, Metric.L2, 0.6)
        assert credential.issued_at == NOW and credential.expires_at == NOW + VALID_FOR
        assert credential.template.dtype == np.float32
        np.testing.assert_array_equal(credential.template, template)
        with pytest.raises(ValueError):
            credential.template[0] = 1.0  # read-only
        assert RECORD_ID not in repr(credential) and "template" not in repr(credential)
        assert not hasattr(credential.info, "record_id") and not hasattr(credential.info, "template")
        assert credential.info.credential_id == credential.credential_id


def test_every_tampered_byte_is_refused(text: str, trusted: TrustedIssuers, officer: ReaderKey) -> None:
    binary = decode_text(text)
    for offset in range(len(binary)):
        altered = bytearray(binary)
        altered[offset] ^= 0x01
        expected: tuple[type[Exception], ...] = (CredentialTampered, MalformedCredential)
        if ISSUER_KEY_ID.start <= offset < ISSUER_KEY_ID.stop:
            expected = (UnknownIssuer,)  # another key id names a key this device does not trust
        with pytest.raises(expected):
            verify(encode_text(bytes(altered)), trusted, officer, NOW)
    # A cut or lengthened credential is refused too.
    for cut in (binary[:-1], binary + b"\x00", binary[:100]):
        with pytest.raises(MalformedCredential):
            verify(encode_text(cut), trusted, officer, NOW)


def test_a_later_version_is_refused_as_malformed(
    text: str, trusted: TrustedIssuers, officer: ReaderKey
) -> None:
    binary = bytearray(decode_text(text))
    binary[0] = 0x02
    with pytest.raises(MalformedCredential, match="version 2"):
        verify(encode_text(bytes(binary)), trusted, officer, NOW)


def test_expired(text: str, trusted: TrustedIssuers, officer: ReaderKey) -> None:
    verify(text, trusted, officer, NOW + VALID_FOR + timedelta(minutes=4))  # within the clock skew
    with pytest.raises(CredentialExpired):
        verify(text, trusted, officer, NOW + VALID_FOR + timedelta(minutes=6))
    with pytest.raises(CredentialExpired):
        verify(text, trusted, officer, NOW + VALID_FOR + timedelta(seconds=1), skew=timedelta(0))


def test_not_yet_valid(text: str, trusted: TrustedIssuers, officer: ReaderKey) -> None:
    verify(text, trusted, officer, NOW - timedelta(minutes=4))
    with pytest.raises(CredentialNotYetValid):
        verify(text, trusted, officer, NOW - timedelta(minutes=6))
    with pytest.raises(CredentialNotYetValid):
        verify(text, trusted, officer, NOW - timedelta(minutes=1), skew=timedelta(0))


def test_an_untrusted_issuer_is_refused(text: str, officer: ReaderKey) -> None:
    other = IssuerKey.generate("another-ngo")
    with pytest.raises(UnknownIssuer, match="not trusted"):
        verify(text, TrustedIssuers([other.public]), officer, NOW)
    with pytest.raises(UnknownIssuer):
        verify(text, TrustedIssuers(), officer, NOW)


def test_a_trusted_key_id_with_another_keys_signature_is_tampered(
    issuer: IssuerKey, trusted: TrustedIssuers, officer: ReaderKey, template: np.ndarray
) -> None:
    forger_private = Ed25519PrivateKey.generate()
    forger = IssuerKey(forger_private, "forger")
    forged = bytearray(
        decode_text(issue(forger, [officer.public], RECORD_ID, template, MODEL, "l2", 0.6, VALID_FOR, NOW))
    )
    forged[ISSUER_KEY_ID] = bytes.fromhex(issuer.key_id)  # claim to be the trusted NGO ...
    body = bytes(forged[:-64])
    signed = body + forger_private.sign(body)  # ... and sign consistently with the forger's own key
    with pytest.raises(CredentialTampered, match="signature"):
        verify(encode_text(signed), trusted, officer, NOW)


def test_a_reader_not_among_the_recipients_cannot_open_it(text: str, trusted: TrustedIssuers) -> None:
    stranger = ReaderKey.generate()
    with pytest.raises(NotForThisReader, match=stranger.key_id):
        verify(text, trusted, stranger, NOW)


def test_the_code_reveals_no_record_id_model_or_template(
    text: str, template: np.ndarray, officer: ReaderKey, server_reader: ReaderKey
) -> None:
    binary = decode_text(text)
    assert RECORD_ID.encode() not in binary and RECORD_ID not in text
    assert MODEL.encode() not in binary
    for encoding in ("<f4", ">f4", "<f8"):
        raw = template.astype(encoding).tobytes()
        width = 2 * np.dtype(encoding).itemsize  # any two consecutive values
        assert not any(raw[i : i + width] in binary for i in range(0, len(raw) - width + 1, width // 2))
    assert struct.pack(">d", 0.6) not in binary  # the threshold is sealed too
    # What is in clear: the reader key ids, so a device can tell at once whether it may open it.
    assert bytes.fromhex(officer.key_id) in binary and bytes.fromhex(server_reader.key_id) in binary


def test_two_issues_of_the_same_template_share_nothing_but_the_clear_fields(
    issuer: IssuerKey, officer: ReaderKey, template: np.ndarray
) -> None:
    first, second = (
        decode_text(issue(issuer, [officer.public], RECORD_ID, template, MODEL, "l2", 0.6, VALID_FOR, NOW))
        for _ in range(2)
    )
    assert first[1:17] != second[1:17]  # random credential ids
    assert first[41:73] != second[41:73]  # fresh ephemeral keys
    assert first[-600:] != second[-600:]


def test_qr_png_round_trip(text: str, trusted: TrustedIssuers, officer: ReaderKey) -> None:
    png = qr_png(text)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    read = read_qr(png)
    assert read == text
    assert verify(read, trusted, officer, NOW).record_id == RECORD_ID


def test_qr_codes_for_one_to_four_readers_read_back_also_as_jpeg(
    issuer: IssuerKey, trusted: TrustedIssuers, officer: ReaderKey, template: np.ndarray
) -> None:
    readers = [officer.public] + [ReaderKey.generate().public for _ in range(3)]
    for count in range(1, 5):
        text = issue(issuer, readers[:count], RECORD_ID, template, MODEL, "l2", 0.6, VALID_FOR, NOW)
        image = cv2.imdecode(np.frombuffer(qr_png(text), np.uint8), cv2.IMREAD_GRAYSCALE)
        assert image is not None
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])
        assert ok and read_qr(jpeg.tobytes()) == text, f"{count} readers"
        verify(text, trusted, officer, NOW)


def test_read_qr_refuses_images_without_a_code() -> None:
    ok, blank = cv2.imencode(".png", np.full((240, 240), 255, np.uint8))
    assert ok
    with pytest.raises(MalformedCredential, match="no QR code"):
        read_qr(blank.tobytes())
    with pytest.raises(MalformedCredential, match="not a readable"):
        read_qr(b"GIF89a not really an image")
    with pytest.raises(MalformedCredential):
        read_qr(b"")


def test_oversize_input_is_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch, trusted: TrustedIssuers, officer: ReaderKey
) -> None:
    def must_not_run(_: object) -> bytes:
        raise AssertionError("base45 was asked to decode an oversize text")

    monkeypatch.setattr("safepassage.credential.qr.base45.b45decode", must_not_run)
    with pytest.raises(MalformedCredential, match="8001 characters"):
        verify("SP1:" + "A" * 7997, trusted, officer, NOW)
    with pytest.raises(MalformedCredential):
        qr_png("SP1:" + "A" * 7997)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "hello",
        "SP2:0EC",
        "SP1:",
        "SP1:abc",  # lower case is not base45
        "SP1:0E",  # a dangling base45 character
        "SP1:" + encode_text(os.urandom(400))[4:],
        "SP1:" + encode_text(b"\x01" + bytes(300))[4:],
    ],
)
def test_garbage_is_malformed(garbage: str, trusted: TrustedIssuers, officer: ReaderKey) -> None:
    with pytest.raises(MalformedCredential):
        verify(garbage, trusted, officer, NOW)


def test_bytes_are_not_text(trusted: TrustedIssuers, officer: ReaderKey) -> None:
    with pytest.raises(MalformedCredential):
        verify(b"SP1:0EC", trusted, officer, NOW)  # type: ignore[arg-type]


def test_issue_refuses_bad_arguments(issuer: IssuerKey, officer: ReaderKey, template: np.ndarray) -> None:
    good = dict(record_id=RECORD_ID, template=template, model=MODEL, metric="l2", threshold=0.6)
    cases = [
        ([], good, NOW, VALID_FOR),
        ([officer.public, officer.public], good, NOW, VALID_FOR),
        ([officer.public], {**good, "template": np.full(128, np.nan, np.float32)}, NOW, VALID_FOR),
        ([officer.public], {**good, "template": template.reshape(2, 64)}, NOW, VALID_FOR),
        ([officer.public], {**good, "record_id": ""}, NOW, VALID_FOR),
        ([officer.public], {**good, "metric": "manhattan"}, NOW, VALID_FOR),
        ([officer.public], {**good, "threshold": float("inf")}, NOW, VALID_FOR),
        ([officer.public], good, NOW.replace(tzinfo=None), VALID_FOR),
        ([officer.public], good, NOW, timedelta(0)),
    ]
    for readers, arguments, now, valid_for in cases:
        with pytest.raises(MalformedCredential):
            issue(issuer, readers, valid_for=valid_for, now=now, **arguments)  # type: ignore[arg-type]


def test_euclidean_is_an_alias_of_l2(
    issuer: IssuerKey, trusted: TrustedIssuers, officer: ReaderKey, template: np.ndarray
) -> None:
    text = issue(issuer, [officer.public], RECORD_ID, template, MODEL, "euclidean", 0.6, VALID_FOR, NOW)
    assert verify(text, trusted, officer, NOW).metric is Metric.L2


def _credential(template: np.ndarray, metric: Metric, threshold: float) -> HolderCredential:
    frozen = template.copy()
    frozen.flags.writeable = False
    return HolderCredential(
        credential_id="00" * 16,
        issuer_id="la-strada",
        issuer_key_id="11" * 8,
        issued_at=NOW,
        expires_at=NOW + VALID_FOR,
        model=MODEL,
        metric=metric,
        threshold=threshold,
        record_id=RECORD_ID,
        template=frozen,
    )


def test_match_by_l2_distance(template: np.ndarray) -> None:
    credential = _credential(template, Metric.L2, 0.6)
    close = template + np.float32(0.3 / np.sqrt(128))  # distance 0.3
    result = match(credential, close, MODEL)
    assert result.score == pytest.approx(0.3, abs=1e-5) and result.threshold == 0.6
    with pytest.raises(HolderMismatch, match="does not match"):
        match(credential, template + np.float32(0.7 / np.sqrt(128)), MODEL)


def test_match_by_cosine_similarity(template: np.ndarray) -> None:
    credential = _credential(template, Metric.COSINE, 0.5)
    assert match(credential, 3 * template, MODEL).score == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(HolderMismatch):
        match(credential, -template, MODEL)
    with pytest.raises(HolderMismatch):
        match(credential, np.zeros_like(template), MODEL)


def test_match_refuses_another_model_or_shape(template: np.ndarray) -> None:
    credential = _credential(template, Metric.L2, 0.6)
    with pytest.raises(ModelMismatch, match="arcface"):
        match(credential, template, "arcface-r100")
    with pytest.raises(ModelMismatch, match="shape"):
        match(credential, np.zeros(512, np.float32), MODEL)
    with pytest.raises(ModelMismatch):
        match(credential, np.full(128, np.nan, np.float32), MODEL)


def test_key_files(tmp_path: Path, officer: ReaderKey) -> None:
    issuer_path = tmp_path / "keys" / "issuer.pem"
    first = IssuerKey.load_or_create(issuer_path, "la-strada")
    assert stat.S_IMODE(issuer_path.stat().st_mode) == 0o600
    assert IssuerKey.load_or_create(issuer_path, "la-strada").key_id == first.key_id
    assert sorted(p.name for p in issuer_path.parent.iterdir()) == ["issuer.pem"]  # no temporary left

    public = tmp_path / "la-strada.pub.pem"
    public.write_bytes(first.public_pem())
    loaded = IssuerPublicKey.load(public)
    assert (loaded.issuer_id, loaded.key_id) == ("la-strada", first.key_id)
    assert IssuerPublicKey.load(public, "renamed").issuer_id == "renamed"
    trusted = TrustedIssuers.from_files([public])
    assert first.key_id in trusted and len(trusted) == 1

    reader_path = tmp_path / "reader.key"
    reader = ReaderKey.load_or_create(reader_path)
    assert stat.S_IMODE(reader_path.stat().st_mode) == 0o600
    assert ReaderKey.load(reader_path).key_id == reader.key_id
    assert public_pem_path(reader_path) == tmp_path / "reader.pub.pem"
    assert ReaderPublicKey.from_pem(reader.public_pem()).key_id == reader.key_id

    with pytest.raises(CredentialKeyError, match="X25519"):
        ReaderKey.load(issuer_path)
    with pytest.raises(CredentialKeyError, match="Ed25519"):
        IssuerKey.load(reader_path, "la-strada")
    with pytest.raises(CredentialKeyError, match="Ed25519"):
        IssuerPublicKey.from_pem(officer.public_pem())
    with pytest.raises(CredentialKeyError, match="X25519"):
        ReaderPublicKey.from_pem(first.public_pem())
    with pytest.raises(CredentialKeyError):
        IssuerKey.load_or_create(tmp_path / "other.pem", "not an id!")
    with pytest.raises(CredentialKeyError, match="cannot read"):
        ReaderKey.load(tmp_path / "missing.key")
    reader_path.chmod(0o640)
    with pytest.raises(CredentialKeyError, match="group or others"):
        ReaderKey.load(reader_path)


def test_one_key_id_cannot_speak_for_two_issuers(issuer: IssuerKey) -> None:
    with pytest.raises(CredentialKeyError, match="both"):
        TrustedIssuers([issuer.public, IssuerPublicKey.from_key(issuer.public.key, "impostor")])
