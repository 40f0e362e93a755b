"""The CSCA folder: PEM and DER certificates, ICAO master lists vouched for by the folder's own CSCA, and
every wrong folder or file refused naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from safepassage.travel_document import CscaTrustStore, TrustStoreError
from safepassage.travel_document.trust_store import write_master_list
from tests.travel_document.issuer import make_csca, make_signer


def test_pem_der_and_bundles_are_read(tmp_path: Path) -> None:
    one, two, three = make_csca("UT"), make_csca("AA", "CSCA A"), make_csca("BB", "CSCA B")
    (tmp_path / "utopia.pem").write_bytes(one.pem())
    (tmp_path / "a.der").write_bytes(two.certificate.public_bytes(serialization.Encoding.DER))
    (tmp_path / "bundle.crt").write_bytes(three.pem() + one.pem())
    (tmp_path / "README.txt").write_text("ignored")
    store = CscaTrustStore.load(tmp_path)
    assert len(store.certificates) == 4
    assert store.named(one.certificate.subject) == [one.certificate, one.certificate]
    assert store.named(two.certificate.subject) == [two.certificate]


def test_wrong_folders_and_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TrustStoreError, match="does not exist"):
        CscaTrustStore.load(tmp_path / "missing")
    with pytest.raises(TrustStoreError, match="holds no CSCA certificates"):
        CscaTrustStore.load(tmp_path)
    (tmp_path / "broken.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(TrustStoreError, match=r"broken\.pem is not a PEM"):
        CscaTrustStore.load(tmp_path)
    (tmp_path / "broken.pem").unlink()
    (tmp_path / "junk.der").write_bytes(b"\x30\x03\x02\x01\x00")
    with pytest.raises(TrustStoreError, match=r"junk\.der is not a DER"):
        CscaTrustStore.load(tmp_path)
    (tmp_path / "junk.der").unlink()
    signer = make_signer(make_csca())
    (tmp_path / "signer.pem").write_bytes(signer.pem())  # a Document Signer is no CSCA
    with pytest.raises(TrustStoreError, match="not a CA"):
        CscaTrustStore.load(tmp_path)


def test_a_master_list_vouched_for_by_the_folders_csca_adds_its_cscas(tmp_path: Path) -> None:
    own = make_csca("UT")
    listed = [make_csca("AA", "CSCA A"), make_csca("BB", "CSCA B")]
    list_signer = make_signer(own, name="Master List Signer Utopia")
    (tmp_path / "utopia.pem").write_bytes(own.pem())
    master_list = write_master_list([c.certificate for c in listed], list_signer.key, list_signer.certificate)
    (tmp_path / "icao.ml").write_bytes(master_list)
    store = CscaTrustStore.load(tmp_path)
    assert set(store.certificates) == {own.certificate, *(c.certificate for c in listed)}


def test_a_master_list_nobody_here_vouches_for_is_refused(tmp_path: Path) -> None:
    own, stranger = make_csca("UT"), make_csca("XX", "CSCA Elsewhere")
    list_signer = make_signer(stranger, name="Master List Signer Elsewhere")
    (tmp_path / "utopia.pem").write_bytes(own.pem())
    (tmp_path / "other.ml").write_bytes(
        write_master_list([stranger.certificate], list_signer.key, list_signer.certificate)
    )
    with pytest.raises(
        TrustStoreError, match=r"other\.ml: its signer was not issued by a CSCA of this folder"
    ):
        CscaTrustStore.load(tmp_path)


def test_an_altered_master_list_is_refused(tmp_path: Path) -> None:
    own = make_csca("UT")
    list_signer = make_signer(own, name="Master List Signer Utopia")
    (tmp_path / "utopia.pem").write_bytes(own.pem())
    data = write_master_list(
        [make_csca("AA", "CSCA A").certificate], list_signer.key, list_signer.certificate
    )
    # Swap a byte of the listed CSCA's name: the signed digest no longer matches.
    altered = data.replace(b"CSCA A", b"CSCA Z")
    assert altered != data
    (tmp_path / "icao.ml").write_bytes(altered)
    with pytest.raises(TrustStoreError, match="SIGNED_CONTENT_DIGEST_MISMATCH"):
        CscaTrustStore.load(tmp_path)
    (tmp_path / "icao.ml").write_bytes(data[:100])
    with pytest.raises(TrustStoreError, match="not a valid CMS SignedData"):
        CscaTrustStore.load(tmp_path)
