"""Frame sources: video files, network streams, local cameras and folders of images.

Every source yields `Frame`s of RGB pixels, resized and cropped as its `SourceSpec` says. Files and
URLs decode through OpenCV's FFmpeg backend, cameras through V4L2, and a folder image by image. A source
is used from one thread at a time (the capture loop's reader thread).

RTSP takes the same code path as HTTP: both are FFmpeg URLs opened with the same open/read timeouts.
OpenCV asks FFmpeg for RTSP over TCP first (``rtsp_flags=prefer_tcp``) unless the environment variable
OPENCV_FFMPEG_CAPTURE_OPTIONS says otherwise. Stream URLs often carry credentials, so anything that may
be logged or raised goes through `redact` first.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from safepassage.camera_edge.errors import SourceSpecError, SourceUnavailable

log = logging.getLogger(__name__)

STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Greedy up to the last "@": a password may itself hold "@" or "/"; redacting too much is the safe side.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://).*@")
_SECRET_PARAM = re.compile(r"([?&;][^=&#;]*(?:pass|pwd|token|secret|key|auth|sig)[^=&#;]*=)[^&#;]*", re.I)
_DEVICE_PATH = re.compile(r"^/dev/(?:video\d+|v4l/.+)$")
# V4L2 is the Linux camera API; elsewhere let OpenCV pick (development machines only).
_CAMERA_BACKEND = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY


def redact(location: str) -> str:
    """`location` safe to log: ``user:password@`` and password-like query values become ``***``."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", location))


@dataclass(frozen=True, eq=False)  # eq would compare pixel arrays
class Frame:
    """One frame: its position in the source since open, its time in seconds, and its RGB pixels."""

    index: int
    timestamp: float  # media time (index / fps) for files and folders; time since first open when live
    image: npt.NDArray[np.uint8]  # HxWx3 RGB

    def __repr__(self) -> str:  # never the pixels: frames end up in log lines
        height, width = self.image.shape[:2]
        return f"Frame(index={self.index}, timestamp={self.timestamp:.3f}, image={width}x{height})"


class SourceKind(StrEnum):
    FILE = "file"
    STREAM = "stream"
    DEVICE = "device"
    FOLDER = "folder"


@dataclass(frozen=True)
class SourceSpec:
    """Where frames come from and how they are shaped; validated on construction."""

    location: str  # a path, an rtsp:// or http(s):// URL, a camera index "0" or /dev/videoN, a folder
    kind: SourceKind | None = None  # None: inferred from the location when the source is built
    folder_fps: float = 1.0  # the rate a folder of images is timed (and paced) at
    resize_to: tuple[int, int] | None = None  # (width, height)
    region_of_interest: tuple[int, int, int, int] | None = None  # (left, top, width, height), after resize
    open_timeout_s: float = 10.0  # streams only
    read_timeout_s: float = 5.0  # streams only: a stalled stream counts as dropped after this long

    def __post_init__(self) -> None:
        where = redact(self.location) if isinstance(self.location, str) else repr(self.location)
        if not isinstance(self.location, str) or not self.location.strip():
            raise SourceSpecError(f"source location must be a non-empty string; got {where!r}")
        if self.kind is not None and not isinstance(self.kind, SourceKind):
            try:  # configuration files give the kind as text
                object.__setattr__(self, "kind", SourceKind(self.kind))
            except ValueError:
                kinds = ", ".join(k.value for k in SourceKind)
                raise SourceSpecError(f"source kind {self.kind!r} of {where} is not one of {kinds}") from None
        for name in ("folder_fps", "open_timeout_s", "read_timeout_s"):
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and value > 0):
                raise SourceSpecError(f"{name} of {where} must be a positive number; got {value!r}")
        self._check_geometry(where)
        self._check_kind(where)

    def _check_geometry(self, where: str) -> None:
        if self.resize_to is not None:
            size = tuple(self.resize_to)
            if len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
                raise SourceSpecError(f"resize_to of {where} must be (width, height) > 0; got {size!r}")
            object.__setattr__(self, "resize_to", size)
        if self.region_of_interest is not None:
            roi = tuple(self.region_of_interest)
            if len(roi) != 4 or not all(_is_int(v) for v in roi) or min(roi[:2]) < 0 or min(roi[2:]) <= 0:
                raise SourceSpecError(
                    f"region_of_interest of {where} must be integers (left, top, width, height) with"
                    f" left, top >= 0 and width, height > 0; got {roi!r}"
                )
            if self.resize_to is not None and (
                roi[0] + roi[2] > self.resize_to[0] or roi[1] + roi[3] > self.resize_to[1]
            ):
                frame = f"{self.resize_to[0]}x{self.resize_to[1]}"
                raise SourceSpecError(f"region_of_interest {roi} of {where} falls outside the {frame} frame")
            object.__setattr__(self, "region_of_interest", roi)

    def _check_kind(self, where: str) -> None:
        scheme = _scheme_of(self.location)
        if scheme is not None and scheme not in STREAM_SCHEMES:
            schemes = ", ".join(sorted(STREAM_SCHEMES))
            raise SourceSpecError(f"URL scheme {scheme!r} of {where} is not supported; use one of {schemes}")
        if self.kind is SourceKind.STREAM and scheme is None:
            raise SourceSpecError(f"stream source {where} needs a URL such as rtsp://host/path")
        if self.kind not in (None, SourceKind.STREAM) and scheme is not None:
            raise SourceSpecError(f"{self.kind} source {where} is a URL; a URL is a stream source")
        if self.kind is SourceKind.DEVICE and not _is_device(self.location):
            raise SourceSpecError(f"camera device {where} must be an index like 0 or a path like /dev/video0")

    def resolved_kind(self) -> SourceKind:
        """The kind given, or inferred: URL -> stream, index or /dev/video -> device, folder, else file."""
        if self.kind is not None:
            return self.kind
        if _scheme_of(self.location) is not None:
            return SourceKind.STREAM
        if _is_device(self.location):
            return SourceKind.DEVICE
        if Path(self.location).is_dir():
            return SourceKind.FOLDER
        return SourceKind.FILE

    def __repr__(self) -> str:  # the dataclass repr would print a stream's credentials
        return f"SourceSpec(location={redact(self.location)!r}, kind={self.kind})"


class FrameSource(Protocol):
    @property
    def description(self) -> str: ...  # redacted, safe to log

    @property
    def nominal_fps(self) -> float | None: ...

    @property
    def live(self) -> bool: ...  # streams and cameras: may drop and be reopened

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...  # None at the end of a finite source

    def close(self) -> None: ...


def open_source(spec: SourceSpec) -> FrameSource:
    """The source `spec` describes, built but not opened."""
    where = redact(spec.location)
    kind = spec.resolved_kind()
    if kind is SourceKind.FILE:
        return VideoFileSource(spec, f"video file {where}")
    if kind is SourceKind.STREAM:
        return StreamSource(spec, f"stream {where}")
    if kind is SourceKind.DEVICE:
        return CameraSource(spec, f"camera {where}")
    return ImageFolderSource(spec, f"image folder {where}")


class _Source:
    """What every source has: its spec, a redacted description, shaping and a frame counter."""

    _LIVE = False

    def __init__(self, spec: SourceSpec, description: str) -> None:
        self._spec = spec
        self._description = description
        self._index = 0

    @property
    def description(self) -> str:
        return self._description

    @property
    def live(self) -> bool:
        return self._LIVE

    def _shape(self, bgr: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
        """Resize, crop and BGR -> RGB, the same for every source."""
        image, size, roi = bgr, self._spec.resize_to, self._spec.region_of_interest
        if size is not None and (image.shape[1], image.shape[0]) != size:
            shrinking = size[0] < image.shape[1] and size[1] < image.shape[0]
            # INTER_AREA averages when shrinking, so a 4K camera's detail does not alias.
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        if roi is not None:
            self._check_roi_fits(image.shape[1], image.shape[0])
            left, top, width, height = roi
            image = image[top : top + height, left : left + width]
        # cvtColor also copies a crop into its own compact array, freeing the full frame.
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)

    def _check_roi_fits(self, width: int, height: int) -> None:
        """Refuse a region of interest the frames (after resize_to) do not contain.

        Refused rather than clipped: its pixels were chosen on frames of another size, so a clipped
        region would watch a part of the scene nobody chose."""
        roi = self._spec.region_of_interest
        if roi is None:
            return
        if self._spec.resize_to is not None:
            width, height = self._spec.resize_to
        left, top, roi_width, roi_height = roi
        if left + roi_width > width or top + roi_height > height:
            raise SourceSpecError(
                f"region_of_interest {list(roi)} (left, top, width, height) does not fit the"
                f" {width}x{height} frames of {self._description}: it needs at least"
                f" {left + roi_width}x{top + roi_height}; change source.region_of_interest,"
                " or set source.resize_to to the size it was drawn on"
            )


class _CaptureSource(_Source):
    """An OpenCV capture: the part files, streams and cameras share."""

    def __init__(self, spec: SourceSpec, description: str) -> None:
        super().__init__(spec, description)
        self._capture: Any = None
        self._fps: float | None = None

    @property
    def nominal_fps(self) -> float | None:
        return self._fps

    def _open_capture(self) -> Any:  # an opened cv2.VideoCapture, or SourceUnavailable
        raise NotImplementedError

    def _timestamp(self) -> float:
        raise NotImplementedError

    def open(self) -> None:
        self.close()
        capture = self._open_capture()
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        self._fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else None  # cameras may report 0
        width, height = (
            int(capture.get(prop)) for prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT)
        )
        if width > 0 and height > 0:  # known before the first frame for files, most streams and cameras
            try:
                self._check_roi_fits(width, height)
            except SourceSpecError:
                capture.release()
                raise
        self._capture = capture
        log.info("opened %s (%s fps)", self._description, f"{self._fps:.2f}" if self._fps else "unknown")

    def read(self) -> Frame | None:
        if self._capture is None:
            raise SourceUnavailable(f"{self._description} is not open")
        ok, image = self._capture.read()
        if not ok or image is None:
            if self.live:  # a camera never ends: no frame means it dropped
                raise SourceUnavailable(
                    f"{self._description} stopped delivering frames after {self._index} frames"
                )
            return None
        frame = Frame(self._index, self._timestamp(), self._shape(image))
        self._index += 1
        return frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class VideoFileSource(_CaptureSource):
    """A video file (or GIF) read through FFmpeg; reopening starts again from its first frame."""

    def _open_capture(self) -> Any:
        path = Path(self._spec.location)
        if not path.exists():
            raise SourceUnavailable(f"{self._description} does not exist")
        if not path.is_file():
            raise SourceUnavailable(f"{self._description} is not a file")
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        return _opened(capture, f"{self._description} cannot be decoded: FFmpeg does not read it as a video")

    def open(self) -> None:
        super().open()
        self._index = 0

    def _timestamp(self) -> float:
        if self._fps is not None:
            return self._index / self._fps
        return float(self._capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0


class _LiveSource(_CaptureSource):
    """A stream or camera: never ends, only drops; indices and the clock run on across reopening."""

    _LIVE = True

    def __init__(self, spec: SourceSpec, description: str) -> None:
        super().__init__(spec, description)
        self._epoch: float | None = None

    def open(self) -> None:
        super().open()
        if self._epoch is None:
            self._epoch = time.monotonic()

    def _timestamp(self) -> float:
        assert self._epoch is not None
        return time.monotonic() - self._epoch


class StreamSource(_LiveSource):
    """An RTSP/HTTP(S)/RTMP stream through FFmpeg, with open and read timeouts."""

    def _open_capture(self) -> Any:
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(self._spec.open_timeout_s * 1000)]
        timeouts += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(self._spec.read_timeout_s * 1000)]
        capture = cv2.VideoCapture(self._spec.location, cv2.CAP_FFMPEG, timeouts)
        return _opened(
            capture,
            f"{self._description} cannot be opened: refused, not found, not a video,"
            f" or no answer within {self._spec.open_timeout_s:g} s",
        )


class CameraSource(_LiveSource):
    """A local camera by index or /dev path, through V4L2."""

    def _open_capture(self) -> Any:
        location = self._spec.location
        if not location.isdigit() and not Path(location).exists():
            raise SourceUnavailable(f"{self._description} does not exist")
        capture = cv2.VideoCapture(int(location) if location.isdigit() else location, _CAMERA_BACKEND)
        _opened(capture, f"{self._description} cannot be opened: no such camera, or busy, or not a camera")
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of stale ones
        return capture


class ImageFolderSource(_Source):
    """The JPEG and PNG files of a folder in natural name order; unreadable files are skipped."""

    def __init__(self, spec: SourceSpec, description: str) -> None:
        super().__init__(spec, description)
        self._files: list[Path] | None = None
        self._next = 0
        self.skipped_files = 0  # since the last open

    @property
    def nominal_fps(self) -> float | None:
        return self._spec.folder_fps

    def open(self) -> None:
        folder = Path(self._spec.location)
        if not folder.exists():
            raise SourceUnavailable(f"{self._description} does not exist")
        if not folder.is_dir():
            raise SourceUnavailable(f"{self._description} is not a folder")
        files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if not files:
            raise SourceUnavailable(f"{self._description} holds no JPEG or PNG files")
        self._files = sorted(files, key=_natural_key)
        self._next = self._index = self.skipped_files = 0
        log.info("opened %s (%d images)", self._description, len(files))

    def read(self) -> Frame | None:
        if self._files is None:
            raise SourceUnavailable(f"{self._description} is not open")
        while self._next < len(self._files):
            path = self._files[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:  # one bad file (half-copied, corrupt) must not end the run
                self.skipped_files += 1
                log.warning("%s: skipped %s, which is not a readable image", self._description, path.name)
                continue
            frame = Frame(self._index, self._index / self._spec.folder_fps, self._shape(image))
            self._index += 1
            return frame
        return None

    def close(self) -> None:
        self._files = None


def _opened(capture: Any, failure: str) -> Any:
    if not capture.isOpened():
        capture.release()
        raise SourceUnavailable(failure)
    return capture


def _scheme_of(location: str) -> str | None:
    match = _SCHEME.match(location)
    return match.group(1).lower() if match else None


def _is_device(location: str) -> bool:
    return location.isdigit() or _DEVICE_PATH.match(location) is not None


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _natural_key(path: Path) -> list[tuple[int, int | str]]:
    """frame_2 before frame_10: numbers compare as numbers."""
    parts = re.split(r"(\d+)", path.name)
    return [(0, int(part)) if part.isdigit() else (1, part.lower()) for part in parts if part]
