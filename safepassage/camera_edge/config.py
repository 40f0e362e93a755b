"""One camera's configuration: a validated, typed tree loaded once from a TOML file.

One file per camera (or kiosk) says where frames come from, which server and
gallery they go to, with which certificates and authorisation, how good a
face must be to be sent, how often to detect, and where the offline queue
lives. Every relative path, written in the file or left at its default, is
taken from the file's folder, never from the working directory (a service
manager starts the client anywhere); the device key lives beside the queue
unless ``queue.key_file`` says otherwise. Example::

    camera_id = "gate-3-cam-1"
    [source]
    location = "rtsp://10.0.0.12/stream1"
    max_fps = 15
    resize_to = [1280, 720]                    # scaled first: the region below fits any camera
    region_of_interest = [0, 120, 1280, 600]   # left, top, width, height (refused at start if
                                               #   the frames cannot hold it)
    [server]
    address = "matching.border.example:50051"
    gallery_id = "watchlist"
    ca = "pki/ca.pem"                          # the bundle of
    cert = "pki/clients/gate-3-cam-1.pem"      # `safepassage pki issue gate-3-cam-1
    key = "pki/clients/gate-3-cam-1-key.pem"   #   --role cctv_edge --bundle pki` (key 0600)
    authorisation = "gate-3-cam-1.authorisation"
    [quality]
    floor = 0.35
    [queue]
    path = "queue/outbox.sqlite3"

``plaintext = true`` (no TLS, for tests) is accepted only with a loopback address.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from safepassage.camera_edge.capture import Pace
from safepassage.camera_edge.connection import DeviceCredentials, check_plaintext_address
from safepassage.camera_edge.device_key import DeviceKey, open_queue_key
from safepassage.camera_edge.errors import EdgeConfigError
from safepassage.camera_edge.sources import SourceSpec
from safepassage.core.config_file import apply_overrides, read_tree, validate
from safepassage.face.pipeline import PipelineSettings

DEVICE_KEY_NAME = "device.key"
# Where earlier versions kept the key when queue.key_file was not set: relative to the working directory.
OLD_KEY_FILE = Path("var/edge/device.key")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Section = TypeVar("Section", bound=_Section)


class SourceConfig(_Section):
    location: str = Field(min_length=1)
    pace: Pace = Pace.REALTIME
    max_fps: float | None = Field(None, gt=0, le=120)
    resize_to: tuple[int, int] | None = None
    region_of_interest: tuple[int, int, int, int] | None = None
    folder_fps: float = Field(1.0, gt=0)
    reconnect_max_attempts: int | None = Field(None, ge=1)

    def spec(self) -> SourceSpec:
        return SourceSpec(
            location=self.location,
            folder_fps=self.folder_fps,
            resize_to=self.resize_to,
            region_of_interest=self.region_of_interest,
        )


class ServerConfig(_Section):
    address: str = "localhost:50051"
    gallery_id: str = Field(min_length=1, max_length=63)
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    # The signed CCTV authorisation (`safepassage authorise`), as a file holding the token.
    authorisation: Path | None = None
    server_name: str | None = None
    # Only for tests on loopback: no TLS at all. Refused with any address but localhost or a
    # loopback IP, so a camera never sends embeddings across a network in clear.
    plaintext: bool = False
    max_in_flight: int = Field(8, ge=1, le=256)
    answer_timeout_s: float = Field(10.0, gt=0)
    top_k: int = Field(1, ge=1, le=100)
    # Send each query's face as a small JPEG too, for the reviewers of a hit (kept, sealed, with the
    # hit only; dropped for a no-match). Off: only embeddings leave the device.
    send_hit_crop: bool = False

    @model_validator(mode="after")
    def _tls_files(self) -> ServerConfig:
        if not self.plaintext and None in (self.ca, self.cert, self.key):
            raise ValueError("ca, cert and key are required unless plaintext = true")
        if self.plaintext:
            try:
                check_plaintext_address(self.address)
            except EdgeConfigError as error:
                raise ValueError(str(error)) from None
        return self

    def credentials(self) -> DeviceCredentials | None:
        """The device's checked certificate files; None for a plaintext (loopback test) server."""
        if self.plaintext or self.ca is None or self.cert is None or self.key is None:
            return None
        return DeviceCredentials.load(self.ca, self.cert, self.key)


class DetectionConfig(_Section):
    model_dir: Path = Path("var/models")
    detect_fps: float = Field(5.0, gt=0, le=120)
    detect_max_side: int = Field(640, ge=64, le=4096)
    min_face: int = Field(20, ge=0)
    threads: int = Field(1, ge=1, le=64)

    def pipeline_settings(self) -> PipelineSettings:
        return PipelineSettings(
            model_dir=self.model_dir,
            detect_max_side=self.detect_max_side,
            min_face=self.min_face,
            threads=self.threads,
        )


class QualityConfig(_Section):
    floor: float = Field(0.35, ge=0.0, le=1.0)


class TrackingConfig(_Section):
    max_age_s: float = Field(1.0, gt=0)
    send_after_s: float = Field(3.0, gt=0)
    min_hits: int = Field(2, ge=1)


class QueueConfig(_Section):
    path: Path = Path("var/edge/outbox.sqlite3")
    # None: `device.key` in the queue's folder, so the queue and the only key that reads it stay together.
    key_file: Path | None = None
    max_entries: int = Field(10_000, ge=10)
    # Old-layout key files found by `load_edge_config`: one there is refused, never silently replaced.
    _old_key_files: tuple[Path, ...] = PrivateAttr(default=())

    @property
    def key_path(self) -> Path:
        """Where the device key is: queue.key_file, or beside the queue."""
        return self.key_file if self.key_file is not None else self.path.parent / DEVICE_KEY_NAME

    def device_key(self, *, create: bool = True) -> DeviceKey:
        """The queue's device key; made only for a new device (see `open_queue_key`)."""
        return open_queue_key(self.key_path, self.path, old_key_files=self._old_key_files, create=create)


class EdgeConfig(_Section):
    camera_id: str = Field(min_length=1, max_length=128)
    source: SourceConfig
    server: ServerConfig
    detection: DetectionConfig = DetectionConfig()
    quality: QualityConfig = QualityConfig()
    tracking: TrackingConfig = TrackingConfig()
    queue: QueueConfig = QueueConfig()


def _anchored(section: Section, base: Path) -> Section:
    """``section`` with every relative Path field (its own and its subsections') taken from ``base``.

    Walks the fields rather than listing them, so a Path field added later, or a default such as
    ``var/models``, can never be left relative to the working directory."""
    update: dict[str, object] = {}
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, Path) and not value.is_absolute():
            update[name] = base / value
        elif isinstance(value, _Section):
            update[name] = _anchored(value, base)
    return section.model_copy(update=update) if update else section


def load_edge_config(path: Path, overrides: dict[str, object] | None = None) -> EdgeConfig:
    """Read and validate a camera's TOML file; `overrides` ("section.key": value) win."""
    raw = read_tree(path, EdgeConfigError, "camera configuration")
    base = path.parent.resolve()
    source = raw.get("source")
    if isinstance(source, dict):
        location = source.get("location")
        # A relative file or folder source is relative to the file too; URLs and device numbers are not.
        relative = isinstance(location, str) and not Path(location).is_absolute()
        if relative and "://" not in str(location) and not str(location).isdigit():
            source["location"] = str(base / str(location))
    apply_overrides(raw, overrides)
    config = validate(EdgeConfig, raw, EdgeConfigError, f"camera configuration {path}")
    anchored = _anchored(config, base)
    if anchored.queue.key_file is None:
        # Checked at every start: the key may have been made from any working directory, this one included.
        old = (Path.cwd() / OLD_KEY_FILE, base / OLD_KEY_FILE)
        anchored.queue._old_key_files = tuple(dict.fromkeys(p.absolute() for p in old))
    return anchored
