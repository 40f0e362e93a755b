"""Every string of the NGO caseworker's pages comes from the message catalogue (as test_catalogue.py
checks the others): each page is rendered with a pseudo-translation, and any text left over once the
data the page was given is taken out fails the test. The consent text the holder reads, which the
service keeps the hash of, is built from the catalogue too, in the holder's language."""

from __future__ import annotations

from typing import Any

import pytest

from safepassage.console.answers import Person
from safepassage.console.caseworker_enrolment import (
    CONSENT_INTRO,
    DOCUMENT_KINDS,
    ENTITLEMENT_KINDS,
    FACE_LIVENESS,
    LIVE_FACE_REQUIRED,
    POSSESSION,
    RECORD_FIELDS,
    SCOPE_TEXTS,
    consent_text,
    scope_labels,
)
from safepassage.console.caseworker_followup import CONTEXTS
from safepassage.console.caseworker_gateway import Enrolment, ReferralRow, ScopeState
from safepassage.console.head_turn import RETRY_PROMPTS
from safepassage.console.languages import Languages
from safepassage.console.pages import PAGES, Renderer
from tests.console.test_catalogue import pseudo, script_texts, untranslated

CASEWORKER = Person(
    "ngo-7",
    "ngo_caseworker",
    "la-strada",
    "1A2B",
    "console",
    tuple((op, frozenset()) for op in ("EnrolRecord", "ListReferrals", "ChangeConsent", "EraseRecord")),
)
# The data the pages are given: ids, the organisation, times, receipts, keys.
DATA = (
    "ngo-7",
    "la-strada-hotline",
    "la-strada",
    "La Strada International",
    "+31 20 688 1414",
    "pr-0123456789abcdef01234567",
    "ABCD-EFGH-JKMN-PQRS-TVWX",
    "signed-receipt-json",
    "safepassage-dev-station",
    "-----BEGIN PUBLIC KEY-----",
    "kiosk:kiosk-1",
    "verify_at_border",
    "duplicate_check",
    "2026-01-01T00:00:00Z",
    "2026-01-02T00:00:00Z",
    "2028-01-01T00:00:00+00:00",
)
ENROLLED = Enrolment(DATA[5], DATA[6], DATA[7], "SP1:X", b"\x89PNG", "c1", "2028-01-01T00:00:00+00:00")


def rendered(template: str, **context: Any) -> str:
    html = Renderer(pseudo()).render(
        template, person=CASEWORKER, pages=list(PAGES), current="enrol", form_token="1.ab", **context
    )
    assert "⟪" in html
    for value in sorted(DATA, key=len, reverse=True):
        html = html.replace(value, "")
    return html


def _languages() -> list[Any]:
    return Languages.only(pseudo()).shipped


@pytest.mark.parametrize("problem", ["", "Please answer yes or no for every use."])
def test_the_holders_step_comes_from_the_catalogue(problem: str) -> None:
    shown = _languages()
    html = rendered(
        "ngo_enrol_holder.html",
        languages=shown,
        chosen=shown[0],
        intro=CONSENT_INTRO,
        scopes=[(label, SCOPE_TEXTS[label.partition(":")[0]]) for label in scope_labels(DATA[2])],
        organisation=DATA[2],
        problem=problem,
    )
    # The language's own name is its name, not a message.
    html = html.replace(shown[0].own_name, "")
    assert untranslated(html) == []


@pytest.mark.parametrize(
    ("prompt", "problem", "retry"),
    [
        ("", "", ""),
        ("Please come a little closer", "", ""),
        ("", LIVE_FACE_REQUIRED, ""),
        ("", "", RETRY_PROMPTS["WRONG_DIRECTION"]),
        ("", "", RETRY_PROMPTS["PLANAR_MOTION"]),
    ],
)
def test_the_record_step_comes_from_the_catalogue(prompt: str, problem: str, retry: str) -> None:
    html = rendered(
        "ngo_enrol_record.html",
        sealed="c2VhbGVk",
        head_turn_endpoint="/ngo/enrol/head-turn?holder_language=en",
        values=dict.fromkeys(RECORD_FIELDS, ""),
        document_kinds=DOCUMENT_KINDS,
        possession=POSSESSION,
        entitlement_kinds=ENTITLEMENT_KINDS,
        prompt=prompt,
        problem=problem,
        retry=retry,
    )
    assert untranslated(html) == []
    # The texts the head-turn script shows (data- attributes, no text nodes) are the catalogue's too.
    assert all(text.startswith("⟪") for text in script_texts(html))


@pytest.mark.parametrize("face_liveness", ["", *sorted(FACE_LIVENESS.values())])
@pytest.mark.parametrize("qr", ["data:image/png;base64,AAAA", ""])
def test_the_printed_page_comes_from_the_catalogue(qr: str, face_liveness: str) -> None:
    html = rendered(
        "ngo_enrolled.html",
        enrolled=ENROLLED,
        qr=qr,
        organisation=DATA[3],
        phone=DATA[4],
        channel=DATA[1],
        station_id=DATA[8],
        station_key=DATA[9],
        face_liveness=face_liveness,
    )
    assert untranslated(html) == []


def test_the_follow_up_pages_come_from_the_catalogue() -> None:
    rows = [
        ReferralRow(1, DATA[5], DATA[1], "2026-01-01T00:00:00Z", DATA[10], "kiosk", ""),
        ReferralRow(
            2, DATA[5], DATA[1], "2026-01-01T00:00:00Z", DATA[10], "pin_lockout", "2026-01-02T00:00:00Z"
        ),
    ]
    pages: dict[str, dict[str, Any]] = {
        "ngo_referrals.html": {"open": rows[:1], "acknowledged": rows[1:], "contexts": CONTEXTS},
        "ngo_withdraw.html": {"organisation": DATA[2]},
        "ngo_erase.html": {},
        "ngo_receipt.html": {
            "headline": "Consent withdrawn",
            "record_id": DATA[5],
            "scopes": (ScopeState(DATA[11], True, False, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),),
            "receipts": [DATA[7]],
            "erased": True,
            "station_id": DATA[8],
            "station_key": DATA[9],
        },
    }
    for template, context in pages.items():
        assert untranslated(rendered(template, **context)) == [], template


def test_the_consent_text_is_the_catalogues_in_the_holders_language() -> None:
    text = consent_text(pseudo(), DATA[2])
    lines = text.split("\n")
    assert lines[0].startswith("⟪") and len(lines) == 5
    assert [line.partition(": ")[0] for line in lines[1:]] == list(scope_labels(DATA[2]))
    assert all(line.partition(": ")[2].startswith("⟪") for line in lines[1:])
    assert DATA[2] in lines[4]
