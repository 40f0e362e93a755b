"""The `safepassage` command against a server started by `safepassage serve`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.process import ServerProcess

pytestmark = pytest.mark.server


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "safepassage_cli.main",
            *args,
            "--server",
            f"localhost:{server.port}",
            "--ca",
            str(server.ca_file),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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
        out = cli(server, "identify", "desk", str(fr / "obama" / "obama2.jpg"))
        assert out.returncode == 0 and out.stdout.startswith("MATCH")
        assert "1. obama" in out.stdout
        out = cli(
            server, "identify", "desk", str(fr / "obama" / "obama2.jpg"), "--restrict-to", "kit", "rose"
        )
        assert out.stdout.startswith("NO_MATCH") and "obama" not in out.stdout.split("\n", 1)[1]
        out = cli(server, "verify", "desk", "rose", str(fr / "rose_leslie" / "img2.jpg"))
        assert out.returncode == 0 and out.stdout.startswith("MATCH")
        out = cli(server, "delete", "desk", "rose")
        assert out.returncode == 0
        out = cli(server, "verify", "desk", "rose", str(fr / "rose_leslie" / "img2.jpg"))
        assert out.returncode == 1 and "NOT_FOUND" in out.stderr
        out = cli(server, "enrol", "desk", "dog", str(faces_dir / "group" / "dlib" / "dogs.jpg"))
        assert out.returncode == 1 and "FAILED_PRECONDITION" in out.stderr and "no face" in out.stderr.lower()
        out = cli(server, "gallery", "list")
        assert "desk" in out.stdout and "size=2" in out.stdout
    finally:
        assert server.stop() == 0
