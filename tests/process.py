"""A SafePassage server in a child process, started as a user would start it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from safepassage.server.identity import Role
from safepassage.server.pki_issuance import Pki
from tests.conftest import REPO
from tests.pki_helpers import CHANNEL_OPTIONS, ORGANISATIONS

PORT_LINE = re.compile(r"serving on port (\d+)")
# Every server process a test started: one a failing test left running is killed after it
# (tests/conftest.py), so it cannot hold a port, a data folder or the machine's cores.
STARTED: list[subprocess.Popen[str]] = []


def kill_leftovers() -> int:
    """Kill the server processes tests started and left running; returns how many."""
    left = [process for process in STARTED if process.poll() is None]
    for process in left:
        process.kill()
        process.wait(timeout=30)
    STARTED.clear()
    return len(left)


class ServerProcess:
    def __init__(
        self,
        data_dir: Path,
        *extra: str,
        launcher: tuple[str, ...] = ("-m", "safepassage.cli.main"),
        settings: str = "",
    ) -> None:
        """``settings``: more TOML for the server's configuration file (whole sections)."""
        self.data_dir = data_dir
        self.log: list[str] = []
        data_dir.mkdir(parents=True, exist_ok=True)
        config = data_dir.parent / f"{data_dir.name}-test.toml"
        # Tests call far faster than people do: the limits have tests of their own.
        config.write_text("[limits]\nenabled = false\n[fishing]\nenabled = false\n" + settings)
        self.process = subprocess.Popen(
            [
                sys.executable,
                *launcher,
                "serve",
                "--config",
                str(config),
                "--data-dir",
                str(data_dir),
                "--port",
                "0",
                *extra,
            ],
            cwd=REPO,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        STARTED.append(self.process)
        self.port = self._wait_for_port(timeout_s=120)
        # The server's first run makes a development PKI with a dev-admin client.
        self.pki_dir = data_dir / "pki"
        self.ca_file = self.pki_dir / "ca.pem"

    def _wait_for_port(self, timeout_s: float) -> int:
        found: list[int] = []
        ready = threading.Event()

        def read() -> None:
            assert self.process.stderr is not None
            try:
                for line in self.process.stderr:
                    self.log.append(line)
                    match = PORT_LINE.search(line)
                    if match and not found:
                        found.append(int(match.group(1)))
                        ready.set()
            finally:
                self.process.stderr.close()  # at the end of the output: no pipe left for the collector
                ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout_s) or not found:
            self.process.kill()
            raise AssertionError("server did not start:\n" + "".join(self.log[-30:]))
        return found[0]

    def issue(self, client_id: str, role: Role, organisation: str | None = None) -> None:
        """A client certificate from the server's PKI, as `safepassage pki issue` would make it.

        ngo_caseworker and kiosk certificates get `organisation`, or the role's in `ORGANISATIONS`.
        """
        Pki.open(self.pki_dir).issue_client(
            client_id, role, replace=True, organisation=organisation or ORGANISATIONS.get(role)
        )

    def channel(self, client_id: str = "dev-admin") -> grpc.Channel:
        clients = self.pki_dir / "clients"
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes(),
            private_key=(clients / f"{client_id}-key.pem").read_bytes(),
            certificate_chain=(clients / f"{client_id}.pem").read_bytes(),
        )
        return grpc.secure_channel(f"localhost:{self.port}", credentials, options=CHANNEL_OPTIONS)

    def wait_serving(self) -> None:
        with self.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (
                        stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                        == health_pb2.HealthCheckResponse.SERVING
                    ):
                        return
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.2)

    def kill_hard(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        """Graceful shutdown (SIGTERM); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.log)
