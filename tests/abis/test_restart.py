"""Jobs in flight survive the adapter's crash: none lost, none answered twice; pendingJobs tells the truth.

The adapter runs as its own process (``safepassage abis serve``) and is killed with SIGKILL while
inserts are held mid-way (their datashares answer only when the test opens the gate); a second
process takes over from the same data folder and the same broker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.activemq import Broker
from benchmarks.mosip_datashare import DatashareServer, jpeg_2000_face
from benchmarks.mosip_queues import Mosip, request
from tests.abis.conftest import adapter_config

PEOPLE = ("Abdullah_Gul", "Abel_Pacheco", "Adrien_Brody", "Al_Sharpton", "Ana_Palacio", "Andre_Agassi")


def _write_config(folder: Path, broker: Broker, datashare: DatashareServer, model_dir: Path) -> Path:
    config = adapter_config(folder / "data", broker, datashare, model_dir)
    partner = datashare.partner
    path = folder / "abis.toml"
    path.write_text(
        f'data_dir = "{config.data_dir}"\nworkers = 2\n'
        f"[broker]\nport = {broker.port}\nheartbeat_ms = 0\nreconnect_s = 0.5\n"
        f'[datashare]\ntoken_file = "{partner.token_file}"\npartner_key_file = "{partner.key_file}"\n'
        f'partner_certificate_file = "{partner.certificate_file}"\nca_file = "{partner.ca_file}"\n'
        f'[faces]\nmodel_dir = "{model_dir}"\n'
    )
    return path


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    code = "import sys; from safepassage.cli.main import main; sys.exit(main(sys.argv[1:]))"
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, "abis", "serve", "--config", str(config)], stdout=out, stderr=out
        )


def _wait_for(condition: object, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_crash_with_jobs_in_flight_loses_none_and_answers_none_twice(
    tmp_path: Path, broker: Broker, datashare: DatashareServer, mosip: Mosip, faces_dir: Path, model_dir: Path
) -> None:
    config = _write_config(tmp_path, broker, datashare, model_dir)
    photos = [sorted((faces_dir / "lfw" / person).glob("*.jpg"))[0] for person in PEOPLE]
    inserts = []
    for number, photo in enumerate(photos):
        # The first two answer at once; the rest are held until after the crash.
        path = f"/share/{number}" if number < 2 else f"/held/{number}"
        url = datashare.publish_faces(path, [jpeg_2000_face(photo)])
        inserts.append(request("insert", referenceId=f"restart-{number}", referenceURL=url))
    first = _start(config, tmp_path / "adapter.log")
    try:
        for body in inserts:
            mosip.send(body, as_bytes=inserts.index(body) % 2 == 0)
        ids = [str(body["requestId"]) for body in inserts]
        _wait_for(lambda: all(mosip.answers_to(i) for i in ids[:2]), "the first two answers")
        # The held inserts are now in the journal as received, mid-way: pendingJobs counts them.
        pending = mosip.ask(request("pendingJobs"))
        assert pending.body["jobscount"] == str(len(inserts) - 2)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    assert not any(mosip.answers_to(i) for i in ids[2:]), "a held insert was answered before the crash"
    datashare.gate.set()
    second = _start(config, tmp_path / "adapter.log")
    try:
        _wait_for(lambda: all(mosip.answers_to(i) for i in ids), "every insert's answer", timeout_s=90)
        count = mosip.ask(request("referenceCount"), timeout_s=30)
        time.sleep(1.0)  # room for a duplicate answer to show up, were one sent
        for request_id in ids:
            answers = mosip.answers_to(request_id)
            assert len(answers) == 1, f"{len(answers)} answers to one insert"
            assert answers[0].failure is None, answers[0].body
        assert count.body["count"] == str(len(inserts))
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    finally:
        if second.poll() is None:
            second.kill()
    assert os.path.getsize(tmp_path / "data" / "journal.db") > 0
