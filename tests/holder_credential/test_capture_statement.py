"""Capture statements with the real keys of a test CA's client certificates and real face photos.

officer-1 (the session PKI's officer certificate) captures Walter Mondale's
photo; cam-1 is another device of the same deployment, whose key must not be
able to vouch for officer-1's captures.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import threading
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from safepassage.core import errors as core
from safepassage.core.errors import FailedPrecondition, InvalidInput, PermissionDenied, Unavailable
from safepassage.credential import (
    MAX_STATEMENT_BYTES,
    CaptureDeviceMismatch,
    CaptureError,
    CaptureImageMismatch,
    CaptureKeyError,
    CaptureNotFresh,
    CaptureReplayCacheFull,
    CaptureReplayed,
    CaptureSignatureInvalid,
    CaptureStatement,
    Liveness,
    LivenessNotAccepted,
    MalformedCaptureStatement,
    NonceCache,
    require_liveness,
    sign_capture,
    verify_capture,
)
from safepassage.server.errors import status_of
from safepassage.server.identity import Role
from safepassage.server.pki_issuance import IssuedCert
from tests.pki_helpers import RolePki

HOLDER = "lfw/Walter_Mondale/Walter_Mondale_0008.jpg"
SOMEONE_ELSE = "lfw/Vaclav_Havel/Vaclav_Havel_0007.jpg"
T0 = 1_750_000_000.0
HOLDER_PROOF = frozenset({Liveness.HEAD_TURN, Liveness.SUPERVISED})


@pytest.fixture(scope="module")
def officer(role_pki: RolePki) -> IssuedCert:
    return role_pki.clients[Role.OFFICER]


@pytest.fixture(scope="module")
def camera(role_pki: RolePki) -> IssuedCert:
    return role_pki.clients[Role.CCTV_EDGE]


@pytest.fixture(scope="module")
def image(faces_dir: Path) -> bytes:
    data = (faces_dir / HOLDER).read_bytes()
    assert data.startswith(b"\xff\xd8")  # a JPEG, as a device sends it
    return data


@pytest.fixture(scope="module")
def other_image(faces_dir: Path) -> bytes:
    return (faces_dir / SOMEONE_ELSE).read_bytes()


def signed(
    officer: IssuedCert, image: bytes, now: float = T0, liveness: Liveness = Liveness.SUPERVISED
) -> bytes:
    return sign_capture(officer.key_pem, officer.client_id, image, liveness, now)


def check(
    statement: bytes, image: bytes, officer: IssuedCert, now: float = T0, nonces: NonceCache | None = None
) -> CaptureStatement:
    return verify_capture(
        statement, image, officer.cert_pem, officer.client_id, now, NonceCache() if nonces is None else nonces
    )


def body_of(statement: bytes) -> dict[str, object]:
    encoded = statement.split(b".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4)))
    return decoded


def resign(key_pem: bytes, body: bytes) -> bytes:
    """A statement over any body bytes, properly signed: for layouts sign_capture would never make."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    head = b"SPCS1." + base64.urlsafe_b64encode(body).rstrip(b"=")
    signature = key.sign(head, ec.ECDSA(hashes.SHA256()))
    return head + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")


def test_a_statement_round_trips(officer: IssuedCert, image: bytes) -> None:
    statement = signed(officer, image, now=T0 + 0.7)
    assert statement.startswith(b"SPCS1.") and statement.count(b".") == 2
    assert len(statement) < MAX_STATEMENT_BYTES
    result = check(statement, image, officer, now=T0 + 5)
    assert result.device == "officer-1"
    assert result.image_sha256 == hashlib.sha256(image).hexdigest()
    assert result.captured_at == int(T0) and result.liveness is Liveness.SUPERVISED
    assert len(result.nonce) == 32
    assert body_of(statement) == {
        "captured_at": int(T0),
        "device": "officer-1",
        "image_sha256": result.image_sha256,
        "liveness": "supervised",
        "nonce": result.nonce,
    }
    require_liveness(result, HOLDER_PROOF)


def test_each_statement_has_its_own_nonce(officer: IssuedCert, image: bytes) -> None:
    first, second = signed(officer, image), signed(officer, image)
    assert first != second
    nonces = NonceCache()
    assert (
        check(first, image, officer, nonces=nonces).nonce
        != check(second, image, officer, nonces=nonces).nonce
    )


def test_liveness_none_is_not_enough_for_a_holder_proof(officer: IssuedCert, image: bytes) -> None:
    result = check(signed(officer, image, liveness=Liveness.NONE), image, officer)
    with pytest.raises(LivenessNotAccepted, match="head_turn or supervised"):
        require_liveness(result, HOLDER_PROOF)
    head_turn = check(signed(officer, image, liveness=Liveness.HEAD_TURN), image, officer)
    require_liveness(head_turn, HOLDER_PROOF)
    with pytest.raises(LivenessNotAccepted):
        require_liveness(head_turn, frozenset({Liveness.SUPERVISED}))


def test_another_image_is_refused(officer: IssuedCert, image: bytes, other_image: bytes) -> None:
    statement = signed(officer, image)
    with pytest.raises(CaptureImageMismatch, match="not the one"):
        check(statement, other_image, officer)
    flipped = bytearray(image)
    flipped[len(flipped) // 2] ^= 0x01
    with pytest.raises(CaptureImageMismatch):
        check(statement, bytes(flipped), officer)


def test_another_devices_key_cannot_vouch_for_this_device(
    officer: IssuedCert, camera: IssuedCert, image: bytes
) -> None:
    # cam-1 signs a statement in officer-1's name: officer-1's certificate does not verify it.
    forged = sign_capture(camera.key_pem, officer.client_id, image, Liveness.SUPERVISED, T0)
    with pytest.raises(CaptureSignatureInvalid, match="calling device"):
        check(forged, image, officer)
    # cam-1's own statement, replayed by officer-1.
    theirs = sign_capture(camera.key_pem, camera.client_id, image, Liveness.SUPERVISED, T0)
    with pytest.raises(CaptureSignatureInvalid):
        check(theirs, image, officer)


def test_the_statement_must_name_the_caller(officer: IssuedCert, camera: IssuedCert, image: bytes) -> None:
    statement = signed(officer, image)
    with pytest.raises(CaptureDeviceMismatch, match="another device") as refused:
        verify_capture(statement, image, officer.cert_pem, "officer-2", T0, NonceCache())
    assert "officer" not in str(refused.value)  # no values echoed
    # The caller id must be its certificate's too: cam-1's statement and certificate, as officer-1.
    theirs = sign_capture(camera.key_pem, camera.client_id, image, Liveness.SUPERVISED, T0)
    with pytest.raises(CaptureDeviceMismatch):
        verify_capture(theirs, image, camera.cert_pem, officer.client_id, T0, NonceCache())


def test_a_stale_statement_is_refused(officer: IssuedCert, image: bytes) -> None:
    statement = signed(officer, image)
    with pytest.raises(CaptureNotFresh, match="more than 120 s old"):
        check(statement, image, officer, now=T0 + 121)
    with pytest.raises(CaptureNotFresh, match="more than 10 s old"):
        verify_capture(statement, image, officer.cert_pem, "officer-1", T0 + 11, NonceCache(), max_age_s=10)
    assert check(statement, image, officer, now=T0 + 120).captured_at == int(T0)


def test_a_statement_from_the_future_is_refused(officer: IssuedCert, image: bytes) -> None:
    with pytest.raises(CaptureNotFresh, match="after the server's clock"):
        check(signed(officer, image, now=T0 + 31), image, officer)
    assert check(signed(officer, image, now=T0 + 30), image, officer).captured_at == int(T0) + 30


def test_a_statement_is_used_once(officer: IssuedCert, image: bytes) -> None:
    nonces = NonceCache()
    statement = signed(officer, image)
    check(statement, image, officer, nonces=nonces)
    with pytest.raises(CaptureReplayed, match="used before"):
        check(statement, image, officer, now=T0 + 1, nonces=nonces)
    assert len(nonces) == 1


def test_a_failed_check_does_not_spend_the_nonce(
    officer: IssuedCert, image: bytes, other_image: bytes
) -> None:
    nonces = NonceCache()
    statement = signed(officer, image)
    with pytest.raises(CaptureImageMismatch):
        check(statement, other_image, officer, nonces=nonces)
    assert len(nonces) == 0
    check(statement, image, officer, nonces=nonces)


def test_racing_replays_let_exactly_one_through(officer: IssuedCert, image: bytes) -> None:
    nonces = NonceCache()
    statement = signed(officer, image)
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def attempt() -> None:
        start.wait()
        try:
            check(statement, image, officer, nonces=nonces)
            outcomes.append("accepted")
        except CaptureReplayed:
            outcomes.append("replayed")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["accepted"] + ["replayed"] * 7


def test_the_nonce_cache_is_bounded_and_forgets_what_can_no_longer_pass(
    officer: IssuedCert, image: bytes
) -> None:
    nonces = NonceCache(capacity=2)
    check(signed(officer, image), image, officer, nonces=nonces)
    check(signed(officer, image, now=T0 + 60), image, officer, now=T0 + 60, nonces=nonces)
    with pytest.raises(CaptureReplayCacheFull, match="retry"):
        check(signed(officer, image, now=T0 + 61), image, officer, now=T0 + 61, nonces=nonces)
    # At T0 + 121 the first statement can no longer pass freshness: its nonce is forgotten.
    check(signed(officer, image, now=T0 + 121), image, officer, now=T0 + 121, nonces=nonces)
    assert len(nonces) == 2


def test_truncated_or_garbage_statements_are_malformed(officer: IssuedCert, image: bytes) -> None:
    statement = signed(officer, image)
    head, body, signature = statement.split(b".")
    for broken in (
        b"",
        b"garbage",
        statement[:20],
        statement[:-5],
        statement + b"x",
        statement + b".x",
        b"SPCS2." + statement[6:],
        head + b"." + body + b".",
        head + b".." + signature,
        head + b"." + body + b"!." + signature,
        statement.replace(b".", b"\n", 1),
    ):
        with pytest.raises((MalformedCaptureStatement, CaptureSignatureInvalid)):
            check(broken, image, officer)
    with pytest.raises(MalformedCaptureStatement):
        check(b"garbage", image, officer)
    with pytest.raises(MalformedCaptureStatement):
        check("SPCS1.abc.def", image, officer)  # type: ignore[arg-type]


def test_bodies_that_are_not_canonical_version_1_are_malformed_even_when_signed(
    officer: IssuedCert, image: bytes
) -> None:
    fields = body_of(signed(officer, image))
    variants: list[bytes] = [
        json.dumps(fields).encode(),  # spaces: not canonical
        json.dumps({**fields, "extra": 1}, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps({**fields, "liveness": "blink"}, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps({**fields, "captured_at": 1.5e9}, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps({**fields, "captured_at": True}, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps({**fields, "nonce": "00"}, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps({**fields, "device": "Officer 1"}, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps({**fields, "image_sha256": "AB" * 32}, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps([fields]).encode(),
        b"\xff\xfe",
    ]
    for body in variants:
        with pytest.raises(MalformedCaptureStatement):
            check(resign(officer.key_pem, body), image, officer)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    assert check(resign(officer.key_pem, canonical), image, officer).device == "officer-1"


def test_an_oversized_statement_is_refused_before_decoding(officer: IssuedCert, image: bytes) -> None:
    with pytest.raises(MalformedCaptureStatement, match=f"longer than {MAX_STATEMENT_BYTES}"):
        check(b"SPCS1." + b"A" * MAX_STATEMENT_BYTES + b".AAAA", image, officer)


def test_unusable_keys_and_certificates_are_refused(officer: IssuedCert, image: bytes) -> None:
    with pytest.raises(CaptureKeyError, match="device key"):
        sign_capture(b"not a key", "officer-1", image, Liveness.SUPERVISED, T0)
    with pytest.raises(CaptureKeyError, match="device key"):
        sign_capture(officer.cert_pem, "officer-1", image, Liveness.SUPERVISED, T0)
    with pytest.raises(MalformedCaptureStatement, match="client id"):
        sign_capture(officer.key_pem, "Officer One", image, Liveness.SUPERVISED, T0)
    with pytest.raises(MalformedCaptureStatement, match="liveness"):
        sign_capture(officer.key_pem, "officer-1", image, "blink", T0)  # type: ignore[arg-type]
    with pytest.raises(CaptureKeyError, match="certificate"):
        verify_capture(signed(officer, image), image, b"no certificate", "officer-1", T0, NonceCache())


def _ed25519_certificate(key: Ed25519PrivateKey, client_id: str) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, client_id)])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=30))
        .sign(key, None)
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def test_an_ed25519_device_key_works_too(image: bytes) -> None:
    key = Ed25519PrivateKey.generate()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    statement = sign_capture(key_pem, "kiosk-7", image, Liveness.HEAD_TURN, T0)
    certificate = _ed25519_certificate(key, "kiosk-7")
    result = verify_capture(statement, image, certificate, "kiosk-7", T0, NonceCache())
    assert result.liveness is Liveness.HEAD_TURN
    other = _ed25519_certificate(Ed25519PrivateKey.generate(), "kiosk-7")
    with pytest.raises(CaptureSignatureInvalid):
        verify_capture(statement, image, other, "kiosk-7", T0, NonceCache())


@pytest.mark.parametrize(
    ("error", "category", "status"),
    [
        (MalformedCaptureStatement, InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
        (CaptureKeyError, InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
        (CaptureSignatureInvalid, PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
        (CaptureDeviceMismatch, PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
        (CaptureImageMismatch, PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
        (CaptureReplayed, PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
        (LivenessNotAccepted, PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
        (CaptureNotFresh, FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
        (CaptureReplayCacheFull, Unavailable, grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_each_error_has_one_category_and_maps_to_its_status(
    error: type[CaptureError], category: type[Exception], status: grpc.StatusCode
) -> None:
    assert issubclass(error, CaptureError) and issubclass(error, category)
    categories = [c for c in vars(core).values() if isinstance(c, type) and c.__module__ == core.__name__]
    assert [c for c in categories if c is not core.SafePassageError and issubclass(error, c)] == [category]
    assert status_of(error("x")) is status
