"""Holder credentials: a signed, sealed face template a person carries, checked offline at a border.

An NGO issues one at enrolment (:func:`issue`), signed by its
:class:`IssuerKey` and sealed to the :class:`ReaderPublicKey` of each agency it
trusts. An officer's device that trusts the issuer (:class:`TrustedIssuers`)
and holds a :class:`ReaderKey` checks it with no server call (:func:`verify`),
then compares it with a live capture (:func:`match`). Reading the QR code
alone reveals no template and no personal data.

Typical use (every failed check raises a :class:`CredentialError`)::

    # at the NGO, when the person is enrolled
    issuer = IssuerKey.load_or_create(Path("keys/issuer.pem"), "la-strada")
    readers = [ReaderPublicKey.load(Path("readers/border-agency.pub.pem")), server_reader]
    text = issue(issuer, readers, record_id, template, model="dlib-resnet-v1", metric="l2",
                 threshold=0.6, valid_for=timedelta(days=365))
    card = qr_png(text)

    # on the officer's device, offline
    trusted = TrustedIssuers.from_files([Path("issuers/la-strada.pub.pem")])
    credential = verify(read_qr(photo_of_card), trusted, ReaderKey.load(Path("keys/reader.pem")))
    result = match(credential, live_embedding, model="dlib-resnet-v1")  # HolderMismatch if not the holder

Two companions travel with credentials. The issuer's signed revocation list
(:func:`sign_revocations`, :func:`verify_revocations`) lets an offline reader
refuse a credential that was re-issued or whose record was erased. A capture
statement (:func:`sign_capture`, :func:`verify_capture`) is a kiosk's or
officer device's signature, with its mTLS client key, over an image it has
just captured, so the server takes a face as live only from the calling
device, only fresh and only once.

What a reader without a reader key learns from the code: a random
credential id, the issuer's key id, the validity dates and the key ids of
the readers it is sealed to. The record id, the model, the threshold and the
template are sealed; the issuer's signature covers every byte.

This package is imported by the server and by edge devices alike, so it
depends only on numpy, cryptography, base45, segno and safepassage.core
(OpenCV is loaded lazily, to read a QR image).
"""

from __future__ import annotations

from safepassage.credential.capture_statement import (
    MAX_STATEMENT_BYTES,
    CaptureStatement,
    Liveness,
    NonceCache,
    require_liveness,
    sign_capture,
    verify_capture,
)
from safepassage.credential.credential import (
    MAX_READERS,
    CredentialInfo,
    HolderCredential,
    HolderMatch,
    issue,
    match,
    require_model,
    verify,
)
from safepassage.credential.errors import (
    CaptureDeviceMismatch,
    CaptureError,
    CaptureImageMismatch,
    CaptureKeyError,
    CaptureNotFresh,
    CaptureReplayCacheFull,
    CaptureReplayed,
    CaptureSignatureInvalid,
    CredentialError,
    CredentialExpired,
    CredentialKeyError,
    CredentialNotYetValid,
    CredentialRevoked,
    CredentialTampered,
    HolderMismatch,
    LivenessNotAccepted,
    MalformedCaptureStatement,
    MalformedCredential,
    MalformedRevocationList,
    ModelMismatch,
    NotForThisReader,
    RevocationListNotForIssuer,
    RevocationListStale,
    RevocationListTampered,
    UnknownIssuer,
)
from safepassage.credential.keys import (
    IssuerKey,
    IssuerPublicKey,
    ReaderKey,
    ReaderPublicKey,
    TrustedIssuers,
    public_pem_path,
    write_public_pem,
)
from safepassage.credential.qr import MAX_TEXT_CHARS, TEXT_PREFIX, decode_text, qr_png, read_qr
from safepassage.credential.revocation import (
    MAX_LIST_BYTES,
    RevocationList,
    sign_revocations,
    verify_revocations,
)

__all__ = [
    "MAX_LIST_BYTES",
    "MAX_READERS",
    "MAX_STATEMENT_BYTES",
    "MAX_TEXT_CHARS",
    "TEXT_PREFIX",
    "CaptureDeviceMismatch",
    "CaptureError",
    "CaptureImageMismatch",
    "CaptureKeyError",
    "CaptureNotFresh",
    "CaptureReplayCacheFull",
    "CaptureReplayed",
    "CaptureSignatureInvalid",
    "CaptureStatement",
    "CredentialError",
    "CredentialExpired",
    "CredentialInfo",
    "CredentialKeyError",
    "CredentialNotYetValid",
    "CredentialRevoked",
    "CredentialTampered",
    "HolderCredential",
    "HolderMatch",
    "HolderMismatch",
    "IssuerKey",
    "IssuerPublicKey",
    "Liveness",
    "LivenessNotAccepted",
    "MalformedCaptureStatement",
    "MalformedCredential",
    "MalformedRevocationList",
    "ModelMismatch",
    "NonceCache",
    "NotForThisReader",
    "ReaderKey",
    "ReaderPublicKey",
    "RevocationList",
    "RevocationListNotForIssuer",
    "RevocationListStale",
    "RevocationListTampered",
    "TrustedIssuers",
    "UnknownIssuer",
    "decode_text",
    "issue",
    "match",
    "public_pem_path",
    "qr_png",
    "read_qr",
    "require_liveness",
    "require_model",
    "sign_capture",
    "sign_revocations",
    "verify",
    "verify_capture",
    "verify_revocations",
    "write_public_pem",
]
