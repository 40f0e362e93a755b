"""Offline-first: the server dies while a clip is processed, the client is killed with SIGKILL,
both come back, and every query is delivered exactly once (none lost, none searched twice).

Everything runs as real processes: the server (`safepassage serve`) and the edge client
(`safepassage edge run`, then `safepassage edge drain` after the kill). The server dies
between a search and its reply (tests/camera_edge/lost_answer_serve.py), so the client must
send an already-answered query again: the server must replay that answer, not search again.
Exactly once is checked on both sides: the client's outbox holds every query answered (the
lost one marked ``replayed``), and the server's transparency log shows one search (not
counting replays) per query id, and no other.

Nothing here depends on the machine's pace: the clip is read as fast as the client processes it
(``pace = "asap"``: every frame, so the same queries, in the same order, on a loaded machine as on
an idle one), the server dies at its third answer (counted, not timed: the clip's third query is
made over a hundred frames after the second, so the first two answers have long arrived) and the
client is killed once its queue holds a query made after that death (read from the queue file,
not waited for on the clock).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.audit import TransparencyLog, load_or_create_signing_key
from safepassage.camera_edge.device_key import DeviceKey
from safepassage.camera_edge.outbox import EntryState, Outbox
from safepassage.server.cctv_authorisation import sign
from safepassage.server.config import load_config
from safepassage.server.identity import Role
from safepassage.server.pseudonyms import LogPseudonyms
from tests.conftest import REPO
from tests.process import ServerProcess

pytestmark = pytest.mark.server
STREAM = "MatchingService/IdentifyStream"
HAMILTON = "face_recognition/short_hamilton_clip.mp4"
SERVE = ("-m", "safepassage.cli.main")


def prepare_server(data_dir: Path, faces_dir: Path, launcher: tuple[str, ...] = SERVE) -> ServerProcess:
    server = ServerProcess(data_dir, launcher=launcher)
    server.issue("cam-1", Role.CCTV_EDGE)
    with server.channel() as channel:
        galleries, matching = pb_grpc.GalleryServiceStub(channel), pb_grpc.MatchingServiceStub(channel)
        galleries.CreateGallery(
            pb.CreateGalleryRequest(gallery_id="cams", purpose=pb.WATCHLIST, threshold=0.5)
        )
        image = faces_dir / "face_recognition/lin_manuel_miranda/lin-manuel-miranda.png"
        matching.InsertTemplate(
            pb.InsertTemplateRequest(
                gallery_id="cams",
                reference_id="lin-manuel-miranda",
                template=pb.Probe(image=image.read_bytes()),
            )
        )
    return server


def write_camera(folder: Path, server: ServerProcess, clip: Path, model_dir: Path) -> Path:
    clients = server.pki_dir / "clients"
    token = sign(
        gallery_id="cams",
        cameras=["cam-1"],
        legal_basis="Order 2026/114 of the border court",
        valid_for_s=3600,
        admin_cert=x509.load_pem_x509_certificate((clients / "dev-admin.pem").read_bytes()),
        admin_key=load_pem_private_key((clients / "dev-admin-key.pem").read_bytes(), None),  # type: ignore[arg-type]
    )
    (folder / "cam.authorisation").write_text(token)
    path = folder / "camera.toml"
    path.write_text(
        f"""camera_id = "cam-1"
[source]
location = "{clip}"
pace = "asap"
[server]
address = "localhost:{server.port}"
gallery_id = "cams"
ca = "{server.ca_file}"
cert = "{clients / "cam-1.pem"}"
key = "{clients / "cam-1-key.pem"}"
authorisation = "cam.authorisation"
answer_timeout_s = 5.0
[detection]
model_dir = "{model_dir}"
[tracking]
max_age_s = 0.5
send_after_s = 1.5
[queue]
path = "queue/outbox.sqlite3"
key_file = "queue/device.key"
"""
    )
    return path


class EdgeProcess:
    def __init__(self, config: Path, *args: str) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "safepassage.cli.main",
                "edge",
                *args,
                "--config",
                str(config),
                "--verbose",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:  # closed at the end of the output
            for line in self.process.stdout:
                self.lines.append(line)

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None or any(text in line for line in self.lines), "".join(
                self.lines
            )
            assert time.monotonic() < deadline, f"no {text!r} in:\n" + "".join(self.lines[-40:])
            time.sleep(0.05)


def set_up(
    tmp_path: Path, faces_dir: Path, model_dir: Path, clip: str, launcher: tuple[str, ...] = SERVE
) -> tuple[Path, ServerProcess, Path, Path]:
    """A server with Lin-Manuel Miranda enrolled, a camera on `clip`: (data, server, camera dir, config)."""
    data_dir = tmp_path / "server"
    server = prepare_server(data_dir, faces_dir, launcher)
    camera_dir = tmp_path / "camera"
    camera_dir.mkdir()
    return (
        data_dir,
        server,
        camera_dir,
        write_camera(camera_dir, server, faces_dir / "video" / clip, model_dir),
    )


def queue_counts(config_dir: Path) -> tuple[int, int]:
    """(entries, pending) of the camera's queue file, read without disturbing the client writing it."""
    path = config_dir / "queue/outbox.sqlite3"
    if not path.exists():
        return 0, 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        entries, pending = conn.execute(
            "SELECT count(*), coalesce(sum(state = 'pending'), 0) FROM entries"
        ).fetchone()
    return int(entries), int(pending)


def queued(config_dir: Path) -> Outbox:
    return Outbox.open(config_dir / "queue/outbox.sqlite3", DeviceKey.load(config_dir / "queue/device.key"))


def test_every_query_is_delivered_exactly_once_across_a_server_outage_and_a_client_kill(
    tmp_path: Path, faces_dir: Path, model_dir: Path
) -> None:
    lose_third_answer = tmp_path / "lose-the-third-answer"
    lose_third_answer.write_text("3")
    data_dir, server, camera_dir, config = set_up(
        tmp_path,
        faces_dir,
        model_dir,
        HAMILTON,
        ("-m", "tests.camera_edge.lost_answer_serve", str(lose_third_answer)),
    )

    # 1. The clip is processed; two answers reach the client, then the server dies between its
    # third search and that search's reply (the answer kept and logged, never sent), as a
    # power cut would.
    edge = EdgeProcess(config, "run", "--drain-timeout", "60")
    assert server.process.wait(timeout=180) == 137, "the server never searched again:\n" + "".join(
        edge.lines[-40:]
    )
    edge.wait_for("server unreachable", timeout_s=60)
    # 2. More people pass while the server is down (a query queued after the lost one); then the
    # client dies without warning.
    deadline = time.monotonic() + 180
    while queue_counts(camera_dir)[0] < 4:
        assert edge.process.poll() is None, "".join(edge.lines[-40:])
        assert time.monotonic() < deadline, f"queue {queue_counts(camera_dir)}:\n" + "".join(edge.lines[-40:])
        time.sleep(0.05)
    edge.process.send_signal(signal.SIGKILL)
    edge.process.wait(timeout=30)
    with queued(camera_dir) as outbox:
        before = outbox.stats()
    assert before.pending >= 2 and before.answered == 2, before  # the lost one, and one made after

    # 3. The server comes back (on a new port); the restarted client sends what was queued.
    server = ServerProcess(data_dir)
    config = write_camera(camera_dir, server, faces_dir / "video" / HAMILTON, model_dir)
    drained = EdgeProcess(config, "drain", "--timeout", "60")
    assert drained.process.wait(timeout=120) == 0, "".join(drained.lines)

    with queued(camera_dir) as outbox:
        after = outbox.stats()
        entries = outbox.answered()
    assert after.pending == 0 and after.failed == 0 and after.quarantined == 0, after
    assert after.total_enqueued == before.total_enqueued == len(entries)
    assert all(e.state is EntryState.ANSWERED for e in entries)
    query_ids = {e.query_id for e in entries}
    assert any(e.is_hit for e in entries), "Lin-Manuel Miranda is identified"
    # The query whose answer died with the server was sent again and answered from the ledger.
    lost = [e for e in entries if e.response is not None and e.response.replayed]
    assert lost and all(e.attempts >= 2 for e in lost), [(e.attempts, e.response) for e in entries]

    assert server.stop() == 0
    server_config = load_config(None, {"storage.data_dir": str(data_dir)})
    with TransparencyLog.open(
        data_dir / "audit" / "transparency.sqlite3", load_or_create_signing_key(server_config.audit_key_path)
    ) as log:
        events = [entry.event() for entry in log.entries(0, log.size())]
    # The log names request ids by keyed pseudonym (never the client's text); the key holder maps them.
    named = LogPseudonyms.from_key_file(server_config.template_key_path)
    searched = Counter(
        e.details["request_id_hmac_sha256"]
        for e in events
        if e.operation == STREAM and "request_id_hmac_sha256" in e.details and "replayed" not in e.details
    )
    assert set(searched) == {named.request_id(q) for q in query_ids}, "every query searched, nothing else"
    assert set(searched.values()) == {1}, f"searched more than once: {searched}"
    replayed = {
        e.details["request_id_hmac_sha256"]
        for e in events
        if e.operation == STREAM and e.details.get("replayed") == "true"
    }
    assert {named.request_id(e.query_id) for e in lost} <= replayed, "the resend was replayed"


def test_a_dead_server_keeps_queries_queued_and_says_so(
    tmp_path: Path, faces_dir: Path, model_dir: Path
) -> None:
    _, server, camera_dir, config = set_up(
        tmp_path,
        faces_dir,
        model_dir,
        "intel_sample_videos/mp4_from_gif/face-demographics-walking-and-pause.mp4",
    )
    assert server.stop() == 0
    edge = EdgeProcess(config, "run", "--drain-timeout", "3")
    assert edge.process.wait(timeout=120) == 3, "".join(edge.lines)  # 3: still queued
    text = "".join(edge.lines)
    # Said at once, naming the server, and again while the client waits; the summary counts
    # queries, and none was sent: no stream ever connected.
    address = f"server unreachable at localhost:{server.port} (Connection refused)"
    assert f"{address}: 3 queries queued; retrying for up to 3 s" in text, text
    assert "queries 3: sent 0, answered 0 (0 matches), still queued 3" in text, text
    with queued(camera_dir) as outbox:
        assert outbox.stats().pending == 3
    # A corrupt queue file is a clear error and is left as it was.
    damaged = camera_dir / "queue/outbox.sqlite3"
    original = damaged.read_bytes()
    damaged.write_bytes(original[: len(original) // 2])
    broken = EdgeProcess(config, "drain", "--timeout", "1")
    assert broken.process.wait(timeout=60) == 2
    assert "outbox" in "".join(broken.lines).lower() and "error:" in "".join(broken.lines)
    assert damaged.read_bytes() == original[: len(original) // 2]
