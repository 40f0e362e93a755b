"""A real ActiveMQ Classic broker (Debian's ``activemq`` package) on a free port, for tests and benchmarks.

The broker runs from a configuration written to a temporary folder (STOMP only, KahaDB there):
never the system service. Its absence raises BrokerMissing with the install command (the tests
turn that into a failure, never a skip).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

ACTIVEMQ_JAR = Path("/usr/share/activemq/bin/activemq.jar")
ACTIVEMQ_HOME = Path("/usr/share/activemq")

_CONFIG = """<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans
  http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="abis-test"
          dataDirectory="{data}" schedulerSupport="false">
    <persistenceAdapter><kahaDB directory="{data}/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}"/>
    </transportConnectors>
  </broker>
</beans>
"""


class BrokerMissing(RuntimeError):
    """ActiveMQ is not installed, or did not start."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Broker:
    """Start with :meth:`start`; :meth:`stop` ends the process (and only it)."""

    def __init__(self, folder: Path) -> None:
        if not ACTIVEMQ_JAR.is_file() or shutil.which("java") is None:
            raise BrokerMissing(
                f"ActiveMQ not found at {ACTIVEMQ_JAR}: install it with `apt-get install -y activemq`"
            )
        self.folder = folder
        self.port = free_port()
        (folder / "conf").mkdir(parents=True, exist_ok=True)
        self.config = folder / "conf" / "activemq.xml"
        self.config.write_text(_CONFIG.format(data=folder / "data", port=self.port))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        command = [
            "java",
            "-Xms64M",
            "-Xmx256M",
            f"-Dactivemq.base={self.folder}",
            f"-Dactivemq.conf={self.folder / 'conf'}",
            f"-Dactivemq.data={self.folder / 'data'}",
            f"-Dactivemq.home={ACTIVEMQ_HOME}",
            "-jar",
            str(ACTIVEMQ_JAR),
            "start",
            f"xbean:file:{self.config}",
        ]
        with (self.folder / "broker.log").open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerMissing(f"ActiveMQ exited: see {self.folder / 'broker.log'}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise BrokerMissing(f"ActiveMQ did not open port {self.port} in {timeout_s:.0f} s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
