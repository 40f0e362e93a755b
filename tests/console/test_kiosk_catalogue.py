"""Every string of kiosk mode's pages comes from the message catalogue (as test_catalogue.py checks the
others): each page is rendered with the pseudo-translation, with every scope a record can have, every
refusal a holder can meet, and whatever text is left once the page's data is taken out fails the test."""

from __future__ import annotations

from typing import Any

import pytest

from safepassage.console.head_turn import RETRY_PROMPTS, TURN_PROMPTS
from safepassage.console.kiosk import HOLDER_MEANINGS, render_kiosk
from safepassage.console.kiosk_gateway import Erased, IssuedCard, RecordConsent, ScopeState
from safepassage.console.pages import Renderer
from safepassage.console.refusals import FormRefused, NothingThere, RoleRefused, refusal_page
from safepassage.core.errors import SafePassageError
from tests.console.test_catalogue import pseudo, script_texts, untranslated

# The data the pages are given: ids, times, the receipt, the organisation a scope names.
DATA = (
    "pr-0123456789abcdef",
    "2026-12-05T17:00:00+00:00",
    "receipt-signed-json",
    "la-strada",
    "safepassage-dev",
    "English",
    "the recovery code is not valid",
    "the page was left too long: start again",
    "no such page",
)
SCOPES = (
    ScopeState("store", True, True, DATA[1], ""),
    ScopeState("verify_at_border", True, False, DATA[1], DATA[1]),
    ScopeState("duplicate_check", True, True, DATA[1], ""),
    ScopeState("share:la-strada", True, True, DATA[1], ""),
)
FORMS = {"form_token": "1.ab", "holder_proof": "1.cd", "shown_record": "1.ef"}


def rendered(template: str, **context: Any) -> list[str]:
    renderer = Renderer(pseudo())
    html = render_kiosk(renderer, template, renderer.languages.default, 90, **context)
    assert "⟪" in html
    for value in DATA:
        html = html.replace(value, "")
    return untranslated(html)


def test_the_language_choice_and_the_start_come_from_the_catalogue() -> None:
    renderer = Renderer(pseudo())
    html = render_kiosk(renderer, "kiosk_languages.html", None, 90)
    assert untranslated(html.replace(renderer.languages.default.own_name, "")) == []
    # The start as first shown (recovery code, or card + PIN + head turn) ...
    assert rendered("kiosk_start.html", form_token="1.ab", retry="") == []


@pytest.mark.parametrize("retry", sorted(RETRY_PROMPTS.values()))
def test_the_start_after_a_head_turn_that_did_not_pass_comes_from_the_catalogue(retry: str) -> None:
    # ... and again after a head turn that did not pass: the card and PIN ride sealed, the prompt says why.
    assert rendered("kiosk_start.html", form_token="1.ab", holder_proof="1.cd", retry=retry) == []


def test_the_head_turn_prompt_and_the_scripts_texts_come_from_the_catalogue() -> None:
    # The prompt the challenge's answer carries (JSON) and the texts the script shows from the page's
    # data- attributes are no text nodes: each is checked wrapped here.
    catalogue = pseudo()
    for prompt in (*TURN_PROMPTS.values(), *RETRY_PROMPTS.values()):
        assert catalogue.gettext(prompt).startswith("⟪"), prompt
    renderer = Renderer(catalogue)
    html = render_kiosk(
        renderer, "kiosk_start.html", renderer.languages.default, 90, form_token="1", retry=""
    )
    assert script_texts(html) and all(text.startswith("⟪") for text in script_texts(html))


@pytest.mark.parametrize("head_turn", [False, True])
@pytest.mark.parametrize("receipt", ["", DATA[2]])
@pytest.mark.parametrize("done", ["", "Your choice is recorded.", "Your new PIN is set."])
def test_the_record_page_comes_from_the_catalogue(receipt: str, done: str, head_turn: bool) -> None:
    consent = RecordConsent(DATA[0], SCOPES)
    page = rendered(
        "kiosk_record.html",
        consent=consent,
        scopes=list(SCOPES),
        grantable=["verify_at_border"],
        done=done,
        receipt=receipt,
        retry="",
        head_turn=head_turn,
        **FORMS,
    )
    assert page == []


@pytest.mark.parametrize("retry", sorted(RETRY_PROMPTS.values()))
def test_the_record_page_after_a_head_turn_that_did_not_pass_comes_from_the_catalogue(retry: str) -> None:
    consent = RecordConsent(DATA[0], SCOPES)
    page = rendered(
        "kiosk_record.html",
        consent=consent,
        scopes=list(SCOPES),
        grantable=[],
        done="",
        receipt="",
        retry=retry,
        head_turn=True,
        **FORMS,
    )
    assert page == []


def test_the_card_and_the_erasure_pages_come_from_the_catalogue() -> None:
    card = IssuedCard("SP1:ABC", b"png", DATA[1])
    assert rendered("kiosk_card.html", card=card, qr="data:image/png;base64,AAAA", **FORMS) == []
    erased = Erased(DATA[0], DATA[2], DATA[4], "-----BEGIN PUBLIC KEY-----")
    assert rendered("kiosk_erased.html", erased=erased, receipt_link="data:,", key_link="data:,") == []


@pytest.mark.parametrize(
    "error",
    [RoleRefused(DATA[6]), FormRefused(DATA[7]), NothingThere(DATA[8])],
    ids=lambda error: type(error).__name__,
)
def test_the_holders_refusals_come_from_the_catalogue(error: SafePassageError) -> None:
    status, headline, _ = refusal_page(error)
    page = rendered(
        "kiosk_refusal.html", headline=headline, meaning=HOLDER_MEANINGS[status], detail=str(error)
    )
    assert page == []
