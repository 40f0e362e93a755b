"""The README's set-up on a stock machine: the distribution's Python (externally managed), no uv.

A copy of the project (what a clean clone holds) runs `make serve` with PYTHON set to the system
interpreter and a PATH without uv, so the Makefile must bootstrap uv into the project's own
`.tooling/` venv instead of pip-installing into an interpreter PEP 668 protects. The server must
come up and answer `safepassage health` from the copy's venv, stop cleanly on SIGTERM, and the
system interpreter must have gained nothing. The uv and pip caches are the machine's own, so after
`make test` has installed everything this takes seconds, not a download.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from benchmarks.install_measure import copy_working_tree
from tests.conftest import REPO

# The distribution's interpreter; another can be named (it must be externally managed too).
STOCK_PYTHON_ENV = "SAFEPASSAGE_STOCK_PYTHON"
STOCK_PYTHON = Path(os.environ.get(STOCK_PYTHON_ENV, "/usr/bin/python3"))
PORT_LINE = re.compile(r"serving on port (\d+)")
# Generous (under pytest's 600 s): a machine whose caches are cold downloads the server's packages here.
SETUP_TIMEOUT_S = 540
# What `make serve` must not install: dev tools and optional backends.
NOT_FOR_THE_SERVER = ("pytest", "mypy", "ruff", "matplotlib", "pymilvus", "milvus-lite", "grpcio-tools")
# What the server imports with its default configuration (faces.backend = "onnx").
FOR_THE_SERVER = ("onnxruntime", "faiss-cpu", "opencv-python-headless", "dlib-bin", "onnx")
NAMES = "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] for d in m.distributions()))"
SYSTEM_STATE = """
import importlib.util, json, os, site, sys, sysconfig
from pathlib import Path
folders = [*site.getsitepackages(), site.getusersitepackages(), sysconfig.get_path("scripts")]
print(json.dumps({
    "version": sys.version.split()[0],
    "externally_managed": (Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").is_file(),
    "uv_module": importlib.util.find_spec("uv") is not None,
    "folders": {f: sorted(os.listdir(f)) if os.path.isdir(f) else None for f in folders},
}))
"""


def system_state() -> dict[str, object]:
    """What the system interpreter holds: its site-packages, user site and scripts folder listings."""
    result = subprocess.run(
        [str(STOCK_PYTHON), "-c", SYSTEM_STATE], capture_output=True, text=True, check=True, timeout=60
    )
    state: dict[str, object] = json.loads(result.stdout)
    return state


def path_without_uv() -> str:
    """This PATH less every folder that holds a uv (pyenv's shims, ~/.cargo/bin, ...)."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    kept = [f for f in folders if f and not os.access(os.path.join(f, "uv"), os.X_OK)]
    path = os.pathsep.join(kept)
    assert shutil.which("uv", path=path) is None
    assert shutil.which("make", path=path) is not None, f"no make on {path}"
    return path


def stock_environment() -> dict[str, str]:
    """The caller's environment as a fresh shell would have it: no uv, no venv, no outer make."""
    dropped = ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "UV_PYTHON", "UV", "PYTHONPATH", "PYTHONHOME")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith(("MAKE", "MFLAGS", "PYTEST_"))
    }
    env["PATH"] = path_without_uv()
    return env


def descendants(root: int) -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process under `root`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        pending.extend(children.get(pid, []))
        try:
            argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        yield pid, argv


class MakeServe:
    """`make serve` in its own process group, its output collected; killed, group and all, on close."""

    def __init__(self, project: Path, data_dir: Path, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.port: int | None = None
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            [
                "make",
                "serve",
                f"PYTHON={STOCK_PYTHON}",
                f"ARGS=--port 0 --data-dir {data_dir}",
            ],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:  # closed at the end of the output
            for line in self.process.stdout:
                self.lines.append(line)
                match = PORT_LINE.search(line)
                if match and self.port is None:
                    self.port = int(match.group(1))
                    self._ready.set()
        self._ready.set()

    def log(self, last: int = 60) -> str:
        return "".join(self.lines[-last:])

    def wait_serving(self, timeout_s: float) -> int:
        if not self._ready.wait(timeout_s) or self.port is None:
            raise AssertionError(f"`make serve` did not start the server:\n{self.log()}")
        return self.port

    def server_pid(self) -> int:
        """The server itself (the venv's `safepassage serve`), under make and `uv run`."""
        for pid, argv in descendants(self.process.pid):
            if len(argv) > 2 and argv[1].endswith("/.venv/bin/safepassage") and argv[2] == "serve":
                return pid
        raise AssertionError(f"no `safepassage serve` under make (pid {self.process.pid}):\n{self.log()}")

    def close(self) -> None:
        """Kill whatever is left of make's process group: make, uv, the server."""
        with contextlib.suppress(ProcessLookupError):  # all gone already
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)


def test_make_serve_with_the_distributions_python_and_no_uv_installs_the_server_set_and_serves(
    tmp_path: Path,
) -> None:
    before = system_state()
    assert before["externally_managed"], (
        f"{STOCK_PYTHON} is not externally managed (PEP 668): name the distribution's interpreter"
        f" in {STOCK_PYTHON_ENV}"
    )
    version = str(before["version"])
    assert (3, 11) <= tuple(int(part) for part in version.split(".")[:2]) <= (3, 13), version
    project = tmp_path / "safepassage"
    copy_working_tree(REPO, project)
    assert not (project / ".venv").exists() and not (project / ".tooling").exists()
    data_dir = tmp_path / "data" / "safepassage"

    make = MakeServe(project, data_dir, stock_environment())
    try:
        port = make.wait_serving(SETUP_TIMEOUT_S)
        assert (project / ".tooling" / "bin" / "uv").is_file(), "uv was not bootstrapped into .tooling/"
        venv_python = project / ".venv" / "bin" / "python"
        assert f"Using CPython {version} interpreter at: {STOCK_PYTHON}" in "".join(make.lines), make.log()
        health = subprocess.run(
            [
                str(project / ".venv" / "bin" / "safepassage"),
                "health",
                "--server",
                f"localhost:{port}",
                "--pki-dir",
                str(data_dir / "pki"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (health.returncode, health.stdout.strip()) == (0, "SERVING"), health.stderr + make.log()

        installed = subprocess.run(
            [str(venv_python), "-c", NAMES],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        names = {re.sub(r"[-_.]+", "-", name).lower() for name in installed}
        assert not names & set(NOT_FOR_THE_SERVER), sorted(names & set(NOT_FOR_THE_SERVER))
        assert set(FOR_THE_SERVER) <= names, sorted(set(FOR_THE_SERVER) - names)

        os.kill(make.server_pid(), signal.SIGTERM)
        assert make.process.wait(timeout=120) == 0, make.log()
        output = "".join(make.lines)
        assert "received SIGTERM; shutting down" in output, make.log()
        assert "SafePassage stopped" in output, make.log()
    finally:
        make.close()
    assert system_state() == before, f"{STOCK_PYTHON} changed"
