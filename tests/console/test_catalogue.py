"""Every string a console page shows comes from the message catalogue, and the English catalogue is current.

The pages are rendered with a pseudo-translation (each message wrapped in ⟪ ⟫); whatever text is left
outside the brackets, once the data the page was given is taken out, was written into a template
without going through the catalogue. A deployment's translation would miss it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from typing import Any

import pytest

from safepassage.console.answers import (
    Candidate,
    FaceAnswer,
    GalleryThreshold,
    Person,
    SearchAnswer,
    SearchKind,
)
from safepassage.console.catalogue import Catalogue
from safepassage.console.gateway import Decision
from safepassage.console.officer_desk import BASES, DECISIONS, ORIGINS, REASONS
from safepassage.console.pages import PAGES, Renderer
from safepassage.console.refusals import NothingThere, RoleRefused, refusal_page
from tests.conftest import REPO

OFFICER = Person(
    "officer-7",
    "officer",
    "",
    "1A2B",
    "console",
    (("Identify", frozenset({"watchlist"})), ("RecordDecision", frozenset({"watchlist"}))),
)
GALLERY = GalleryThreshold("border-watchlist", 1234, 0.5, "L2", "CALIBRATED", 0.01, 0.01, "calibration")
ANSWER = SearchAnswer(
    kind=SearchKind.IDENTIFY,
    gallery_id="border-watchlist",
    decision="MATCH",
    threshold=0.5,
    metric="L2",
    threshold_source="GALLERY_THRESHOLD",
    gallery_threshold_origin="CALIBRATED",
    target_fpir=0.01,
    faces=(
        FaceAnswer(
            (1, 2, 30, 40),
            "MATCH",
            (Candidate(1, "case-0001", 0.31, True), Candidate(2, "case-0002", 0.7, False)),
        ),
    ),
    compared=0,
)
# The data pages are given (ids, numbers, the certificate's subject): not messages.
DATA = (
    "officer-7",
    "border-watchlist",
    "case-0001",
    "case-0002",
    "1A2B",
    "O=SafePassage,OU=officer,CN=officer-7",
    "2030-01-01 00:00 UTC",
    "no page at /x",
    "role officer may not use the page /desk",
    "SafePassage",
)


def pseudo() -> Catalogue:
    """Every message wrapped in ⟪ ⟫. With SAFEPASSAGE_PSEUDO_LANGUAGE=<code> (test_console_languages.py
    runs these tests so, once per shipped language) the wrapped texts are that language's translations:
    a message it lacks is shown unwrapped, in English, and fails the test like text outside the catalogue."""
    source = Catalogue.load(os.environ.get("SAFEPASSAGE_PSEUDO_LANGUAGE", "en"))
    return Catalogue(
        source.language,
        {message: f"⟪{text}⟫" for message, text in source.singular.items()},
        {ids: tuple(f"⟪{form}⟫" for form in forms) for ids, forms in source.plural.items()},
        source.plural_index,
    )


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("alt", "title", "aria-label", "placeholder") and value:
                self.parts.append(value)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def untranslated(html: str) -> list[str]:
    parser = _Text()
    parser.feed(html)
    left = []
    for text in parser.parts:
        while re.search(r"⟪[^⟪⟫]*⟫", text):
            text = re.sub(r"⟪[^⟪⟫]*⟫", "", text)
        for value in sorted(DATA, key=len, reverse=True):
            text = text.replace(value, "")
        text = re.sub(r"[\s\d.,:;·()%/-]+", "", text)
        if text:
            left.append(text)
    return left


def script_texts(html: str) -> list[str]:
    """The texts static/liveness.js may show: the data- attributes of the head-turn panel's status."""
    status = re.search(r'<p id="head-turn-status"[^>]*>', html)
    assert status is not None, "no head-turn panel on the page"
    return [unescape(value) for value in re.findall(r'data-[a-z]+="([^"]*)"', status.group(0))]


PAGES_RENDERED: dict[str, dict[str, Any]] = {
    "home.html": {"subject": DATA[5], "valid_until": DATA[6], "work_pages": list(PAGES[1:])},
    "desk.html": {"form_token": "1.ab", "gallery": "border-watchlist"},
    "desk_answer.html": {
        "form_token": "1.ab",
        "answer": ANSWER,
        "crops": [None],
        "gallery": GALLERY,
        "origin": ORIGINS["CALIBRATED"],
        "basis": BASES["calibration"],
        "strangers": 100,
        "target_per": 100,
        "may_decide": True,
        "decisions": DECISIONS,
        "reasons": REASONS,
    },
    "decision_recorded.html": {
        "decided": Decision(
            "border-watchlist",
            SearchKind.IDENTIFY,
            "case-0001",
            "MATCH",
            "REVIEW_CONFIRM",
            "REASON_SAME_PERSON",
            "n",
        ),
        "decision_text": DECISIONS[0][1],
        "reason_text": REASONS[0][1],
    },
}


@pytest.mark.parametrize("template", sorted(PAGES_RENDERED))
def test_every_string_on_a_page_comes_from_the_catalogue(template: str) -> None:
    html = Renderer(pseudo()).render(
        template, person=OFFICER, pages=list(PAGES), current="desk", **PAGES_RENDERED[template]
    )
    assert "⟪" in html
    assert untranslated(html) == []


@pytest.mark.parametrize(
    "error", [RoleRefused("role officer may not use the page /desk"), NothingThere("no page at /x")]
)
def test_refusal_pages_come_from_the_catalogue(error: Exception) -> None:
    status, title, meaning = refusal_page(error)  # type: ignore[arg-type]
    html = Renderer(pseudo()).render(
        "refusal.html", person=None, pages=[], current="", headline=title, meaning=meaning, detail=str(error)
    )
    assert status in (403, 404)
    assert untranslated(html) == []


def test_the_english_catalogue_holds_exactly_the_messages_the_console_uses() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/console_messages.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
