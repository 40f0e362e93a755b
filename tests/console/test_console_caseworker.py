"""The NGO caseworker's pages in a real browser, against a real server, with real faces.

A caseworker of "la-strada" enrols a record end to end: the holder decides each consent scope and
types their PINs on their own step (sealed in the form: never in the caseworker's page), then the
caseworker fills in the record and the holder turns their head in front of the webcam (Chromium's
fake camera playing the shared Hamilton clip's head turn, fake_camera.py): the service's own
head-turn check passes on the frames the page recorded, the frontal frame is enrolled with the
service's statement, and the consent receipt records the face as head_turn (a photo chosen instead:
"none"; a turn to the wrong side: nothing enrolled, the page says why); the printed page's QR, read
back both from a screenshot of the page as printed and from the first page of the PDF the browser
prints (Chromium's print to PDF, rasterised by PDFium), is the credential, and it passes
`safepassage credential verify`'s checks (issuer signature, dates, sealed template opened with the
agency's reader key, matched to another frame of the clip); the PDF's text holds the recovery code
and the consent receipt, and no PIN. Follow-up: a duress referral raised at a kiosk reaches the
inbox and is acknowledged; a withdrawal recorded on the holder's instruction and an erasure with the
recovery code each give a receipt the station's key verifies. A caseworker of another organisation
sees none of it, and every attempt is refused by the record policy and written to the transparency
log under them.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pypdfium2
import pytest
from playwright.sync_api import Page, expect

from safepassage import credential as holder_credential
from safepassage.api.v1 import matching_pb2 as mpb
from safepassage.api.v1 import matching_pb2_grpc as mpb_grpc
from safepassage.api.v1 import protected_identity_pb2 as pb
from safepassage.api.v1 import protected_identity_pb2_grpc as pb_grpc
from safepassage.console.caseworker_enrolment import consent_text
from safepassage.console.catalogue import Catalogue
from safepassage.console.head_turn import RETRY_PROMPTS, TURN_PROMPTS
from safepassage.console.pages import HEADERS, PAGE_HEADERS
from safepassage.enrolment import ReceiptKind, verify_receipt
from safepassage.server.identity import Role
from safepassage.server.pki_issuance import IssuedCert
from tests.conftest import REPO
from tests.console.conftest import ConsoleWorld, der
from tests.console.fake_camera import ask_for_side, frame_of, write_head_turn
from tests.console.test_console_browser import CHROMIUM, Session, _tokens, browser_session
from tests.pki_helpers import RolePki
from tests.server.protected_helpers import GALLERY, HOLDER, enrol, person, signed_live

pytestmark = pytest.mark.server

CLIP = Path("video") / "face_recognition" / "short_hamilton_clip.mp4"
LIVE_FRAME = 160  # the holder at a border: a frame of the clip the camera does not play
PIN, DURESS_PIN = "384912", "605127"
SCREENSHOTS = REPO / "docs" / "screenshots"


@dataclass
class Caseworkers:
    session: Session
    reader: holder_credential.ReaderKey
    other: IssuedCert  # a caseworker of another organisation


@pytest.fixture(scope="module")
def caseworkers(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, faces_dir: Path
) -> Iterator[Caseworkers]:
    from safepassage.app import create_server
    from safepassage.server.config import load_config

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)", pytrace=False)
    clip = faces_dir / CLIP
    assert clip.exists(), f"{clip} is missing: the shared faces are incomplete"
    folder = tmp_path_factory.mktemp("caseworker")
    reader = holder_credential.ReaderKey.load_or_create(folder / "agency-reader.pem")
    (folder / "agency-reader.pub.pem").write_bytes(reader.public_pem())
    pki = RolePki.create(folder / "pki")
    console = pki.pki.issue_console()
    other = pki.pki.issue_client("ngo-other", Role.NGO_CASEWORKER, organisation="other-ngo")
    config = load_config(
        None,
        {
            "storage.data_dir": str(folder / "data"),
            "listen.port": 0,
            "console.port": 0,
            "faces.model_dir": str(model_dir),
            "tls.pki_dir": str(pki.folder),
            "limits.enabled": False,
            "fishing.enabled": False,
            "enrolment.agency_reader_keys": [str(folder / "agency-reader.pub.pem")],
        },
    )
    camera = folder / "holder-turning.y4m"
    write_head_turn(clip, camera)
    service, port = create_server(config)
    try:
        service.start()
        assert service.console is not None, "the console did not start"
        world = ConsoleWorld(service, port, service.console.port, pki, console, faces_dir, folder)
        with world.channel(Role.ADMIN) as channel:
            mpb_grpc.GalleryServiceStub(channel).CreateGallery(
                mpb.CreateGalleryRequest(gallery_id=GALLERY, purpose=mpb.PROTECTED_IDENTITY)
            )
        with browser_session(
            world, tmp_path_factory.mktemp("caseworker-screenshots"), camera=camera
        ) as session:
            yield Caseworkers(session, reader, other)
    finally:
        service.stop(grace_s=1)


@dataclass
class Stubs:
    protected: pb_grpc.ProtectedIdentityServiceStub


def _enrolled_by_grpc(world: ConsoleWorld, family: str) -> pb.EnrolRecordResponse:
    """A record of la-strada enrolled directly (the follow-up pages' subject), from a real LFW face."""
    with world.channel(Role.NGO_CASEWORKER) as channel:
        return enrol(
            Stubs(pb_grpc.ProtectedIdentityServiceStub(channel)),
            person(world.faces, HOLDER),
            "Sita",
            family,
            "PA7654321",
        )


def _station_key(world: ConsoleWorld) -> bytes:
    with world.channel(Role.OFFICER) as channel:
        keys = pb_grpc.ProtectedIdentityServiceStub(channel).GetPublicKeys(pb.GetPublicKeysRequest())
    return bytes(keys.station_public_pem)


def _log_since(world: ConsoleWorld, before: int) -> list[Any]:
    log = world.service.transparency_log
    return [entry.event() for entry in log.entries(before, log.size())]


def _holder_step(session: Session, page: Page, grant: tuple[bool, bool, bool, bool]) -> None:
    session.load(page, "/ngo/enrol")
    for index, granted in enumerate(grant, start=1):
        page.locator(f"#{'grant' if granted else 'refuse'}-{index}").check()
    page.get_by_label("Your PIN", exact=True).fill(PIN)
    page.get_by_label("Your PIN again").fill(PIN)
    page.get_by_label("Your danger PIN", exact=True).fill(DURESS_PIN)
    page.get_by_label("Your danger PIN again").fill(DURESS_PIN)


def _record_step(page: Page) -> None:
    page.get_by_label("Gallery of protected records").fill(GALLERY)
    page.get_by_label("Given names").fill("Maya")
    page.get_by_label("Family name").fill("Gurung")
    page.get_by_label("Date of birth (if known)").fill("1994-07-12")
    page.get_by_label("Nationality (3 letters, e.g. NPL)").fill("NPL")
    page.get_by_label("Kind").first.select_option("passport")
    page.get_by_label("Number", exact=True).fill("PB9988776")
    page.get_by_label("Issuing country (3 letters)").fill("NPL")
    page.get_by_label("Expires (if it does)").fill("2032-03-31")
    page.get_by_label("Who holds it now").select_option("withheld_by_employer")
    page.get_by_label("Reference", exact=True).fill("WP-2026-0042")
    page.get_by_label("Employer", exact=True).fill("Example Farms")
    page.get_by_label("Valid from").fill("2026-01-01")
    page.get_by_label("Organisation").fill("La Strada International")
    page.get_by_label("Phone").fill("+31 20 688 1414")
    page.get_by_label("Referral channel (where a danger PIN sends its call for help)").fill(
        "la-strada-hotline"
    )


@dataclass(frozen=True)
class PrintedPdf:
    first_page_png: bytes  # the first page as a picture, as a scanner or a phone's camera would see it
    text: str  # every page's text, as PDFium extracts it


def _printed_pdf(pdf: bytes) -> PrintedPdf:
    """The PDF the browser printed, read back with PDFium: its first page rasterised, and its text."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        assert len(document) >= 1, "the printed PDF has no page"
        texts = []
        for index in range(len(document)):
            page = document[index]
            textpage = page.get_textpage()
            # PDFium reports a hyphen it takes for a possible hyphenation as U+FFFE: the printed "-".
            texts.append(str(textpage.get_text_range()).replace("\ufffe", "-"))
            textpage.close()
            page.close()
        # 200 dpi (PDF points are 1/72 inch): the QR's modules several pixels wide, as a printout's scan.
        first = document[0]
        bitmap = first.render(scale=200 / 72, grayscale=True)
        pixels = np.ascontiguousarray(bitmap.to_numpy(), dtype=np.uint8)
        bitmap.close()
        first.close()
    finally:
        document.close()
    encoded, png = cv2.imencode(".png", pixels)
    assert encoded, "the PDF's first page could not be encoded as a PNG"
    return PrintedPdf(png.tobytes(), "\n".join(texts))


def _unbroken(text: str) -> str:
    """Text with its whitespace taken out: a PDF breaks long lines (a receipt's) where it wraps them."""
    return "".join(text.split())


def test_a_caseworker_enrols_a_record_end_to_end_and_the_printed_qr_is_the_credential(
    caseworkers: Caseworkers, caplog: pytest.LogCaptureFixture, model_dir: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    session = caseworkers.session
    world = session.world
    page = session.role(Role.NGO_CASEWORKER)
    _holder_step(session, page, (True, True, False, True))
    assert "la-strada" in page.locator("fieldset.scope legend").nth(3).inner_text()
    session.keep("ngo-enrol-holder", page)
    session.act(page, "Done: give the device back to the caseworker")
    # The caseworker's step: the PINs are nowhere in it, not even in its hidden fields.
    assert page.locator("h1").inner_text() == "Enrol: the record"
    assert PIN not in page.content() and DURESS_PIN not in page.content()
    _record_step(page)
    expect(page.locator("#head-turn-status")).to_have_text("The camera is on.")
    response = session.load(page, "/ngo/enrol")  # headers of the pages with the camera
    for name, value in {**HEADERS, **PAGE_HEADERS["/ngo/enrol"]}.items():
        assert response.headers.get(name.lower()) == value, name
    _holder_step(session, page, (True, True, False, True))
    session.act(page, "Done: give the device back to the caseworker")
    _record_step(page)
    expect(page.locator("#head-turn-status")).to_have_text("The camera is on.")
    session.keep("ngo-enrol-record", page)
    before = world.service.transparency_log.size()
    # The holder turns their head (the side the clip turns to: the service's draw, re-asked until then).
    ask_for_side(page, "right")
    with page.expect_navigation(timeout=120_000):
        page.get_by_role("button", name="Record the head turn and enrol").click()
        expect(page.locator("#head-turn-prompt")).to_have_text(
            "Look at the camera, then turn your head slowly to your right"
        )
        page.screenshot(path=str(SCREENSHOTS / "console-caseworker-head-turn.png"))
    assert page.locator("h1").inner_text() == "Your protected identity record", page.inner_text("main")
    record_id = page.locator("#record-id").inner_text()
    recovery_code = page.locator("#recovery-code").inner_text()
    assert len(recovery_code.replace("-", "")) == 20
    assert page.locator("#face-liveness").inner_text() == (
        "The face was checked live: the holder turned their head as asked."
    )
    session.keep("ngo-enrolled", page)
    # The log names the caseworker's head turn and enrolment, and the record by hash only.
    logged = [e for e in _log_since(world, before) if not e.operation.endswith("/DescribeCaller")]
    checks = [e for e in logged if e.operation.endswith("/CheckLiveness")]
    assert [e.actor for e in checks] == ["ngo_caseworker:ngo-1"] and checks[0].outcome == "OK"
    enrolments = [e for e in logged if e.operation.endswith("/EnrolRecord")]
    assert [e.actor for e in enrolments] == ["ngo_caseworker:ngo-1"]
    assert all(e.outcome == "OK" for e in enrolments)
    # The page as printed: no console around it; its QR read back from a picture of the page.
    page.emulate_media(media="print")
    assert not page.locator("header.top").is_visible()
    printed = page.screenshot(full_page=True)
    (session.shots / "ngo-enrolled-print.png").write_bytes(printed)
    text = holder_credential.read_qr(printed)
    # The page as the caseworker's browser prints it to PDF (the print stylesheet applies), its first
    # page rasterised and its QR read back: the same credential as the screenshot's.
    pdf = page.pdf(format="A4", margin={"top": "10mm", "right": "10mm", "bottom": "10mm", "left": "10mm"})
    (session.shots / "ngo-enrolled-print.pdf").write_bytes(pdf)
    assert pdf.startswith(b"%PDF-")
    printed_pdf = _printed_pdf(pdf)
    (session.shots / "ngo-enrolled-print-pdf-page-1.png").write_bytes(printed_pdf.first_page_png)
    text_from_pdf = holder_credential.read_qr(printed_pdf.first_page_png)
    assert text_from_pdf == text
    # `safepassage credential verify`: issuer signature, dates, sealed template, face match.
    from safepassage.camera_edge.holder_check import HolderCheck
    from safepassage.face.pipeline import PipelineSettings, load_pipeline

    with world.channel(Role.OFFICER) as channel:
        keys = pb_grpc.ProtectedIdentityServiceStub(channel).GetPublicKeys(pb.GetPublicKeysRequest())
    trusted = holder_credential.TrustedIssuers(
        [holder_credential.IssuerPublicKey.from_pem(keys.issuer_public_pem, keys.issuer_id)]
    )
    check = HolderCheck(load_pipeline(PipelineSettings(model_dir=model_dir)), trusted, caseworkers.reader)
    live = cv2.imdecode(np.frombuffer(frame_of(world.faces / CLIP, LIVE_FRAME), np.uint8), cv2.IMREAD_COLOR)
    assert live is not None
    live_rgb = np.ascontiguousarray(cv2.cvtColor(live, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    for read_back in (text, text_from_pdf):
        accepted = check.check(read_back, live_rgb)
        assert accepted.record_id == record_id
        assert accepted.score <= accepted.threshold
    # The consent receipt on the page is the station's, for this record and these scopes.
    receipt = verify_receipt(page.locator("#consent-receipt").inner_text(), bytes(keys.station_public_pem))
    assert receipt.kind is ReceiptKind.CONSENT and receipt.record_id == record_id
    assert receipt.body["face_liveness"] == "head_turn"  # the service noted the head turn it checked
    assert "Maya" not in page.locator("#consent-receipt").inner_text()
    # The PDF holds the recovery code and the consent receipt, the station's key beside it, and no PIN.
    pdf_text = _unbroken(printed_pdf.text)
    assert recovery_code in pdf_text
    assert _unbroken(page.locator("#consent-receipt").inner_text()) in pdf_text
    assert _unbroken(keys.station_public_pem.decode("ascii")) in pdf_text
    assert PIN not in pdf_text and DURESS_PIN not in pdf_text
    # The PINs were never logged, by the console or the service.
    assert PIN not in caplog.text and DURESS_PIN not in caplog.text and recovery_code not in caplog.text
    for shot in ("ngo-enrol-record-desk", "ngo-enrol-record-tablet"):
        (SCREENSHOTS / f"console-caseworker-{shot.removeprefix('ngo-')}.png").write_bytes(
            (session.shots / f"{shot}.png").read_bytes()
        )
    (SCREENSHOTS / "console-caseworker-credential-print.png").write_bytes(printed)


def test_the_holder_reads_the_consent_in_their_language_and_keeps_a_page_in_it(
    caseworkers: Caseworkers,
) -> None:
    """Nepali chosen on the holder's step: the consent text, its receipt and the printed page are Nepali;
    the caseworker's step stays in the caseworker's language. The face is an uploaded LFW photo."""
    session = caseworkers.session
    world = session.world
    page = session.role(Role.NGO_CASEWORKER)
    english = consent_text(Catalogue.load("en"), "la-strada")
    nepali = consent_text(Catalogue.load("ne"), "la-strada")
    assert nepali != english
    session.load(page, "/ngo/enrol?lang=ne")
    assert page.locator("html").get_attribute("lang") == "ne"
    assert page.locator("#consent-intro").inner_text() == nepali.split("\n")[0]
    for index in range(1, 5):
        page.locator(f"#grant-{index}").check()
    for field in ("#pin", "#pin-again"):
        page.locator(field).fill(PIN)
    for field in ("#duress-pin", "#duress-pin-again"):
        page.locator(field).fill(DURESS_PIN)
    with page.expect_navigation():
        page.locator("form[method=post] button[type=submit]").click()
    assert page.locator("html").get_attribute("lang") == "en"
    _record_step(page)
    # The head turn is the holder's to do: its prompt is asked for in their language, the page stays
    # the caseworker's.
    endpoint = page.locator("#head-turn").get_attribute("data-endpoint")
    assert endpoint == "/ngo/enrol/head-turn?holder_language=ne"
    token = page.locator("input[name=form_token]").first.input_value()
    asked = page.request.post(world.origin + endpoint, multipart={"form_token": token})
    assert asked.ok, asked.text()[:300]
    assert asked.json()["prompt"] in {
        Catalogue.load("ne").gettext(TURN_PROMPTS[side]) for side in ("left", "right")
    }
    assert asked.json()["prompt"] not in TURN_PROMPTS.values()
    page.get_by_label("Or choose a photo").set_input_files(str(person(world.faces, HOLDER).photos[1]))
    session.act(page, "Enrol with the chosen photo")
    assert page.locator("html").get_attribute("lang") == "ne"
    assert page.locator("#credential-qr").count() == 1
    receipt = verify_receipt(page.locator("#consent-receipt").inner_text(), _station_key(world))
    assert receipt.body["language"] == "ne"
    assert receipt.body["face_liveness"] == "none"  # a photo: enrolled without a liveness check
    assert (
        receipt.body["text_sha256"]
        == hashlib.sha256(unicodedata.normalize("NFC", nepali).encode()).hexdigest()
    )
    session.keep("ngo-enrolled-nepali", page)


def test_a_head_turn_to_the_wrong_side_enrols_nothing_and_the_page_says_why(caseworkers: Caseworkers) -> None:
    session = caseworkers.session
    world = session.world
    page = session.role(Role.NGO_CASEWORKER)
    _holder_step(session, page, (True, True, False, True))
    session.act(page, "Done: give the device back to the caseworker")
    _record_step(page)
    expect(page.locator("#head-turn-status")).to_have_text("The camera is on.")
    before = world.service.transparency_log.size()
    ask_for_side(page, "left")  # the clip turns to his right
    with page.expect_navigation(timeout=120_000):
        page.get_by_role("button", name="Record the head turn and enrol").click()
    assert page.locator("#head-turn-retry").inner_text() == RETRY_PROMPTS["WRONG_DIRECTION"]
    assert "Nothing was enrolled." in page.locator(".head-turn-retry").inner_text()
    assert page.get_by_label("Given names").input_value() == "Maya"  # the caseworker's fields kept
    assert PIN not in page.content() and DURESS_PIN not in page.content()
    logged = _log_since(world, before)
    assert [e.outcome for e in logged if e.operation.endswith("/CheckLiveness")] == ["OK"]  # an answer
    assert not any(e.operation.endswith("/EnrolRecord") for e in logged)
    session.keep("ngo-enrol-retry", page)


def test_the_holder_step_refuses_mismatched_pins_and_never_shows_them_again(caseworkers: Caseworkers) -> None:
    session = caseworkers.session
    page = session.role(Role.NGO_CASEWORKER)
    _holder_step(session, page, (True, False, False, False))
    page.get_by_label("Your danger PIN again").fill("111111")
    session.act(page, "Done: give the device back to the caseworker")
    assert "not the same" in page.locator("#problem").inner_text()
    assert PIN not in page.content() and DURESS_PIN not in page.content()
    session.keep("ngo-enrol-holder-problem", page)


def test_a_duress_referral_reaches_the_inbox_and_is_acknowledged(caseworkers: Caseworkers) -> None:
    session = caseworkers.session
    world = session.world
    enrolled = _enrolled_by_grpc(world, "Referral")
    holder = person(world.faces, HOLDER)
    # The holder, forced at the NGO's kiosk, types the danger PIN: it opens as usual.
    with world.channel(Role.KIOSK) as channel:
        live = signed_live(world.pki.clients[Role.KIOSK], holder.photo(2), "head_turn")
        pb_grpc.ProtectedIdentityServiceStub(channel).VerifyHolder(
            pb.VerifyHolderRequest(
                holder=pb.HolderRef(credential=enrolled.credential.text),
                live=mpb.Probe(image=live.image),
                live_statement=live.statement,
                pin="731105",
            )
        )
    page = session.role(Role.NGO_CASEWORKER)
    session.load(page, "/ngo/referrals")
    rows = page.locator("#open-referrals tbody tr")
    row = rows.filter(has_text=enrolled.record_id)
    assert row.count() == 1
    assert "danger PIN at the kiosk" in row.inner_text()
    session.keep("ngo-referrals", page)
    row.locator("button[type=submit]").click()
    page.wait_for_url("**/ngo/referrals")
    assert page.locator("#acknowledged-referrals tbody tr").filter(has_text=enrolled.record_id).count() == 1


def test_a_withdrawal_on_the_holders_instruction_and_an_erasure_give_signed_receipts(
    caseworkers: Caseworkers,
) -> None:
    session = caseworkers.session
    world = session.world
    station = _station_key(world)
    enrolled = _enrolled_by_grpc(world, "Withdrawal")
    page = session.role(Role.NGO_CASEWORKER)
    session.load(page, "/ngo/consent")
    session.keep("ngo-consent", page)
    page.get_by_label("Record number").fill(enrolled.record_id)
    page.get_by_label("Checks at the border (verify_at_border)").check()
    page.get_by_label("The holder asked for this themselves").check()
    session.act(page, "Record the withdrawal")
    assert page.locator("h1").inner_text() == "Consent withdrawn", page.inner_text("main")
    receipt = verify_receipt(page.locator("pre.receipt").first.inner_text(), station)
    assert receipt.record_id == enrolled.record_id
    scopes = page.locator("#scopes").inner_text()
    assert "verify_at_border" in scopes
    session.keep("ngo-consent-receipt", page)
    session.load(page, "/ngo/erasure")
    session.keep("ngo-erasure", page)
    page.get_by_label("The holder's recovery code").fill(enrolled.recovery_code)
    session.act(page, "Erase the record")
    assert page.locator("h1").inner_text() == "Record erased", page.inner_text("main")
    erased = verify_receipt(page.locator("pre.receipt").first.inner_text(), station)
    assert erased.kind is ReceiptKind.ERASURE and erased.record_id == enrolled.record_id
    session.keep("ngo-erasure-receipt", page)


def test_another_organisations_caseworker_sees_none_of_it_and_every_attempt_is_refused_and_logged(
    caseworkers: Caseworkers,
) -> None:
    session = caseworkers.session
    world = session.world
    enrolled = _enrolled_by_grpc(world, "Attacked")
    # A referral of la-strada's, so the inbox has something to leak.
    with world.channel(Role.KIOSK) as channel:
        live = signed_live(world.pki.clients[Role.KIOSK], person(world.faces, HOLDER).photo(3), "head_turn")
        pb_grpc.ProtectedIdentityServiceStub(channel).VerifyHolder(
            pb.VerifyHolderRequest(
                holder=pb.HolderRef(credential=enrolled.credential.text),
                live=mpb.Probe(image=live.image),
                live_statement=live.statement,
                pin="731105",
            )
        )
    own = session.role(Role.NGO_CASEWORKER)
    session.load(own, "/ngo/referrals")
    assert own.locator("#open-referrals tbody tr").filter(has_text=enrolled.record_id).count() == 1
    referral_id = own.locator(
        f"#open-referrals tbody tr:has-text('{enrolled.record_id}') input[name=referral_id]"
    ).get_attribute("value")
    assert referral_id
    # A holder's step sealed for la-strada's caseworker (consent, PINs) in the record form's hidden field.
    _holder_step(session, own, (True, True, True, True))
    session.act(own, "Done: give the device back to the caseworker")
    sealed = own.locator("input[name=holder_step]").get_attribute("value")
    assert sealed
    other = caseworkers.other
    page = session.as_person(other)
    session.load(page, "/ngo/referrals")
    assert enrolled.record_id not in page.content()
    assert page.locator("#open-referrals tbody tr").inner_text() == "No open referrals."
    session.keep("ngo-referrals-other-organisation", page)
    token = _tokens(world).issue(der(other))
    before = world.service.transparency_log.size()
    attempts = {
        "/ngo/consent": {
            "record_id": enrolled.record_id,
            "scope:verify_at_border": "withdraw",
            "instructed": "yes",
        },
        "/ngo/referrals/acknowledge": {"referral_id": referral_id},
    }
    # The sealed step replayed by another certificate opens nothing, and nothing is enrolled.
    stolen = page.request.post(
        world.origin + "/ngo/enrol/record",
        multipart={
            "form_token": token,
            "holder_step": sealed,
            "gallery": GALLERY,
            "given_names": "Mallory",
            "nationality": "NPL",
            "organisation": "Other NGO",
            "referral_channel": "other-hotline",
            "probe": {
                "name": "face.jpg",
                "mimeType": "image/jpeg",
                "buffer": person(world.faces, HOLDER).photo(4),
            },
        },
    )
    assert stolen.status == 403 and "sealed" in stolen.text()
    for path, fields in attempts.items():
        response = page.request.post(world.origin + path, form={"form_token": token, **fields})
        assert response.status in (403, 404), (path, response.status)
        assert enrolled.record_id not in response.text() or path == "/ngo/consent"
        assert "Sita" not in response.text() and "PA7654321" not in response.text()
    refused = [
        e for e in _log_since(world, before) if e.actor == "ngo_caseworker:ngo-other" and e.outcome != "OK"
    ]
    assert {e.operation.rsplit("/", 1)[-1] for e in refused} == {"ChangeConsent", "AcknowledgeReferral"}
    assert not any(e.operation.endswith("/EnrolRecord") for e in _log_since(world, before))
    # Nothing changed: la-strada's referral is still open, the record's consent untouched.
    session.load(own, "/ngo/referrals")
    assert own.locator("#open-referrals tbody tr").filter(has_text=enrolled.record_id).count() == 1


@pytest.mark.parametrize("role", [Role.OFFICER, Role.AUDITOR, Role.ADMIN], ids=lambda role: role.value)
def test_other_roles_are_refused_the_caseworker_pages_and_actions(
    caseworkers: Caseworkers, role: Role
) -> None:
    session = caseworkers.session
    world = session.world
    page = session.role(role)
    for path in ("/ngo/enrol", "/ngo/referrals", "/ngo/consent", "/ngo/erasure"):
        assert session.load(page, path).status == 403, path
    token = _tokens(world).issue(der(world.pki.clients[role]))
    response = page.request.post(
        world.origin + "/ngo/erasure", form={"form_token": token, "recovery_code": "0" * 20}
    )
    assert response.status == 403


def test_every_caseworker_page_passes_axe_and_only_the_enrolment_runs_a_script(
    caseworkers: Caseworkers,
) -> None:
    seen = caseworkers.session.seen
    assert {"ngo-enrol-holder", "ngo-enrol-record", "ngo-enrolled", "ngo-referrals", "ngo-consent"} <= set(
        seen
    )
    for name, page in seen.items():
        expected_scripts = 1 if name in ("ngo-enrol-record", "ngo-enrol-retry") else 0
        assert (page.scripts, page.styles, page.handlers) == (expected_scripts, 0, []), name
        serious = [v for v in page.violations if v[1] in ("serious", "critical")]
        assert not serious, (name, serious)
