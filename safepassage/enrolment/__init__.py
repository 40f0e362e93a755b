"""Protected identity records: consent, encryption, holder credentials, erasure.

A migrant worker enrols, with consent by scope, a record sealed under its own
data key (wrapped by a rotatable key-encryption key); they keep a signed
consent receipt, a recovery code and a signed holder credential. Officers
verify the holder 1:1 and see a minimal view; the PIN releases the full
record; a duress PIN looks the same and raises a protection referral.
Erasure destroys the data key and every KEK version an earlier backup could
use. Who may do what to a record is decided in one place, record_policy.py.
Protected templates live sealed in the vault and, while the server runs, in
memory (holder_templates.py); `enrolment` asks `matcher` only for gallery
settings and never touches FAISS.
"""

from safepassage.enrolment.consent import ConsentDecision, ConsentText, Scope, ScopeGrant, decide
from safepassage.enrolment.consent_changes import ConsentChanged, change_consent
from safepassage.enrolment.credential_desk import CredentialDesk, IssuedCredential
from safepassage.enrolment.custodian import KeyCustodian, Rotation
from safepassage.enrolment.erasure import Erased, complete_pending, erase
from safepassage.enrolment.errors import (
    ConsentRequired,
    CredentialRetired,
    EnrolmentError,
    HolderNotVerified,
    InvalidConsent,
    InvalidRecord,
    KeyDestroyed,
    KeyringError,
    LiveFaceRefused,
    PinLocked,
    ReceiptInvalid,
    RecordAccessDenied,
    RecordErased,
    RecordExists,
    RecordIntegrityError,
    RecordNotFound,
    WrongGallery,
    WrongKey,
)
from safepassage.enrolment.holder_proof import HolderRef, LiveFace, Located, Proved
from safepassage.enrolment.kek import FileKeyring, KeyEncryptionKeys, WrappedKey
from safepassage.enrolment.receipts import ReceiptKind, StationKey, verify_receipt
from safepassage.enrolment.record import ProtectedRecord
from safepassage.enrolment.record_policy import Action, Actor, ActorKind, Proof, admit_one_person
from safepassage.enrolment.referrals import Referral
from safepassage.enrolment.service import (
    DuplicateCheck,
    Enrolled,
    EnrolmentSettings,
    HolderVerified,
    ProtectedRecords,
)
from safepassage.enrolment.vault import RecordVault
from safepassage.enrolment.views import MinimalView, minimal_view

__all__ = [
    "Action",
    "Actor",
    "ActorKind",
    "ConsentChanged",
    "ConsentDecision",
    "ConsentRequired",
    "ConsentText",
    "CredentialDesk",
    "CredentialRetired",
    "DuplicateCheck",
    "Enrolled",
    "EnrolmentError",
    "EnrolmentSettings",
    "Erased",
    "FileKeyring",
    "HolderNotVerified",
    "HolderRef",
    "HolderVerified",
    "InvalidConsent",
    "InvalidRecord",
    "IssuedCredential",
    "KeyCustodian",
    "KeyDestroyed",
    "KeyEncryptionKeys",
    "KeyringError",
    "LiveFace",
    "LiveFaceRefused",
    "Located",
    "MinimalView",
    "PinLocked",
    "Proof",
    "ProtectedRecord",
    "ProtectedRecords",
    "Proved",
    "ReceiptInvalid",
    "ReceiptKind",
    "RecordAccessDenied",
    "RecordErased",
    "RecordExists",
    "RecordIntegrityError",
    "RecordNotFound",
    "RecordVault",
    "Referral",
    "Rotation",
    "Scope",
    "ScopeGrant",
    "StationKey",
    "WrappedKey",
    "WrongGallery",
    "WrongKey",
    "admit_one_person",
    "change_consent",
    "complete_pending",
    "decide",
    "erase",
    "minimal_view",
    "verify_receipt",
]
