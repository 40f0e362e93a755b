"""Every string on the administration pages comes from the message catalogue.

Each page is rendered with the pseudo-translation of test_catalogue.py (every message wrapped in
⟪ ⟫); once the data a page was given (ids, serials, file names, times, numbers) is taken out, any
text left was written into a template without going through the catalogue.
"""

from __future__ import annotations

from typing import Any

import pytest

from safepassage.console.admin_certificates import KINDS, STATUSES
from safepassage.console.admin_galleries import BASES, ORIGINS, OUTCOMES, PURPOSES
from safepassage.console.admin_gateway import FileOutcome, FileReport, GallerySummary
from safepassage.console.admin_oversight import RULES
from safepassage.console.answers import Person
from safepassage.console.certificate_bundle import Downloads
from safepassage.console.certificate_gateway import CertificateSummary
from safepassage.console.import_jobs import JobState
from safepassage.console.oversight_gateway import (
    AuthorisationView,
    FishingAlertView,
    NewAuthorisation,
    UseView,
)
from safepassage.console.pages import PAGES, ROLE_NAMES, Renderer
from tests.console.test_catalogue import pseudo, untranslated

ADMIN = Person("admin-1", "admin", "", "1A2B", "console", (("CreateGallery", frozenset({"watchlist"})),))
WHEN = "2030-01-01 00:00 UTC"
SUMMARY = GallerySummary(
    "lookout-list", "watchlist", 40, "flat", 1.0, 0.83, "L2", "CALIBRATED", 0.05, 0.045, "calibration",
    "probes", 22, WHEN, 22,
)  # fmt: skip
CERTIFICATE = CertificateSummary(
    "2A92", "client", "officer-new", "officer", "border-police", WHEN, WHEN, "", "valid"
)
GRANT = AuthorisationView(
    "9f8e7d6c5b4a3210", "border-watchlist", "admin-1", "3C4D", 2, "ab" * 32, WHEN, WHEN, True, 3, 1,
    (UseView(WHEN, "cctv_edge:cam-1", "MATCH"),),
)  # fmt: skip
# The data these pages are given: not messages.
DATA = (
    "lookout-list", "border-watchlist", "officer-new", "border-police", "admin-1", "cctv_edge:cam-1",
    "officer:officer-7", "9f8e7d6c5b4a3210", "2A92", "3C4D", "ab" * 32, WHEN, "flat", "probes", "L2",
    "Aaron_Eckhart_0001.jpg", "Aaron_Eckhart_0001", "blank.png", "blank", "MATCH", "abcde-fghij-kmnpq-rstuv",
    "officer-new.p12", "officer-new-bundle.zip", "impostors[0]: no face was found in the image",
    "9f8e7d6c5b4a3210.authorisation", "cctv-authority", "cam-1",
)  # fmt: skip

PAGES_RENDERED: dict[str, dict[str, Any]] = {
    "admin_galleries.html": {
        "form_token": "1.ab",
        "galleries": [SUMMARY],
        "watchlists": ["lookout-list"],
        "purposes": PURPOSES,
        "origins": ORIGINS,
        "bases": BASES,
    },
    "admin_done.html": {
        "headline": "Photos imported",
        "gallery_id": "lookout-list",
        "files": (
            FileReport("Aaron_Eckhart_0001.jpg", "Aaron_Eckhart_0001", FileOutcome.ENROLLED, ""),
            FileReport(
                "blank.png", "blank", FileOutcome.REFUSED, "impostors[0]: no face was found in the image"
            ),
        ),
        "gallery": SUMMARY,
        "origins": ORIGINS,
        "bases": BASES,
        "outcomes": OUTCOMES,
    },
    "admin_import_progress.html": {
        "job": JobState("job-id", "lookout-list", 40, 22, 0.0, None, None),
    },
    "admin_certificates.html": {
        "form_token": "1.ab",
        "certificates": [CERTIFICATE],
        "roles": list(ROLE_NAMES.items()),
        "statuses": STATUSES,
        "kinds": KINDS,
    },
    "admin_certificate_issued.html": {
        "issued": CERTIFICATE,
        "downloads": Downloads(
            "abcde-fghij-kmnpq-rstuv", "officer-new.p12", "data:,", "officer-new-bundle.zip", "data:,"
        ),
    },
    "admin_certificate_revoked.html": {"target": "officer-new", "serials": ["2A92"]},
    # The form's branch (a deployment that signs on the server); the command's is the default's.
    "admin_authorisations.html": {
        "active": [GRANT],
        "expired": [],
        "complete": False,
        "server_signs": True,
        "may_sign": True,
        "form_token": "1.ab",
    },
    "admin_authorisation_signed.html": {
        "signed": NewAuthorisation(
            "token", "9f8e7d6c5b4a3210", "border-watchlist", ("cam-1",), WHEN, WHEN, "cctv-authority", "3C4D"
        ),
        "file_name": "9f8e7d6c5b4a3210.authorisation",
        "file_link": "data:,",
    },
    "admin_fishing.html": {
        "alerts": [FishingAlertView(WHEN, "officer:officer-7", "border-watchlist", ("volume",), 300, 290, 1)],
        "complete": False,
        "rules": RULES,
    },
}


@pytest.mark.parametrize("template", sorted(PAGES_RENDERED))
def test_every_string_on_an_administration_page_comes_from_the_catalogue(template: str) -> None:
    html = Renderer(pseudo()).render(
        template, person=ADMIN, pages=list(PAGES), current="galleries", **PAGES_RENDERED[template]
    )
    assert "⟪" in html
    for value in sorted(DATA, key=len, reverse=True):
        html = html.replace(value, "")
    assert untranslated(html) == []
