"""A clip as Chromium's fake camera: frames decoded with OpenCV, written as YUV4MPEG2 (y4m).

Chromium plays a y4m file as its camera with ``--use-fake-device-for-media-stream
--use-file-for-fake-video-capture=FILE.y4m`` (looping it). The file is made at test time in a
temporary folder from a shared clip; no media is kept in the repository.
"""

from __future__ import annotations

from pathlib import Path

import cv2

__all__ = ["frame_of", "write_y4m"]


def write_y4m(clip: Path, out: Path, first: int, last: int, step: int = 1, fps: int = 15) -> int:
    """Frames first..last (every `step`-th) of `clip` as a 4:2:0 y4m at `fps`; the number written."""
    capture = cv2.VideoCapture(str(clip))
    written = 0
    try:
        with out.open("wb") as file:
            for index in range(last + 1):
                ok, frame = capture.read()
                if not ok:
                    raise AssertionError(f"{clip} has no frame {index}")
                if index < first or (index - first) % step:
                    continue
                height, width = frame.shape[:2]
                if written == 0:
                    file.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
                file.write(b"FRAME\n")
                file.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
                written += 1
    finally:
        capture.release()
    return written


def frame_of(clip: Path, index: int) -> bytes:
    """Frame `index` of `clip` as JPEG bytes."""
    capture = cv2.VideoCapture(str(clip))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok:
        raise AssertionError(f"{clip} has no frame {index}")
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return encoded.tobytes()
