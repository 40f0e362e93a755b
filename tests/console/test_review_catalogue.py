"""Every string of the CCTV review pages comes from the message catalogue (as test_catalogue.py checks the
others): each page is rendered with a pseudo-translation, in every state a hit can be in, and any text
left over once the data the page was given is taken out fails the test."""

from __future__ import annotations

import time
from typing import Any

import pytest

from safepassage.console.answers import Person
from safepassage.console.hit_review import ACTIONS, SHORT_STATES, STATES, minutes_left, utc_text
from safepassage.console.pages import PAGES, Renderer
from safepassage.console.review_gateway import HitReview, HitState, KeptHit, ReviewAction, ReviewQueue
from tests.console.test_catalogue import pseudo, untranslated

OFFICER = Person("officer-7", "officer", "", "1A2B", "console", (("ListKeptHits", frozenset({"watchlist"})),))
NOW = time.time()
# The data the pages are given: ids, the authorisation's legal basis, the reviewers' subjects, times.
DATA = (
    "cctv-watchlist",
    "cam-1",
    "case-0001",
    "Order 2026/114 of the border court",
    "officer:officer-1",
    "UTC",
)


def hit(state: HitState, reviews: int, confirmed: bool = False, crop: bool = False) -> KeptHit:
    return KeptHit(
        probe_id=123456789,
        camera_id="cam-1",
        kept_at=NOW - 600,
        purge_at=None if confirmed else NOW + 3600,
        authorisation_id="a1",
        legal_basis=DATA[3],
        authorisation_expires=NOW + 7200,
        reference_id="case-0001",
        score=0.42,
        threshold=0.5,
        state=state,
        reviews=tuple(HitReview(DATA[4], ReviewAction.CONFIRM, NOW - 60) for _ in range(reviews)),
        has_face_crop=crop,
        face_crop="data:image/jpeg;base64,AAAA" if crop else None,
    )


HITS = (
    hit(HitState.AWAITING_REVIEW, 0),
    hit(HitState.AWAITING_SECOND_REVIEW, 1),
    hit(HitState.CONFIRMED, 2, confirmed=True, crop=True),
)
HELPERS = {"utc": utc_text, "minutes_left": minutes_left, "states": STATES, "short_states": SHORT_STATES}


def rendered(template: str, **context: Any) -> str:
    html = Renderer(pseudo()).render(
        template, person=OFFICER, pages=list(PAGES), current="review", actions=ACTIONS, **HELPERS, **context
    )
    assert "⟪" in html
    for value in DATA:
        html = html.replace(value, "")
    return html


@pytest.mark.parametrize("metric", ["L2", "COSINE"])
def test_the_queue_page_comes_from_the_catalogue(metric: str) -> None:
    queue = ReviewQueue("cctv-watchlist", "", metric, 24.0, HITS)
    assert untranslated(rendered("review.html", gallery=DATA[0], camera="", queue=queue)) == []
    empty = ReviewQueue("cctv-watchlist", "cam-1", metric, 24.0, ())
    assert untranslated(rendered("review.html", gallery=DATA[0], camera="cam-1", queue=empty)) == []
    assert untranslated(rendered("review.html", gallery="", camera="", queue=None)) == []


@pytest.mark.parametrize("shown", HITS, ids=lambda shown: shown.state.value)
@pytest.mark.parametrize("reference", [None, "data:image/jpeg;base64,AAAA"])
def test_the_hit_page_comes_from_the_catalogue(shown: KeptHit, reference: str | None) -> None:
    html = rendered(
        "review_hit.html",
        form_token="1.ab",
        gallery=DATA[0],
        metric="L2",
        hit=shown,
        reviewed_already=bool(shown.reviews),
        decidable=shown.state is not HitState.CONFIRMED,
        reference=reference,
    )
    assert untranslated(html) == []


@pytest.mark.parametrize("state", list(HitState))
def test_the_recorded_page_comes_from_the_catalogue(state: HitState) -> None:
    action = ReviewAction.DISMISS if state is HitState.DISMISSED else ReviewAction.CONFIRM
    html = rendered("review_done.html", gallery=DATA[0], probe_id=1, action=action, state=state)
    assert untranslated(html) == []
