"""The console in a real browser: Debian's Chromium driven by Playwright, each person with their own
client certificate, against a real server (mutual TLS, free ports) and real faces.

One test per journey: the officer verifies a traveller (a match and a non-match), identifies a
watchlisted person among distractors and a stranger (no match), runs 1:few against a manifest, and
records decisions; every role is refused what the matrix refuses, page and action; a revoked
certificate is refused on the next request; a form without its token, or with another's, is refused;
every page carries the Content-Security-Policy and no inline script or style; axe-core finds no
serious or critical violation on any page; each page is photographed at desk and tablet widths.
Page load and action times are measured in the browser and printed (p50/p95); the transparency log
names the officer behind every action.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import (
    APIResponse,
    Browser,
    BrowserContext,
    Page,
    Response,
    ViewportSize,
    sync_playwright,
)

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.console import Console
from safepassage.console.form_tokens import FormTokens
from safepassage.console.pages import HEADERS
from safepassage.server.identity import Role
from safepassage.server.pki_issuance import IssuedCert
from tests.conftest import REPO
from tests.console.conftest import WATCHLIST, ConsoleWorld, der

pytestmark = pytest.mark.server

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; .ci/run installs it (Playwright's download cannot work here)
DESK: ViewportSize = {"width": 1366, "height": 768}
TABLET: ViewportSize = {"width": 820, "height": 1180}
SCREENSHOTS_IN_README = REPO / "docs" / "screenshots"


@dataclass
class Timings:
    loads: list[float] = field(default_factory=list)
    actions: list[float] = field(default_factory=list)

    def timed(self, kind: list[float], step: Callable[[], Response | None]) -> Response | None:
        start = time.perf_counter()
        response = step()
        kind.append(time.perf_counter() - start)
        return response


@dataclass(frozen=True)
class Seen:
    """A page as it was when kept: what the header, script and accessibility tests judge."""

    html: str
    scripts: int
    styles: int  # <style> elements and style attributes
    handlers: list[str]  # on* event attributes
    violations: list[tuple[str, str, str]]  # axe-core's: rule, impact, help


@dataclass
class Session:
    """The module's browser, its screenshots folder, timings and every page seen (for the header checks)."""

    browser: Browser
    world: ConsoleWorld
    shots: Path
    timings: Timings = field(default_factory=Timings)
    seen: dict[str, Seen] = field(default_factory=dict)
    axe: Axe = field(default_factory=Axe)
    contexts: list[BrowserContext] = field(default_factory=list)

    def as_person(self, issued: IssuedCert, viewport: ViewportSize = DESK) -> Page:
        folder = self.world.folder / "browser"
        folder.mkdir(exist_ok=True)
        cert, key = folder / f"{issued.client_id}.pem", folder / f"{issued.client_id}-key.pem"
        cert.write_bytes(issued.cert_pem)
        key.write_bytes(issued.key_pem)
        key.chmod(0o600)
        context = self.browser.new_context(
            client_certificates=[{"origin": self.world.origin, "certPath": str(cert), "keyPath": str(key)}],
            # The deployment's CA is not the browser's; the person's certificate is what is tested.
            ignore_https_errors=True,
            viewport=viewport,
        )
        context.set_default_timeout(90_000)  # a bound, not a pace: a loaded machine must not fail it
        self.contexts.append(context)
        return context.new_page()

    def role(self, role: Role, viewport: ViewportSize = DESK) -> Page:
        return self.as_person(self.world.pki.clients[role], viewport)

    def load(self, page: Page, path: str) -> Response:
        response = self.timings.timed(self.timings.loads, lambda: page.goto(self.world.origin + path))
        assert response is not None
        return response

    def act(self, page: Page, button: str) -> None:
        def submit() -> Response | None:
            with page.expect_navigation():
                page.get_by_role("button", name=button).click()
            return None

        self.timings.timed(self.timings.actions, submit)

    def keep(self, name: str, page: Page) -> None:
        """Check the page as it is now (its DOM, axe-core), and photograph it at both widths."""
        self.seen[name] = Seen(
            html=page.content(),
            scripts=page.locator("script").count(),
            styles=page.locator("style, [style]").count(),
            handlers=_event_attributes(page),
            violations=[(v["id"], v["impact"], v["help"]) for v in self.axe.run(page).response["violations"]],
        )
        size = page.viewport_size
        assert size is not None
        for width, viewport in (("desk", DESK), ("tablet", TABLET)):
            page.set_viewport_size(viewport)
            page.screenshot(path=str(self.shots / f"{name}-{width}.png"), full_page=True)
        page.set_viewport_size(size)


@contextlib.contextmanager
def browser_session(world: ConsoleWorld, shots: Path, camera: Path | None = None) -> Iterator[Session]:
    """Debian's Chromium driven by Playwright, with a context per person; closed at the end. With
    ``camera`` (a y4m file, tests/console/fake_camera.py) Chromium plays it as its camera, allowed."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)", pytrace=False)
    args = []
    if camera is not None:
        args = [
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}",
        ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        session = Session(browser, world, shots)
        try:
            yield session
        finally:
            for context in session.contexts:
                context.close()
            browser.close()


@pytest.fixture(scope="module")
def session(console_world: ConsoleWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    with browser_session(console_world, tmp_path_factory.mktemp("console-screenshots")) as opened:
        yield opened


def _search(session: Session, page: Page, mode: str, photo: str, **fields: str) -> None:
    session.load(page, "/desk")
    page.get_by_label("Gallery", exact=True).fill(WATCHLIST)
    page.get_by_label("Traveller's photo").set_input_files(str(session.world.photo_path(photo)))
    page.locator(f"#mode-{mode}").check()
    if "reference" in fields:
        page.get_by_label("Reference id (for 1:1)").fill(fields["reference"])
    if "manifest" in fields:
        page.get_by_label("Manifest (for 1:few): reference ids, one a line").fill(fields["manifest"])
    session.act(page, "Compare")


def _candidates(page: Page) -> list[str]:
    return page.locator("tbody tr td:nth-child(2)").all_inner_texts()


def test_home_shows_who_you_are_and_the_pages_your_role_may_use(session: Session) -> None:
    page = session.role(Role.OFFICER)
    assert session.load(page, "/").status == 200
    facts = page.locator("dl.facts").inner_text()
    assert "CN=officer-1" in facts and "OU=officer" in facts
    assert "border officer" in facts
    assert page.get_by_role("link", name="Officer desk").count() == 2  # the navigation and the list
    session.keep("home-officer", page)
    auditor = session.role(Role.AUDITOR)
    session.load(auditor, "/")
    # Auditors oversee (the log's CCTV authorisations and fishing alerts); they never search.
    assert auditor.get_by_role("link", name="Fishing alerts").count() == 2
    assert auditor.get_by_role("link", name="Officer desk").count() == 0
    session.keep("home-auditor", auditor)


def test_an_officer_verifies_a_traveller_a_match_and_a_non_match(session: Session) -> None:
    page = session.role(Role.OFFICER)
    _search(session, page, "verify", "obama", reference="case-obama")
    assert page.locator("#verdict").inner_text() == "MATCH"
    assert "matches reference id case-obama" in page.inner_text("main")
    assert page.locator("img.crop").count() == 1
    # The watchlist is not calibrated: the page says where its threshold comes from and what is unknown.
    assert "the model's default for watchlists" in page.inner_text("main")
    session.keep("desk-verify-match", page)
    _search(session, page, "verify", "biden", reference="case-obama")
    assert page.locator("#verdict").inner_text() == "NO MATCH"
    assert "does not match reference id case-obama" in page.inner_text("main")
    page.get_by_label("Confirm the answer").check()
    page.get_by_label("Reason", exact=True).select_option("REASON_DIFFERENT_PERSON")
    page.get_by_label("Note (optional)").fill("different person; passport photo checked")
    session.act(page, "Record decision")
    assert page.locator("h1").inner_text() == "Decision recorded"
    session.keep("desk-decision-recorded", page)


def test_an_officer_identifies_a_watchlisted_person_among_distractors_and_a_stranger_is_no_match(
    session: Session,
) -> None:
    page = session.role(Role.OFFICER)
    session.load(page, "/desk")
    session.keep("desk-form", page)
    _search(session, page, "identify", "obama")
    assert page.locator("#verdict").inner_text() == "MATCH"
    candidates = _candidates(page)
    assert candidates[0] == "case-obama" and len(candidates) == 5  # ranked among the distractors
    assert page.locator("tr.hit").count() == 1
    assert "A distance of at most 0.500 counts as a match" in page.inner_text("main")
    session.keep("desk-identify-match", page)
    page.get_by_label("Refer to secondary inspection").check()
    page.get_by_label("Reason", exact=True).select_option("REASON_SECONDARY_INSPECTION")
    session.act(page, "Record decision")
    assert "case-obama" in page.locator("dl.facts").inner_text()
    _search(session, page, "identify", "stranger")
    assert page.locator("#verdict").inner_text() == "NO MATCH"
    assert "No match is a real answer" in page.inner_text("main")
    assert page.locator("tr.hit").count() == 0
    session.keep("desk-identify-no-match", page)


def test_an_officer_runs_one_to_few_against_a_manifest(session: Session) -> None:
    page = session.role(Role.OFFICER)
    _search(session, page, "few", "biden", manifest="case-leslie\ncase-biden")
    assert page.locator("#verdict").inner_text() == "MATCH"
    assert _candidates(page)[0] == "case-biden"
    assert set(_candidates(page)) <= {"case-leslie", "case-biden"}  # only the manifest was searched
    session.keep("desk-manifest", page)
    _search(session, page, "few", "obama", manifest="case-leslie case-harington")
    assert page.locator("#verdict").inner_text() == "NO MATCH"  # obama is enrolled, but not on this list
    # The service searches only references it holds: a list naming others is refused, and says so.
    _search(session, page, "few", "obama", manifest="case-obama\nnobody-enrolled")
    assert page.locator("h1").inner_text() == "Not found"
    assert "1 of the 2 restrict_to references are not in gallery" in page.inner_text("main")


def test_the_desk_shows_reference_images_and_normalised_scores_where_the_gallery_has_them(
    session: Session,
) -> None:
    """A gallery that keeps reference images, of subjects enrolled from several photos and calibrated
    with a background cohort: the answer shows each candidate's reference image beside the probe,
    and says the threshold applies to a normalised score."""
    lfw = session.world.faces / "lfw"
    people = [p for p in sorted(lfw.iterdir()) if len(list(p.glob("*.jpg"))) >= 3][:8]
    strangers = [p for p in sorted(lfw.iterdir()) if len(list(p.glob("*.jpg"))) == 1][-44:]
    with session.world.channel(Role.ADMIN) as channel:
        galleries = pb_grpc.GalleryServiceStub(channel)
        matching = pb_grpc.MatchingServiceStub(channel)
        galleries.CreateGallery(
            pb.CreateGalleryRequest(gallery_id="subjects", purpose=pb.WATCHLIST, keep_reference_images=True)
        )
        for person in people:
            for n, photo in enumerate(sorted(person.glob("*.jpg"))[:2]):
                matching.InsertTemplate(
                    pb.InsertTemplateRequest(
                        gallery_id="subjects",
                        reference_id=person.name.lower().replace("_", "-"),
                        template=pb.Probe(image=photo.read_bytes()),
                        face_selection=pb.LARGEST,
                        add_capture=n > 0,
                    )
                )
        impostors = [pb.Probe(image=next(p.glob("*.jpg")).read_bytes()) for p in strangers]
        galleries.CalibrateGallery(
            pb.CalibrateGalleryRequest(
                gallery_id="subjects", impostors=impostors, target_fpir=0.1, background_cohort=True
            )
        )
    page = session.role(Role.OFFICER)
    session.load(page, "/desk")
    page.get_by_label("Gallery", exact=True).fill("subjects")
    page.get_by_label("Traveller's photo").set_input_files(str(sorted(people[0].glob("*.jpg"))[-1]))
    page.locator("#mode-identify").check()
    session.act(page, "Compare")
    main = page.inner_text("main")
    assert "A normalised score of at most" in main and "Normalised score" in main
    assert page.locator("td img.crop").count() >= 1  # the candidates' reference images
    assert _candidates(page)[0] == people[0].name.lower().replace("_", "-")
    session.keep("desk-reference-images", page)


def _tokens(world: ConsoleWorld) -> FormTokens:
    console = world.service.console
    assert isinstance(console, Console)
    return console.form_tokens


def _post(session: Session, page: Page, path: str, issued: IssuedCert, **extra: Any) -> APIResponse:
    """A POST with a form token valid for `issued` (as if the page had been shown), the photo attached."""
    token = _tokens(session.world).issue(der(issued))
    form: dict[str, Any] = {
        "form_token": token,
        "gallery": WATCHLIST,
        "mode": "identify",
        "probe": {"name": "probe.jpg", "mimeType": "image/jpeg", "buffer": session.world.photo("obama")},
        **extra,
    }
    return page.request.post(session.world.origin + path, multipart=form)


DECISION = {
    "search": "identify",
    "service_decision": "MATCH",
    "decision": "REVIEW_CONFIRM",
    "reason": "REASON_SAME_PERSON",
    "reference_id": "case-obama",
}


@pytest.mark.parametrize("role", list(Role), ids=lambda role: role.value)
def test_each_role_is_refused_what_the_matrix_refuses(session: Session, role: Role) -> None:
    page = session.role(role)
    issued = session.world.pki.clients[role]
    # A camera gets nothing through the console; the kiosk its kiosk mode alone (test_console_kiosk.py).
    home = session.load(page, "/")
    assert home.status == (403 if role is Role.CCTV_EDGE else 200)
    desk = session.load(page, "/desk")
    assert desk.status == (200 if role is Role.OFFICER else 403)
    if desk.status == 403:
        assert page.locator("h1").inner_text() == "You may not do this"
        session.keep(f"refused-{role.value}", page)
    # The actions themselves, with a valid token: the service refuses them, whatever page was shown.
    searched = _post(session, page, "/desk/search", issued)
    decided = _post(session, page, "/desk/decision", issued, **DECISION)
    expected = 200 if role is Role.OFFICER else 403
    assert (searched.status, decided.status) == (expected, expected), searched.text()[:500]


def test_a_revoked_certificate_is_refused_on_the_next_request(session: Session) -> None:
    issued = session.world.pki.pki.issue_client("officer-leaving", Role.OFFICER)
    page = session.as_person(issued)
    assert session.load(page, "/desk").status == 200
    session.world.pki.pki.revoke("officer-leaving")
    refused = session.load(page, "/desk")
    assert refused.status == 403
    assert page.locator("h1").inner_text() == "Your certificate is not accepted"
    assert "revoked" in page.inner_text("main")
    session.keep("refused-revoked", page)


def test_a_form_without_its_token_or_with_anothers_is_refused_before_the_service_is_asked(
    session: Session,
) -> None:
    officer = session.world.pki.clients[Role.OFFICER]
    other = session.world.pki.pki.issue_client("officer-2", Role.OFFICER)
    page = session.as_person(officer)
    session.load(page, "/")
    log = session.world.service.transparency_log
    before = log.size()
    photo: dict[str, Any] = {
        "name": "probe.jpg",
        "mimeType": "image/jpeg",
        "buffer": session.world.photo("obama"),
    }
    url = session.world.origin + "/desk/search"
    base: dict[str, Any] = {"gallery": WATCHLIST, "mode": "identify", "probe": photo}
    console = _tokens(session.world)
    for token in (None, "", "123.abc", console.issue(der(other))):
        form = base if token is None else {**base, "form_token": token}
        response = page.request.post(url, multipart=form)
        assert response.status == 403
        assert "You may not do this" in response.text()
    assert log.size() == before  # refused by the console itself: the service never saw these
    assert page.request.post(url, multipart={**base, "form_token": console.issue(der(officer))}).status == 200


def test_every_page_sends_the_security_headers_and_has_no_inline_script_or_style(session: Session) -> None:
    page = session.role(Role.OFFICER)
    for path in ("/", "/desk", "/no-such-page", "/static/console.css"):
        response = session.load(page, path)
        for name, value in HEADERS.items():
            assert response.headers.get(name.lower()) == value, (path, name)
        assert "set-cookie" not in response.headers
    assert "default-src 'none'" in HEADERS["Content-Security-Policy"]
    assert len(session.seen) >= 10
    for name, seen in session.seen.items():
        assert (seen.scripts, seen.styles, seen.handlers) == (0, 0, []), name
        assert "javascript:" not in seen.html, name


def _event_attributes(page: Page) -> list[str]:
    names: list[str] = page.eval_on_selector_all(
        "*", "nodes => nodes.flatMap(n => Array.from(n.attributes).map(a => a.name))"
    )
    return [name for name in names if name.startswith("on")]


def test_axe_finds_no_serious_or_critical_violation_on_any_page(session: Session) -> None:
    assert len(session.seen) >= 10
    for name, seen in session.seen.items():
        serious = [v for v in seen.violations if v[1] in ("serious", "critical")]
        assert not serious, (name, serious)


def test_the_transparency_log_names_the_officer_behind_every_console_action(session: Session) -> None:
    log = session.world.service.transparency_log
    events = [entry.event() for entry in log.entries(0, log.size())]
    through = [e for e in events if e.details.get("via") == "console"]
    assert through and all(e.actor.split(":")[0] in {r.value for r in Role} for e in through)
    searches = [
        e
        for e in through
        if e.operation.rsplit("/", 1)[-1] in ("Identify", "Verify") and e.outcome in ("MATCH", "NO_MATCH")
    ]
    decisions = [e for e in through if e.operation.endswith("/RecordDecision") and e.outcome == "OK"]
    assert len(searches) >= 7 and len(decisions) >= 3
    assert {e.actor for e in searches + decisions} == {"officer:officer-1"}
    # Nobody acts as the console; who could not be authenticated (the revoked certificate) is logged as
    # anonymous, as at the gRPC port.
    assert not [e for e in events if e.actor.startswith("console")]
    assert {e.outcome for e in events if e.actor == "anonymous"} <= {"UNAUTHENTICATED"}


def test_page_load_and_action_times_are_reported(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = {
        kind: {
            "count": len(values),
            "p50_ms": round(statistics.median(values) * 1000, 1),
            "p95_ms": round(statistics.quantiles(values, n=20)[-1] * 1000, 1),
        }
        for kind, values in (("page_load", session.timings.loads), ("action", session.timings.actions))
    }
    assert figures["page_load"]["count"] >= 20 and figures["action"]["count"] >= 8
    (session.shots / "timings.json").write_text(json.dumps(figures, indent=1))
    # The officer desk's answer, at both widths, for the README.
    SCREENSHOTS_IN_README.mkdir(parents=True, exist_ok=True)
    for width in ("desk", "tablet"):
        shutil.copyfile(
            session.shots / f"desk-identify-match-{width}.png",
            SCREENSHOTS_IN_README / f"console-officer-desk-{width}.png",
        )
    with capsys.disabled():
        print(
            f"\nconsole timings (Chromium, this machine): {json.dumps(figures)};"
            f" screenshots in {session.shots}"
        )
