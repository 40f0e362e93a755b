"""Edge paths do not depend on the working directory (issue #17, item 3).

The queue and certificates were taken from the camera file's folder, but the device key and
the model folder (their defaults) from the working directory: started from another folder, as
a service manager starts it, `edge run` silently made a second device key and then refused the
existing queue, stranding what was queued. Every command here is the real CLI in a child
process whose working directory is some other folder.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import BaseModel

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.camera_edge.config import load_edge_config
from safepassage.camera_edge.device_key import DeviceKey
from safepassage.camera_edge.outbox import Outbox
from safepassage.server.cctv_authorisation import sign
from tests.camera_edge.test_offline import prepare_server

EDGE = (sys.executable, "-m", "safepassage.cli.main", "edge")
MIRANDA = "face_recognition/lin_manuel_miranda/lin-manuel-miranda.png"
SMALL_CLIP = "video/intel_sample_videos/mp4_from_gif/people-detection.mp4"  # 480x270


def edge(cwd: Path, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [*EDGE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def paths_of(section: BaseModel) -> Iterator[tuple[str, Path]]:
    """Every Path field of a configuration tree, found by walking it (not from a list)."""
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, Path):
            yield name, value
        elif isinstance(value, BaseModel):
            yield from ((f"{name}.{inner}", path) for inner, path in paths_of(value))


def test_every_path_in_a_camera_file_and_every_default_is_taken_from_the_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    camera = tmp_path / "camera"
    camera.mkdir()
    (camera / "camera.toml").write_text(
        'camera_id = "c"\n[source]\nlocation = "clips"\n[server]\ngallery_id = "g"\n'
        'ca = "pki/ca.pem"\ncert = "pki/c.pem"\nkey = "pki/c-key.pem"\nauthorisation = "c.auth"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_edge_config(Path("../camera/camera.toml"))
    found = dict(paths_of(config))
    assert {"server.ca", "server.cert", "server.key", "detection.model_dir", "queue.path"} <= set(found)
    base = camera.resolve()
    assert all(path.is_relative_to(base) for path in found.values()), found
    assert config.detection.model_dir == base / "var/models"
    assert config.queue.key_path == config.queue.path.parent / "device.key"  # the key lives beside the queue


def camera_toml(camera: Path, port: int) -> Path:
    """A camera file whose every path is relative: certificates, source, model pack and queue."""
    path = camera / "camera.toml"
    path.write_text(
        f"""camera_id = "cam-1"
[source]
location = "people"
pace = "asap"
folder_fps = 5.0
[server]
address = "localhost:{port}"
gallery_id = "cams"
ca = "pki/ca.pem"
cert = "pki/cam-1.pem"
key = "pki/cam-1-key.pem"
authorisation = "cam.authorisation"
answer_timeout_s = 5.0
[detection]
model_dir = "models"
[queue]
path = "queue/outbox.sqlite3"
"""
    )
    return path


def test_run_status_and_drain_from_any_folder_use_one_key_and_one_queue(
    tmp_path: Path, faces_dir: Path, model_dir: Path
) -> None:
    server = prepare_server(tmp_path / "server", faces_dir)
    try:
        camera = tmp_path / "camera"
        (camera / "pki").mkdir(parents=True)
        (camera / "people").mkdir()
        for index in range(4):  # one person, 0.2 s apart: one track, one query
            (camera / "people" / f"{index}.png").write_bytes((faces_dir / MIRANDA).read_bytes())
        (camera / "models").symlink_to(model_dir)
        clients = server.pki_dir / "clients"
        (camera / "pki/ca.pem").write_bytes(server.ca_file.read_bytes())
        (camera / "pki/cam-1.pem").write_bytes((clients / "cam-1.pem").read_bytes())
        (camera / "pki/cam-1-key.pem").write_bytes((clients / "cam-1-key.pem").read_bytes())
        (camera / "pki/cam-1-key.pem").chmod(0o600)
        (camera / "cam.authorisation").write_text(
            sign(
                gallery_id="cams",
                cameras=["cam-1"],
                legal_basis="Order 2026/114 of the border court",
                valid_for_s=3600,
                admin_cert=x509.load_pem_x509_certificate((clients / "dev-admin.pem").read_bytes()),
                admin_key=load_pem_private_key((clients / "dev-admin-key.pem").read_bytes(), None),  # type: ignore[arg-type]
            )
        )
        # 1. The server cannot be reached (a port bound by nobody listening): the query is queued.
        with socket.socket() as nobody:
            nobody.bind(("127.0.0.1", 0))
            config = camera_toml(camera, nobody.getsockname()[1])
            ran = edge(tmp_path / "a", "run", "--config", str(config), "--drain-timeout", "1")
        assert ran.returncode == 3, ran.stdout + ran.stderr  # 3: still queued
        # 2. Another folder, the file named relatively: the same queue and key.
        status = edge(tmp_path / "b", "status", "--config", "../camera/camera.toml")
        assert status.returncode == 0, status.stderr
        pending = int(re.search(r"pending (\d+)", status.stdout).group(1))  # type: ignore[union-attr]
        assert pending >= 1, status.stdout
        # 3. The server is reachable again; a third folder drains what was queued.
        camera_toml(camera, server.port)
        drained = edge(tmp_path / "c", "drain", "--config", str(config), "--timeout", "60")
        assert drained.returncode == 0, drained.stdout + drained.stderr
        after = edge(tmp_path / "a", "status", "--config", str(config))
        assert f"pending 0, answered {pending} " in after.stdout, after.stdout + after.stderr
        assert not re.search(r"\(0 hits\)", after.stdout), "Lin-Manuel Miranda is identified"
    finally:
        server.stop()
    keys = sorted(tmp_path.rglob("device.key"))
    assert keys == [camera / "queue/device.key"], "one device key, beside the queue, whatever the folder"
    assert not any((tmp_path / cwd / "var").exists() for cwd in "abc")


def plaintext_camera(camera: Path, queue: str = "") -> Path:
    """A camera file with the old default queue (no [queue] section) unless `queue` is given."""
    camera.mkdir(parents=True, exist_ok=True)
    path = camera / "camera.toml"
    path.write_text(
        'camera_id = "cam-1"\n[source]\nlocation = "people"\n'
        '[server]\naddress = "localhost:9"\ngallery_id = "cams"\nplaintext = true\n' + queue
    )
    return path


def queue_one(queue: Path, key_file: Path) -> bytes:
    """A queue holding one query, sealed by the key at `key_file`; returns the key's fingerprint."""
    key = DeviceKey.load_or_create(key_file)
    with Outbox.open(queue, key) as box:
        box.enqueue(pb.IdentifyRequest(gallery_id="cams"), track_id=1, frame_time=0.0)
    return key.fingerprint


def test_an_old_layout_key_is_refused_with_the_command_that_moves_it(tmp_path: Path) -> None:
    # Before: no [queue] section meant var/edge/ of the working directory, for the key and the queue.
    old_cwd = tmp_path / "old-cwd"
    old = old_cwd / "var/edge"
    fingerprint = queue_one(old / "outbox.sqlite3", old / "device.key")
    config = plaintext_camera(tmp_path / "camera")
    new_key = tmp_path / "camera/var/edge/device.key"
    for action in ("run", "drain", "status"):
        refused = edge(old_cwd, action, "--config", str(config))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert str(old / "device.key") in refused.stderr and "mv " in refused.stderr, refused.stderr
        assert not new_key.exists(), f"`edge {action}` made a second device key"
    command = re.search(r"`(mkdir [^`]+)`", refused.stderr).group(1)  # type: ignore[union-attr]
    subprocess.run(command, shell=True, cwd=old_cwd, check=True)
    # Moved as told: the queued query is there again, from any folder, under the same key.
    status = edge(tmp_path / "elsewhere", "status", "--config", str(config))
    assert status.returncode == 0 and "pending 1," in status.stdout, status.stdout + status.stderr
    assert DeviceKey.load(new_key).fingerprint == fingerprint
    assert shlex.split(command)  # a command a shell can run as printed


def test_a_queue_whose_key_is_missing_is_refused_naming_the_expected_key(tmp_path: Path) -> None:
    camera = tmp_path / "camera"
    config = plaintext_camera(camera, '[queue]\npath = "queue/outbox.sqlite3"\n')
    queue_one(camera / "queue/outbox.sqlite3", camera / "queue/device.key")
    (camera / "queue/device.key").unlink()
    before = (camera / "queue/outbox.sqlite3").read_bytes()
    for action in ("run", "drain", "status"):
        refused = edge(tmp_path / "elsewhere", action, "--config", str(config))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        message = refused.stderr
        assert str(camera.resolve() / "queue/device.key") in message and "is missing" in message, message
        assert not (camera / "queue/device.key").exists(), f"`edge {action}` made a new key"
    assert (camera / "queue/outbox.sqlite3").read_bytes() == before
    assert not any(p.name == "device.key" for p in tmp_path.rglob("*")), os.listdir(tmp_path)


def test_a_region_of_interest_the_clip_cannot_hold_is_one_line_at_start(
    tmp_path: Path, faces_dir: Path, model_dir: Path
) -> None:
    """The README's region (drawn on a 1280x720 camera) on a 480x270 clip: a traceback in the log,
    then the error (issue #17). Now one line naming the region and the frame size, exit 2."""
    with socket.socket() as nobody:
        nobody.bind(("127.0.0.1", 0))
        config = tmp_path / "camera.toml"
        config.write_text(
            f"""camera_id = "cam-1"
[source]
location = "{faces_dir / SMALL_CLIP}"
region_of_interest = [0, 120, 1280, 600]
[server]
address = "127.0.0.1:{nobody.getsockname()[1]}"
gallery_id = "cams"
plaintext = true
[detection]
model_dir = "{model_dir}"
"""
        )
        ran = edge(tmp_path / "elsewhere", "run", "--config", str(config), "--drain-timeout", "1")
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    errors = [line for line in ran.stderr.splitlines() if "region_of_interest" in line]
    assert len(errors) == 1, ran.stderr
    assert errors[0].startswith("error: region_of_interest [0, 120, 1280, 600]"), errors
    assert "does not fit the 480x270 frames" in errors[0], errors
