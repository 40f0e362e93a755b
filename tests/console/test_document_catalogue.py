"""Every string of the passport chip check comes from the message catalogue (as test_catalogue.py checks
the others): the form and the answer are rendered with a pseudo-translation, for each decision and
each passive-authentication result (each failure reason too), and any text left over once the data
the page was given is taken out fails the test."""

from __future__ import annotations

from typing import Any

import pytest

from safepassage.console.answers import Person
from safepassage.console.document_desk import FAILURES
from safepassage.console.document_gateway import DocumentAnswer, DocumentDecision
from safepassage.console.officer_desk import DECISIONS, REASONS
from safepassage.console.pages import PAGES, Renderer
from tests.console.test_catalogue import pseudo, untranslated

OFFICER = Person("officer-7", "officer", "", "1A2B", "console", (("VerifyDocument", frozenset()),))
# The data the pages are given: a reason's code (first: "UT" is in "FUTURE"), scores, data groups, formats.
CHECK = "chk_0123456789abcdef0123456789abcdef"
DATA = (*FAILURES, CHECK, "0.412", "0.600", "0.812", "DG1, DG2", "ISO/IEC 19794-5:2005", "JPEG", "UT")


def answer(proof: str, face_match: bool, metric: str = "L2", failure: str = "") -> DocumentAnswer:
    refused = proof == "PA_FAILED"
    return DocumentAnswer(
        decision="MATCH" if face_match and not refused else "NO_MATCH",
        face_match=face_match,
        score=0.412 if face_match else 0.812,
        threshold=0.6,
        metric=metric,
        proof=proof,
        failure=failure,
        detail="",
        country="UT" if proof == "PA_PASSED" else "",
        data_groups=(1, 2) if proof == "PA_PASSED" else (),
        face_record_format="ISO/IEC 19794-5:2005",
        image_format="JPEG",
        document_expired=face_match,
        check_id=CHECK,
    )


def rendered(template: str, **context: Any) -> str:
    html = Renderer(pseudo()).render(
        template, person=OFFICER, pages=list(PAGES), current="document", **{"may_decide": False, **context}
    )
    assert "⟪" in html
    for value in DATA:
        html = html.replace(value, "")
    return html


def test_the_form_comes_from_the_catalogue() -> None:
    assert untranslated(rendered("desk_document.html", form_token="1.ab")) == []


@pytest.mark.parametrize("proof", ["PA_PASSED", "PA_NOT_CHECKED"])
@pytest.mark.parametrize("face_match", [True, False])
@pytest.mark.parametrize("metric", ["L2", "COSINE"])
def test_the_answer_comes_from_the_catalogue(proof: str, face_match: bool, metric: str) -> None:
    html = rendered(
        "desk_document_answer.html", answer=answer(proof, face_match, metric), groups="DG1, DG2", failure=""
    )
    assert untranslated(html) == []


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_each_failure_reason_comes_from_the_catalogue(failure: str) -> None:
    html = rendered(
        "desk_document_answer.html",
        answer=answer("PA_FAILED", True, failure=failure),
        groups="",
        failure=FAILURES[failure],
    )
    assert untranslated(html) == []


def test_the_decision_form_and_its_record_come_from_the_catalogue() -> None:
    html = rendered(
        "desk_document_answer.html",
        answer=answer("PA_PASSED", True),
        groups="DG1, DG2",
        failure="",
        may_decide=True,
        decisions=DECISIONS,
        reasons=REASONS,
        form_token="1.ab",
    )
    assert 'action="/desk/document/decision"' in html and untranslated(html) == []
    for (code, text), (reason, why) in zip(DECISIONS, REASONS, strict=False):
        decided = DocumentDecision(CHECK, "MATCH", "PA_PASSED", code, reason, "")
        recorded = rendered(
            "document_decision_recorded.html", decided=decided, decision_text=text, reason_text=why
        )
        assert untranslated(recorded.replace("officer-7", "")) == []
