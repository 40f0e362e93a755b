"""The signature recipes (safepassage.core.signing, certificates, key_agreement): what they refuse, and
that keys, signatures, tree heads, cosignatures and receipts made before them still load and verify.

The vectors were made by the code as it was before signing moved into ``safepassage.core``
(commit a5d377a): an Ed25519 key file as ``key_files.create_private_pem`` wrote it, and what that key
signed then. Ed25519 is deterministic, so today's code must write the very same bytes; ECDSA is not,
so the old EC signature must verify.
"""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from safepassage.audit import SignedTreeHead, key_id, load_signing_key, verify_tree_head
from safepassage.audit.cosignature import Cosignature, verify_cosignature
from safepassage.core import certificates, key_agreement, key_files, signing
from safepassage.core.errors import DataIntegrityError, FailedPrecondition
from safepassage.enrolment import StationKey, verify_receipt
from safepassage.enrolment.receipts import ReceiptKind

MESSAGE = b"safepassage signing vector"
OLD_KEY_PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIMjJysvMzc7P0NHS09TV1tfY2drb3N3e3+Dh4uPk5ebn\n"
    "-----END PRIVATE KEY-----\n"
)
OLD_PUBLIC_PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAMrU+iC49qsGA16X2Ik1htkAbQ/kB2wnw5NhM5OSicYs=\n"
    "-----END PUBLIC KEY-----\n"
)
OLD_KEY_ID = "8ea61a8426ab8a9457df9cf110ee39200cdbdf9f48b891c78b0edadd1ff90d3d"
OLD_SIGNATURE = bytes.fromhex(
    "a8be9a1851cb608cf967d4204e24ebd3013c1b4c03f0fb1f5c9f64d9cbeef617"
    "cb0356febd67515ca345cac3bf22aec620dc7014ee4dbaacfcd9e027fc88b806"
)
OLD_TREE_HEAD = (
    '{"sha256_root_hash":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","timestamp":1700000000000,'
    '"tree_head_signature":"JfR7rY4i9Tu73C5zYhQisurmnrPOkC45SinYakhdZmE7SWLSwu/wd7hFhTVMOdoOIoZtfjsQHdghAttozCcNBg==",'
    '"tree_size":3,"version":1}'
)
OLD_COSIGNATURE = (
    '{"sha256_root_hash":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",'
    '"signature":"VfiW994MqfQLJlfNw23frqkqmL0DYDXy4KaIVFAVvZ4yXRIJR9Q+use5mI0hWiTkGWJFyOwZe1Gh409bOV1JBA==",'
    '"timestamp":1700000000,"tree_size":3,"witness":"w1",'
    f'"witness_key_id":"{OLD_KEY_ID}"}}'
)
OLD_RECEIPT = (
    '{"receipt":{"body":{"a":"b"},"issued_at":"2025-01-02T00:00:00Z","key_id":"8ea61a8426ab8a94",'
    '"kind":"consent","record_id":"rec-1","station_id":"station-1","v":1},'
    '"signature":"1wujvS3wbrKesqWxwjCw2kiGZj7iAs6wcVgb5LAcX0HcXEsYIpQ3oC/dkLXcyw/rZcA8Z3bKInEP0f/fwNH2DA=="}'
)
OLD_EC_PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgAAAAAAAAAAAAAAAA\n"
    "AAAAAAAAAAAAAAAAAAAAAAdbzRWhRANCAAT7UDiPKUmNCpOtJexMNAN7nTzDzKR4\n"
    "frb+2r4rMAPqyJ93ZcqdYojm/3NPXNCPOlkhz1SyG7OYtQrA0ld/oHRy\n"
    "-----END PRIVATE KEY-----\n"
)
OLD_EC_SIGNATURE = bytes.fromhex(
    "3045022100bb07d2555c2feda7246a6a34a9d848ddf86c71a19a55b442dcc4f7dbfa5ba49e"
    "02201e0625eb297e0389c58b3e67019b139a49c1a67e943e2c39e1804263aed78038"
)


class Refused(FailedPrecondition):
    pass


def _key_file(folder: Path, pem: str, name: str = "old-key.pem") -> Path:
    path = folder / name
    path.write_text(pem)
    path.chmod(0o600)
    return path


def test_a_key_file_written_by_the_old_code_loads_and_signs_the_same_bytes(tmp_path: Path) -> None:
    path = _key_file(tmp_path, OLD_KEY_PEM)
    key = signing.ED25519.load(path, "test key", Refused)
    assert signing.sign(key, MESSAGE) == OLD_SIGNATURE
    public = key.public_key()
    assert key_files.public_pem(public) == OLD_PUBLIC_PEM.encode()
    assert signing.fingerprint(public) == OLD_KEY_ID and signing.fingerprint(public, 8) == OLD_KEY_ID[:16]
    assert key_files.private_pem(key) == OLD_KEY_PEM.encode()  # and it is written as it was
    # The same file, through the audit log's own loader and load-or-create (it is not replaced).
    assert key_id(load_signing_key(path).public_key()) == OLD_KEY_ID
    loaded, created = signing.ED25519.load_or_create(path, "test key", Refused)
    assert not created and signing.sign(loaded, MESSAGE) == OLD_SIGNATURE
    assert path.read_text() == OLD_KEY_PEM


def test_tree_heads_cosignatures_and_receipts_made_before_still_verify_and_are_made_alike(
    tmp_path: Path,
) -> None:
    key = signing.ED25519.load(_key_file(tmp_path, OLD_KEY_PEM), "test key", Refused)
    public = signing.ED25519.parse_public(OLD_PUBLIC_PEM.encode(), "the old public key", Refused)
    head = SignedTreeHead.from_line(OLD_TREE_HEAD)
    verify_tree_head(head, public)
    assert SignedTreeHead.sign(key, 3, 1_700_000_000_000, bytes(range(32))).to_line() == OLD_TREE_HEAD
    cosignature = Cosignature.from_line(OLD_COSIGNATURE)
    verify_cosignature(cosignature, public, OLD_KEY_ID)
    assert Cosignature.sign(key, "w1", OLD_KEY_ID, head, now=1_700_000_000).to_line() == OLD_COSIGNATURE
    assert verify_receipt(OLD_RECEIPT, OLD_PUBLIC_PEM.encode()).record_id == "rec-1"
    issued = datetime.datetime(2025, 1, 2, tzinfo=datetime.UTC)
    made = StationKey(key, "station-1").sign(ReceiptKind.CONSENT, "rec-1", {"a": "b"}, now=issued)
    assert made.to_text() == OLD_RECEIPT


def test_a_signature_that_does_not_verify_raises() -> None:
    key = signing.ED25519.generate()
    public = key.public_key()
    signature = signing.sign(key, MESSAGE)
    signing.verify(public, signature, MESSAGE)  # returns: it verifies
    altered = bytes([signature[0] ^ 1]) + signature[1:]
    for bad_signature, message, verifier in (
        (altered, MESSAGE, public),  # altered
        (signature, MESSAGE + b".", public),  # over other bytes
        (signature, MESSAGE, signing.ED25519.generate().public_key()),  # by another key
        (signature[:63], MESSAGE, public),  # cut short
        (b"", MESSAGE, public),
    ):
        with pytest.raises(signing.SignatureInvalid) as raised:
            signing.verify(verifier, bad_signature, message)
        assert isinstance(raised.value, DataIntegrityError)  # a core category: the server maps it once


def test_ecdsa_signatures_by_a_certificate_key_old_and_new() -> None:
    key = signing.parse_certificate_signing_key(OLD_EC_PEM.encode(), "the old EC key", Refused)
    assert isinstance(key, signing.EcSigningKey)
    signing.verify(key.public_key(), OLD_EC_SIGNATURE, MESSAGE)
    signing.verify(key.public_key(), signing.sign(key, MESSAGE), MESSAGE)
    with pytest.raises(signing.SignatureInvalid):
        signing.verify(key.public_key(), OLD_EC_SIGNATURE, MESSAGE + b".")
    with pytest.raises(signing.SignatureInvalid):
        signing.verify(key.public_key(), b"not DER", MESSAGE)


def test_keys_of_another_kind_or_no_key_are_refused_by_name(tmp_path: Path) -> None:
    ec_file = _key_file(tmp_path, OLD_EC_PEM, "ec.pem")
    with pytest.raises(Refused, match=r"ec\.pem' does not hold an Ed25519 private key"):
        signing.ED25519.load(ec_file, "test key", Refused)
    with pytest.raises(Refused, match="does not hold an X25519 private key"):
        key_agreement.X25519.load(ec_file, "reader key", Refused)
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        signing.parse_certificate_signing_key(b"not a key", "the device key", ValueError)
    with pytest.raises(Refused, match="holds no readable PEM public key"):
        signing.ED25519.parse_public(b"not a key", "the pinned key", Refused)
    reader = key_agreement.X25519.generate()
    with pytest.raises(Refused, match="does not hold an Ed25519 public key"):
        signing.ED25519.parse_public(key_files.public_pem(reader.public_key()), "the pinned key", Refused)
    exposed = _key_file(tmp_path, OLD_KEY_PEM, "exposed.pem")
    exposed.chmod(0o644)
    with pytest.raises(Refused, match="chmod 600"):
        signing.ED25519.load(exposed, "test key", Refused)


def test_load_or_create_makes_one_private_key_and_then_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signer.pem"
    first, created = signing.ED25519.load_or_create(path, "test key", Refused)
    assert created and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = signing.ED25519.load_or_create(path, "test key", Refused)
    assert not created_again and signing.fingerprint(again.public_key()) == signing.fingerprint(
        first.public_key()
    )
    reader_path = tmp_path / "keys" / "reader.pem"
    reader, _ = key_agreement.X25519.load_or_create(reader_path, "reader key", Refused)
    peer = key_agreement.X25519.generate()
    shared = key_agreement.exchange(reader, key_agreement.public_bytes(peer.public_key()))
    assert shared == key_agreement.exchange(peer, key_agreement.public_bytes(reader.public_key()))
    assert sorted(p.name for p in path.parent.iterdir()) == ["reader.pem", "signer.pem"]  # nothing left over


def _certificate(
    subject: str, subject_key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(issuer_key, hashes.SHA256())
    )


def test_certificates_parse_check_their_issuer_and_hold_their_key() -> None:
    ca_key, device_key, stranger_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("ca", ca_key, "ca", ca_key)
    device = _certificate("device-1", device_key, "ca", ca_key)
    parsed = certificates.parse_pem(certificates.to_pem(device), "the device certificate", Refused)
    assert parsed == certificates.parse_der(certificates.to_der(device), "the token", Refused)
    certificates.check_issued_by(parsed, ca)
    with pytest.raises(signing.SignatureInvalid, match="does not verify"):
        certificates.check_issued_by(_certificate("device-1", device_key, "ca", stranger_key), ca)
    with pytest.raises(signing.SignatureInvalid):  # another issuer's name
        certificates.check_issued_by(_certificate("device-1", device_key, "other ca", ca_key), ca)
    assert certificates.holds_key(parsed, device_key) and not certificates.holds_key(parsed, stranger_key)
    statement = signing.sign(device_key, MESSAGE)
    signing.verify(certificates.verifying_key(parsed, "the device certificate", Refused), statement, MESSAGE)
    with pytest.raises(Refused, match="the device certificate is not a PEM certificate"):
        certificates.parse_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n", "the device certificate", Refused)
    with pytest.raises(Refused, match="the token is not a DER certificate"):
        certificates.parse_der(b"\x30\x03\x02\x01\x01", "the token", Refused)
