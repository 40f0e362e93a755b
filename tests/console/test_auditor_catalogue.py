"""Every string of the auditor's pages comes from the message catalogue (as test_catalogue.py checks the
others), the messages the check page's script shows included: they are rendered into the page, so a
translation reaches them too."""

from __future__ import annotations

from safepassage.console.answers import Person
from safepassage.console.auditor_view import VERIFY_MESSAGES, EntryView, HeadView
from safepassage.console.pages import PAGES, Renderer
from tests.console.test_catalogue import pseudo, untranslated

AUDITOR = Person("auditor-7", "auditor", "", "1A2B", "console", (("ListLogEntries", frozenset()),))
ROOT = "9634eca0cd2dd720450e456d5eab0a4c19b217559fde500ac4d00ce16f515e04"
# The data the pages are given: ids, operations, outcomes, digests and times, as the log stores them.
DATA = (
    "auditor-7",
    "admin:admin-1",
    "MatchingService/InsertTemplate",
    "border-watchlist",
    "OK",
    "via=console",
    ROOT,
    "UTC",
)


def rendered(template: str, **context: object) -> str:
    html = Renderer(pseudo()).render(
        template, person=AUDITOR, pages=list(PAGES), current="auditor_log", **context
    )
    assert "⟪" in html
    for value in DATA:
        html = html.replace(value, "")
    return html


def test_the_log_page_comes_from_the_catalogue() -> None:
    entry = EntryView(3, "2026-12-05 17:04:22 UTC", DATA[1], DATA[2], DATA[3], DATA[4], DATA[5])
    for entries, heads in (([entry], [HeadView(41, "2026-12-05 17:04:22 UTC", ROOT)]), ([], [])):
        html = rendered(
            "auditor_log.html",
            entries=entries,
            tree_size=41,
            next_query="start=50",
            filters={"operation": "", "actor": "", "outcome": ""},
            since="",
            until="",
            heads=heads,
            head_total=len(heads),
        )
        assert untranslated(html) == []


def test_the_check_page_and_its_scripts_messages_come_from_the_catalogue() -> None:
    html = rendered("auditor_verify.html", messages=VERIFY_MESSAGES)
    assert untranslated(html) == []
    for message in VERIFY_MESSAGES.values():
        assert pseudo().gettext(message) in html.replace("&#39;", "'")  # wrapped, in the language run
