"""The `safepassage` command against a server started by `safepassage serve`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
        [sys.executable, "-m", "safepassage_cli.main", *args, *connection],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def local(*args: str) -> subprocess.CompletedProcess[str]:
    """A command that works on files on the server's host (pki, audit), not over the network."""
    return subprocess.run(
        [sys.executable, "-m", "safepassage_cli.main", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def officer(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(server, *args, client="officer-1")


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
        assert out.returncode == 0 and "desk" in out.stdout and "threshold=0.600" in out.stdout
        out = cli(server, "enrol", "desk", "obama", str(fr / "obama" / "obama.jpg"))
        assert out.returncode == 0 and "enrolled obama in desk" in out.stdout
        out = cli(server, "import", "desk", str(photos))
        assert out.returncode == 0 and "imported 2 of 2" in out.stdout
        out = cli(server, "count", "desk")
        assert out.stdout.strip() == "3"
        # Searching is an officer's job, not an admin's.
        out = cli(server, "identify", "desk", str(fr / "obama" / "obama2.jpg"))
        assert out.returncode == 1 and "PERMISSION_DENIED" in out.stderr
        out = local("pki", "issue", "officer-1", "--role", "officer", "--pki-dir", str(server.pki_dir))
        assert out.returncode == 0, out.stderr
        out = officer(server, "identify", "desk", str(fr / "obama" / "obama2.jpg"))
        assert out.returncode == 0 and out.stdout.startswith("MATCH")
        assert "1. obama" in out.stdout
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
