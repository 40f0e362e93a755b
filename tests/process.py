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

from tests.conftest import REPO, secure_channel

PORT_LINE = re.compile(r"serving on port (\d+)")


class ServerProcess:
    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "safepassage_cli.main",
                "serve",
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
        self.port = self._wait_for_port(timeout_s=120)
        self.ca_file = data_dir / "tls" / "ca.pem"

    def _wait_for_port(self, timeout_s: float) -> int:
        found: list[int] = []
        ready = threading.Event()

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.log.append(line)
                match = PORT_LINE.search(line)
                if match and not found:
                    found.append(int(match.group(1)))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout_s) or not found:
            self.process.kill()
            raise AssertionError("server did not start:\n" + "".join(self.log[-30:]))
        return found[0]

    def channel(self) -> grpc.Channel:
        return secure_channel(self.port, self.ca_file)

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
