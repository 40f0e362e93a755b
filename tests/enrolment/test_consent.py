"""Consent by scope: share names one organisation, grants and refusals are disjoint, text kept by hash."""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

import pytest

from safepassage.core.errors import InvalidInput, PermissionDenied
from safepassage.enrolment.consent import (
    CONSENT_TEXT_MAX_CHARS,
    MAX_GRANTS,
    ConsentDecision,
    ConsentText,
    Scope,
    ScopeGrant,
    decide,
    labels,
    require,
)
from safepassage.enrolment.errors import ConsentRequired, InvalidConsent

STORE = ScopeGrant(Scope.STORE)
BORDER = ScopeGrant(Scope.VERIFY_AT_BORDER)
DUPLICATES = ScopeGrant(Scope.DUPLICATE_CHECK)
LA_STRADA = ScopeGrant(Scope.SHARE, "la-strada")
# Nepali: "I agree that my record may be kept."
NEPALI = "म सहमत छु कि मेरो अभिलेख राखिन सक्छ।"


@pytest.fixture
def text() -> ConsentText:
    return ConsentText("ne-NP", NEPALI)


# ---- scopes


def test_share_needs_an_organisation() -> None:
    with pytest.raises(InvalidConsent, match="organisation"):
        ScopeGrant(Scope.SHARE)
    with pytest.raises(InvalidConsent, match="organisation"):
        ScopeGrant(Scope.SHARE, "La Strada International")
    assert LA_STRADA.organisation == "la-strada"


@pytest.mark.parametrize("scope", [Scope.STORE, Scope.VERIFY_AT_BORDER, Scope.DUPLICATE_CHECK])
def test_other_scopes_refuse_an_organisation(scope: Scope) -> None:
    with pytest.raises(InvalidConsent, match="organisation"):
        ScopeGrant(scope, "la-strada")


def test_scope_must_be_a_scope() -> None:
    with pytest.raises(InvalidConsent, match="scope"):
        ScopeGrant("store")  # type: ignore[arg-type]


@pytest.mark.parametrize("grant", [STORE, BORDER, DUPLICATES, LA_STRADA])
def test_label_round_trip(grant: ScopeGrant) -> None:
    assert ScopeGrant.parse(grant.label) == grant


def test_labels() -> None:
    assert LA_STRADA.label == "share:la-strada"
    assert BORDER.label == "verify_at_border"
    assert labels({LA_STRADA, STORE, BORDER}) == ("share:la-strada", "store", "verify_at_border")


@pytest.mark.parametrize(
    "label", ["stroe", "share", "share:", "store:la-strada", "share:La Strada", "", "x" * 200, 7]
)
def test_bad_labels_are_refused_without_quoting_them(label: Any) -> None:
    with pytest.raises(InvalidConsent) as raised:
        ScopeGrant.parse(label)
    message = str(raised.value)
    assert "scope" in message or "organisation" in message
    if isinstance(label, str) and label not in ("", "share", "store"):
        assert label not in message


# ---- consent text


def test_text_hash_is_of_the_nfc_form() -> None:
    composed = unicodedata.normalize("NFC", "Je consens à ce que mon dossier soit conservé.")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    a, b = ConsentText("fr", composed), ConsentText("fr", decomposed)
    assert a.sha256 == b.sha256 == hashlib.sha256(composed.encode("utf-8")).hexdigest()
    assert ConsentText("fr", composed + " ").sha256 != a.sha256


def test_text_hash_of_nepali(text: ConsentText) -> None:
    assert text.sha256 == hashlib.sha256(unicodedata.normalize("NFC", NEPALI).encode()).hexdigest()
    assert len(text.sha256) == 64
    assert NEPALI not in repr(text)


@pytest.mark.parametrize("language", ["en", "ne-NP", "pt-BR", "zh-Hant-TW", "es-419"])
def test_language_tags_accepted(language: str) -> None:
    assert ConsentText(language, "I agree.").language == language


@pytest.mark.parametrize("language", ["english", "EN", "en_US", "en-us", "", "e", "en-"])
def test_bad_language_tags_refused(language: str) -> None:
    with pytest.raises(InvalidConsent, match="language"):
        ConsentText(language, "I agree.")


@pytest.mark.parametrize(
    "body",
    ["", "   \n", "x" * (CONSENT_TEXT_MAX_CHARS + 1), "I agree\x00", "I agree \ud800", None],
    ids=["empty", "blank", "too long", "nul", "surrogate", "none"],
)
def test_bad_text_refused(body: Any) -> None:
    with pytest.raises(InvalidConsent, match=r"ConsentText\.text"):
        ConsentText("en", body)


def test_multi_line_text_allowed() -> None:
    ConsentText("en", "1. I agree.\r\n2. I understand.\n\t- really")


# ---- decisions


def test_decide(text: ConsentText) -> None:
    decision = decide(text, [STORE, BORDER, STORE], {LA_STRADA})
    assert decision.granted == frozenset({STORE, BORDER})
    assert decision.refused == frozenset({LA_STRADA})
    assert decision.language == "ne-NP"
    assert decision.text_sha256 == text.sha256


def test_overlap_of_granted_and_refused_is_refused(text: ConsentText) -> None:
    with pytest.raises(InvalidConsent, match="verify_at_border"):
        decide(text, [STORE, BORDER], [BORDER])


def test_sharing_with_one_organisation_and_not_another_is_no_overlap(text: ConsentText) -> None:
    other = ScopeGrant(Scope.SHARE, "iom-nepal")
    decision = decide(text, [STORE, LA_STRADA], [other])
    assert decision.granted & decision.refused == frozenset()


def test_decision_checks_its_fields(text: ConsentText) -> None:
    good: dict[str, Any] = {
        "language": "ne-NP",
        "text_sha256": text.sha256,
        "granted": frozenset({STORE}),
        "refused": frozenset(),
    }
    ConsentDecision(**good)
    for name, value in [
        ("language", "nepali"),
        ("text_sha256", text.sha256.upper()),
        ("text_sha256", text.sha256[:-1]),
        ("granted", {STORE}),
        ("granted", frozenset({"store"})),
        ("refused", frozenset(ScopeGrant(Scope.SHARE, f"org-{i}") for i in range(MAX_GRANTS + 1))),
    ]:
        with pytest.raises(InvalidConsent, match=name):
            ConsentDecision(**{**good, name: value})


def test_decide_refuses_wrong_arguments(text: ConsentText) -> None:
    with pytest.raises(InvalidConsent, match="text"):
        decide(NEPALI, [STORE], [])  # type: ignore[arg-type]
    with pytest.raises(InvalidConsent, match="granted"):
        decide(text, "store", [])  # type: ignore[arg-type]
    with pytest.raises(InvalidConsent, match="granted"):
        decide(text, STORE, [])  # type: ignore[arg-type]


def test_decision_dict_round_trip(text: ConsentText) -> None:
    decision = decide(text, [STORE, LA_STRADA, BORDER], [DUPLICATES])
    shape = decision.to_dict()
    assert shape == {
        "language": "ne-NP",
        "text_sha256": text.sha256,
        "granted": ("share:la-strada", "store", "verify_at_border"),
        "refused": ("duplicate_check",),
    }
    assert ConsentDecision.from_dict(shape) == decision
    as_lists = {k: list(v) if isinstance(v, tuple) else v for k, v in shape.items()}
    assert ConsentDecision.from_dict(as_lists) == decision


@pytest.mark.parametrize(
    "change",
    [{"granted": "store"}, {"refused": ["nope"]}, {"extra": 1}, {"language": None}],
    ids=["granted as text", "unknown label", "extra key", "no language"],
)
def test_decision_from_bad_dict(text: ConsentText, change: dict[str, Any]) -> None:
    shape: dict[str, Any] = {**decide(text, [STORE], []).to_dict(), **change}
    with pytest.raises(InvalidConsent):
        ConsentDecision.from_dict(shape)


def test_consent_errors_are_input_errors() -> None:
    assert issubclass(InvalidConsent, InvalidInput)
    assert issubclass(ConsentRequired, PermissionDenied)


# ---- require


def test_require_passes_when_granted(text: ConsentText) -> None:
    decision = decide(text, [STORE, BORDER, LA_STRADA], [])
    require(decision.granted, STORE)
    require(decision.granted, BORDER)
    require(iter([LA_STRADA]), ScopeGrant(Scope.SHARE, "la-strada"))


@pytest.mark.parametrize(
    ("needed", "named"),
    [
        (BORDER, "verify_at_border"),
        (DUPLICATES, "duplicate_check"),
        (ScopeGrant(Scope.SHARE, "iom-nepal"), "share:iom-nepal"),
    ],
)
def test_require_raises_naming_the_scope(text: ConsentText, needed: ScopeGrant, named: str) -> None:
    decision = decide(text, [STORE, LA_STRADA], [DUPLICATES])
    with pytest.raises(ConsentRequired, match=named):
        require(decision.granted, needed)


def test_require_with_nothing_in_force() -> None:
    with pytest.raises(ConsentRequired, match="store"):
        require([], STORE)
    with pytest.raises(InvalidConsent, match="needed"):
        require([STORE], "store")  # type: ignore[arg-type]
