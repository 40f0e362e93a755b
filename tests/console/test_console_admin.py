"""The console's administration pages in a real browser: galleries and certificates.

Debian's Chromium driven by Playwright against a real server (mutual TLS, free ports, one server
for the module) with real faces from ../shared/data/faces. Journeys: an administrator creates a
watchlist, imports photos (a per-file report: enrolled, already present, no face) and calibrates it
from strangers' photos with a background cohort (a per-file report, the threshold and FPIR after),
and an officer then finds an imported person in it; an administrator issues a certificate, the
person logs in with the downloaded PKCS#12 file and its one-time passphrase, and once revoked the
certificate is refused on its next request; every role is refused the pages and the actions the
README's promise table refuses it (the service decides the actions, whatever page was shown); axe
finds no serious or critical violation on any page; the galleries page is photographed for docs/.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import shutil
import statistics
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from google.protobuf.timestamp_pb2 import Timestamp
from playwright.sync_api import Page, expect

from safepassage.api.v1 import administration_pb2 as adpb
from safepassage.api.v1 import administration_pb2_grpc as adpb_grpc
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.console.pages import HEADERS
from safepassage.matcher import GalleryPurpose
from safepassage.server.authorization import Operation
from safepassage.server.cctv_authorisation import METADATA_KEY, sign
from safepassage.server.identity import Role
from tests.conftest import REPO
from tests.console.conftest import WATCHLIST, ConsoleWorld, der
from tests.console.test_console_browser import DESK, Session, _tokens, browser_session
from tests.server.policy_promises import promised

pytestmark = pytest.mark.server

LOOKOUT = "lookout-list"
IMPORTED = 4  # LFW people with several photos: the first photo of each is imported
STRANGERS = 44  # LFW people with one photo, none enrolled anywhere: calibration's impostors


@pytest.fixture(scope="module")
def session(console_world: ConsoleWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    with browser_session(console_world, tmp_path_factory.mktemp("admin-screenshots")) as session:
        yield session


def _people(world: ConsoleWorld) -> tuple[list[Path], list[Path]]:
    """LFW people with several photos, and with one (the module's server enrolled the first 12 of these)."""
    people = sorted(p for p in (world.faces / "lfw").iterdir() if p.is_dir())
    several = [p for p in people if len(list(p.glob("*.jpg"))) >= 2]
    single = [p for p in people if len(list(p.glob("*.jpg"))) == 1]
    assert len(several) >= IMPORTED and len(single) >= 12 + STRANGERS, (
        "../shared/data/faces/lfw is incomplete"
    )
    return several[:IMPORTED], single[12 : 12 + STRANGERS]


def _blank_photo(folder: Path) -> Path:
    """A grey picture: a valid image with no face in it."""
    path = folder / "blank-wall.png"
    cv2.imwrite(str(path), np.full((240, 240, 3), 128, dtype=np.uint8))
    return path


def _report(page: Page) -> dict[str, str]:
    """The per-file report: file name -> outcome."""
    rows = page.locator("#file-report tbody tr")
    return {
        rows.nth(i).locator("th").inner_text(): rows.nth(i).locator("td").nth(-2).inner_text()
        for i in range(rows.count())
    }


def _imported(page: Page) -> str:
    """Wait for the import's page to show its report (it refreshes itself while the import runs); its
    path. Whatever the machine's pace: the page is polled until the heading says it is done."""
    assert "/admin/galleries/import/" in page.url
    expect(page.locator("h1")).to_have_text("Photos imported", timeout=120_000)
    return page.url.removeprefix(page.url.split("/admin/")[0])


def test_an_admin_creates_imports_into_and_calibrates_a_watchlist(session: Session, tmp_path: Path) -> None:
    world = session.world
    several, strangers = _people(world)
    page = session.role(Role.ADMIN)
    session.load(page, "/admin/galleries")
    assert "border-watchlist" in page.locator("#galleries").inner_text()

    page.get_by_label("New gallery id").fill(LOOKOUT)
    page.get_by_label("Watchlist", exact=True).check()
    session.act(page, "Create gallery")
    assert page.locator("h1").inner_text() == "Gallery created"
    session.keep("admin-gallery-created", page)

    # Import: each photo under its file name; a picture with no face is reported, not fatal.
    blank = _blank_photo(tmp_path)
    firsts = [sorted(person.glob("*.jpg"))[0] for person in several]
    session.load(page, "/admin/galleries")
    page.get_by_label("Watchlist to import into").select_option(LOOKOUT)
    page.get_by_label("Photos to enrol").set_input_files([str(p) for p in [*firsts[:3], blank]])
    session.act(page, "Import")
    job_page = _imported(page)
    report = _report(page)
    assert report == {**{p.name: "enrolled" for p in firsts[:3]}, blank.name: "no face found"}
    session.keep("admin-import-report", page)
    # Again with one already there: left as it is, the new one enrolled.
    session.load(page, "/admin/galleries")
    page.get_by_label("Watchlist to import into").select_option(LOOKOUT)
    page.get_by_label("Photos to enrol").set_input_files([str(firsts[0]), str(firsts[3])])
    session.act(page, "Import")
    _imported(page)
    assert _report(page) == {firsts[0].name: "already present (not changed)", firsts[3].name: "enrolled"}
    assert page.locator("#gallery-facts").inner_text().count(str(IMPORTED)) >= 1

    # An import's page is its starter's alone: another administrator is told there is no such import.
    other = session.as_person(world.pki.pki.issue_client("admin-other", Role.ADMIN, replace=True))
    assert session.load(other, job_page).status == 404
    assert "no such import" in other.inner_text("main")

    # Calibrate from strangers, half kept as a background cohort; the faceless picture is left out.
    session.load(page, "/admin/galleries")
    page.get_by_label("Watchlist to calibrate").select_option(LOOKOUT)
    photos = [blank, *(next(person.glob("*.jpg")) for person in strangers)]
    page.get_by_label("Strangers' photos").set_input_files([str(p) for p in photos])
    page.get_by_label("Target FPIR (false positive identification rate)").fill("0.05")
    page.get_by_label("Keep half of the strangers as a background cohort").check()
    session.act(page, "Calibrate")
    assert page.locator("h1").inner_text() == "Gallery calibrated"
    report = _report(page)
    assert report.pop(blank.name) == "no face found"
    assert set(report.values()) == {"face found and used"} and len(report) == STRANGERS
    facts = page.locator("#gallery-facts").inner_text()
    assert "calibrated to a target FPIR" in page.locator("#threshold-after").inner_text()
    assert "(measured)" in page.locator("#fpir-after").inner_text()
    assert f"{STRANGERS // 2} faces" in facts and "target FPIR 0.05" in facts
    session.keep("admin-calibration-report", page)

    session.load(page, "/admin/galleries")
    row = page.locator("#galleries tbody tr", has=page.locator("th", has_text=LOOKOUT)).inner_text()
    assert "calibrated to a target FPIR" in row and f"{STRANGERS // 2} faces" in row
    session.keep("admin-galleries", page)

    # An officer finds an imported person by another photo of them.
    officer = session.role(Role.OFFICER)
    session.load(officer, "/desk")
    officer.get_by_label("Gallery", exact=True).fill(LOOKOUT)
    officer.get_by_label("Traveller's photo").set_input_files(str(sorted(several[1].glob("*.jpg"))[1]))
    officer.locator("#mode-identify").check()
    session.act(officer, "Compare")
    assert officer.locator("tbody tr td:nth-child(2)").all_inner_texts()[0] == firsts[1].stem


def test_an_admin_issues_a_certificate_and_revokes_it_and_it_is_refused_on_its_next_request(
    session: Session, tmp_path: Path
) -> None:
    world = session.world
    page = session.role(Role.ADMIN)
    session.load(page, "/admin/certificates")
    assert "officer-1" in page.locator("#certificates").inner_text()
    session.keep("admin-certificates", page)
    page.get_by_label("Account id").fill("officer-new")
    page.get_by_label("Role", exact=True).select_option("officer")
    page.get_by_label("Organisation (required for NGO caseworkers and kiosks)").fill("border-police")
    session.act(page, "Issue certificate")
    assert page.locator("h1").inner_text() == "Certificate issued"
    passphrase = page.locator("#passphrase").inner_text().strip()
    assert len(passphrase) == 23
    serial = page.locator("#issued dd code").inner_text()
    session.keep("admin-certificate-issued", page)
    with page.expect_download() as p12_download:
        page.get_by_role("link", name="Download officer-new.p12 (PKCS#12, for a browser)").click()
    p12 = tmp_path / "officer-new.p12"
    p12_download.value.save_as(p12)
    with page.expect_download() as pem_download:
        page.get_by_role(
            "link", name="Download officer-new-bundle.zip (PEM files, for the command line)"
        ).click()
    with zipfile.ZipFile(io.BytesIO(Path(pem_download.value.path()).read_bytes())) as bundle:
        assert sorted(bundle.namelist()) == [
            "ca.pem",
            "clients/officer-new-key.pem",
            "clients/officer-new.pem",
        ]
    # The key was handed over, not kept: the PKI folder holds no key of it.
    assert not (world.pki.folder / "clients" / "officer-new-key.pem").exists()

    # The person logs in with the PKCS#12 file and its passphrase.
    context = session.browser.new_context(
        client_certificates=[{"origin": world.origin, "pfxPath": str(p12), "passphrase": passphrase}],
        ignore_https_errors=True,
        viewport=DESK,
    )
    session.contexts.append(context)
    newcomer = context.new_page()
    assert session.load(newcomer, "/desk").status == 200
    assert "officer-new" in newcomer.locator(".who").inner_text()

    session.load(page, "/admin/certificates")
    session.act(page, f"Revoke officer-new (serial {serial})")
    assert page.locator("h1").inner_text() == "Certificate revoked"
    assert serial in page.locator("#revoked").inner_text()
    session.keep("admin-certificate-revoked", page)
    refused = session.load(newcomer, "/desk")
    assert refused.status == 403
    assert newcomer.locator("h1").inner_text() == "Your certificate is not accepted"

    # The log names the administrator behind both, never the console, and no key.
    log = world.service.transparency_log
    events = [entry.event() for entry in log.entries(0, log.size())]
    issued = [e for e in events if e.operation.endswith("/IssueCertificate") and e.outcome == "OK"]
    revoked = [e for e in events if e.operation.endswith("/RevokeCertificate") and e.outcome == "OK"]
    assert [(e.actor, e.details.get("via"), e.details.get("serial")) for e in issued] == [
        ("admin:admin-1", "console", serial)
    ]
    assert [(e.actor, e.details.get("revoked")) for e in revoked] == [("admin:admin-1", "1")]


def test_a_cameras_authorisation_and_every_search_under_it_are_listed_and_fishing_alerts_shown(
    session: Session,
) -> None:
    world = session.world
    admin = world.pki.clients[Role.ADMIN]
    token = sign(
        gallery_id=WATCHLIST,
        cameras=["cam-1"],
        legal_basis="Order 2026/114",
        valid_for_s=3600,
        admin_cert=x509.load_pem_x509_certificate(admin.cert_pem),
        admin_key=load_pem_private_key(admin.key_pem, None),  # type: ignore[arg-type]
    )
    grant_id = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["authorisation_id"]
    searches = [
        pb.IdentifyRequest(gallery_id=WATCHLIST, probe=pb.Probe(image=world.photo(name)), request_id=name)
        for name in ("obama", "stranger")
    ]
    with world.channel(Role.CCTV_EDGE) as channel:
        answers = list(
            pb_grpc.MatchingServiceStub(channel).IdentifyStream(
                iter(searches), metadata=((METADATA_KEY, token),), timeout=60
            )
        )
    assert [pb.Decision.Name(a.result.decision) for a in answers] == ["MATCH", "NO_MATCH"]

    page = session.role(Role.ADMIN)
    session.load(page, "/admin/authorisations")
    assert "safepassage authorise WATCHLIST" in page.locator("pre.command").inner_text()
    grant = page.locator("section.grant", has=page.locator(f"#grant-{grant_id}"))
    text = grant.inner_text()
    assert "admin-1" in text and "2, of which 1 matched" in text
    assert hashlib.sha256(b"Order 2026/114").hexdigest() in text and "Order 2026/114" not in page.content()
    assert grant.locator("tbody tr").first.locator("td").all_inner_texts()[1:] == [
        "cctv_edge:cam-1",
        "NO_MATCH",
    ]
    session.keep("admin-authorisations", page)

    # The module's server runs without the fishing detector: the page says no alert was raised.
    auditor = session.role(Role.AUDITOR)
    session.load(auditor, "/admin/fishing-alerts")
    assert auditor.locator("#no-alerts").is_visible()
    session.keep("admin-fishing-alerts", auditor)


def test_a_server_without_a_cctv_authority_refuses_to_sign_naming_the_setting(session: Session) -> None:
    """The default: no authority key on the server; the call names the setting, the page the command."""
    world = session.world
    request = adpb.SignAuthorisationRequest(
        gallery_id=WATCHLIST,
        cameras=["cam-1"],
        legal_basis="Order 2026/114",
        expires=Timestamp(seconds=int(time.time()) + 3600),
    )
    with world.channel(Role.ADMIN) as channel, pytest.raises(grpc.RpcError) as info:
        adpb_grpc.AdministrationServiceStub(channel).SignAuthorisation(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cctv.signing_key_file is not set" in (info.value.details() or "")
    page = session.role(Role.ADMIN)
    session.load(page, "/admin/authorisations")
    assert "safepassage authorise WATCHLIST" in page.locator("pre.command").inner_text()
    assert page.locator("#sign-gallery").count() == 0 and page.locator("#server-signs").count() == 0
    # A form posted anyway (the page offered none) gets the service's refusal, naming the setting.
    form: dict[str, Any] = {
        "form_token": _tokens(world).issue(der(world.pki.clients[Role.ADMIN])),
        "gallery": WATCHLIST,
        "cameras": "cam-1",
        "legal_basis": "Order 2026/114",
        "expires": f"{datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1):%Y-%m-%dT%H:%M}",
    }
    posted = page.request.post(world.origin + "/admin/authorisations/sign", multipart=form)
    assert posted.status >= 400 and "cctv.signing_key_file" in posted.text()


# The pages and the actions each makes, with the operation that decides it.
PAGES = {
    "/admin/galleries": Operation.CREATE_GALLERY,
    "/admin/certificates": Operation.ISSUE_CERTIFICATE,
    "/admin/authorisations": Operation.LIST_AUTHORISATIONS,
    "/admin/fishing-alerts": Operation.LIST_FISHING_ALERTS,
}
ACTIONS: dict[str, tuple[Operation, dict[str, Any]]] = {
    "/admin/galleries/create": (Operation.CREATE_GALLERY, {"gallery": "never-made", "purpose": "watchlist"}),
    "/admin/galleries/calibrate": (Operation.CALIBRATE_GALLERY, {"gallery": "border-watchlist"}),
    "/admin/galleries/import": (Operation.BULK_INSERT_TEMPLATES, {"gallery": "border-watchlist"}),
    "/admin/certificates/issue": (
        Operation.ISSUE_CERTIFICATE,
        {"client_id": "never-issued", "role": "admin"},
    ),
    "/admin/certificates/revoke": (Operation.REVOKE_CERTIFICATE, {"target": "admin-1"}),
    "/admin/authorisations/sign": (
        Operation.SIGN_AUTHORISATION,
        {"gallery": "border-watchlist", "cameras": "cam-1", "legal_basis": "O-1", "expires": "2030-01-01"},
    ),
}


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.ADMIN], ids=lambda role: role.value)
def test_each_other_role_is_refused_the_administration_pages_and_actions(
    session: Session, role: Role
) -> None:
    world = session.world
    issued = world.pki.clients[role]
    page = session.role(role)
    device = role in (Role.CCTV_EDGE, Role.KIOSK)  # no page at all through the console
    for path, operation in PAGES.items():
        allowed = promised(operation, role, GalleryPurpose.WATCHLIST) and not device  # the README's promise
        assert session.load(page, path).status == (200 if allowed else 403), path
        if role is Role.OFFICER:
            session.keep(f"refused-officer{path.replace('/', '-')}", page)
    photo = {"name": "strangers.jpg", "mimeType": "image/jpeg", "buffer": world.photo("stranger")}
    for path, (operation, fields) in ACTIONS.items():
        assert not promised(operation, role, GalleryPurpose.WATCHLIST)
        files = {"strangers": photo, "photos": photo} if path.startswith("/admin/galleries") else {}
        form = {"form_token": _tokens(world).issue(der(issued)), **fields, **files}
        response = page.request.post(world.origin + path, multipart=form)
        assert response.status == 403, (path, response.text()[:300])
        assert "You may not do this" in response.text()
    # Nothing was made, issued or revoked by any of them.
    assert "never-issued" not in [r.client_id for r in world.pki.pki.list()]


def test_administration_pages_send_the_headers_have_no_script_and_pass_axe(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    page = session.role(Role.ADMIN)
    for path in PAGES:
        response = session.load(page, path)
        for name, value in HEADERS.items():
            assert response.headers.get(name.lower()) == value, (path, name)
    assert len(session.seen) >= 8
    for name, seen in session.seen.items():
        assert (seen.scripts, seen.styles, seen.handlers) == (0, 0, []), name
        serious = [v for v in seen.violations if v[1] in ("serious", "critical")]
        assert not serious, (name, serious)
    # The galleries page, at both widths, for docs/console.md.
    target = REPO / "docs" / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    for width in ("desk", "tablet"):
        shutil.copyfile(
            session.shots / f"admin-galleries-{width}.png", target / f"console-galleries-{width}.png"
        )
    # Page loads and actions (a create, import, calibration, issue, revoke: click to answer page).
    figures = {
        kind: {
            "count": len(values),
            "p50_ms": round(statistics.median(values) * 1000, 1),
            "p95_ms": round(statistics.quantiles(values, n=20)[-1] * 1000, 1),
        }
        for kind, values in (("page_load", session.timings.loads), ("action", session.timings.actions))
    }
    with capsys.disabled():
        print(f"\nadministration console timings (Chromium, this machine): {json.dumps(figures)}")
