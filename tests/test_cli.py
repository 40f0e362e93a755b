"""The `safepassage` command against a server started by `safepassage serve`."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from safepassage.server.identity import Role
from safepassage.server.pki_issuance import Pki
from tests.conftest import REPO
from tests.process import ServerProcess

pytestmark = pytest.mark.server


def cli(server: ServerProcess, *args: str, client: str = "dev-admin") -> subprocess.CompletedProcess[str]:
    connection = [
        "--server",
        f"localhost:{server.port}",
        "--pki-dir",
        str(server.pki_dir),
        "--client",
        client,
    ]
    return subprocess.run(
        [sys.executable, "-m", "safepassage.cli.main", *args, *connection],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def local(*args: str) -> subprocess.CompletedProcess[str]:
    """A command that works on files on the server's host (pki, audit), not over the network."""
    return subprocess.run(
        [sys.executable, "-m", "safepassage.cli.main", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def officer(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(server, *args, client="officer-1")


def closed_port() -> int:
    """A port nothing listens on (it was free a moment ago): an unreachable server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def offline_pki(folder: Path) -> Path:
    """A development PKI with dev-admin and ngo-1 (example-ngo), as a server's first run makes it."""
    pki = Pki.init(folder, development=True)
    pki.issue_client("dev-admin", Role.ADMIN)
    pki.issue_client("ngo-1", Role.NGO_CASEWORKER, organisation="example-ngo")
    return folder


def assert_one_line_failure(out: subprocess.CompletedProcess[str], status: int, *named: str) -> None:
    """A failed command: the status, one line on stderr naming each of `named`, no traceback."""
    said = f"exit {out.returncode}\n{out.stdout}{out.stderr}"
    assert out.returncode == status, said
    assert "Traceback" not in out.stdout + out.stderr, said
    assert len(out.stderr.strip().splitlines()) == 1, said
    for name in named:
        assert name in out.stderr, said


@pytest.mark.parametrize(
    ("case", "argv", "status", "named"),
    [
        ("bad flag value", ["identify", "g", "{tmp}/p.jpg", "--top-k", "abc"], 2, ["--top-k", "'abc'"]),
        ("bad choice", ["pki", "issue", "x", "--role", "nobody"], 2, ["--role", "'nobody'"]),
        ("missing flag", ["gallery", "calibrate", "g"], 2, ["--impostors", "--leave-one-out"]),
        ("missing image", ["enrol", "g", "r", "{tmp}/nope.jpg"], 2, ["{tmp}/nope.jpg"]),
        ("missing folder", ["gallery", "calibrate", "g", "--impostors", "{tmp}/nobody"], 2, ["{tmp}/nobody"]),
        ("no CA", ["health", "--pki-dir", "{tmp}/no-pki"], 2, ["{tmp}/no-pki/ca.pem"]),
        ("unreachable server", ["health"], 1, ["UNAVAILABLE", "localhost:{port}", "--server"]),
        (
            "missing log",
            ["audit", "export", "--log", "{tmp}/log.db", "--out-dir", "{tmp}/x"],
            2,
            ["{tmp}/log.db"],
        ),
        ("not a folder", ["audit", "verify", "{tmp}/no-export"], 2, ["{tmp}/no-export"]),
    ],
)
def test_cli_failures_are_one_line_with_their_exit_status(
    tmp_path: Path, case: str, argv: list[str], status: int, named: list[str]
) -> None:
    """0 done; 1 the server refused or could not be reached; 2 the command could not run as given."""
    pki, port = offline_pki(tmp_path / "pki"), closed_port()
    values = {"tmp": str(tmp_path), "port": str(port)}
    connection = ["--server", f"localhost:{port}", "--pki-dir", str(pki)]
    words = [word.format(**values) for word in argv]
    if words[0] not in ("pki", "audit") and "--pki-dir" not in words:
        words += connection
    assert_one_line_failure(local(*words), status, *(name.format(**values) for name in named))


def test_authorise_refuses_an_uncalibrated_watchlist(tmp_path: Path, faces_dir: Path) -> None:
    strangers = tmp_path / "strangers"
    strangers.mkdir()
    lfw = sorted(p for p in (faces_dir / "lfw").iterdir() if p.is_dir())[-12:]
    for folder in lfw:
        (strangers / f"{folder.name}.jpg").symlink_to(sorted(folder.glob("*.jpg"))[0])
    server = ServerProcess(tmp_path / "data")
    try:
        assert cli(server, "gallery", "create", "gate").returncode == 0
        fr = faces_dir / "face_recognition"
        assert cli(server, "enrol", "gate", "obama", str(fr / "obama" / "obama.jpg")).returncode == 0
        out = cli(server, "gallery", "describe", "gate")
        assert "watchlist default" in out.stdout and "not calibrated" in out.stdout
        token = tmp_path / "cam.authorisation"
        sign = ("authorise", "gate", "--camera", "cam-1", "--legal-basis", "Order 1", "--hours", "1")
        where = (
            "--server",
            f"localhost:{server.port}",
            "--pki-dir",
            str(server.pki_dir),
            "--out",
            str(token),
        )
        out = local(*sign, *where)
        assert out.returncode == 2 and "not calibrated" in out.stderr and "--uncalibrated-ok" in out.stderr
        assert not token.exists()
        out = local(*sign, *where, "--uncalibrated-ok")
        assert out.returncode == 0 and str(token) in out.stdout and "0600" in out.stdout, out.stderr
        assert token.stat().st_mode & 0o777 == 0o600 and token.read_text().count(".") >= 1
        token.unlink()
        out = cli(server, "gallery", "calibrate", "gate", "--impostors", str(strangers))
        assert out.returncode == 0 and "FPIR" in out.stdout and "(calibration)" in out.stdout, out.stderr
        out = local(*sign, *where)
        assert out.returncode == 0 and token.stat().st_mode & 0o777 == 0o600, out.stderr
    finally:
        assert server.stop() == 0


def test_cli_round_trip(tmp_path: Path, faces_dir: Path) -> None:
    fr = faces_dir / "face_recognition"
    photos = tmp_path / "photos"
    photos.mkdir()
    # The import command names references after files; link, never copy, the shared data.
    (photos / "kit.jpeg").symlink_to(fr / "kit_harington" / "john1.jpeg")
    (photos / "rose.jpg").symlink_to(fr / "rose_leslie" / "img1.jpg")
    server = ServerProcess(tmp_path / "data")
    try:
        out = cli(server, "health")
        assert out.returncode == 0 and "SERVING" in out.stdout
        out = cli(server, "gallery", "create", "desk", "--purpose", "watchlist")
        # A watchlist takes the model's watchlist default, never silently the 1:1 threshold (0.6).
        assert out.returncode == 0 and "desk" in out.stdout and "threshold=0.500" in out.stdout
        assert "watchlist default; FPIR" in out.stdout and "model evidence" in out.stdout
        assert "not calibrated" in out.stderr and "gallery calibrate desk" in out.stderr
        out = cli(server, "enrol", "desk", "obama", str(fr / "obama" / "obama.jpg"))
        assert out.returncode == 0 and "enrolled obama in desk" in out.stdout
        out = cli(server, "import", "desk", str(photos))
        assert out.returncode == 0 and "imported 2 of 2" in out.stdout
        # A re-run skips what is there; a photo without a face fails: exit 1, one line per failure.
        (photos / "dog.jpg").symlink_to(faces_dir / "group" / "dlib" / "dogs.jpg")
        out = cli(server, "import", "desk", str(photos))
        assert out.returncode == 1 and "imported 0 of 3" in out.stdout
        assert "2 already present (skipped); 1 failed" in out.stdout
        assert out.stderr.count("failed: ") == 1 and "failed: dog.jpg" in out.stderr
        (photos / "dog.jpg").unlink()
        out = cli(server, "count", "desk")
        assert out.stdout.strip() == "3"
        # Searching is an officer's job, not an admin's.
        out = cli(server, "identify", "desk", str(fr / "obama" / "obama2.jpg"))
        assert out.returncode == 1 and "PERMISSION_DENIED" in out.stderr
        out = local("pki", "issue", "officer-1", "--role", "officer", "--pki-dir", str(server.pki_dir))
        assert out.returncode == 0, out.stderr
        out = officer(server, "identify", "desk", str(fr / "obama" / "obama2.jpg"))
        assert out.returncode == 0 and out.stdout.startswith("MATCH")
        assert "1. obama" in out.stdout and "gallery threshold: watchlist default" in out.stdout
        assert "distance threshold 0.500" in out.stdout and " distance 0." in out.stdout
        out = officer(
            server, "identify", "desk", str(fr / "obama" / "obama2.jpg"), "--restrict-to", "kit", "nobody"
        )
        assert out.returncode == 1 and "NOT_FOUND" in out.stderr and "1 of the 2" in out.stderr
        out = officer(
            server, "identify", "desk", str(fr / "obama" / "obama2.jpg"), "--restrict-to", "kit", "rose"
        )
        assert out.stdout.startswith("NO_MATCH") and "obama" not in out.stdout.split("\n", 1)[1]
        out = officer(server, "verify", "desk", "rose", str(fr / "rose_leslie" / "img2.jpg"))
        assert out.returncode == 0 and out.stdout.startswith("MATCH")
        out = cli(server, "delete", "desk", "rose")
        assert out.returncode == 0
        out = officer(server, "verify", "desk", "rose", str(fr / "rose_leslie" / "img2.jpg"))
        assert out.returncode == 1 and "NOT_FOUND" in out.stderr
        out = cli(server, "enrol", "desk", "dog", str(faces_dir / "group" / "dlib" / "dogs.jpg"))
        assert out.returncode == 1 and "FAILED_PRECONDITION" in out.stderr and "no face" in out.stderr.lower()
        out = cli(server, "gallery", "list")
        assert "desk" in out.stdout and "size=2" in out.stdout
        # Several photos of one person: one subject (a sub-folder in import, several files in enrol).
        tony = sorted((faces_dir / "lfw" / "Tony_Blair").glob("*.jpg"))
        (tmp_path / "people" / "tony").mkdir(parents=True)
        for picture in tony[:3]:
            (tmp_path / "people" / "tony" / picture.name).symlink_to(picture)
        out = cli(server, "import", "desk", str(tmp_path / "people"), "--largest")
        assert out.returncode == 0 and "tony/: 3 captures" in out.stdout, out.stdout + out.stderr
        assert "imported 1 of 1 subject folders" in out.stdout
        out = cli(server, "import", "desk", str(tmp_path / "people"), "--largest")
        assert out.returncode == 0 and "tony/: already present (skipped)" in out.stdout
        out = cli(server, "enrol", "desk", "tony", str(tony[3]), "--add", "--largest")
        assert out.returncode == 0 and "4 captures" in out.stdout
        pair = [str(fr / "rose_leslie" / "img1.jpg"), str(fr / "rose_leslie" / "img2.jpg")]
        out = cli(server, "enrol", "desk", "rose-2", *pair)
        assert out.returncode == 0 and "from img2.jpg" in out.stdout and ": 2 captures" in out.stdout
        out = cli(server, "count", "desk")
        assert out.stdout.strip() == "4"  # subjects, not photos
        out = cli(server, "enrol", "desk", "crowd", str(faces_dir / "group" / "dlib" / "2008_001322.jpg"))
        assert out.returncode == 1 and "--largest" in out.stderr, out.stderr
        # A client's bundle (its key, its certificate, the CA) is all it needs; the PKI keeps no copy.
        bundle = tmp_path / "auditor-1"
        issue = ("pki", "issue", "auditor-1", "--role", "auditor", "--bundle", str(bundle))
        out = local(*issue, "--pki-dir", str(server.pki_dir))
        assert out.returncode == 0, out.stderr
        assert not (server.pki_dir / "clients" / "auditor-1-key.pem").exists()
        connect = ("--server", f"localhost:{server.port}", "--pki-dir", str(bundle), "--client", "auditor-1")
        out = local("gallery", "list", *connect)
        assert out.returncode == 0 and "desk" in out.stdout, out.stderr
    finally:
        assert server.stop() == 0
    # An auditor takes the transparency log away and verifies it offline.
    exported = tmp_path / "audit-export"
    log_file = tmp_path / "data" / "audit" / "transparency.sqlite3"
    out = local("audit", "export", "--log", str(log_file), "--out", str(exported))
    assert out.returncode == 0, out.stderr
    out = local("audit", "verify", str(exported))
    assert out.returncode == 0, out.stdout + out.stderr
    entries = (exported / "entries.jsonl").read_text()
    assert (
        "certificate.issue" in entries
        and "MatchingService/Identify" in entries
        and "PERMISSION_DENIED" in entries
    )
    # Leaves hold hashes and ids, never names or image data.
    assert "obama" not in entries.lower() and "rose" not in entries.lower()
