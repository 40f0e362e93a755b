"""One server per data folder and per port (issue #15, finding 2).

Two servers on one folder each kept their own index over the same store, so an
enrolment made through one was never searched by the other (a missed watchlist
hit); two on one port (gRPC binds with SO_REUSEPORT by default) split the
callers between them. The second `safepassage serve` is now refused at once,
with one line naming the process that holds the folder or the port.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from safepassage.server.data_lock import DataFolderInUse, DataFolderLock
from tests.conftest import REPO
from tests.process import ServerProcess

pytestmark = pytest.mark.server


def serve_refused(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`safepassage serve` as ServerProcess starts it, expected to exit on its own."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir.parent / f"{data_dir.name}-test.toml"
    config.write_text("[limits]\nenabled = false\n[fishing]\nenabled = false\n")
    command = [sys.executable, "-m", "safepassage.cli.main", "serve", "--config", str(config)]
    return subprocess.run(
        [*command, "--data-dir", str(data_dir), "--port", "0", *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_a_second_server_on_the_same_data_folder_is_refused_naming_the_first(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "data")
    try:
        second = serve_refused(tmp_path / "data")
        assert second.returncode == 2, second.stderr[-2000:]
        assert error_lines(second.stderr) == [
            f"error: data folder {tmp_path / 'data'} is in use by another SafePassage server"
            f" (pid {first.process.pid}); stop it first, or give this server its own storage.data_dir"
        ]
        first.wait_serving()  # the first one is untouched
    finally:
        assert first.stop() == 0
    # The lock goes with its process: the folder serves again at once.
    again = ServerProcess(tmp_path / "data")
    try:
        again.wait_serving()
    finally:
        assert again.stop() == 0


def test_a_second_server_on_the_same_port_is_refused_naming_the_first(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "first")
    try:
        second = serve_refused(tmp_path / "second", "--port", str(first.port))
        assert second.returncode == 2, second.stderr[-2000:]
        assert error_lines(second.stderr) == [
            f"error: cannot listen on 127.0.0.1:{first.port}: port {first.port} is in use by process"
            f" (pid {first.process.pid})"
        ]
        first.wait_serving()
    finally:
        assert first.stop() == 0


def test_the_lock_excludes_another_holder_in_the_same_process_until_released(tmp_path: Path) -> None:
    held = DataFolderLock.acquire(tmp_path / "data")
    with pytest.raises(DataFolderInUse, match=r"\(pid \d+\)"):
        DataFolderLock.acquire(tmp_path / "data")
    held.release()
    DataFolderLock.acquire(tmp_path / "data").release()
