"""Attacks on the console's door to the service, at the gRPC port (server/forwarding.py).

Only the pinned console certificate may forward a person's certificate; the forwarded one is checked
exactly as a direct caller's (our CA, validity now, revocation now); the console alone is nobody; a
person is refused through the console exactly what they are refused directly, and devices get
nothing there; every call is logged under the person, ``via=console``, and an officer's decision
enters the log with its note and candidate only as keyed hashes.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from safepassage.api.v1 import access_pb2 as apb
from safepassage.api.v1 import access_pb2_grpc as apb_grpc
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.audit import LogEvent
from safepassage.server.forwarding import FORWARDED_CERTIFICATE
from safepassage.server.identity import Role
from safepassage.server.pki_folder import PkiPaths
from safepassage.server.pki_issuance import IssuedCert, Pki
from safepassage.server.pseudonyms import LogPseudonyms
from tests.conftest import REPO
from tests.console.conftest import WATCHLIST, ConsoleWorld, der
from tests.pki_helpers import foreign_cert

pytestmark = pytest.mark.server
Code = grpc.StatusCode


def _events(world: ConsoleWorld) -> list[LogEvent]:
    log = world.service.transparency_log
    return [entry.event() for entry in log.entries(0, log.size())]


def _code(call: Callable[[], Any]) -> tuple[Code, str]:
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return Code.OK, ""


Metadata = tuple[tuple[str, str | bytes], ...]


def _forwarding(certificate: bytes) -> Metadata:
    return ((FORWARDED_CERTIFICATE, certificate),)


def _identify(world: ConsoleWorld, channel: grpc.Channel, metadata: Metadata) -> Any:
    return pb_grpc.MatchingServiceStub(channel).Identify(
        pb.IdentifyRequest(gallery_id=WATCHLIST, probe=pb.Probe(image=world.photo("obama"))),
        metadata=metadata,
        timeout=60,
    )


def test_a_caller_other_than_the_console_forwarding_a_certificate_is_refused_under_its_own_name(
    console_world: ConsoleWorld,
) -> None:
    admin = der(console_world.pki.clients[Role.ADMIN])
    officer = der(console_world.pki.clients[Role.OFFICER])
    with console_world.channel(Role.OFFICER) as channel:
        # An officer forwarding an admin's certificate, to list galleries as the admin: refused.
        code, details = _code(
            lambda: pb_grpc.GalleryServiceStub(channel).ListGalleries(
                pb.ListGalleriesRequest(), metadata=_forwarding(admin), timeout=30
            )
        )
        assert code == Code.PERMISSION_DENIED, details
        assert "only the console" in details
        # Even forwarding its own certificate gets nothing: a direct caller forwards nothing.
        assert (
            _code(lambda: _identify(console_world, channel, _forwarding(officer)))[0]
            == Code.PERMISSION_DENIED
        )
    refused = [
        e for e in _events(console_world) if e.operation.endswith("/ListGalleries") and e.outcome != "OK"
    ]
    assert refused and refused[-1].actor == "officer:officer-1"
    assert "via" not in refused[-1].details


def test_the_console_alone_is_nobody(console_world: ConsoleWorld) -> None:
    with console_world.console_channel() as channel:
        for call in (
            lambda: apb_grpc.AccessServiceStub(channel).DescribeCaller(
                apb.DescribeCallerRequest(), timeout=30
            ),
            lambda: pb_grpc.GalleryServiceStub(channel).ListGalleries(pb.ListGalleriesRequest(), timeout=30),
            lambda: _identify(console_world, channel, ()),
        ):
            code, details = _code(call)
            assert code == Code.UNAUTHENTICATED, details
            assert "forwarded no certificate" in details


@pytest.mark.parametrize("kind", ["foreign", "expired", "not-yet-valid", "revoked", "garbage", "console"])
def test_a_forwarded_certificate_is_checked_as_a_direct_callers_is(
    console_world: ConsoleWorld, tmp_path: Path, kind: str
) -> None:
    pki = console_world.pki
    forwarded: bytes
    if kind == "foreign":
        forwarded = der(foreign_cert(tmp_path / "other-ca", "officer-1", Role.OFFICER))
    elif kind == "expired":
        forwarded = der(pki.expired("officer-expired", Role.OFFICER))
    elif kind == "not-yet-valid":
        forwarded = der(pki.not_yet_valid("officer-later", Role.OFFICER))
    elif kind == "revoked":
        issued = pki.pki.issue_client("officer-revoked", Role.OFFICER)
        with console_world.console_channel() as channel:
            assert _code(lambda: _identify(console_world, channel, _forwarding(der(issued))))[0] == Code.OK
        pki.pki.revoke("officer-revoked")
        forwarded = der(issued)
    elif kind == "garbage":
        forwarded = b"\x30\x03\x02\x01\x01"
    else:  # the console's own certificate: no role, so never a person
        forwarded = der(console_world.console)
    with console_world.console_channel() as channel:
        code, details = _code(lambda: _identify(console_world, channel, _forwarding(forwarded)))
    assert code == Code.UNAUTHENTICATED, details


def test_only_the_pinned_console_certificate_may_forward(console_world: ConsoleWorld) -> None:
    # Another console certificate of the same CA, issued after the server pinned its own.
    other = _second_console(console_world)
    person = der(console_world.pki.clients[Role.OFFICER])
    with console_world.console_channel(other) as channel:
        code, details = _code(lambda: _identify(console_world, channel, _forwarding(person)))
    assert code == Code.UNAUTHENTICATED, details


def _second_console(world: ConsoleWorld) -> IssuedCert:
    """A console certificate the server did not pin; console.pem is put back as it was."""
    paths = world.pki.pki.paths
    kept = paths.console_cert.read_bytes(), paths.console_key.read_bytes()
    try:
        return world.pki.pki.issue_console()
    finally:
        paths.console_cert.write_bytes(kept[0])
        paths.console_key.write_bytes(kept[1])


@pytest.mark.parametrize("role", list(Role))
def test_a_person_is_refused_through_the_console_what_they_are_refused_directly(
    console_world: ConsoleWorld, role: Role
) -> None:
    forwarded = _forwarding(der(console_world.pki.clients[role]))
    with console_world.channel(role) as direct, console_world.console_channel() as console:
        directly, _ = _code(lambda: _identify(console_world, direct, ()))
        through, details = _code(lambda: _identify(console_world, console, forwarded))
        verify = pb.VerifyRequest(
            gallery_id=WATCHLIST,
            reference_id="case-obama",
            probe=pb.Probe(image=console_world.photo("obama")),
        )
        verified_directly, _ = _code(lambda: pb_grpc.MatchingServiceStub(direct).Verify(verify, timeout=60))
        verified_through, _ = _code(
            lambda: pb_grpc.MatchingServiceStub(console).Verify(verify, metadata=forwarded, timeout=60)
        )
    if role in (Role.CCTV_EDGE, Role.KIOSK):
        # Devices call directly; through the console they get nothing, whatever the matrix allows them.
        assert (through, verified_through) == (Code.PERMISSION_DENIED, Code.PERMISSION_DENIED), details
        assert "through the console" in details
        assert verified_directly == (Code.OK if role is Role.KIOSK else Code.PERMISSION_DENIED)
    else:
        assert through == directly, details
        assert verified_through == verified_directly
        assert (through == Code.OK) == (role is Role.OFFICER)


def test_calls_through_the_console_are_logged_under_the_person(console_world: ConsoleWorld) -> None:
    forwarded = _forwarding(der(console_world.pki.clients[Role.OFFICER]))
    before = console_world.service.transparency_log.size()
    with console_world.console_channel() as channel:
        described = apb_grpc.AccessServiceStub(channel).DescribeCaller(
            apb.DescribeCallerRequest(), metadata=forwarded, timeout=30
        )
        answer = _identify(console_world, channel, forwarded)
    assert (described.client_id, described.role, described.via) == ("officer-1", "officer", "console")
    assert {"Identify", "Verify", "RecordDecision"} <= {p.operation for p in described.permissions}
    assert "ListGalleries" not in {p.operation for p in described.permissions}
    assert answer.decision == pb.MATCH
    log = console_world.service.transparency_log
    entries = [entry.event() for entry in log.entries(before, log.size())]
    assert [(e.operation.rsplit("/", 1)[-1], e.actor) for e in entries] == [
        ("DescribeCaller", "officer:officer-1"),
        ("Identify", "officer:officer-1"),
    ]
    assert all(e.details.get("via") == "console" for e in entries)


def test_an_officers_decision_enters_the_log_with_its_note_and_candidate_only_as_keyed_hashes(
    console_world: ConsoleWorld,
) -> None:
    note = "Traveller Maria Lopez, passport X1234567, says she was never here"
    forwarded = _forwarding(der(console_world.pki.clients[Role.OFFICER]))
    request = pb.RecordDecisionRequest(
        gallery_id=WATCHLIST,
        search=pb.SEARCH_IDENTIFY,
        reference_id="case-obama",
        service_decision=pb.MATCH,
        decision=pb.REVIEW_REFER,
        reason=pb.REASON_SECONDARY_INSPECTION,
        note=note,
    )
    with console_world.console_channel() as channel:
        stub = pb_grpc.MatchingServiceStub(channel)
        stub.RecordDecision(request, metadata=forwarded, timeout=30)
        incomplete = pb.RecordDecisionRequest(gallery_id=WATCHLIST, search=pb.SEARCH_VERIFY, note=note)
        code, _ = _code(lambda: stub.RecordDecision(incomplete, metadata=forwarded, timeout=30))
        assert code == Code.INVALID_ARGUMENT
    with console_world.channel(Role.AUDITOR) as channel:  # an auditor may not record an officer's decision
        code, _ = _code(lambda: pb_grpc.MatchingServiceStub(channel).RecordDecision(request, timeout=30))
        assert code == Code.PERMISSION_DENIED
    decisions = [e for e in _events(console_world) if e.operation.endswith("RecordDecision")]
    recorded = next(e for e in decisions if e.outcome == "OK")
    pseudonyms = LogPseudonyms.from_key_file(console_world.folder / "data-keys" / "template.key")
    assert recorded.actor == "officer:officer-1"
    assert dict(recorded.details) == {
        "search": "SEARCH_IDENTIFY",
        "service_decision": "MATCH",
        "decision": "REVIEW_REFER",
        "reason": "REASON_SECONDARY_INSPECTION",
        "reference_hmac_sha256": pseudonyms.reference("case-obama"),
        "note_hmac_sha256": pseudonyms.note(note),
        "via": "console",
    }
    assert [e.actor for e in decisions if e.outcome == "PERMISSION_DENIED"] == ["auditor:auditor-1"]
    leaves = b"".join(e.to_leaf() for e in _events(console_world))
    for secret in (b"Maria", b"X1234567", b"case-obama"):
        assert secret not in leaves


def test_a_deployment_issues_the_console_certificate_with_the_command_line(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    Pki.init(folder)  # a deployment's PKI: no console certificate until asked for

    def pki(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "safepassage.cli.main", "pki", *args, "--pki-dir", str(folder)]
        return subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)

    issued = pki("issue-console")
    assert issued.returncode == 0, issued.stderr
    assert "issued the console" in issued.stdout
    paths = PkiPaths(folder)
    assert stat.S_IMODE(paths.console_key.stat().st_mode) == 0o600
    listed = json.loads(pki("list", "--json").stdout)
    assert [c["kind"] for c in listed if c["client_id"] == "console"] == ["console"]
    # Nobody else may be called "console" (`pki revoke console` names the console's certificate).
    refused = pki("issue", "console", "--role", "officer", "--bundle", str(tmp_path / "bundle"))
    assert refused.returncode == 2 and "the console's own" in refused.stderr


def test_revoking_the_console_certificate_shuts_the_console_out(console_world: ConsoleWorld) -> None:
    """Last in this module: the module's console is of no use afterwards."""
    forwarded = _forwarding(der(console_world.pki.clients[Role.OFFICER]))
    console_world.pki.pki.revoke("console")
    with console_world.console_channel() as channel:
        code, details = _code(lambda: _identify(console_world, channel, forwarded))
    assert code == Code.UNAUTHENTICATED and "the console's certificate" in details and "revoked" in details
