"""The passport chip check on the officer desk, in a real browser (Chromium via Playwright) against a
real server that trusts a test CSCA from its CSCA folder: DG2 and SOD files issued from real LFW
faces (tests/travel_document/issuer.py), as the reader application would save them from the chip.

An officer checks the holder (MATCH, passive authentication PASSED), a chip whose photo was swapped
(NO MATCH: FAILED with its reason, though the faces match), another person (NO MATCH, PASSED) and a
chip without its SOD (NOT CHECKED); the MRZ's name and number never reach the page; a role the
matrix refuses is refused the page and the action; axe-core finds nothing serious; the answer is
photographed for the README.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from safepassage.console import Console
from safepassage.server.identity import Role
from tests.console.conftest import ConsoleWorld, der
from tests.console.test_console_browser import SCREENSHOTS_IN_README, Session, browser_session
from tests.pki_helpers import RolePki
from tests.travel_document.issuer import Authority, Chip, issue_chip, make_csca, make_signer, photo_of

pytestmark = pytest.mark.server
HOLDER, OTHER = "Tony_Blair", "Bill_Gates"
# The specimen MRZ's name and number (issuer.SPECIMEN_TD3): never on a page.
MRZ_FIELDS = ("ERIKSSON", "ANNA", "L898902C3")


@dataclass(frozen=True)
class Files:
    folder: Path

    def write(self, name: str, chip: Chip) -> dict[str, Path]:
        paths = {part: self.folder / f"{name}.{part}" for part in ("dg1", "dg2", "sod")}
        for part, path in paths.items():
            path.write_bytes(getattr(chip, part))
        return paths


@pytest.fixture(scope="module")
def csca() -> Authority:
    return make_csca()


@pytest.fixture(scope="module")
def console_settings(csca: Authority) -> Callable[[RolePki, Path], dict[str, object]]:
    def settings(pki: RolePki, folder: Path) -> dict[str, object]:
        trusted = folder / "csca"
        trusted.mkdir()
        (trusted / "utopia.pem").write_bytes(csca.pem())
        return {"travel_documents.csca_dir": str(trusted)}

    return settings


@pytest.fixture(scope="module")
def session(console_world: ConsoleWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    with browser_session(console_world, tmp_path_factory.mktemp("document-screenshots")) as session:
        yield session


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return Files(tmp_path_factory.mktemp("chip-files"))


@pytest.fixture(scope="module")
def signer(csca: Authority) -> Authority:
    return make_signer(csca)


def _check(session: Session, page: Page, chip: dict[str, Path], live: bytes, *, sod: bool = True) -> str:
    session.load(page, "/desk/document")
    page.get_by_label("DG2 file (the chip's photo)").set_input_files(str(chip["dg2"]))
    if sod:
        page.get_by_label("SOD file (the chip's signature)").set_input_files(str(chip["sod"]))
    page.get_by_label("DG1 file (the machine-readable zone)").set_input_files(str(chip["dg1"]))
    page.get_by_label("Traveller's photo").set_input_files(
        {"name": "live.jpg", "mimeType": "image/jpeg", "buffer": live}
    )
    session.act(page, "Check the passport")
    text = page.inner_text("main")
    for field in MRZ_FIELDS:
        assert field not in text and field not in page.content()
    return text


def test_the_desk_links_to_the_chip_check(session: Session) -> None:
    page = session.role(Role.OFFICER)
    session.load(page, "/desk")
    page.get_by_role("link", name="Check a traveller against their passport's chip instead").click()
    page.wait_for_url("**/desk/document")
    assert page.locator("h1").inner_text() == "Passport chip check"
    session.keep("document-form", page)


def test_the_holder_matches_and_the_chip_is_proved(
    session: Session, files: Files, signer: Authority, faces_dir: Path
) -> None:
    page = session.role(Role.OFFICER)
    chip = files.write("holder", issue_chip(photo_of(faces_dir, HOLDER, 1), signer))
    text = _check(session, page, chip, photo_of(faces_dir, HOLDER, 2))
    assert page.locator("#verdict").inner_text() == "MATCH"
    assert "PASSED" in text and "proves DG1, DG2" in text and "UT" in text
    assert "Distance 0." in text and "at most 0.600" in text
    session.keep("document-match", page)


def test_a_swapped_photo_is_refused_with_its_reason(
    session: Session, files: Files, signer: Authority, faces_dir: Path
) -> None:
    page = session.role(Role.OFFICER)
    genuine = issue_chip(photo_of(faces_dir, HOLDER, 1), signer)
    impostor = issue_chip(photo_of(faces_dir, OTHER, 1), signer)
    chip = files.write("swapped", Chip(genuine.dg1, impostor.dg2, genuine.sod))
    text = _check(session, page, chip, photo_of(faces_dir, OTHER, 2))
    assert page.locator("#verdict").inner_text() == "NO MATCH"
    assert "FAILED" in text and "DATA_GROUP_HASH_MISMATCH" in text and "swapped photo" in text
    assert "The faces alone match." in text  # what the impostor showed, for the officer's report
    session.keep("document-refused", page)


def test_the_officer_records_a_decision_on_the_check_joined_to_it_in_the_log(
    session: Session, files: Files, signer: Authority, faces_dir: Path
) -> None:
    page = session.role(Role.OFFICER)
    genuine = issue_chip(photo_of(faces_dir, HOLDER, 1), signer)
    impostor = issue_chip(photo_of(faces_dir, OTHER, 1), signer)
    chip = files.write("decided", Chip(genuine.dg1, impostor.dg2, genuine.sod))
    log = session.world.service.transparency_log
    before = log.size()
    _check(session, page, chip, photo_of(faces_dir, OTHER, 2))
    page.get_by_label("Refer to secondary inspection").check()
    page.get_by_label("Reason").select_option(label="The travel document does not match")
    page.get_by_label("Note (optional)").fill(
        "Laminate lifted at the photo; ERIKSSON sent to the second line"
    )
    session.act(page, "Record decision")
    assert page.locator("h1").inner_text() == "Decision recorded"
    session.keep("document-decision", page)
    events = [entry.event() for entry in log.entries(before, log.size())]
    check = next(e for e in events if e.operation.endswith("/VerifyDocument"))
    decided = next(e for e in events if e.operation.endswith("/RecordDocumentDecision"))
    assert decided.details["check_id"] == check.details["check_id"]
    assert decided.actor == check.actor == "officer:officer-1" and decided.details["via"] == "console"
    assert decided.details["passive_authentication"] == "PA_FAILED"
    assert decided.details["service_decision"] == "NO_MATCH" and decided.details["decision"] == "REVIEW_REFER"
    assert "Laminate" not in page.content() and "note_hmac_sha256" in decided.details


def test_another_person_does_not_match(
    session: Session, files: Files, signer: Authority, faces_dir: Path
) -> None:
    page = session.role(Role.OFFICER)
    chip = files.write("other", issue_chip(photo_of(faces_dir, HOLDER, 1), signer))
    text = _check(session, page, chip, photo_of(faces_dir, OTHER, 1))
    assert page.locator("#verdict").inner_text() == "NO MATCH"
    assert "PASSED" in text and "The faces alone do not match." in text


def test_without_the_sod_the_proof_is_not_checked(
    session: Session, files: Files, signer: Authority, faces_dir: Path
) -> None:
    page = session.role(Role.OFFICER)
    chip = files.write("unsigned", issue_chip(photo_of(faces_dir, HOLDER, 1), signer))
    text = _check(session, page, chip, photo_of(faces_dir, HOLDER, 2), sod=False)
    assert page.locator("#verdict").inner_text() == "MATCH"
    assert "NOT CHECKED" in text


@pytest.mark.parametrize(
    "role", [Role.AUDITOR, Role.ADMIN, Role.NGO_CASEWORKER, Role.KIOSK, Role.CCTV_EDGE], ids=lambda r: r.value
)
def test_a_role_the_matrix_refuses_is_refused_the_page_and_the_check(
    session: Session, role: Role, signer: Authority, faces_dir: Path
) -> None:
    page = session.role(role)
    assert session.load(page, "/desk/document").status == 403
    assert page.locator("h1").inner_text() == "You may not do this"
    console = session.world.service.console
    assert isinstance(console, Console)
    chip = issue_chip(photo_of(faces_dir, HOLDER, 1), signer)
    log = session.world.service.transparency_log
    before = log.size()
    form: dict[str, Any] = {
        "form_token": console.form_tokens.issue(der(session.world.pki.clients[role])),
        "dg2": {"name": "dg2.bin", "mimeType": "application/octet-stream", "buffer": chip.dg2},
        "sod": {"name": "sod.bin", "mimeType": "application/octet-stream", "buffer": chip.sod},
        "probe": {"name": "live.jpg", "mimeType": "image/jpeg", "buffer": photo_of(faces_dir, HOLDER, 2)},
    }
    # With a valid token: the service itself refuses (and its log records the refusal).
    refused = page.request.post(session.world.origin + "/desk/document/verify", multipart=form)
    assert refused.status == 403, refused.text()[:500]
    assert log.size() > before


def test_axe_finds_nothing_serious_and_the_answer_is_photographed(session: Session) -> None:
    assert {"document-form", "document-match", "document-refused", "document-decision"} <= set(session.seen)
    for name, seen in session.seen.items():
        serious = [v for v in seen.violations if v[1] in ("serious", "critical")]
        assert not serious, (name, serious)
        assert seen.scripts == 0 and seen.styles == 0 and not seen.handlers, name
    SCREENSHOTS_IN_README.mkdir(parents=True, exist_ok=True)
    for width in ("desk", "tablet"):
        shutil.copyfile(
            session.shots / f"document-refused-{width}.png",
            SCREENSHOTS_IN_README / f"console-passport-chip-{width}.png",
        )
