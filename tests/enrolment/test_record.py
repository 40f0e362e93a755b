"""ProtectedRecord: canonical bytes, strict parsing, checks that never quote values, the minimal view."""

from __future__ import annotations

import base64
import json
import unicodedata
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from safepassage.enrolment.errors import InvalidRecord
from safepassage.enrolment.record import (
    MAX_DOCUMENTS,
    PHOTO_MAX_BYTES,
    RECORD_MAX_BYTES,
    DocumentKind,
    Entitlement,
    EntitlementKind,
    IdentityDocument,
    NgoContact,
    PersonalDetails,
    PossessionStatus,
    ProtectedRecord,
)
from safepassage.enrolment.views import DocumentStatus, MinimalView, minimal_view

PASSPORT_NUMBER = "PA7781234"
EMPLOYER = "Gulf Horizon Contracting LLC"


@pytest.fixture(scope="module")
def face_jpeg(faces_dir: Path) -> bytes:
    return (faces_dir / "face_recognition" / "alex_lacamoire" / "img1.jpg").read_bytes()


@pytest.fixture(scope="module")
def document_png(faces_dir: Path) -> bytes:
    return (faces_dir / "face_recognition" / "lin_manuel_miranda" / "lin-manuel-miranda.png").read_bytes()


def details(**changes: Any) -> PersonalDetails:
    fields: dict[str, Any] = {
        "given_names": "Sita Kumari",
        "family_name": "Tamang",
        "date_of_birth": date(1996, 4, 12),
        "nationality": "NPL",
        "preferred_language": "ne-NP",
    }
    return PersonalDetails(**{**fields, **changes})


def passport(photo: Any = None, **changes: Any) -> IdentityDocument:
    fields: dict[str, Any] = {
        "kind": DocumentKind.PASSPORT,
        "number": PASSPORT_NUMBER,
        "issuing_country": "NPL",
        "expiry": date(2030, 6, 30),
        "possession": PossessionStatus.WITHHELD_BY_EMPLOYER,
        "photo": photo,
    }
    return IdentityDocument(**{**fields, **changes})


def work_permit(**changes: Any) -> Entitlement:
    fields: dict[str, Any] = {
        "kind": EntitlementKind.WORK_PERMIT,
        "reference": "WP-2024-55120",
        "employer": EMPLOYER,
        "contract_terms": "24 months, 8 hours a day, 6 days a week\nHousing provided",
        "valid_from": date(2024, 2, 1),
        "valid_until": date(2026, 1, 31),
    }
    return Entitlement(**{**fields, **changes})


def contact(**changes: Any) -> NgoContact:
    fields: dict[str, Any] = {
        "organisation": "La Strada International",
        "phone": "+31 20 688 1414",
        "email": "help@lastradainternational.org",
        "referral_channel": "la-strada-hotline",
    }
    return NgoContact(**{**fields, **changes})


@pytest.fixture
def record(face_jpeg: bytes, document_png: bytes) -> ProtectedRecord:
    national_id = IdentityDocument(
        DocumentKind.NATIONAL_ID, "NP-12-34-56789", "NPL", None, PossessionStatus.HELD_BY_HOLDER, None
    )
    return ProtectedRecord(
        details(), (passport(document_png), national_id), (work_permit(),), contact(), face_jpeg
    )


def reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reverse_keys(v) for v in value]
    return value


# ---- canonical bytes


def test_bytes_round_trip(record: ProtectedRecord) -> None:
    assert record.face_photo is not None and record.face_photo.startswith(b"\xff\xd8")  # a real JPEG
    assert record.documents[0].photo is not None and record.documents[0].photo.startswith(b"\x89PNG")
    data = record.to_bytes()
    assert ProtectedRecord.from_bytes(data) == record
    assert ProtectedRecord.from_bytes(data).to_bytes() == data


def test_same_record_gives_same_bytes(record: ProtectedRecord, face_jpeg: bytes, document_png: bytes) -> None:
    rebuilt = ProtectedRecord(
        details(),
        (passport(bytes(document_png)), record.documents[1]),
        (work_permit(),),
        contact(),
        bytes(face_jpeg),
    )
    assert rebuilt.to_bytes() == record.to_bytes()
    # Canonical: sorted keys, no white space, UTF-8 text rather than \u escapes.
    parsed = json.loads(record.to_bytes())
    assert record.to_bytes() == json.dumps(
        parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def test_bytes_shape(record: ProtectedRecord, face_jpeg: bytes) -> None:
    parsed = json.loads(record.to_bytes())
    assert parsed["format"] == 1
    assert parsed["details"]["date_of_birth"] == "1996-04-12"
    assert parsed["documents"][0]["kind"] == "passport"
    assert parsed["documents"][1]["expiry"] is None and parsed["documents"][1]["photo"] is None
    assert base64.b64decode(parsed["face_photo"]) == face_jpeg
    assert parsed["entitlements"][0]["valid_until"] == "2026-01-31"


def test_key_order_does_not_matter_in_from_dict(record: ProtectedRecord) -> None:
    shape = reverse_keys(record.to_dict())
    assert next(iter(shape)) != next(iter(record.to_dict()))
    assert ProtectedRecord.from_dict(shape) == record
    assert ProtectedRecord.from_dict(shape).to_bytes() == record.to_bytes()
    shuffled = json.dumps(shape, indent=2).encode()
    assert ProtectedRecord.from_bytes(shuffled) == record


def test_from_dict_lets_null_fields_and_empty_lists_be_left_out() -> None:
    minimal: dict[str, Any] = {
        "details": {
            "given_names": "Sita",
            "family_name": "Tamang",
            "nationality": "NPL",
            "preferred_language": "ne",
        },
        "contact": asdict(contact()),
    }
    parsed = ProtectedRecord.from_dict(minimal)
    assert parsed.documents == () and parsed.entitlements == () and parsed.face_photo is None
    assert parsed.details.date_of_birth is None
    # The canonical bytes of the same record must still have every key.
    with pytest.raises(InvalidRecord, match=r"record\.documents: is missing"):
        ProtectedRecord.from_bytes(json.dumps({**minimal, "format": 1}).encode())
    full: dict[str, Any] = {**minimal, "format": 1, "documents": [], "entitlements": [], "face_photo": None}
    with pytest.raises(InvalidRecord, match=r"details\.date_of_birth: is missing"):
        ProtectedRecord.from_bytes(json.dumps(full).encode())


def test_text_is_nfc_normalised_so_input_methods_agree() -> None:
    composed = unicodedata.normalize("NFC", "José Ngô")
    decomposed = unicodedata.normalize("NFD", "José Ngô")
    assert composed != decomposed
    a = ProtectedRecord(details(given_names=composed), (), (), contact())
    b = ProtectedRecord(details(given_names=decomposed), (), (), contact())
    assert a == b and a.to_bytes() == b.to_bytes()


def test_single_name_is_allowed() -> None:
    assert details(given_names="").family_name == "Tamang"
    assert details(family_name="").given_names == "Sita Kumari"


def test_repr_shows_no_personal_data(record: ProtectedRecord) -> None:
    text = repr(record) + str(record)
    for secret in ("Sita", "Tamang", "1996", PASSPORT_NUMBER, EMPLOYER, "WP-2024-55120", "Housing"):
        assert secret not in text
    assert "NPL" in text  # the non-personal fields stay, for debugging


# ---- field checks: InvalidRecord names the field and never quotes the value

SECRET = "SECRET-7781"
BAD: list[tuple[str, Callable[[], object], str, str]] = [
    # (case, builder, field named, value that must not appear)
    ("name too long", lambda: details(given_names=SECRET * 20), "given_names", SECRET),
    ("name control char", lambda: details(family_name=SECRET + "\x00"), "family_name", SECRET),
    ("name padded", lambda: details(family_name=f" {SECRET}"), "family_name", SECRET),
    ("name not text", lambda: details(given_names=7781), "given_names", "7781"),
    ("no name at all", lambda: details(given_names="", family_name=""), "given_names", "Sita"),
    ("birth as datetime", lambda: details(date_of_birth=datetime(1996, 4, 12)), "date_of_birth", "1996"),
    ("birth as text", lambda: details(date_of_birth="1996-04-12"), "date_of_birth", "1996"),
    ("birth too early", lambda: details(date_of_birth=date(1776, 7, 4)), "date_of_birth", "1776"),
    ("nationality alpha-2", lambda: details(nationality="NP"), "nationality", "'NP'"),
    ("nationality lower", lambda: details(nationality="npl"), "nationality", "npl"),
    ("language free text", lambda: details(preferred_language="nepali"), "preferred_language", "nepali"),
    ("language underscore", lambda: details(preferred_language="ne_NP"), "preferred_language", "ne_NP"),
    ("number punctuation", lambda: passport(number="PA77#81234"), "number", "PA77#81234"),
    ("number too long", lambda: passport(number="P" * 41), "number", "P" * 41),
    ("number empty", lambda: passport(number=""), "number", PASSPORT_NUMBER),
    ("country alpha-2", lambda: passport(issuing_country="NP"), "issuing_country", "'NP'"),
    ("expiry as text", lambda: passport(expiry="2030-06-30"), "expiry", "2030"),
    ("kind as text", lambda: passport(kind="passport"), "kind", "'passport'"),
    ("possession as text", lambda: passport(possession="unknown"), "possession", "'unknown'"),
    ("photo gif", lambda: passport(photo=b"GIF89a" + SECRET.encode()), "photo", SECRET),
    ("photo empty", lambda: passport(photo=b""), "photo", PASSPORT_NUMBER),
    ("photo mutable", lambda: passport(photo=bytearray(b"\xff\xd8\xff" + SECRET.encode())), "photo", SECRET),
    (
        "photo too big",
        lambda: passport(photo=b"\xff\xd8\xff" + bytes(PHOTO_MAX_BYTES)),
        "photo",
        PASSPORT_NUMBER,
    ),
    ("reference empty", lambda: work_permit(reference=""), "reference", EMPLOYER),
    ("employer too long", lambda: work_permit(employer=SECRET * 20), "employer", SECRET),
    ("terms bell", lambda: work_permit(contract_terms=SECRET + "\x07"), "contract_terms", SECRET),
    ("terms too long", lambda: work_permit(contract_terms=SECRET * 200), "contract_terms", SECRET),
    ("until before from", lambda: work_permit(valid_until=date(2023, 1, 1)), "valid_until", "2023"),
    ("from missing", lambda: work_permit(valid_from=None), "valid_from", EMPLOYER),
    ("entitlement kind", lambda: work_permit(kind=DocumentKind.PASSPORT), "kind", "passport"),
    ("organisation empty", lambda: contact(organisation=""), "organisation", "help@"),
    ("phone letters", lambda: contact(phone="call " + SECRET), "phone", SECRET),
    ("email no at", lambda: contact(email=SECRET + ".example.org"), "email", SECRET),
    ("no phone or email", lambda: contact(phone="", email=""), "phone", "La Strada"),
    ("channel spaces", lambda: contact(referral_channel="La Strada " + SECRET), "referral_channel", SECRET),
]


@pytest.mark.parametrize(("builder", "field", "secret"), [case[1:] for case in BAD], ids=[c[0] for c in BAD])
def test_invalid_field_is_refused_naming_the_field(
    builder: Callable[[], object], field: str, secret: str
) -> None:
    with pytest.raises(InvalidRecord) as raised:
        builder()
    message = str(raised.value)
    assert field in message
    assert secret not in message
    assert raised.value.__cause__ is None and raised.value.__context__ is None


def test_record_level_checks(face_jpeg: bytes) -> None:
    with pytest.raises(InvalidRecord, match="record"):
        ProtectedRecord.from_dict([])  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord, match="documents"):
        ProtectedRecord(details(), [passport()], (), contact())  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord, match="documents") as raised:
        ProtectedRecord(details(), (passport(), passport(number=PASSPORT_NUMBER.lower())), (), contact())
    assert PASSPORT_NUMBER not in str(raised.value)
    many = tuple(passport(number=f"PA{i:07d}") for i in range(MAX_DOCUMENTS + 1))
    with pytest.raises(InvalidRecord, match="documents"):
        ProtectedRecord(details(), many, (), contact())
    with pytest.raises(InvalidRecord, match="entitlements"):
        ProtectedRecord(details(), (), (passport(),), contact())  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord, match="face_photo"):
        ProtectedRecord(details(), (), (), contact(), b"BM" + face_jpeg)
    with pytest.raises(InvalidRecord, match="contact"):
        ProtectedRecord(details(), (), (), None)  # type: ignore[arg-type]


# ---- parsing: anything malformed is InvalidRecord, naming where


def mutate(record: ProtectedRecord, change: Callable[[dict[str, Any]], None]) -> bytes:
    shape = json.loads(record.to_bytes())
    change(shape)
    return json.dumps(shape).encode()


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(shape: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = shape
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value

    return change


MALFORMED: list[tuple[str, str, object, str]] = [
    # (case, path in the JSON, new value (KeyError deletes), text the message names)
    ("number as int", "documents.0.number", 7781234, "documents[0]"),
    ("number missing", "documents.0.number", KeyError, "documents[0].number"),
    ("photo missing", "documents.0.photo", KeyError, "documents[0].photo"),
    ("photo not base64", "documents.0.photo", "not base64 at all!", "documents[0].photo"),
    ("photo base64 of text", "face_photo", base64.b64encode(SECRET.encode()).decode(), "face_photo"),
    ("unknown field", "details.religion", SECRET, "religion"),
    ("kind unknown", "documents.0.kind", SECRET, "documents[0].kind"),
    ("possession unknown", "documents.1.possession", SECRET, "documents[1].possession"),
    ("date short", "details.date_of_birth", "1996-4-12", "date_of_birth"),
    ("date compact", "details.date_of_birth", "19960412", "date_of_birth"),
    ("date impossible", "entitlements.0.valid_from", "2024-02-30", "entitlements[0].valid_from"),
    ("date with time", "documents.0.expiry", "2030-06-30T00:00:00", "documents[0].expiry"),
    ("from null", "entitlements.0.valid_from", None, "valid_from"),
    ("format 2", "format", 2, "format"),
    ("format true", "format", True, "format"),
    ("format missing", "format", KeyError, "format"),
    ("documents not list", "documents", {"0": SECRET}, "documents"),
    ("details not object", "details", [SECRET], "details"),
    ("nationality bad", "details.nationality", "Nepal", "details"),
]


@pytest.mark.parametrize(
    ("path", "value", "named"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_bytes_are_refused(record: ProtectedRecord, path: str, value: object, named: str) -> None:
    with pytest.raises(InvalidRecord) as raised:
        ProtectedRecord.from_bytes(mutate(record, _set(path, value)))
    assert named in str(raised.value)
    assert SECRET not in str(raised.value)
    assert "7781234" not in str(raised.value)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe{}",
        b"[]",
        b'{"format":1,"format":1}',
        b"[" * 100_000,
        "{}",  # text, not bytes
        b" " * (RECORD_MAX_BYTES + 1),
    ],
    ids=["empty", "text", "bad utf-8", "list", "duplicate key", "deep", "str", "oversized"],
)
def test_garbage_is_refused(data: Any) -> None:
    with pytest.raises(InvalidRecord, match="record"):
        ProtectedRecord.from_bytes(data)


def test_duplicate_key_inside_is_refused(record: ProtectedRecord) -> None:
    data = record.to_bytes().replace(b'"family_name":"Tamang"', b'"family_name":"Tamang","family_name":"X"')
    with pytest.raises(InvalidRecord, match="duplicate"):
        ProtectedRecord.from_bytes(data)


# ---- the minimal view


def test_view_judges_expiry_against_today(record: ProtectedRecord) -> None:
    on_expiry_day = minimal_view(record, date(2030, 6, 30))
    assert [d.valid for d in on_expiry_day.documents] == [True, True]
    day_after = minimal_view(record, date(2030, 7, 1))
    assert [d.valid for d in day_after.documents] == [False, True]  # the national id has no expiry
    passport_status = day_after.documents[0]
    assert passport_status == DocumentStatus(
        DocumentKind.PASSPORT, "NPL", date(2030, 6, 30), False, PossessionStatus.WITHHELD_BY_EMPLOYER
    )


def test_view_holds_only_what_an_officer_needs(record: ProtectedRecord, face_jpeg: bytes) -> None:
    view = minimal_view(record, date(2025, 1, 1))
    assert isinstance(view, MinimalView)
    assert (view.given_names, view.family_name, view.face_photo) == ("Sita Kumari", "Tamang", face_jpeg)
    assert view.contact == record.contact
    assert [d.possession for d in view.documents] == [
        PossessionStatus.WITHHELD_BY_EMPLOYER,
        PossessionStatus.HELD_BY_HOLDER,
    ]
    everything = repr(view) + str(view) + json.dumps(view.to_dict()) + repr(asdict(view))
    for absent in (PASSPORT_NUMBER, "NP-12-34-56789", EMPLOYER, "WP-2024-55120", "Housing", "1996"):
        assert absent not in everything
    shape = view.to_dict()
    assert set(shape) == {"given_names", "family_name", "face_photo", "documents", "contact"}
    assert set(shape["documents"][0]) == {"kind", "issuing_country", "expiry", "valid", "possession"}
    assert base64.b64decode(shape["face_photo"]) == face_jpeg


def test_view_refuses_a_datetime_for_today(record: ProtectedRecord) -> None:
    with pytest.raises(InvalidRecord, match="today"):
        minimal_view(record, datetime(2025, 1, 1, 12, 0))
    with pytest.raises(InvalidRecord, match="record"):
        minimal_view(record.to_dict(), date(2025, 1, 1))  # type: ignore[arg-type]


def test_view_of_record_without_photo_or_documents() -> None:
    view = minimal_view(ProtectedRecord(details(), (), (), contact()), date(2025, 1, 1))
    assert view.face_photo is None and view.documents == () and view.to_dict()["face_photo"] is None
