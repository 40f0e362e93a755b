"""Every string of the holder check at the desk comes from the message catalogue (as test_catalogue.py
checks the others): the form (first shown, and after each head turn that did not pass), the answer
(the minimal view, with every possession and document kind, and the whole record a PIN releases) and
the refusal of each category are rendered with the pseudo-translation; whatever text is left once
the data the page was given is taken out fails the test."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from safepassage.console.answers import Person
from safepassage.console.caseworker_enrolment import DOCUMENT_KINDS, ENTITLEMENT_KINDS, POSSESSION
from safepassage.console.head_turn import RETRY_PROMPTS, TURN_PROMPTS
from safepassage.console.holder_desk import refused, shown
from safepassage.console.holder_gateway import (
    DocumentState,
    EntitlementHeld,
    HeldDocument,
    HolderCheck,
    HolderContact,
    ReleasedRecord,
)
from safepassage.console.pages import PAGES, Renderer
from safepassage.console.refusals import NotPossibleNow, RequestRefused, RoleRefused, ServiceUnreachable
from safepassage.core.errors import PermissionDenied, SafePassageError
from tests.console.test_catalogue import pseudo, script_texts, untranslated

OFFICER = Person(
    "officer-7",
    "officer",
    "",
    "1A2B",
    "console",
    tuple(
        (operation, frozenset()) for operation in ("Verify", "VerifyHolder", "StartLiveness", "CheckLiveness")
    ),
)
CARD = "SP1:6BFOXN*TS0BI$ZD4N9:9S6RCVN5+O30K3/XIV0W23NTDEMWK4MI$ZD"
# The data the pages are given: names, countries, dates, the contact, numbers, the service's message.
DATA = (
    CARD,
    "officer-7",
    "Maya",
    "Gurung",
    "NPL",
    "ne-NP",
    "1990-04-02",
    "2031-01-31",
    "2020-01-01",
    "2025-02-01",
    "2027-01-31",
    "La Strada International",
    "+31 20 688 1414",
    "help@lastrada.example",
    "la-strada-hotline",
    "PC7000001",
    "WP-2025-5561",
    "Gulf Construction Services",
    "48 h a week, 1200 a month, housing provided",
    "the live face does not match the holder record",
)
PHOTO = b"\xff\xd8\xff\xe0 a jpeg"


def check(released: bool, matched: bool = True) -> HolderCheck:
    """Every document kind once, each possession in turn, with and without an expiry."""
    possessions = list(POSSESSION)
    kinds = list(DOCUMENT_KINDS)
    documents = tuple(
        DocumentState(kind, "NPL", DATA[7] if n % 2 else "", n % 3 != 0, possessions[n % len(possessions)])
        for n, kind in enumerate(kinds)
    )
    record = ReleasedRecord(
        date_of_birth=DATA[6],
        nationality="NPL",
        preferred_language="ne-NP",
        documents=tuple(
            HeldDocument(d.kind, DATA[15], d.issuing_country, d.expiry, d.possession, PHOTO if n else b"")
            for n, d in enumerate(documents)
        ),
        entitlements=tuple(
            EntitlementHeld(kind, DATA[16], DATA[17], DATA[18], DATA[9], DATA[10] if n % 2 else "")
            for n, kind in enumerate(ENTITLEMENT_KINDS)
        ),
    )
    return HolderCheck(
        matched=matched,
        given_names=DATA[2],
        family_name=DATA[3],
        face_photo=PHOTO,
        documents=documents,
        contact=HolderContact(DATA[11], DATA[12], DATA[13], DATA[14]),
        record=record if released else None,
    )


def rendered(template: str, **context: Any) -> str:
    html = Renderer(pseudo()).render(template, person=OFFICER, pages=list(PAGES), current="holder", **context)
    assert "⟪" in html
    for value in sorted(DATA, key=len, reverse=True):
        html = html.replace(value, "")
    return html


def test_the_desk_offers_the_holder_check_and_links_to_it() -> None:
    offered = [page.path for page in PAGES if page.offered_to(OFFICER)]
    assert "/desk/holder" in offered
    html = rendered("desk.html", form_token="1.ab", gallery="")
    assert 'href="/desk/holder"' in html and untranslated(html) == []


def test_the_form_and_the_head_turns_texts_come_from_the_catalogue() -> None:
    html = rendered("desk_holder.html", form_token="1.ab", card="", retry="")
    assert untranslated(html) == []
    assert 'type="password"' in html and 'data-endpoint="/desk/holder/head-turn"' in html
    assert all(text.startswith("⟪") and text.endswith("⟫") for text in script_texts(html))
    # The prompts the challenge endpoint answers the script with.
    catalogue = pseudo()
    assert all(catalogue.gettext(prompt).startswith("⟪") for prompt in TURN_PROMPTS.values())


@pytest.mark.parametrize("retry", sorted(RETRY_PROMPTS.values()))
def test_the_form_after_a_head_turn_that_did_not_pass_comes_from_the_catalogue(retry: str) -> None:
    html = rendered("desk_holder.html", form_token="1.ab", card=CARD, retry=retry)
    assert untranslated(html) == []
    assert f'value="{CARD}"' in Renderer(pseudo()).render(
        "desk_holder.html", person=OFFICER, pages=[], current="holder", form_token="1", card=CARD, retry=retry
    )


@pytest.mark.parametrize("released", [False, True], ids=["minimal view", "whole record"])
@pytest.mark.parametrize("matched", [True, False], ids=["match", "no match"])
def test_the_answer_comes_from_the_catalogue(released: bool, matched: bool) -> None:
    context = shown(check(released, matched))
    html = rendered("desk_holder_answer.html", **context)
    assert untranslated(html) == []
    assert ('id="entitlements"' in html) is released
    assert 'class="possession-warning"' in html  # withheld by an employer, and lost or taken


def test_an_answer_without_documents_or_entitlements_comes_from_the_catalogue() -> None:
    whole = check(True).record
    assert whole is not None
    bare = replace(check(True), documents=(), record=replace(whole, documents=(), entitlements=()))
    html = rendered("desk_holder_answer.html", **shown(bare))
    assert untranslated(html) == [] and 'role="alert"' not in html


@pytest.mark.parametrize(
    "error",
    [
        RoleRefused(DATA[-1]),
        RequestRefused(DATA[-1]),
        NotPossibleNow(DATA[-1]),
        ServiceUnreachable(DATA[-1]),
    ],
    ids=lambda error: type(error).__name__,
)
def test_each_refusal_comes_from_the_catalogue(error: SafePassageError) -> None:
    status, context = refused(error)
    html = rendered("desk_holder_refused.html", **context)
    assert status >= 400 and untranslated(html) == []
    # The record policy's refusals are not the matrix's: no "your role may not" on a wrong face.
    assert (context["headline"] == "") is isinstance(error, PermissionDenied)
