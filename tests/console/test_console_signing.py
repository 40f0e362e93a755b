"""CCTV authorisations signed in the browser, on a server that keeps a CCTV authority key (opt-in).

The module's server is configured with `cctv.signing_key_file` (an admin-role certificate of its
own CA, `cctv-authority`, and its key, 0600). An administrator signs an authorisation for the
module's watchlist (calibrated first, as `safepassage authorise` requires) in Debian's Chromium and
downloads the file a camera loads; a real camera stream presenting that file's token is searched,
while the same token on another watchlist and an expired one are refused; the service refuses
cameras it has no certificate for, an uncalibrated watchlist and a validity beyond 31 days; every
other role is refused the form and the call; and every log entry made through the console names
the person, never the console. The server without the setting is in test_console_admin.py.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from google.protobuf.timestamp_pb2 import Timestamp

from safepassage.api.v1 import administration_pb2 as adpb
from safepassage.api.v1 import administration_pb2_grpc as adpb_grpc
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.server.cctv_authorisation import METADATA_KEY, AuthorisationVerifier
from safepassage.server.cctv_authority import load_authority
from safepassage.server.config import CctvConfig, ConfigError
from safepassage.server.identity import Role
from safepassage.server.pki_folder import read_ca
from safepassage.server.pki_issuance import IssuedCert
from tests.console.conftest import ENROLLED, WATCHLIST, ConsoleWorld, der
from tests.console.test_console_browser import Session, _tokens, browser_session
from tests.pki_helpers import RolePki

pytestmark = pytest.mark.server

AUTHORITY = "cctv-authority"
OTHER = "other-watchlist"
UNCALIBRATED = "uncalibrated-watchlist"
LEGAL_BASIS = "Order 2026/207 of the border court"


@pytest.fixture(scope="module")
def console_settings() -> Callable[[RolePki, Path], dict[str, object]]:
    """The module's server keeps a CCTV authority: an admin certificate of its CA and the key, 0600."""

    def settings(pki: RolePki, folder: Path) -> dict[str, object]:
        issued = pki.pki.issue_client(AUTHORITY, Role.ADMIN)
        keys = folder / "authority"
        keys.mkdir(mode=0o700)
        (keys / "authority.pem").write_bytes(issued.cert_pem)
        key = keys / "authority-key.pem"
        key.touch(mode=0o600)
        key.write_bytes(issued.key_pem)
        return {
            "cctv.signing_key_file": str(key),
            "cctv.signing_certificate_file": str(keys / "authority.pem"),
        }

    return settings


@pytest.fixture(scope="module")
def session(console_world: ConsoleWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    world = console_world
    with world.channel(Role.ADMIN) as channel:
        galleries = pb_grpc.GalleryServiceStub(channel)
        # Calibrated (its own templates searched against the rest), as `safepassage authorise` requires.
        galleries.CalibrateGallery(
            pb.CalibrateGalleryRequest(gallery_id=WATCHLIST, leave_one_out=len(ENROLLED) + 12), timeout=120
        )
        for gallery in (OTHER, UNCALIBRATED):
            galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id=gallery, purpose=pb.WATCHLIST))
    with browser_session(world, tmp_path_factory.mktemp("signing-screenshots")) as session:
        yield session


def _form_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M")


def _stream(world: ConsoleWorld, token: str, gallery: str) -> list[pb.IdentifyStreamResponse]:
    """The camera's stream (cam-1's own certificate), presenting `token` as camera_edge does."""
    searches = [
        pb.IdentifyRequest(gallery_id=gallery, probe=pb.Probe(image=world.photo(name)), request_id=name)
        for name in ("obama", "stranger")
    ]
    with world.channel(Role.CCTV_EDGE) as channel:
        return list(
            pb_grpc.MatchingServiceStub(channel).IdentifyStream(
                iter(searches), metadata=((METADATA_KEY, token),), timeout=120
            )
        )


def _refused(world: ConsoleWorld, token: str, gallery: str, says: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _stream(world, token, gallery)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert says in (info.value.details() or ""), info.value.details()


def _sign_call(world: ConsoleWorld, role: Role, **fields: object) -> adpb.SignedAuthorisation:
    with world.channel(role) as channel:
        request = adpb.SignAuthorisationRequest(**fields)  # type: ignore[arg-type]
        answer: adpb.SignedAuthorisation = adpb_grpc.AdministrationServiceStub(channel).SignAuthorisation(
            request, timeout=30
        )
        return answer


def _in(seconds: float) -> Timestamp:
    return Timestamp(seconds=int(time.time() + seconds))


def test_an_admin_signs_an_authorisation_in_the_browser_and_a_camera_streams_under_it(
    session: Session, tmp_path: Path
) -> None:
    world = session.world
    page = session.role(Role.ADMIN)
    session.load(page, "/admin/authorisations")
    assert page.locator("#server-signs").is_visible()
    assert page.locator("pre.command").count() == 0  # the form replaces the command line's recipe
    session.keep("signing-form", page)
    page.get_by_label("Watchlist the cameras may search").fill(WATCHLIST)
    page.get_by_label("Cameras", exact=True).fill("cam-1")
    page.get_by_label("Legal basis", exact=True).fill(LEGAL_BASIS)
    page.get_by_label("Valid until (UTC; at most 31 days from now)").fill(
        _form_time(datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=6))
    )
    session.act(page, "Sign authorisation")
    assert page.locator("h1").inner_text() == "Authorisation signed"
    facts = page.locator("#signed").inner_text()
    grant_id = page.locator("#signed dd code").first.inner_text()
    assert WATCHLIST in facts and "cam-1" in facts and AUTHORITY in facts
    session.keep("signing-signed", page)
    with page.expect_download() as download:
        page.get_by_role("link", name=f"Download {grant_id}.authorisation").click()
    token_file = tmp_path / "cam-1.authorisation"
    download.value.save_as(token_file)
    token = token_file.read_text().strip()  # as camera_edge/client.py reads its [server] authorisation

    # The camera's real stream under it: both searched (a match and a stranger), nothing refused.
    answers = _stream(world, token, WATCHLIST)
    assert [a.WhichOneof("outcome") for a in answers] == ["result", "result"]
    assert [pb.Decision.Name(a.result.decision) for a in answers] == ["MATCH", "NO_MATCH"]
    # The same token on another watchlist is refused.
    _refused(world, token, OTHER, f"covers gallery {WATCHLIST!r}")

    # The list shows it, signed on this server for the administrator, and the searches under it.
    session.load(page, "/admin/authorisations")
    grant = page.locator("section.grant", has=page.locator(f"#grant-{grant_id}")).inner_text()
    assert "admin:admin-1" in grant and AUTHORITY in grant and "2, of which 1 matched" in grant
    assert LEGAL_BASIS not in page.content()
    session.keep("signing-listed", page)

    log = world.service.transparency_log
    events = [entry.event() for entry in log.entries(0, log.size())]
    signed = [e for e in events if e.operation.endswith("/SignAuthorisation") and e.outcome == "OK"]
    assert [(e.actor, e.gallery_id, e.details["authorisation"], e.details["via"]) for e in signed] == [
        ("admin:admin-1", WATCHLIST, grant_id, "console")
    ]
    details = signed[0].details
    assert details["issued_by"] == AUTHORITY and details["cameras"] == "1"
    assert len(details["legal_basis_hmac_sha256"]) == 64 and LEGAL_BASIS not in str(details)
    # The form's pages: no script, no inline style, nothing axe-core calls serious or critical.
    for name, seen in session.seen.items():
        assert (seen.scripts, seen.styles, seen.handlers) == (0, 0, []), name
        assert not [v for v in seen.violations if v[1] in ("serious", "critical")], (name, seen.violations)


def test_an_expired_authorisation_is_refused_and_the_service_keeps_the_limits(session: Session) -> None:
    world = session.world
    # Signed by the call itself (the administrator's own certificate), for two seconds.
    short = _sign_call(
        world, Role.ADMIN, gallery_id=WATCHLIST, cameras=["cam-1"], legal_basis=LEGAL_BASIS, expires=_in(2)
    )
    assert short.issued_by == AUTHORITY and short.cameras == ["cam-1"]
    while time.time() <= short.expires.seconds:
        time.sleep(0.2)
    _refused(world, short.token, WATCHLIST, "expired")

    refusals = {
        "no certificate": (
            {"gallery_id": WATCHLIST, "cameras": ["cam-404"], "expires": _in(3600)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "cam-404",
        ),
        "not a camera": (
            {"gallery_id": WATCHLIST, "cameras": ["officer-1"], "expires": _in(3600)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "cctv_edge",
        ),
        "uncalibrated": (
            {"gallery_id": UNCALIBRATED, "cameras": ["cam-1"], "expires": _in(3600)},
            grpc.StatusCode.FAILED_PRECONDITION,
            "not calibrated",
        ),
        "too long": (
            {"gallery_id": WATCHLIST, "cameras": ["cam-1"], "expires": _in(31 * 86400 + 3600)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "31 days",
        ),
        "in the past": (
            {"gallery_id": WATCHLIST, "cameras": ["cam-1"], "expires": _in(-60)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "future",
        ),
    }
    for case, (fields, code, says) in refusals.items():
        with pytest.raises(grpc.RpcError) as info:
            _sign_call(world, Role.ADMIN, legal_basis=LEGAL_BASIS, **fields)
        assert (info.value.code(), says in (info.value.details() or "")) == (code, True), (
            case,
            info.value.details(),
        )


def test_an_authority_key_the_server_would_not_trust_stops_the_start_naming_the_setting(
    tmp_path: Path,
) -> None:
    """A non-admin certificate, a revoked one, or a key others may read: refused at start-up."""
    pki = RolePki.create(tmp_path / "pki")
    verifier = AuthorisationVerifier(read_ca(pki.folder), lambda serial: serial in revoked)
    revoked: set[int] = set()

    def settings(issued: IssuedCert, mode: int = 0o600) -> CctvConfig:
        (tmp_path / "cert.pem").write_bytes(issued.cert_pem)
        key = tmp_path / "key.pem"
        key.write_bytes(issued.key_pem)
        key.chmod(mode)
        return CctvConfig(signing_key_file=key, signing_certificate_file=tmp_path / "cert.pem")

    assert load_authority(CctvConfig(), pki.folder, verifier) is None  # the default: no authority
    authority = pki.pki.issue_client(AUTHORITY, Role.ADMIN)
    assert load_authority(settings(authority), pki.folder, verifier) is not None
    for issued, mode, says in (
        (pki.clients[Role.OFFICER], 0o600, "not signed by an admin"),
        (authority, 0o644, "chmod 600"),
    ):
        with pytest.raises(ConfigError, match=says):
            load_authority(settings(issued, mode), pki.folder, verifier)
    revoked.add(x509.load_pem_x509_certificate(authority.cert_pem).serial_number)
    with pytest.raises(ConfigError, match=r"cctv\.signing_key_file.*revoked"):
        load_authority(settings(authority), pki.folder, verifier)


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.ADMIN], ids=lambda role: role.value)
def test_every_other_role_is_refused_the_form_and_the_call(session: Session, role: Role) -> None:
    world = session.world
    issued = world.pki.clients[role]
    page = session.role(role)
    response = session.load(page, "/admin/authorisations")
    # Auditors read the list and are offered no form; every other role is refused the page.
    assert response.status == (200 if role is Role.AUDITOR else 403)
    assert page.locator("#sign-gallery").count() == 0
    form: dict[str, Any] = {
        "form_token": _tokens(world).issue(der(issued)),
        "gallery": WATCHLIST,
        "cameras": "cam-1",
        "legal_basis": LEGAL_BASIS,
        "expires": _form_time(datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)),
    }
    posted = page.request.post(world.origin + "/admin/authorisations/sign", multipart=form)
    assert posted.status == 403, posted.text()[:300]
    assert "You may not do this" in posted.text()
    with pytest.raises(grpc.RpcError) as info:
        _sign_call(
            world, role, gallery_id=WATCHLIST, cameras=["cam-1"], legal_basis=LEGAL_BASIS, expires=_in(3600)
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    log = world.service.transparency_log
    signed = [
        e
        for e in (entry.event() for entry in log.entries(0, log.size()))
        if e.operation.endswith("/SignAuthorisation") and e.outcome == "OK"
    ]
    assert {e.actor for e in signed} <= {"admin:admin-1"}


def test_every_console_entry_in_the_log_names_a_person_never_the_console(session: Session) -> None:
    """Last in the module: what every test above did through the console is logged under a person."""
    world = session.world
    # The forwarded certificates' subjects (a device's certificate in a browser is refused under its own).
    people = {f"{role.value}:{issued.client_id}" for role, issued in world.pki.clients.items()}
    log = world.service.transparency_log
    events = [entry.event() for entry in log.entries(0, log.size())]
    through_console = [e for e in events if e.details.get("via") == "console"]
    assert len(through_console) >= 10
    assert {e.actor for e in through_console} <= people, {e.actor for e in through_console} - people
    assert any(e.operation.endswith("/SignAuthorisation") for e in through_console)
    console_id = world.console.client_id
    assert not [e for e in events if e.actor.split(":", 1)[-1] == console_id]
