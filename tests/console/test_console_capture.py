"""Webcam capture on the officer desk, in a real browser fed by Chromium's fake camera.

Chromium plays frames of a shared clip (../shared/data/faces/video/face_recognition/
short_hamilton_clip.mp4, written as a y4m at test time) as its camera. The officer opens the capture
page, takes the photo, and the service checks it with the kiosk's quality rules before searching
it: the face in the clip, enrolled from another frame of it, is found. A frame with no face gets the
kiosk's prompt and nothing is searched. Only this page runs a script (same-origin) and may use the
camera; every role the matrix refuses is refused the page and the action.

This module's deployment enrols protected records only from a face captured live
(`enrolment.require_face_liveness`): a caseworker's photo is refused, and the enrolment page says so
in words (the head-turn path itself: test_console_caseworker.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from playwright.sync_api import expect

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.console.pages import HEADERS, PAGE_HEADERS
from safepassage.matcher import GalleryPurpose
from safepassage.server.authorization import Operation
from safepassage.server.identity import Role
from tests.console.conftest import WATCHLIST, ConsoleWorld, der
from tests.console.fake_camera import frame_of, write_y4m
from tests.console.test_console_browser import CHROMIUM, Session, _tokens, browser_session
from tests.console.test_console_caseworker import _holder_step, _record_step
from tests.pki_helpers import RolePki
from tests.server.policy_promises import promised
from tests.server.protected_helpers import GALLERY, HOLDER, person

pytestmark = pytest.mark.server

CLIP = Path("video") / "face_recognition" / "short_hamilton_clip.mp4"
# Frames 90 to 210 show one face, frontal and sharp (the rest of the clip several, or none). The
# traveller is enrolled from three of them (one subject, three captures: searched by their mean), and
# the camera plays the frames between: each is within 0.41 of that mean (L2; the threshold is 0.5),
# so whichever frame the click grabs, the answer is the same.
ENROLLED_FRAMES = (150, 130, 170)
CAMERA_FRAMES = (146, 178)


@pytest.fixture(scope="module")
def console_settings() -> Callable[[RolePki, Path], dict[str, object]]:
    return lambda pki, folder: {"enrolment.require_face_liveness": True}


@pytest.fixture(scope="module")
def session(console_world: ConsoleWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)", pytrace=False)
    clip = console_world.faces / CLIP
    assert clip.exists(), f"{clip} is missing: the shared faces are incomplete"
    folder = tmp_path_factory.mktemp("fake-camera")
    camera = folder / "traveller.y4m"
    assert write_y4m(clip, camera, *CAMERA_FRAMES, step=2) == 17
    with console_world.channel(Role.ADMIN) as channel:
        for position, frame in enumerate(ENROLLED_FRAMES):
            pb_grpc.MatchingServiceStub(channel).InsertTemplate(
                pb.InsertTemplateRequest(
                    gallery_id=WATCHLIST,
                    reference_id="clip-traveller",
                    template=pb.Probe(image=frame_of(clip, frame)),
                    face_selection=pb.LARGEST,
                    add_capture=position > 0,
                )
            )
    with browser_session(console_world, folder, camera=camera) as session:
        yield session


def test_the_officer_takes_the_travellers_photo_with_the_webcam_and_gets_an_answer(session: Session) -> None:
    page = session.role(Role.OFFICER)
    response = session.load(page, "/desk/capture")
    for name, value in {**HEADERS, **PAGE_HEADERS["/desk/capture"]}.items():
        assert response.headers.get(name.lower()) == value, name
    page.get_by_label("Gallery", exact=True).fill(WATCHLIST)
    page.get_by_label("1:N: search the whole gallery").check()
    # Said once the camera's first frame has come (a locator wait: the page's policy forbids eval).
    expect(page.locator("#camera-status")).to_have_text("The camera is on.")
    assert page.locator("script[src='/static/capture.js']").count() == 1, page.content()
    session.keep("desk-capture", page)
    session.act(page, "Take the photo and compare")
    assert page.locator("#verdict").inner_text() == "MATCH"
    assert page.locator("tbody tr td:nth-child(2)").all_inner_texts()[0] == "clip-traveller"
    session.keep("desk-capture-answer", page)


def test_a_frame_without_a_face_gets_the_kiosks_prompt_and_nothing_is_searched(
    session: Session, tmp_path: Path
) -> None:
    blank = tmp_path / "empty-desk.png"
    cv2.imwrite(str(blank), np.full((480, 640, 3), 128, dtype=np.uint8))
    log = session.world.service.transparency_log
    page = session.role(Role.OFFICER)
    session.load(page, "/desk/capture")
    page.get_by_label("Gallery", exact=True).fill(WATCHLIST)
    page.get_by_label("Or choose a photo").set_input_files(str(blank))
    before = log.size()
    session.act(page, "Compare the chosen photo")
    assert page.locator("#prompt").inner_text() == "Please stand in front of the camera"
    assert page.get_by_label("Gallery", exact=True).input_value() == WATCHLIST  # kept for the retake
    operations = [entry.event().operation for entry in log.entries(before, log.size())]
    assert any(op.endswith("/AssessCapture") for op in operations)
    assert not any(op.endswith(("/Identify", "/Verify")) for op in operations)
    session.keep("desk-capture-retake", page)


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.OFFICER], ids=lambda role: role.value)
def test_every_other_role_is_refused_the_capture_page_and_its_action(session: Session, role: Role) -> None:
    # A caseworker may assess a capture (their enrolment's), but the desk's search is refused them.
    assert not promised(Operation.IDENTIFY, role, GalleryPurpose.WATCHLIST)
    world = session.world
    page = session.role(role)
    assert session.load(page, "/desk/capture").status == 403
    photo: dict[str, Any] = {"name": "capture.jpg", "mimeType": "image/jpeg", "buffer": world.photo("obama")}
    form: dict[str, Any] = {
        "form_token": _tokens(world).issue(der(world.pki.clients[role])),
        "gallery": WATCHLIST,
        "mode": "identify",
        "probe": photo,
    }
    response = page.request.post(world.origin + "/desk/capture", multipart=form)
    assert response.status == 403
    assert "You may not do this" in response.text()


def test_only_the_capture_page_runs_a_script_and_axe_finds_nothing_serious(session: Session) -> None:
    page = session.role(Role.OFFICER)
    desk = session.load(page, "/desk")
    assert desk.headers["content-security-policy"] == HEADERS["Content-Security-Policy"]
    assert "script-src" not in desk.headers["content-security-policy"]
    assert "camera=()" in desk.headers["permissions-policy"]
    assert len(session.seen) >= 3
    for name, seen in session.seen.items():
        expected_scripts = 1 if name in ("desk-capture", "desk-capture-retake") else 0
        assert (seen.scripts, seen.styles, seen.handlers) == (expected_scripts, 0, []), name
        serious = [v for v in seen.violations if v[1] in ("serious", "critical")]
        assert not serious, (name, serious)


def test_where_a_live_face_is_required_the_caseworkers_photo_is_refused_and_the_page_says_so(
    session: Session,
) -> None:
    world = session.world
    with world.channel(Role.ADMIN) as channel:
        pb_grpc.GalleryServiceStub(channel).CreateGallery(
            pb.CreateGalleryRequest(gallery_id=GALLERY, purpose=pb.PROTECTED_IDENTITY)
        )
    page = session.role(Role.NGO_CASEWORKER)
    _holder_step(session, page, (True, True, False, True))
    session.act(page, "Done: give the device back to the caseworker")
    _record_step(page)
    page.get_by_label("Or choose a photo").set_input_files(str(person(world.faces, HOLDER).photos[1]))
    log = world.service.transparency_log
    before = log.size()
    session.act(page, "Enrol with the chosen photo")
    assert page.locator("#problem").inner_text() == (
        "This deployment enrols only a face captured live. Use the camera: the holder turns their head as"
        " asked."
    )
    assert page.get_by_label("Given names").input_value() == "Maya"  # kept, to enrol with the camera
    logged = [entry.event() for entry in log.entries(before, log.size())]
    enrolments = [e for e in logged if e.operation.endswith("/EnrolRecord")]
    assert [e.outcome for e in enrolments] == ["FAILED_PRECONDITION"]
