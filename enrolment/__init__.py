"""Protected identity records: consent, encryption, holder credentials, erasure.

A migrant worker enrols, with consent by scope, a record sealed under its own
data key (wrapped by a rotatable key-encryption key); they keep a signed
consent receipt, a recovery code and a signed holder credential. Officers
verify the holder 1:1 and see a minimal view; the PIN releases the full
record; a duress PIN looks the same and raises a protection referral.
Erasure destroys the data key and every KEK version an earlier backup could
use. `enrolment` asks `matcher` for templates and never touches FAISS.
"""

from enrolment.consent import ConsentDecision, ConsentText, Scope, ScopeGrant, decide
from enrolment.consent_changes import ConsentChanged, change_consent
from enrolment.custodian import KeyCustodian, Rotation
from enrolment.erasure import Erased, erase
from enrolment.errors import (
    ConsentRequired,
    EnrolmentError,
    HolderNotVerified,
    InvalidConsent,
    InvalidRecord,
    KeyDestroyed,
    KeyringError,
    PinLocked,
    ReceiptInvalid,
    RecordErased,
    RecordExists,
    RecordIntegrityError,
    RecordNotFound,
    WrongGallery,
    WrongKey,
)
from enrolment.kek import FileKeyring, KeyEncryptionKeys, WrappedKey
from enrolment.receipts import ReceiptKind, StationKey, verify_receipt
from enrolment.record import ProtectedRecord
from enrolment.referrals import Referral
from enrolment.service import (
    Enrolled,
    EnrolmentSettings,
    HolderRef,
    HolderVerified,
    IssuedCredential,
    ProtectedRecords,
)
from enrolment.vault import RecordVault
from enrolment.views import MinimalView, minimal_view

__all__ = [
    "ConsentChanged",
    "ConsentDecision",
    "ConsentRequired",
    "ConsentText",
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
    "MinimalView",
    "PinLocked",
    "ProtectedRecord",
    "ProtectedRecords",
    "ReceiptInvalid",
    "ReceiptKind",
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
    "change_consent",
    "decide",
    "erase",
    "minimal_view",
    "verify_receipt",
]
