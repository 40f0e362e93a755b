"""CCTV hit review in a real browser: hits from a REAL edge run, confirmed by two people, one dismissed.

Two watchlists of real faces hold Lin-Manuel Miranda among LFW distractors: a CCTV watchlist that
keeps reference images (opt-in at creation), calibrated over LFW strangers, and the console's
watchlist, which keeps none. A real edge client (the face pipeline, tracking, outbox and identify
stream) processes the shared Hamilton clip under a signed authorisation, once for each (sending
its face crops, `send_hit_crop`, for the CCTV one only), and the server keeps its hits. Then, in
Debian's Chromium, each officer with their own certificate: the queue shows every kept hit with
the time left before its purge, the camera's authorisation and the decisions so far; one officer
confirms a hit, seeing the face the camera sent beside the candidate's reference image (it waits
for a second person), cannot confirm it again, a second officer completes it; the second
dismisses a hit of the other watchlist, whose page says neither image is kept, and it is gone
from the store and its sealed probe from the file. Every role the matrix refuses is refused the
page and the actions. axe-core checks each page; each is photographed at desk and tablet widths,
and the queue's pair is copied to docs/screenshots/ for the README.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from playwright.sync_api import Page, sync_playwright

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.camera_edge.client import EdgeClient, TrackResult
from safepassage.camera_edge.config import load_edge_config
from safepassage.console import Console
from safepassage.console.pages import HEADERS
from safepassage.face.pipeline import PipelineSettings, load_pipeline
from safepassage.server.cctv_authorisation import sign
from safepassage.server.identity import Role
from tests.console.conftest import DISTRACTORS, WATCHLIST, ConsoleWorld, der
from tests.console.test_console_browser import CHROMIUM, SCREENSHOTS_IN_README, Session

pytestmark = pytest.mark.server
CLIP = "video/face_recognition/short_hamilton_clip.mp4"
CCTV = "cctv-watchlist"  # keeps reference images
MIRANDA = "face_recognition/lin_manuel_miranda/lin-manuel-miranda.png"
LEGAL_BASIS = "Order 2026/114 of the border court"
IMPOSTORS = 40  # LFW people not enrolled, for the watchlist's calibration


def _enrol(matching: pb_grpc.MatchingServiceStub, gallery: str, reference: str, photo: Path) -> None:
    matching.InsertTemplate(
        pb.InsertTemplateRequest(
            gallery_id=gallery,
            reference_id=reference,
            template=pb.Probe(image=photo.read_bytes()),
            face_selection=pb.LARGEST,
        ),
        timeout=60,
    )


def _prepare_watchlists(world: ConsoleWorld) -> None:
    """The CCTV watchlist (reference images kept; Miranda among LFW distractors, calibrated on LFW
    strangers, its threshold kept), and Miranda in the console's watchlist (no images kept)."""
    with world.channel(Role.ADMIN) as channel:
        galleries = pb_grpc.GalleryServiceStub(channel)
        matching = pb_grpc.MatchingServiceStub(channel)
        created = galleries.CreateGallery(
            pb.CreateGalleryRequest(gallery_id=CCTV, purpose=pb.WATCHLIST, keep_reference_images=True)
        )
        assert created.keep_reference_images
        lfw = sorted((world.faces / "lfw").iterdir())
        distractors = [p for p in lfw if len(list(p.glob("*.jpg"))) == 1][:DISTRACTORS]
        for person in distractors:
            _enrol(matching, CCTV, f"lfw-{person.name.lower().replace('_', '-')}", next(person.glob("*.jpg")))
        for gallery in (CCTV, WATCHLIST):
            _enrol(matching, gallery, "case-miranda", world.faces / MIRANDA)
        # Strangers: LFW people with several photos (the distractors have one each).
        people = [p for p in lfw if len(list(p.glob("*.jpg"))) > 1][:IMPOSTORS]
        impostors = [pb.Probe(image=sorted(p.glob("*.jpg"))[0].read_bytes()) for p in people]
        calibrated = galleries.CalibrateGallery(
            pb.CalibrateGalleryRequest(gallery_id=CCTV, impostors=impostors), timeout=600
        )
        assert calibrated.calibration.impostor_searches >= IMPOSTORS // 2


def _edge_run(
    world: ConsoleWorld, gallery: str, folder: Path, model_dir: Path, send_hit_crop: bool
) -> list[TrackResult]:
    """The Hamilton clip through a real edge client as cam-1, under a signed authorisation for `gallery`."""
    camera, admin = world.pki.clients[Role.CCTV_EDGE], world.pki.clients[Role.ADMIN]
    folder.mkdir()
    (folder / "cam.pem").write_bytes(camera.cert_pem)
    (folder / "cam-key.pem").write_bytes(camera.key_pem)
    (folder / "cam-key.pem").chmod(0o600)
    token = sign(
        gallery_id=gallery,
        cameras=["cam-1"],
        legal_basis=LEGAL_BASIS,
        valid_for_s=3600,
        admin_cert=x509.load_pem_x509_certificate(admin.cert_pem),
        admin_key=load_pem_private_key(admin.key_pem, None),  # type: ignore[arg-type]
    )
    (folder / "cam.authorisation").write_text(token)
    config = folder / "camera.toml"
    config.write_text(
        "camera_id = 'cam-1'\n[source]\n"
        f"location = '{world.faces / CLIP}'\npace = 'asap'\n"
        "[server]\n"
        f"address = 'localhost:{world.grpc_port}'\ngallery_id = '{gallery}'\nca = '{world.pki.ca_file}'\n"
        "cert = 'cam.pem'\nkey = 'cam-key.pem'\nauthorisation = 'cam.authorisation'\n"
        f"send_hit_crop = {str(send_hit_crop).lower()}\n"
        "[queue]\npath = 'outbox.sqlite3'\nkey_file = 'device.key'\n"
    )
    results: list[TrackResult] = []
    client = EdgeClient(
        load_edge_config(config),
        pipeline=load_pipeline(PipelineSettings(model_dir=model_dir)),
        on_result=results.append,
    )
    try:
        client.run(drain_timeout_s=60)
    finally:
        client.close()
    return results


@pytest.fixture(scope="module")
def reviewed(
    console_world: ConsoleWorld, tmp_path_factory: pytest.TempPathFactory, model_dir: Path
) -> Iterator[tuple[Session, list[int]]]:
    """The browser session, and the first hit kept in each watchlist (the CCTV one's, the other's)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)", pytrace=False)
    _prepare_watchlists(console_world)
    folder = tmp_path_factory.mktemp("edge")
    # One pass of the camera for each watchlist (sending its face crops for the CCTV one only); the
    # clip shows him in up to two shots.
    firsts = []
    for gallery in (CCTV, WATCHLIST):
        results = _edge_run(
            console_world, gallery, folder / gallery, model_dir, send_hit_crop=gallery == CCTV
        )
        matched = [r for r in results if r.decision == "MATCH"]
        assert matched and {r.reference_id for r in matched} == {"case-miranda"}, matched
        hits = console_world.service.kept_probes.queue(gallery)
        assert len(hits) == len(matched) and {h.probe.camera_id for h in hits} == {"cam-1"}
        assert all(h.evidence.has_face_crop is (gallery == CCTV) for h in hits)
        firsts.append(hits[0].probe.probe_id)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        session = Session(browser, console_world, tmp_path_factory.mktemp("review-screenshots"))
        try:
            yield session, firsts
        finally:
            for context in session.contexts:
                context.close()
            browser.close()


def _open_hit(session: Session, page: Page, number: int, gallery: str = CCTV) -> None:
    session.load(page, f"/review?gallery={gallery}")
    with page.expect_navigation():
        page.get_by_role("link", name=f"Review hit {number}", exact=True).click()


def _decide(session: Session, page: Page, label: str) -> None:
    page.get_by_label(label).check()
    session.act(page, "Record my decision")


def test_a_hit_is_confirmed_by_two_officers_and_another_dismissed_and_erased(
    reviewed: tuple[Session, list[int]],
) -> None:
    session, (first, second) = reviewed
    world = session.world
    officer = session.role(Role.OFFICER)
    other = session.as_person(world.pki.pki.issue_client("officer-2", Role.OFFICER))
    # The queue: every kept hit, its camera, time left, authorisation and candidate.
    assert session.load(officer, f"/review?gallery={CCTV}").status == 200
    table = officer.locator("table").inner_text()
    kept = len(world.service.kept_probes.queue(CCTV))
    assert table.count("cam-1") == kept and table.count("case-miranda") == kept
    assert LEGAL_BASIS in table and "awaiting a first review" in table and "23 h" in table
    # The first officer confirms the first hit, beside the candidate's reference image: it now waits
    # for a second person.
    _open_hit(session, officer, 1)
    main = officer.inner_text("main")
    assert "case-miranda" in main and "counts as a match" in main and "No reference image kept" not in main
    reference = officer.get_by_role("img", name="Reference image of case-miranda, as the gallery keeps it")
    assert (reference.get_attribute("src") or "").startswith("data:image/jpeg;base64,")
    seen = officer.get_by_role("img", name="The face the camera saw")
    assert (seen.get_attribute("src") or "").startswith("data:image/jpeg;base64,")
    session.keep("review-hit", officer)
    _decide(session, officer, "Confirm: it is the same person")
    assert "A second, different person must confirm it" in officer.inner_text("main")
    session.keep("review-recorded", officer)
    session.load(officer, f"/review?gallery={CCTV}")
    assert "confirmed by officer:officer-1" in officer.locator("table").inner_text()
    session.keep("review-queue", officer)
    # The same officer cannot be the second pair of eyes: the page says so, the service refuses it.
    _open_hit(session, officer, 1)
    assert "You have reviewed this hit already" in officer.inner_text("main")
    _decide(session, officer, "Confirm: it is the same person")
    assert officer.locator("h1").inner_text() == "You may not do this"
    assert "four eyes" in officer.inner_text("main")
    assert not world.service.kept_probes.get(first).confirmed
    # The second officer completes it.
    _open_hit(session, other, 1)
    _decide(session, other, "Confirm: it is the same person")
    assert "Confirmed by two different reviewers" in other.inner_text("main")
    confirmed = world.service.kept_probes.get(first)
    assert confirmed.confirmed and confirmed.confirmed_by == "officer:officer-2"
    # The second officer dismisses the other watchlist's first hit (that gallery keeps no reference
    # image, and its page says so): erased at once, from the store and the file.
    path = world.service.config.probes_path
    with sqlite3.connect(path) as db:
        sealed = db.execute("SELECT sealed FROM probes WHERE probe_id = ?", (second,)).fetchone()[0]
    _open_hit(session, other, 1, WATCHLIST)
    assert "No reference image kept" in other.inner_text("main")
    assert "The camera sent no face image with this hit" in other.inner_text("main")
    session.keep("review-hit-no-reference", other)
    _decide(session, other, "Dismiss: it is not, or I cannot tell (the camera's image is erased at once)")
    assert "Dismissed: the camera's image of this face has been erased." in other.inner_text("main")
    session.keep("review-dismissed", other)
    with pytest.raises(Exception, match="not kept"):
        world.service.kept_probes.get(second)
    files = [p.read_bytes() for p in path.parent.glob(path.name + "*")]
    assert not any(sealed in data or sealed[-32:] in data for data in files)
    # The dismissed hit's page is gone; the confirmed one is kept as evidence.
    assert session.load(other, f"/review/{WATCHLIST}/{second}").status == 404
    session.load(other, f"/review?gallery={CCTV}")
    assert "confirmed by two reviewers" in other.locator("table").inner_text()
    assert "kept as evidence" in other.locator("table").inner_text()


def _post(session: Session, page: Page, path: str, issued: Any, action: str) -> int:
    console = session.world.service.console
    assert isinstance(console, Console)
    form: dict[str, Any] = {"form_token": console.form_tokens.issue(der(issued)), "action": action}
    return page.request.post(session.world.origin + path, multipart=form).status


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.OFFICER], ids=lambda role: role.value)
def test_each_role_the_matrix_refuses_is_refused_the_review(
    reviewed: tuple[Session, list[int]], role: Role
) -> None:
    session, hits = reviewed
    page = session.role(role)
    issued = session.world.pki.clients[role]
    assert session.load(page, f"/review?gallery={CCTV}").status == 403
    assert session.load(page, f"/review/{CCTV}/{hits[0]}").status == 403
    # With a valid form token, the actions themselves: the service refuses them, and nothing changes.
    before = session.world.service.kept_probes.history(hits[0])
    for action in ("confirm", "dismiss"):
        assert _post(session, page, f"/review/{CCTV}/{hits[0]}", issued, action) == 403
    assert session.world.service.kept_probes.history(hits[0]) == before


def test_review_pages_pass_axe_carry_the_headers_and_are_photographed(
    reviewed: tuple[Session, list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    session, _ = reviewed
    expected = {
        "review-hit",
        "review-hit-no-reference",
        "review-recorded",
        "review-queue",
        "review-dismissed",
    }
    assert expected <= set(session.seen)
    for name, seen in session.seen.items():
        serious = [v for v in seen.violations if v[1] in ("serious", "critical")]
        assert not serious, (name, serious)
        assert (seen.scripts, seen.styles, seen.handlers) == (0, 0, []), name
    page = session.role(Role.OFFICER)
    response = session.load(page, "/review")
    for name, value in HEADERS.items():
        assert response.headers.get(name.lower()) == value, name
    SCREENSHOTS_IN_README.mkdir(parents=True, exist_ok=True)
    for width in ("desk", "tablet"):
        shutil.copyfile(
            session.shots / f"review-queue-{width}.png",
            SCREENSHOTS_IN_README / f"console-review-queue-{width}.png",
        )
    figures = {
        kind: {"count": len(values), "p50_ms": round(statistics.median(values) * 1000, 1)}
        for kind, values in (("page_load", session.timings.loads), ("action", session.timings.actions))
    }
    with capsys.disabled():
        print(f"\nreview console timings (Chromium, this machine): {json.dumps(figures)}")


def test_the_log_names_each_reviewer_behind_each_decision(reviewed: tuple[Session, list[int]]) -> None:
    session, _ = reviewed
    log = session.world.service.transparency_log
    events = [entry.event() for entry in log.entries(0, log.size())]
    decisions = [
        (e.actor, e.operation.rsplit("/", 1)[-1], e.outcome, e.details.get("hit_state", ""))
        for e in events
        if e.details.get("via") == "console"
        and e.operation.rsplit("/", 1)[-1] in ("ConfirmMatch", "DismissMatch")
    ]
    assert decisions[:4] == [
        ("officer:officer-1", "ConfirmMatch", "OK", "AWAITING_SECOND_REVIEW"),
        ("officer:officer-1", "ConfirmMatch", "PERMISSION_DENIED", ""),
        ("officer:officer-2", "ConfirmMatch", "OK", "CONFIRMED"),
        ("officer:officer-2", "DismissMatch", "OK", "DISMISSED"),
    ]
    # The refused roles' attempts are logged under them, refused.
    refused = {
        actor.split(":")[0] for actor, _, outcome, _ in decisions[4:] if outcome == "PERMISSION_DENIED"
    }
    assert refused >= {"admin", "auditor", "ngo_caseworker"}
