"""The protected identity record: what a person enrols, and its canonical bytes.

A migrant worker whose papers are confiscated must still be able to prove who they are, so the
record keeps their details, documents (with a photo of each, and whether they still hold it), legal
entitlements and an NGO to call. It is sealed elsewhere (:mod:`safepassage.enrolment.record_cipher`); this
module makes sure what gets sealed is well formed and that one record always gives the same bytes.

Every value is checked in ``__post_init__``; a bad one raises :class:`InvalidRecord` naming the
field, never quoting the value (errors reach logs; the values are what traffickers look for), and
personal fields stay out of ``repr``. Text is NFC-normalised, so two kiosks typing the same name with
different input methods give the same record. Border officers see only :mod:`safepassage.enrolment.views`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date
from enum import StrEnum
from typing import Any, get_args, get_origin, get_type_hints

from safepassage.enrolment.errors import InvalidRecord

__all__ = [  # and the limits below, as module constants
    "DocumentKind",
    "Entitlement",
    "EntitlementKind",
    "IdentityDocument",
    "NgoContact",
    "PersonalDetails",
    "PossessionStatus",
    "ProtectedRecord",
    "canonical_json",
    "json_shape",
]

log = logging.getLogger(__name__)

RECORD_FORMAT = 1
NAME_MAX_CHARS = 200
TEXT_MAX_CHARS = 2000
REFERENCE_MAX_CHARS = 100
PHOTO_MAX_BYTES = 2 * 1024 * 1024
MAX_DOCUMENTS = 8
MAX_ENTITLEMENTS = 16
EARLIEST_DATE = date(1900, 1, 1)
# Every photo at its limit, base64-inflated, plus generous room for the text fields.
RECORD_MAX_BYTES = (MAX_DOCUMENTS + 1) * (PHOTO_MAX_BYTES * 4 // 3 + 4) + 1024 * 1024

COUNTRY_CODE = re.compile(r"[A-Z]{3}")  # ISO 3166-1 alpha-3 (and ICAO's XXA.. for stateless people)
# BCP 47 in its canonical case: language, optional script, optional region ("en", "ne-NP", "zh-Hant-TW").
LANGUAGE_TAG = re.compile(r"[a-z]{2,3}(?:-[A-Z][a-z]{3})?(?:-(?:[A-Z]{2}|[0-9]{3}))?")
DOCUMENT_NUMBER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 /-]{0,38}[A-Za-z0-9])?")
IDENTIFIER = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")  # e.g. "la-strada-hotline"
PHONE = re.compile(r"\+?[0-9](?:[0-9 ()-]{0,30}[0-9])?")
EMAIL = re.compile(r"(?=.{3,254}\Z)[^@\s]{1,64}@[^@\s.]+(?:\.[^@\s.]+)+")
_PHOTO_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG, PNG


class DocumentKind(StrEnum):
    PASSPORT = "passport"
    NATIONAL_ID = "national_id"
    RESIDENCE_PERMIT = "residence_permit"
    TRAVEL_DOCUMENT = "travel_document"
    BIRTH_CERTIFICATE = "birth_certificate"
    OTHER = "other"


class PossessionStatus(StrEnum):
    """Whether the holder still has the document: papers withheld by an employer are a trafficking signal."""

    HELD_BY_HOLDER = "held_by_holder"
    WITHHELD_BY_EMPLOYER = "withheld_by_employer"
    LOST_OR_STOLEN = "lost_or_stolen"
    UNKNOWN = "unknown"


class EntitlementKind(StrEnum):
    VISA = "visa"
    WORK_PERMIT = "work_permit"
    RESIDENCE_PERMIT = "residence_permit"
    OTHER = "other"


def _fail(where: str, problem: str) -> InvalidRecord:
    """Every check's error: "<Class.field>: <problem>", never the value."""
    return InvalidRecord(f"{where}: {problem}")


def _set_text(obj: object, name: str, low: int, high: int, *, multiline: bool = False) -> None:
    """Check a text field and store its NFC form (so equal-looking text gives equal bytes)."""
    where = f"{type(obj).__name__}.{name}"
    value = getattr(obj, name)
    if not isinstance(value, str):
        raise _fail(where, "must be a string")
    value = unicodedata.normalize("NFC", value)
    if not low <= len(value) <= high:
        raise _fail(where, f"must be {low}..{high} characters")
    if value != value.strip():
        raise _fail(where, "must not start or end with white space")
    allowed = "\n\t" if multiline else ""
    if any(unicodedata.category(c) in ("Cc", "Cs") and c not in allowed for c in value):
        raise _fail(where, "must not contain control characters")
    object.__setattr__(obj, name, value)


def _check_pattern(where: str, value: object, pattern: re.Pattern[str]) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _fail(where, f"must match {pattern.pattern}")


def _check_date(where: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    # datetime is a subclass of date; a time of day would make the bytes depend on the caller's clock.
    if type(value) is not date or value < EARLIEST_DATE:
        raise _fail(where, f"must be a date from {EARLIEST_DATE}" + (" or None" if optional else ""))


def _check_enum(where: str, value: object, kind: type[StrEnum]) -> None:
    if not isinstance(value, kind):
        raise _fail(where, f"must be a {kind.__name__}")


def _check_photo(where: str, value: object) -> None:
    """JPEG or PNG by magic bytes, at most PHOTO_MAX_BYTES; decoding is the viewer's job, not ours."""
    if value is None:
        return
    if not isinstance(value, bytes) or len(value) > PHOTO_MAX_BYTES:
        raise _fail(where, f"must be bytes (at most {PHOTO_MAX_BYTES}) or None")
    if not value.startswith(_PHOTO_MAGIC):
        raise _fail(where, "must be a JPEG or PNG image")


def _check_items(where: str, value: object, kind: type, limit: int) -> None:
    if not isinstance(value, tuple) or len(value) > limit or not all(isinstance(i, kind) for i in value):
        raise _fail(where, f"must be a tuple of at most {limit} {kind.__name__} items")


@dataclass(frozen=True)
class PersonalDetails:
    """Who the person is. One of the two names may be empty: many people have a single name."""

    given_names: str = field(repr=False)
    family_name: str = field(repr=False)
    date_of_birth: date | None = field(repr=False)
    nationality: str
    preferred_language: str

    def __post_init__(self) -> None:
        _set_text(self, "given_names", 0, NAME_MAX_CHARS)
        _set_text(self, "family_name", 0, NAME_MAX_CHARS)
        if not self.given_names and not self.family_name:
            raise _fail("PersonalDetails.given_names", "given_names or family_name must not be empty")
        _check_date("PersonalDetails.date_of_birth", self.date_of_birth, optional=True)
        _check_pattern("PersonalDetails.nationality", self.nationality, COUNTRY_CODE)
        _check_pattern("PersonalDetails.preferred_language", self.preferred_language, LANGUAGE_TAG)


@dataclass(frozen=True)
class IdentityDocument:
    """One identity document, a photo of it (if taken), and who has it now."""

    kind: DocumentKind
    number: str = field(repr=False)
    issuing_country: str
    expiry: date | None
    possession: PossessionStatus
    photo: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_enum("IdentityDocument.kind", self.kind, DocumentKind)
        _check_pattern("IdentityDocument.number", self.number, DOCUMENT_NUMBER)
        _check_pattern("IdentityDocument.issuing_country", self.issuing_country, COUNTRY_CODE)
        _check_date("IdentityDocument.expiry", self.expiry, optional=True)
        _check_enum("IdentityDocument.possession", self.possession, PossessionStatus)
        _check_photo("IdentityDocument.photo", self.photo)


@dataclass(frozen=True)
class Entitlement:
    """A legal right to be where the person is: a visa or permit, for which employer, on what terms."""

    kind: EntitlementKind
    reference: str = field(repr=False)
    employer: str = field(repr=False)
    contract_terms: str = field(repr=False)
    valid_from: date
    valid_until: date | None

    def __post_init__(self) -> None:
        _check_enum("Entitlement.kind", self.kind, EntitlementKind)
        _set_text(self, "reference", 1, REFERENCE_MAX_CHARS)
        _set_text(self, "employer", 0, NAME_MAX_CHARS)
        _set_text(self, "contract_terms", 0, TEXT_MAX_CHARS, multiline=True)
        _check_date("Entitlement.valid_from", self.valid_from, optional=False)
        _check_date("Entitlement.valid_until", self.valid_until, optional=True)
        if self.valid_until is not None and self.valid_until < self.valid_from:
            raise _fail("Entitlement.valid_until", "must not be before valid_from")


@dataclass(frozen=True)
class NgoContact:
    """The organisation to call for this person (phone or email, or both); organisation data, not personal."""

    organisation: str
    phone: str
    email: str
    referral_channel: str

    def __post_init__(self) -> None:
        _set_text(self, "organisation", 1, NAME_MAX_CHARS)
        if self.phone != "":
            _check_pattern("NgoContact.phone", self.phone, PHONE)
        if self.email != "":
            _check_pattern("NgoContact.email", self.email, EMAIL)
        if not self.phone and not self.email:
            raise _fail("NgoContact.phone", "phone or email must not be empty")
        _check_pattern("NgoContact.referral_channel", self.referral_channel, IDENTIFIER)


@dataclass(frozen=True)
class ProtectedRecord:
    """Everything enrolled for one person; :meth:`to_bytes` is what gets sealed."""

    details: PersonalDetails
    documents: tuple[IdentityDocument, ...]
    entitlements: tuple[Entitlement, ...]
    contact: NgoContact
    face_photo: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.details, PersonalDetails):
            raise _fail("ProtectedRecord.details", "must be PersonalDetails")
        _check_items("ProtectedRecord.documents", self.documents, IdentityDocument, MAX_DOCUMENTS)
        _check_items("ProtectedRecord.entitlements", self.entitlements, Entitlement, MAX_ENTITLEMENTS)
        distinct = {(d.kind, d.issuing_country, d.number.upper()) for d in self.documents}
        if len(distinct) != len(self.documents):
            raise _fail("ProtectedRecord.documents", "must not list the same document twice")
        if not isinstance(self.contact, NgoContact):
            raise _fail("ProtectedRecord.contact", "must be NgoContact")
        _check_photo("ProtectedRecord.face_photo", self.face_photo)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape: field names as in the classes, enums by value, dates ISO 8601, photos
        base64, absent values as null, plus ``"format": 1``."""
        return {"format": RECORD_FORMAT, **json_shape(self)}

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces, UTF-8): the same record always gives the same bytes."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProtectedRecord:
        """A record from the shape :meth:`to_dict` gives, as in a JSON file the CLI reads.

        Key order does not matter. Unknown keys are refused (a misspelt field would otherwise be
        dropped silently); null fields and empty lists may be left out; ``format`` defaults to 1.
        """
        return _parse_record(data, complete=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> ProtectedRecord:
        """Parse :meth:`to_bytes` output: every key present; InvalidRecord on anything malformed."""
        if not isinstance(data, bytes):
            raise _fail("record", "must be bytes")
        if len(data) > RECORD_MAX_BYTES:
            raise _fail("record", f"must be at most {RECORD_MAX_BYTES} bytes")
        try:
            parsed = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _fail("record", "is not well-formed JSON without duplicate keys") from None
        return _parse_record(parsed, complete=True)


def canonical_json(value: object) -> bytes:
    """Sorted keys, no white space, UTF-8 (not \\u escapes): one byte string per value."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")  # turned into InvalidRecord by the caller
    return result


def json_shape(value: Any) -> Any:
    """A dataclass as JSON from its own fields (so the shape cannot drift): enums by value, dates ISO."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, tuple):
        return [json_shape(item) for item in value]
    if is_dataclass(value):
        return {f.name: json_shape(getattr(value, f.name)) for f in fields(value)}
    return value


@contextmanager
def _at(where: str) -> Iterator[None]:
    """Prefix an InvalidRecord from a constructor with where it sits in the JSON ("record.documents[1]")."""
    try:
        yield
    except InvalidRecord as exc:
        raise InvalidRecord(f"{where}: {exc}") from None


def _parse_record(data: object, *, complete: bool) -> ProtectedRecord:
    if not isinstance(data, Mapping):
        raise _fail("record", "must be an object")
    top = dict(data)
    if complete and "format" not in top:
        raise _fail("record.format", "is missing")
    version = top.pop("format", RECORD_FORMAT)
    if type(version) is not int or version != RECORD_FORMAT:
        raise _fail("record.format", f"must be {RECORD_FORMAT}")
    record = _from_json(ProtectedRecord, "record", top, complete)
    assert isinstance(record, ProtectedRecord)
    return record


def _from_json(cls: Any, where: str, value: object, complete: bool) -> Any:
    """Build dataclass ``cls`` from a JSON object; the constructor does the validation."""
    if not isinstance(value, Mapping):
        raise _fail(where, "must be an object")
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    unknown = sorted(str(k) for k in value if k not in names)
    if unknown:
        name = unknown[0] if re.fullmatch(r"[a-z_]{1,40}", unknown[0]) else "a key"
        raise _fail(where, f"has an unknown field ({name})")
    for name in names:
        optional = type(None) in get_args(hints[name]) or get_origin(hints[name]) is tuple
        if name not in value and (complete or not optional):
            raise _fail(f"{where}.{name}", "is missing")
    args = {
        name: _field_from_json(f"{where}.{name}", hints[name], value.get(name), complete) for name in names
    }
    with _at(where):
        return cls(**args)


def _field_from_json(where: str, hint: Any, value: object, complete: bool) -> object:
    if type(None) in get_args(hint):
        if value is None:
            return None
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    if get_origin(hint) is tuple:
        item = get_args(hint)[0]
        items = [] if value is None and not complete else value
        if not isinstance(items, list) or len(items) > _LIST_LIMITS[item]:
            raise _fail(where, f"must be a list of at most {_LIST_LIMITS[item]} items")
        return tuple(_from_json(item, f"{where}[{i}]", v, complete) for i, v in enumerate(items))
    if is_dataclass(hint):
        return _from_json(hint, where, value, complete)
    if hint is date:
        return _date(where, value)
    if hint is bytes:
        return _photo(where, value)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        if isinstance(value, str) and value in {m.value for m in hint}:
            return hint(value)
        raise _fail(where, "must be one of " + ", ".join(m.value for m in hint))
    return value  # text: the constructor checks it


_LIST_LIMITS: dict[Any, int] = {IdentityDocument: MAX_DOCUMENTS, Entitlement: MAX_ENTITLEMENTS}


def _date(where: str, value: object) -> date:
    try:
        parsed = date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.isoformat() != value:  # 3.11 also reads "20240131": one spelling only
        raise _fail(where, "must be a date as YYYY-MM-DD")
    return parsed


def _photo(where: str, value: object) -> bytes:
    if not isinstance(value, str) or len(value) > PHOTO_MAX_BYTES * 4 // 3 + 4:
        raise _fail(where, f"must be base64 of at most {PHOTO_MAX_BYTES} bytes, or null")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(where, "must be standard base64") from None
