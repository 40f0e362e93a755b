"""A camera's configuration file: validated once, relative paths from the file's folder, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from safepassage.camera_edge.capture import Pace
from safepassage.camera_edge.config import load_edge_config
from safepassage.camera_edge.errors import EdgeConfigError

GOOD = """camera_id = "gate-3-cam-1"
[source]
location = "clips/door.mp4"
max_fps = 15
[server]
address = "matching.example:50051"
gallery_id = "watchlist"
ca = "pki/ca.pem"
cert = "pki/cam.pem"
key = "pki/cam-key.pem"
authorisation = "cam.authorisation"
[queue]
path = "queue/outbox.sqlite3"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "camera.toml"
    path.write_text(text)
    return path


def test_paths_are_taken_from_the_files_folder_and_overrides_win(tmp_path: Path) -> None:
    config = load_edge_config(write(tmp_path, GOOD), {"source.pace": "asap", "quality.floor": 0.5})
    base = tmp_path.resolve()
    assert config.source.location == str(base / "clips/door.mp4")
    assert config.server.ca == base / "pki/ca.pem" and config.queue.path == base / "queue/outbox.sqlite3"
    assert config.source.pace is Pace.ASAP and config.quality.floor == 0.5
    assert config.detection.detect_fps == 5.0  # embedded default


@pytest.mark.parametrize("location", ["rtsp://user:secret@10.0.0.12/stream1", "0", "/dev/video2"])
def test_streams_and_devices_are_not_paths(tmp_path: Path, location: str) -> None:
    config = load_edge_config(write(tmp_path, GOOD), {"source.location": location})
    assert config.source.location == location


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (GOOD.replace('cert = "pki/cam.pem"\n', ""), "ca, cert and key are required"),
        (GOOD.replace("max_fps = 15", "max_fps = -1"), "source.max_fps"),
        (GOOD + "[tracking]\nmax_age_s = 0\n", "tracking.max_age_s"),
        (GOOD + "[quality]\nflor = 0.3\n", "quality.flor"),
        (GOOD.replace('gallery_id = "watchlist"\n', ""), "server.gallery_id"),
        ("camera_id = ", "not valid TOML"),
    ],
)
def test_a_bad_file_is_a_clear_error(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(EdgeConfigError, match=says):
        load_edge_config(write(tmp_path, text))


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EdgeConfigError, match="cannot read the camera configuration"):
        load_edge_config(tmp_path / "nowhere.toml")
