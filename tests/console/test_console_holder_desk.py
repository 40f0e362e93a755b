"""The holder check at the officer desk in a real browser: a protected record's holder at the border.

A caseworker enrols, through the real service, two records from two frames of the shared Hamilton clip
(not frames the camera plays: a live face nearly identical to a template is refused as a replay),
each with a passport "withheld_by_employer" and a work permit. Chromium's fake camera plays the
clip's head turn (to the performer's own right) as a loop (fake_camera.py). At /desk/holder the
officer scans the card (its code typed into the field) and the traveller turns their head: the
console calls CheckLiveness, then VerifyHolder, both as the officer, and the page shows MATCH with
the minimal view (names, the record's photo, the withheld passport as a warning, the NGO to call);
with the PIN typed, the whole record (the work permit); a turn to the wrong side verifies nothing;
the card without a turn, or with a forged recording, is refused by the service and shown in words;
a holder who withdrew verify_at_border (ChangeConsent with their recovery code, at the kiosk) has
no record to show; the kiosk, the caseworker, the auditor and the administrator are refused the
page and the action. axe-core on every page; the MATCH page is photographed for the README.

The side to turn to is the server's draw: the tests re-ask the challenge endpoint (each a real
StartLiveness) through Playwright's routing until it answers the side the clip turns to, or, once,
the other side (`ask_for_side`). Nothing depends on the machine's pace.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Page, Response, expect

from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.api.v1 import matching_pb2_grpc as mpb_grpc
from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.api.v1 import protected_identity_pb2_grpc as pb_grpc
from safepassage.console import Console
from safepassage.console.head_turn import RETRY_PROMPTS
from safepassage.console.pages import HEADERS, PAGE_HEADERS
from safepassage.server.identity import Role
from tests.console.conftest import ConsoleWorld, der
from tests.console.fake_camera import ask_for_side, frame_of, write_head_turn
from tests.console.test_console_browser import CHROMIUM, SCREENSHOTS_IN_README, Session, browser_session
from tests.console.test_console_kiosk import CARD_HOLDER_FRAMES, CLIP
from tests.server.protected_helpers import DURESS_PIN, PIN, record_message

pytestmark = pytest.mark.server

GALLERY = "desk-protected"
SCOPES = ["store", "verify_at_border", "duplicate_check"]
CONSENT_TEXT = "I agree that the NGO keeps my identity record."
PASSPORT, EMPLOYER = "PC7000001", "Gulf Construction Services"
BUTTON = "Record the head turn and check the holder"


@dataclass
class Desk:
    session: Session
    holder: pb.EnrolRecordResponse  # allows border checks
    withdrawn: pb.EnrolRecordResponse  # withdraws them in its test

    @property
    def world(self) -> ConsoleWorld:
        return self.session.world


def _enrol_from_clip(world: ConsoleWorld, number: str) -> pb.EnrolRecordResponse:
    faces = [frame_of(world.faces / CLIP, index) for index in CARD_HOLDER_FRAMES]
    with world.channel(Role.NGO_CASEWORKER) as channel:
        answer: pb.EnrolRecordResponse = pb_grpc.ProtectedIdentityServiceStub(channel).EnrolRecord(
            pb.EnrolRecordRequest(
                gallery_id=GALLERY,
                # A passport withheld by the employer, an expired national id kept by the holder, a permit.
                record=record_message("Maya", "Gurung", number, faces[0], faces[1]),
                faces=[mpb.Probe(image=face) for face in faces],
                consent=pb.ConsentGiven(language="en", text=CONSENT_TEXT, granted=SCOPES),
                pin=PIN,
                duress_pin=DURESS_PIN,
            ),
            timeout=120,
        )
    assert answer.credential.text.startswith("SP1:")
    return answer


@pytest.fixture(scope="module")
def desk(console_world: ConsoleWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)", pytrace=False)
    clip = console_world.faces / CLIP
    assert clip.exists(), f"{clip} is missing: the shared faces are incomplete"
    with console_world.channel(Role.ADMIN) as channel:
        mpb_grpc.GalleryServiceStub(channel).CreateGallery(
            mpb.CreateGalleryRequest(gallery_id=GALLERY, purpose=mpb.PROTECTED_IDENTITY)
        )
    holder = _enrol_from_clip(console_world, PASSPORT)
    withdrawn = _enrol_from_clip(console_world, "PC7000002")
    camera = tmp_path_factory.mktemp("desk-camera") / "traveller-turning.y4m"
    write_head_turn(clip, camera)
    with browser_session(
        console_world, tmp_path_factory.mktemp("holder-desk-screenshots"), camera=camera
    ) as session:
        yield Desk(session, holder, withdrawn)


def _log_since(world: ConsoleWorld, before: int) -> list[Any]:
    log = world.service.transparency_log
    return [entry.event() for entry in log.entries(before, log.size())]


def _operations(events: list[Any]) -> list[str]:
    names = [event.operation.rsplit("/", 1)[-1] for event in events]
    return [name for name in names if name != "DescribeCaller"]  # every page asks who it is for


def _form(desk: Desk, page: Page, card: str, pin: str = "") -> None:
    response = desk.session.load(page, "/desk/holder")
    for name, value in {**HEADERS, **PAGE_HEADERS["/desk/holder"]}.items():
        assert response.headers.get(name.lower()) == value, name
    page.get_by_label("The card's code").fill(card)
    if pin:
        page.get_by_label("PIN, for the traveller to type (optional)").fill(pin)


def _turn_head(page: Page) -> Response:
    """Press the button: the page asks for a challenge, records the clip's head turn and sends it."""
    with page.expect_navigation(timeout=120_000) as navigation:
        page.get_by_role("button", name=BUTTON).click()
        expect(page.locator("#head-turn-prompt")).to_have_text(
            re.compile("turn your head slowly to your (left|right)")
        )
    return navigation.value


def _record_hash(record_id: str) -> str:
    return hashlib.sha256(record_id.encode()).hexdigest()


def test_an_officer_checks_the_holder_by_card_and_head_turn(desk: Desk) -> None:
    world, session, holder = desk.world, desk.session, desk.holder
    page = session.role(Role.OFFICER)
    session.load(page, "/desk")
    page.get_by_role(
        "link", name="Check the holder of a protected record by their card and a head turn"
    ).click()
    page.wait_for_url("**/desk/holder")
    assert page.locator("script[src='/static/liveness.js']").count() == 1
    _form(desk, page, holder.credential.text)
    session.keep("holder-form", page)
    before = world.service.transparency_log.size()
    drawn = ask_for_side(page, "right")
    answer = _turn_head(page)
    assert answer.status == 200, page.inner_text("main")[:600]
    assert page.locator("#verdict").inner_text() == "MATCH"
    assert page.locator("#given-names").inner_text() == "Maya"
    assert page.locator("#family-name").inner_text() == "Gurung"
    photo = page.locator("#record-photo")
    assert (photo.get_attribute("src") or "").startswith("data:image/jpeg;base64,")
    assert photo.get_attribute("alt") == "The face photo of the record, taken when the holder enrolled"
    # The trafficking signal, as a warning the officer cannot miss; the other document is the holder's.
    warning = page.get_by_role("alert")
    expect(warning).to_contain_text("withheld by an employer")
    expect(warning).to_contain_text("Passport (NPL)")
    rows = page.locator("#documents tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).get_attribute("class") == "hit" and rows.nth(1).get_attribute("class") is None
    assert "An employer or agent keeps it" in rows.nth(0).inner_text()
    assert "No: expired" in rows.nth(1).inner_text() and "The holder has it" in rows.nth(1).inner_text()
    contact = page.locator("#contact").inner_text()
    assert (
        "La Strada International" in contact
        and "la-strada-hotline" in contact
        and "+31 20 688 1414" in contact
    )
    # The minimal view: no document number, no entitlement, no PIN, nothing of the record's id.
    content = page.content()
    assert PASSPORT not in content and EMPLOYER not in content and PIN not in content
    assert holder.record_id not in content and page.locator("#entitlements").count() == 0
    session.keep("holder-match", page)
    for width in ("desk", "tablet"):
        shutil.copyfile(
            session.shots / f"holder-match-{width}.png",
            SCREENSHOTS_IN_README / f"console-desk-holder-{width}.png",
        )
    events = _log_since(world, before)
    assert _operations(events)[-3:] == ["StartLiveness", "CheckLiveness", "VerifyHolder"]
    assert _operations(events).count("StartLiveness") == len(drawn)
    (verified,) = [e for e in events if e.operation.endswith("/VerifyHolder")]
    assert verified.actor == "officer:officer-1" and verified.outcome == "MATCH"
    assert verified.details["via"] == "console"
    assert verified.details["record_sha256"] == _record_hash(holder.record_id)


def test_with_the_pin_typed_the_whole_record_shows_and_the_duress_pin_shows_the_same(desk: Desk) -> None:
    world, session = desk.world, desk.session
    page = session.role(Role.OFFICER)
    _form(desk, page, desk.holder.credential.text, pin=PIN)
    before = world.service.transparency_log.size()
    ask_for_side(page, "right")
    answer = _turn_head(page)
    assert answer.status == 200, page.inner_text("main")[:600]
    assert page.locator("#verdict").inner_text() == "MATCH"
    entitlements = page.locator("#entitlements").inner_text()
    assert "Work permit" in entitlements and EMPLOYER in entitlements
    assert "48 h a week" in entitlements and "2027-01-31" in entitlements
    assert PASSPORT in page.locator("#record-documents").inner_text()
    expect(page.get_by_role("alert")).to_contain_text("withheld by an employer")
    # The PIN is in no page and no log entry.
    assert PIN not in page.content()
    session.keep("holder-record", page)
    shown = page.inner_text("main")
    # The danger PIN typed under duress: the same page, word for word (the service's referral is silent).
    duress = session.role(Role.OFFICER)
    _form(desk, duress, desk.holder.credential.text, pin=DURESS_PIN)
    ask_for_side(duress, "right")
    assert _turn_head(duress).status == 200
    assert duress.inner_text("main") == shown and DURESS_PIN not in duress.content()
    events = _log_since(world, before)
    verified = [e for e in events if e.operation.endswith("/VerifyHolder")]
    assert [(e.outcome, e.details["record_sha256"]) for e in verified] == [
        ("MATCH", _record_hash(desk.holder.record_id))
    ] * 2
    assert all(PIN not in repr(event) and DURESS_PIN not in repr(event) for event in events)


def test_a_turn_to_the_wrong_side_verifies_nothing(desk: Desk) -> None:
    world, session = desk.world, desk.session
    page = session.role(Role.OFFICER)
    card = desk.holder.credential.text
    _form(desk, page, card, pin=PIN)
    before = world.service.transparency_log.size()
    ask_for_side(page, "left")  # the clip turns to the performer's right
    answer = _turn_head(page)
    assert answer.status == 422
    assert page.locator("#head-turn-retry").inner_text() == RETRY_PROMPTS["WRONG_DIRECTION"]
    assert "Nothing was checked" in page.locator(".head-turn-retry").inner_text()
    assert "Maya" not in page.content() and PIN not in page.content()
    # The card's code stays for the next turn; the PIN field is empty: the traveller types it again.
    assert page.get_by_label("The card's code").input_value() == card
    assert page.get_by_label("PIN, for the traveller to type (optional)").input_value() == ""
    session.keep("holder-retry", page)
    operations = _operations(_log_since(world, before))
    assert "CheckLiveness" in operations and "VerifyHolder" not in operations


def _post(desk: Desk, page: Page, role: Role, path: str, **fields: Any) -> tuple[int, str]:
    console = desk.world.service.console
    assert isinstance(console, Console)
    token = console.form_tokens.issue(der(desk.world.pki.clients[role]))
    response = page.request.post(desk.world.origin + path, multipart={"form_token": token, **fields})
    return response.status, response.text()


def test_the_card_without_a_head_turn_is_refused_by_the_service(desk: Desk) -> None:
    world, session = desk.world, desk.session
    page = session.role(Role.OFFICER)
    session.load(page, "/desk/holder")
    card = desk.holder.credential.text
    before = world.service.transparency_log.size()
    # No recording (no script, no camera): VerifyHolder without a live face.
    status, text = _post(desk, page, Role.OFFICER, "/desk/holder/verify", credential=card, pin=PIN)
    assert status == 403, text[:600]
    assert "Not verified" in text and "The service said:" in text and "Maya" not in text
    refused = [e for e in _log_since(world, before) if e.operation.endswith("/VerifyHolder")]
    assert refused and all(e.outcome not in ("OK", "MATCH") for e in refused)
    # A recording that is not one (a challenge the service never issued): refused before any record.
    before = world.service.transparency_log.size()
    status, text = _post(
        desk,
        page,
        Role.OFFICER,
        "/desk/holder/verify",
        credential=card,
        head_turn_challenge=base64.b64encode(b"not a challenge").decode(),
        head_turn_times="0",
        head_turn_frame={
            "name": "a.jpg",
            "mimeType": "image/jpeg",
            "buffer": frame_of(world.faces / CLIP, 175),
        },
    )
    assert status in (400, 403), text[:600]
    assert "Not verified" in text and "Maya" not in text
    assert "VerifyHolder" not in _operations(_log_since(world, before))
    page.set_content(text)  # the refusal as the officer sees it, for axe-core and the photographs
    session.keep("holder-refused", page)


def test_a_holder_who_withdrew_border_checks_shows_no_record(desk: Desk) -> None:
    world, session, holder = desk.world, desk.session, desk.withdrawn
    # The holder at their NGO's kiosk, with the recovery code their enrolment gave them.
    with world.channel(Role.KIOSK) as channel:
        pb_grpc.ProtectedIdentityServiceStub(channel).ChangeConsent(
            pb.ChangeConsentRequest(
                holder=pb.HolderRef(recovery_code=holder.recovery_code),
                consent=pb.ConsentGiven(language="en", text=CONSENT_TEXT, refused=["verify_at_border"]),
            ),
            timeout=60,
        )
    page = session.role(Role.OFFICER)
    _form(desk, page, holder.credential.text)
    before = world.service.transparency_log.size()
    ask_for_side(page, "right")
    answer = _turn_head(page)
    assert answer.status == 403, page.inner_text("main")[:600]
    assert page.locator("#verdict").inner_text() == "Not verified"
    assert "verify_at_border" in page.locator("#service-said").inner_text()
    assert "Maya" not in page.content() and "Gurung" not in page.content()
    session.keep("holder-withdrawn", page)
    (refused,) = [e for e in _log_since(world, before) if e.operation.endswith("/VerifyHolder")]
    assert refused.actor == "officer:officer-1" and refused.outcome not in ("OK", "MATCH")
    assert refused.details["record_sha256"] == _record_hash(holder.record_id)


@pytest.mark.parametrize(
    "role", [Role.KIOSK, Role.NGO_CASEWORKER, Role.AUDITOR, Role.ADMIN], ids=lambda role: role.value
)
def test_other_roles_are_refused_the_page_and_the_action(desk: Desk, role: Role) -> None:
    world, session = desk.world, desk.session
    page = session.role(role)
    home = session.load(page, "/")
    assert home.status == 200 and page.locator("a[href='/desk/holder']").count() == 0
    assert session.load(page, "/desk/holder").status == 403
    before = world.service.transparency_log.size()
    status, text = _post(desk, page, role, "/desk/holder/head-turn")
    assert status == 403, text[:400]
    status, text = _post(
        desk, page, role, "/desk/holder/verify", credential=desk.holder.credential.text, pin=PIN
    )
    assert status == 403, text[:400]
    assert "Maya" not in text
    operations = _operations(_log_since(world, before))
    assert not {"StartLiveness", "CheckLiveness", "VerifyHolder"} & set(operations), operations


def test_axe_finds_nothing_serious_and_only_the_form_runs_a_script(desk: Desk) -> None:
    kept = {
        "holder-form",
        "holder-match",
        "holder-record",
        "holder-retry",
        "holder-refused",
        "holder-withdrawn",
    }
    assert kept <= set(desk.session.seen)
    for name in kept:
        seen = desk.session.seen[name]
        serious = [v for v in seen.violations if v[1] in ("serious", "critical")]
        assert not serious, (name, serious)
        assert seen.styles == 0 and not seen.handlers, name
        assert seen.scripts == (1 if name in ("holder-form", "holder-retry") else 0), name
