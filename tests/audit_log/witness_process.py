"""A witness in a process of its own, started as its operator would: `safepassage audit witness ...`."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.conftest import REPO

COMMAND = (sys.executable, "-m", "safepassage.cli.audit_command", "audit", "witness")
LISTENING = "witness listening on "


def witness_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def make_witness(state: Path, name: str, log_public_key: Path) -> Path:
    """A witness of one log, made with the CLI; returns the witness's public key file."""
    made = witness_cli("init", "--state", str(state), "--name", name)
    assert made.returncode == 0, made.stderr
    added = witness_cli("add-log", "--state", str(state), "--log-key", str(log_public_key))
    assert added.returncode == 0, added.stderr
    return state / "witness-public.pem"


class WitnessProcess:
    """`safepassage audit witness serve` on a free local port."""

    def __init__(self, state: Path) -> None:
        self.process = subprocess.Popen(
            [*COMMAND, "serve", "--state", str(state)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.output: list[str] = []
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        self.url = ""
        while not self.url:
            try:
                line = lines.get(timeout=120)
            except queue.Empty:
                line = None
            if line is None:
                self.process.kill()
                stderr = self.process.stderr.read() if self.process.stderr else ""
                raise AssertionError(f"the witness did not start: {''.join(self.output)}{stderr}")
            if line.startswith(LISTENING):
                self.url = line[len(LISTENING) :].strip()

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
