"""Frame sources on real clips, a real folder of images and real HTTP: no stand-ins for OpenCV.

RTSP cannot be served here; it takes the same FFmpeg URL path as HTTP, so only its kind inference and
its credential redaction (against a port nobody serves) are tested.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from safepassage.camera_edge.errors import SourceSpecError, SourceUnavailable
from safepassage.camera_edge.sources import (
    Frame,
    FrameSource,
    ImageFolderSource,
    SourceKind,
    SourceSpec,
    open_source,
    redact,
)

HAMILTON = "video/face_recognition/short_hamilton_clip.mp4"  # 275 frames, 29.97 fps, 640x360, moov last
MALE_GIF = "video/intel_sample_videos/head-pose-face-detection-male.gif"  # 62 frames, 12.5 fps
MALE_MP4 = "video/intel_sample_videos/mp4_from_gif/head-pose-face-detection-male.mp4"  # 62 frames, moov first


class ClipServer:
    """Serves a folder over HTTP on 127.0.0.1 with byte ranges (FFmpeg seeks), and scripted failures.

    `plan` holds one step per GET, consumed in order: an int cuts the body after that many bytes (the
    connection closes part-way), "503" refuses; an empty plan serves files whole.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.plan: deque[int | str] = deque()
        self.requests = 0
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> ClipServer:
        # The same port on a restart: a camera comes back where it was.
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, relative: str, credentials: str = "") -> str:
        return f"http://{credentials}127.0.0.1:{self.port}/{relative}"


def _handler(clips: ClipServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            clips.requests += 1
            step = clips.plan.popleft() if clips.plan else None
            path = clips.root / self.path.lstrip("/")
            if step == "503" or not path.is_file():
                self.send_error(503 if step == "503" else 404)
                return
            data = path.read_bytes()
            start, end = 0, len(data) - 1
            wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if wanted:
                start, end = int(wanted[1]), int(wanted[2] or end)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            body = data[start : end + 1]
            with contextlib.suppress(OSError):  # the client went away first
                self.wfile.write(body[:step] if isinstance(step, int) else body)

    return Handler


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def read_all(source: FrameSource) -> list[Frame]:
    source.open()
    try:
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
        return frames
    finally:
        source.close()


@pytest.fixture(scope="module")
def hamilton(faces_dir: Path) -> list[npt.NDArray[np.uint8]]:
    return opencv_frames(faces_dir / HAMILTON)


def opencv_frames(path: Path) -> list[npt.NDArray[np.uint8]]:
    """The clip's frames straight from OpenCV, BGR: the reference the sources are checked against."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(np.asarray(image, dtype=np.uint8))
    capture.release()
    return frames


def test_a_video_file_gives_every_frame_in_rgb_with_media_time(
    faces_dir: Path, hamilton: list[npt.NDArray[np.uint8]]
) -> None:
    source = open_source(SourceSpec(str(faces_dir / HAMILTON)))
    frames = read_all(source)

    assert source.live is False
    assert source.nominal_fps == pytest.approx(29.97)
    assert "short_hamilton_clip.mp4" in source.description
    assert [f.index for f in frames] == list(range(275))
    assert [f.timestamp for f in frames] == pytest.approx([i / 29.97 for i in range(275)])
    assert frames[0].image.shape == (360, 640, 3) and frames[0].image.dtype == np.uint8
    for i in (0, 137, 274):
        np.testing.assert_array_equal(frames[i].image, hamilton[i][:, :, ::-1])  # BGR -> RGB
    assert "640x360" in repr(frames[0]) and "array" not in repr(frames[0])


def test_a_gif_is_a_video_file_and_reopening_starts_again(faces_dir: Path) -> None:
    source = open_source(SourceSpec(str(faces_dir / MALE_GIF)))
    frames = read_all(source)
    assert len(frames) == 62 and source.nominal_fps == pytest.approx(12.5)
    assert frames[-1].timestamp == pytest.approx(61 / 12.5)
    source.open()
    again = source.read()
    source.close()
    assert again is not None and again.index == 0
    np.testing.assert_array_equal(again.image, frames[0].image)


def test_resize_then_region_of_interest(faces_dir: Path, hamilton: list[npt.NDArray[np.uint8]]) -> None:
    spec = SourceSpec(str(faces_dir / HAMILTON), resize_to=(320, 180), region_of_interest=(40, 20, 200, 120))
    source = open_source(spec)
    source.open()
    frame = source.read()
    source.close()
    expected = cv2.resize(hamilton[0], (320, 180), interpolation=cv2.INTER_AREA)[20:140, 40:240, ::-1]
    assert frame is not None and frame.image.shape == (120, 200, 3)
    np.testing.assert_array_equal(frame.image, expected)
    assert frame.image.flags.c_contiguous  # a compact copy, not a view holding the whole frame


def test_a_region_of_interest_outside_the_frames_is_refused_at_open_naming_both(faces_dir: Path) -> None:
    # The README's example region, drawn on a 1280x720 camera, against a 480x270 clip (issue #17):
    # refused when the source opens, before any frame, not clipped to a region nobody chose.
    source = open_source(SourceSpec(str(faces_dir / MALE_MP4), region_of_interest=(0, 120, 1280, 600)))
    with pytest.raises(SourceSpecError) as refused:
        source.open()
    message = str(refused.value)
    assert message.startswith("region_of_interest [0, 120, 1280, 600] (left, top, width, height)")
    assert "does not fit the 480x270 frames of video file" in message and "needs at least 1280x720" in message
    assert "source.resize_to" in message and "\n" not in message
    # Drawn on the size resize_to gives, it fits whatever the camera's own size.
    fitted = open_source(
        SourceSpec(str(faces_dir / MALE_MP4), resize_to=(1280, 720), region_of_interest=(0, 120, 1280, 600))
    )
    fitted.open()
    frame = fitted.read()
    fitted.close()
    assert frame is not None and frame.image.shape == (600, 1280, 3)


def test_an_image_that_does_not_hold_the_region_is_refused_when_read(tmp_path: Path, faces_dir: Path) -> None:
    """A folder's images have no size until read: the one too small is refused by name and size."""
    (tmp_path / "frames").mkdir()
    image = cv2.imread(str(faces_dir / "face_recognition/obama/obama.jpg"))
    assert image is not None
    cv2.imwrite(str(tmp_path / "frames/0.png"), image[:100, :100])
    source = open_source(SourceSpec(str(tmp_path / "frames"), region_of_interest=(0, 0, 200, 200)))
    source.open()
    with pytest.raises(
        SourceSpecError, match=r"\[0, 0, 200, 200\] .* does not fit the 100x100 frames of image"
    ):
        source.read()
    source.close()


def test_a_folder_of_images_in_natural_order_skipping_unreadable_files(
    hamilton: list[npt.NDArray[np.uint8]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clip = [hamilton[0], hamilton[100], hamilton[200]]
    cv2.imwrite(str(tmp_path / "shot_1.jpg"), clip[0])
    cv2.imwrite(str(tmp_path / "shot_2.JPEG"), clip[1])
    (tmp_path / "shot_3.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    red = np.zeros((50, 100, 3), np.uint8)
    red[:, :, 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "shot_5.png"), red)
    cv2.imwrite(str(tmp_path / "shot_10.jpg"), clip[2])
    (tmp_path / "notes.txt").write_text("not an image")

    spec = SourceSpec(str(tmp_path), folder_fps=4.0, resize_to=(320, 180))
    assert spec.resolved_kind() is SourceKind.FOLDER
    source = open_source(spec)
    assert isinstance(source, ImageFolderSource)
    frames = read_all(source)

    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.timestamp for f in frames] == [0.0, 0.25, 0.5, 0.75]
    assert all(f.image.shape == (180, 320, 3) for f in frames)
    assert source.skipped_files == 1 and "shot_3.jpg" in caplog.text
    assert (frames[2].image == [255, 0, 0]).all()  # the PNG, RGB
    for frame, original in zip([frames[0], frames[1], frames[3]], [0, 1, 2], strict=True):
        errors = [
            np.abs(frame.image.astype(int) - cv2.resize(c, (320, 180))[:, :, ::-1]).mean() for c in clip
        ]
        assert int(np.argmin(errors)) == original  # shot_10 after shot_2: numbers sort as numbers


@pytest.mark.parametrize("make", ["missing", "empty", "a file"])
def test_a_folder_that_cannot_be_read_is_unavailable(tmp_path: Path, make: str) -> None:
    folder = tmp_path / "frames"
    if make == "empty":
        folder.mkdir()
        (folder / "readme.txt").write_text("no images here")
    if make == "a file":
        folder.write_text("a file")
    with pytest.raises(SourceUnavailable, match=r"image folder .*frames (does not exist|holds no|is not a)"):
        open_source(SourceSpec(str(folder), kind=SourceKind.FOLDER)).open()


def test_a_missing_or_undecodable_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match=r"video file .*gone\.mp4 does not exist"):
        open_source(SourceSpec(str(tmp_path / "gone.mp4"))).open()
    (tmp_path / "text.mp4").write_text("this is not a video " * 100)
    with pytest.raises(SourceUnavailable, match=r"text\.mp4 cannot be decoded"):
        open_source(SourceSpec(str(tmp_path / "text.mp4"))).open()


def test_a_url_nobody_serves_is_unavailable_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}/camera.mp4"
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match=re.escape(f"stream {url} cannot be opened")):
        open_source(SourceSpec(url, open_timeout_s=60.0)).open()
    # At the refusal, not at the open timeout (bounds this far apart hold on a loaded machine too).
    assert time.monotonic() - started < 30.0


def test_a_server_that_never_answers_times_out_at_the_open_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/live"
        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match=r"no answer within 0\.5 s"):
            open_source(SourceSpec(url, open_timeout_s=0.5)).open()
        # It waited the open timeout (a lower bound), and gave up then rather than never.
        assert 0.4 < time.monotonic() - started < 30.0


@pytest.mark.parametrize("device", ["/dev/video97", "97"])
def test_a_camera_that_is_not_there_is_unavailable_at_once(device: str) -> None:
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match=f"camera {device} "):
        open_source(SourceSpec(device)).open()
    assert time.monotonic() - started < 10.0  # not V4L2's 10 s wait for frames: it is not there at all


@pytest.mark.parametrize(
    ("location", "kind"),
    [
        ("rtsp://10.0.0.5:554/stream1", SourceKind.STREAM),
        ("RTSPS://cam.example/live", SourceKind.STREAM),
        ("https://cam.example/video.mjpg", SourceKind.STREAM),
        ("0", SourceKind.DEVICE),
        ("/dev/video2", SourceKind.DEVICE),
        ("/dev/v4l/by-id/usb-Logitech_C920-video-index0", SourceKind.DEVICE),
        ("/srv/clips/gate3.mp4", SourceKind.FILE),
        ("gate3.gif", SourceKind.FILE),
    ],
)
def test_the_kind_is_inferred_from_the_location(location: str, kind: SourceKind) -> None:
    assert SourceSpec(location).resolved_kind() is kind
    assert SourceSpec(location, kind=kind.value).kind is kind  # type: ignore[arg-type]  # text, as configs give


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"location": " "}, "location must be a non-empty"),
        ({"location": "ftp://host/clip.mp4"}, "scheme 'ftp'"),
        ({"location": "file:///clips/a.mp4"}, "scheme 'file'"),
        ({"location": "clip.mp4", "kind": SourceKind.STREAM}, "needs a URL"),
        ({"location": "rtsp://cam/live", "kind": SourceKind.FILE}, "is a URL"),
        ({"location": "front-door", "kind": SourceKind.DEVICE}, "index like 0"),
        ({"location": "clip.mp4", "kind": "webcam"}, "kind 'webcam'"),
        ({"location": "clips", "folder_fps": 0}, "folder_fps"),
        ({"location": "clips", "folder_fps": float("nan")}, "folder_fps"),
        ({"location": "rtsp://cam/live", "read_timeout_s": -1}, "read_timeout_s"),
        ({"location": "clip.mp4", "resize_to": (1280, 0)}, "resize_to"),
        ({"location": "clip.mp4", "resize_to": (1280.5, 720)}, "resize_to"),
        ({"location": "clip.mp4", "region_of_interest": (-1, 0, 10, 10)}, "left, top >= 0"),
        ({"location": "clip.mp4", "region_of_interest": (0, 0, 0, 10)}, "width, height > 0"),
        ({"location": "clip.mp4", "region_of_interest": (0, 0, 10)}, "region_of_interest"),
        (
            {"location": "clip.mp4", "resize_to": (1280, 720), "region_of_interest": (1200, 0, 100, 100)},
            "outside the 1280x720 frame",
        ),
    ],
)
def test_a_malformed_spec_is_a_spec_error(fields: dict[str, Any], complaint: str) -> None:
    with pytest.raises(SourceSpecError, match=re.escape(complaint)):
        SourceSpec(**fields)


def test_credentials_never_reach_messages_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/Streaming/Channels/101?token=s3cr3t&channel=1"
    spec = SourceSpec(url, open_timeout_s=1.0)
    source = open_source(spec)
    with pytest.raises(SourceUnavailable) as raised:
        source.open()
    shown = [str(raised.value), source.description, repr(spec), caplog.text]
    assert all("hunter2" not in text and "s3cr3t" not in text for text in shown)
    assert f"rtsp://***@127.0.0.1:{url.split(':')[3].split('/')[0]}/Streaming" in str(raised.value)
    assert redact("rtsp://a:p@ss/w@rd@cam:554/live") == "rtsp://***@cam:554/live"
    assert redact("http://cam/video.cgi?user=a&pwd=x&res=hd") == "http://cam/video.cgi?user=a&pwd=***&res=hd"
    assert redact("/srv/clips/gate3.mp4") == "/srv/clips/gate3.mp4"


def test_an_http_stream_decodes_like_the_file_and_drops_at_its_end(
    faces_dir: Path, hamilton: list[npt.NDArray[np.uint8]]
) -> None:
    server = ClipServer(faces_dir / "video").start()
    try:
        source = open_source(SourceSpec(server.url(HAMILTON.removeprefix("video/")), read_timeout_s=2.0))
        source.open()
        frames: list[Frame] = []
        with pytest.raises(SourceUnavailable, match=r"stream http://127\.0\.0\.1:\d+/.* stopped delivering"):
            while len(frames) < 1000:
                frame = source.read()
                assert frame is not None  # a live source drops, it never ends
                frames.append(frame)
        source.close()
    finally:
        server.stop()
    assert source.live is True and source.nominal_fps == pytest.approx(29.97)
    assert [f.index for f in frames] == list(range(275))
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(frames))
    for i in (0, 274):
        np.testing.assert_array_equal(frames[i].image, hamilton[i][:, :, ::-1])


def test_an_http_url_that_is_not_found_is_unavailable(faces_dir: Path) -> None:
    server = ClipServer(faces_dir / "video").start()
    try:
        with pytest.raises(SourceUnavailable, match="cannot be opened"):
            open_source(SourceSpec(server.url("no/such/clip.mp4"))).open()
    finally:
        server.stop()
