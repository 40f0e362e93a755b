"""ePassport chip data (ICAO 9303): the MRZ, DG1, DG2's face, the SOD, and passive authentication.

What a reader application hands over after reading the chip (BAC or PACE over NFC is the reader's
job): the bytes of EF.DG1, EF.DG2 and EF.SOD. Typical use (every failure raises a
:class:`TravelDocumentError`)::

    face = read_dg2(dg2_bytes).first               # ISO/IEC 19794-5 or 39794-5; JPEG or JPEG 2000
    mrz = read_dg1(dg1_bytes)                      # check digits checked
    trust = CscaTrustStore.load(Path("csca"))      # the deployment's CSCA certificates
    proved = authenticate(read_sod(sod_bytes), {1: dg1_bytes, 2: dg2_bytes}, trust, now)
    # PassiveAuthenticationFailed(reason=DATA_GROUP_HASH_MISMATCH) if the photo was swapped

Writers for the same (write_dg1, write_dg2, write_sod, mrz.compose) make what the readers read;
the tests build documents with them. Nothing here decodes an image: the face pipeline does.
"""

from safepassage.travel_document.dg1 import read_dg1, write_dg1
from safepassage.travel_document.dg2 import Dg2, read_dg2, write_dg2
from safepassage.travel_document.errors import (
    AuthenticationFailure,
    DocumentTooLarge,
    MalformedDocument,
    MrzCheckDigitMismatch,
    PassiveAuthenticationFailed,
    TravelDocumentError,
    TrustStoreError,
    UnsupportedDocumentFormat,
)
from safepassage.travel_document.face_image import FaceImage, FaceRecordFormat, FeaturePoint, ImageEncoding
from safepassage.travel_document.mrz import Mrz, MrzFormat
from safepassage.travel_document.passive_authentication import PassiveAuthentication, authenticate
from safepassage.travel_document.sod import Sod, read_sod, write_sod
from safepassage.travel_document.trust_store import CscaTrustStore

__all__ = [
    "AuthenticationFailure",
    "CscaTrustStore",
    "Dg2",
    "DocumentTooLarge",
    "FaceImage",
    "FaceRecordFormat",
    "FeaturePoint",
    "ImageEncoding",
    "MalformedDocument",
    "Mrz",
    "MrzCheckDigitMismatch",
    "MrzFormat",
    "PassiveAuthentication",
    "PassiveAuthenticationFailed",
    "Sod",
    "TravelDocumentError",
    "TrustStoreError",
    "UnsupportedDocumentFormat",
    "authenticate",
    "read_dg1",
    "read_dg2",
    "read_sod",
    "write_dg1",
    "write_dg2",
    "write_sod",
]
