"""Passive authentication over real SODs signed under a test CSCA: passes with ECDSA, RSA PKCS#1 v1.5 and
RSA-PSS; each way a document can be forged or out of date fails with its own precise reason; a
malformed SOD is refused cleanly."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from safepassage.travel_document import (
    AuthenticationFailure,
    CscaTrustStore,
    FaceRecordFormat,
    ImageEncoding,
    MalformedDocument,
    PassiveAuthenticationFailed,
    TravelDocumentError,
    authenticate,
    read_sod,
)
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

F = AuthenticationFailure


@pytest.fixture(scope="module")
def photos(faces_dir: Path) -> tuple[bytes, bytes]:
    return photo_of(faces_dir, "Tony_Blair", 1), photo_of(faces_dir, "Bill_Gates", 1)


@pytest.fixture(scope="module")
def csca() -> Authority:
    return make_csca()


@pytest.fixture(scope="module")
def signer(csca: Authority) -> Authority:
    return make_signer(csca)


@pytest.fixture(scope="module")
def trust(csca: Authority) -> CscaTrustStore:
    return CscaTrustStore.of([csca.certificate])


def check(chip: Chip, trust: CscaTrustStore, groups: dict[int, bytes] | None = None) -> object:
    return authenticate(read_sod(chip.sod), groups or {1: chip.dg1, 2: chip.dg2}, trust, NOW)


def refused(
    chip: Chip, trust: CscaTrustStore, groups: dict[int, bytes] | None = None
) -> AuthenticationFailure:
    with pytest.raises(PassiveAuthenticationFailed) as failure:
        check(chip, trust, groups)
    assert failure.value.reason.value in str(failure.value)
    return failure.value.reason


@pytest.mark.parametrize("record_format", list(FaceRecordFormat), ids=lambda f: f.name)
def test_a_genuine_chip_passes(photos, signer, trust, csca, record_format) -> None:  # type: ignore[no-untyped-def]
    chip = issue_chip(photos[0], signer, encoding=ImageEncoding.JPEG_2000, record_format=record_format)
    proved = authenticate(read_sod(chip.sod), {1: chip.dg1, 2: chip.dg2}, trust, NOW)
    assert proved.data_groups == (1, 2) and proved.hash_algorithm == "sha256"
    assert proved.country == "UT" and proved.signing_time_signed
    assert proved.csca_sha256 == csca.certificate.fingerprint(hashes.SHA256()).hex()


@pytest.mark.parametrize("pss", [False, True], ids=["pkcs1v15", "pss"])
@pytest.mark.parametrize("hash_algorithm", ["sha256", "sha512"])
def test_rsa_document_signers_pass(photos, csca, trust, pss: bool, hash_algorithm: str) -> None:  # type: ignore[no-untyped-def]
    rsa_signer = make_signer(csca, key=_rsa_key())
    chip = issue_chip(photos[0], rsa_signer, pss=pss, hash_algorithm=hash_algorithm)
    sod = read_sod(chip.sod)
    assert sod.signed.signature_scheme == ("rsassa_pss" if pss else "rsassa_pkcs1v15")
    assert sod.hash_algorithm == hash_algorithm
    authenticate(sod, {2: chip.dg2}, trust, NOW)


_RSA: list[rsa.RSAPrivateKey] = []


def _rsa_key() -> rsa.RSAPrivateKey:
    if not _RSA:
        _RSA.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _RSA[0]


def test_an_rsa_csca_issues_an_ecdsa_signer(photos) -> None:  # type: ignore[no-untyped-def]
    csca = make_csca(key=_rsa_key())
    chip = issue_chip(photos[0], make_signer(csca))
    check(chip, CscaTrustStore.of([csca.certificate]))


def test_a_swapped_photo_fails_on_dg2s_hash(photos, signer, trust) -> None:  # type: ignore[no-untyped-def]
    genuine = issue_chip(photos[0], signer)
    impostor = issue_chip(photos[1], signer)
    swapped = Chip(genuine.dg1, impostor.dg2, genuine.sod)
    assert refused(swapped, trust) is F.DATA_GROUP_HASH_MISMATCH


def test_a_tampered_dg2_byte_fails_on_its_hash(photos, signer, trust) -> None:  # type: ignore[no-untyped-def]
    chip = issue_chip(photos[0], signer)
    tampered = bytearray(chip.dg2)
    tampered[-10] ^= 0x01
    assert refused(Chip(chip.dg1, bytes(tampered), chip.sod), trust) is F.DATA_GROUP_HASH_MISMATCH


def test_a_sod_signed_over_a_wrong_hash_fails(photos, signer, trust) -> None:  # type: ignore[no-untyped-def]
    chip = issue_chip(photos[0], signer, hashes={2: hashlib.sha256(b"another portrait").digest()})
    assert refused(chip, trust) is F.DATA_GROUP_HASH_MISMATCH


def test_a_hash_edited_in_the_sod_fails_on_the_signed_digest(photos, signer, trust) -> None:  # type: ignore[no-untyped-def]
    genuine = issue_chip(photos[0], signer)
    impostor = issue_chip(photos[1], signer)
    # The forger puts the impostor portrait's hash into the signed content; the signature still verifies.
    edited = genuine.sod.replace(hashlib.sha256(genuine.dg2).digest(), hashlib.sha256(impostor.dg2).digest())
    assert edited != genuine.sod
    assert refused(Chip(genuine.dg1, impostor.dg2, edited), trust) is F.SIGNED_CONTENT_DIGEST_MISMATCH


def test_a_broken_signature_fails(photos, signer, trust) -> None:  # type: ignore[no-untyped-def]
    chip = issue_chip(photos[0], signer)
    broken = chip.sod[:-1] + bytes([chip.sod[-1] ^ 0x01])  # the signature's last byte
    assert refused(Chip(chip.dg1, chip.dg2, broken), trust) is F.SIGNATURE_INVALID


def test_an_expired_document_signer_fails(photos, csca, trust) -> None:  # type: ignore[no-untyped-def]
    expired = make_signer(csca, not_before=NOW - 6 * YEAR, not_after=NOW - YEAR)
    assert refused(issue_chip(photos[0], expired), trust) is F.DOCUMENT_SIGNER_EXPIRED
    # Signed while it was valid (the chain model): still proved today.
    check(issue_chip(photos[0], expired, signing_time=NOW - 2 * YEAR), trust)


def test_a_document_signer_not_yet_valid_fails(photos, csca, trust) -> None:  # type: ignore[no-untyped-def]
    early = make_signer(csca, not_before=NOW + datetime.timedelta(hours=2), not_after=NOW + YEAR)
    assert refused(issue_chip(photos[0], early), trust) is F.DOCUMENT_SIGNER_NOT_YET_VALID


def test_without_a_signing_time_the_check_time_is_used(photos, csca, trust) -> None:  # type: ignore[no-untyped-def]
    expired = make_signer(csca, not_before=NOW - 6 * YEAR, not_after=NOW - YEAR)
    assert refused(issue_chip(photos[0], expired, signing_time=None), trust) is F.DOCUMENT_SIGNER_EXPIRED
    chip = issue_chip(photos[0], make_signer(csca), signing_time=None)
    proved = authenticate(read_sod(chip.sod), {2: chip.dg2}, trust, NOW)
    assert not proved.signing_time_signed and proved.signing_time == NOW


def test_a_signing_time_in_the_future_fails(photos, signer, trust) -> None:  # type: ignore[no-untyped-def]
    chip = issue_chip(photos[0], signer, signing_time=NOW + 3 * datetime.timedelta(days=1))
    assert refused(chip, trust) is F.SIGNING_TIME_IN_FUTURE


def test_a_foreign_csca_is_unknown(photos, trust) -> None:  # type: ignore[no-untyped-def]
    foreign = make_csca(country="XX", name="CSCA Elsewhere")
    assert refused(issue_chip(photos[0], make_signer(foreign)), trust) is F.CSCA_UNKNOWN


def test_a_forger_csca_of_the_same_name_did_not_issue_it(photos, trust) -> None:  # type: ignore[no-untyped-def]
    forger = make_csca()  # "CSCA Utopia", UT, with the forger's own key
    chip = issue_chip(photos[0], make_signer(forger))
    assert refused(chip, trust) is F.DOCUMENT_SIGNER_NOT_ISSUED_BY_CSCA


def test_an_expired_csca_fails(photos) -> None:  # type: ignore[no-untyped-def]
    old = make_csca(not_before=NOW - 20 * YEAR, not_after=NOW - 10 * YEAR)
    chip = issue_chip(photos[0], make_signer(old, not_before=NOW - YEAR, not_after=NOW + YEAR))
    assert refused(chip, CscaTrustStore.of([old.certificate])) is F.CSCA_NOT_VALID


def test_a_csca_key_rollover_finds_the_right_key(photos, csca) -> None:  # type: ignore[no-untyped-def]
    newer = make_csca()  # same name, a new key: both trusted
    chip = issue_chip(photos[0], make_signer(csca))
    check(chip, CscaTrustStore.of([newer.certificate, csca.certificate]))


def test_a_data_group_the_sod_does_not_list_fails(photos, signer, trust) -> None:  # type: ignore[no-untyped-def]
    chip = issue_chip(photos[0], signer)
    assert refused(chip, trust, {2: chip.dg2, 3: b"\x63\x00"}) is F.DATA_GROUP_NOT_IN_SOD


def test_malformed_sods_are_refused_cleanly(photos, signer) -> None:  # type: ignore[no-untyped-def]
    sod = issue_chip(photos[0], signer).sod
    for end in range(0, len(sod) - 1, 3):
        with pytest.raises(TravelDocumentError):
            read_sod(sod[:end])
    rng = random.Random(9303)
    for _ in range(1500):
        corrupt = bytearray(sod)
        for _ in range(rng.randint(1, 3)):
            corrupt[rng.randrange(len(sod))] = rng.randrange(256)
        with contextlib.suppress(TravelDocumentError):
            read_sod(bytes(corrupt))
    with pytest.raises(MalformedDocument, match="tag 75"):
        read_sod(b"\x75" + sod[1:])
