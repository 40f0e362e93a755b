"""A clip as Chromium's fake camera: frames decoded with OpenCV, written as YUV4MPEG2 (y4m).

Chromium plays a y4m file as its camera with ``--use-fake-device-for-media-stream
--use-file-for-fake-video-capture=FILE.y4m`` (looping it). The file is made at test time in a
temporary folder from a shared clip; no media is kept in the repository.

For the service's head-turn check the camera plays a head turn as a palindrome (`write_head_turn`):
the frames forward then back, so that the loop never jumps from a turned face to a frontal one (the
tracker fails a face that jumps), at a rate where one loop lasts about 4 s, so that the ~6 s the
browser records hold, whatever the phase, a frontal frame and then the turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
from playwright.sync_api import Page, Route

__all__ = [
    "HEAD_TURN_FPS",
    "HEAD_TURN_RIGHT",
    "ask_for_side",
    "frame_of",
    "palindrome",
    "write_head_turn",
    "write_y4m",
    "write_y4m_frames",
]

# The shared Hamilton clip (video/face_recognition/short_hamilton_clip.mp4), frames 172 -> 210: the
# performer looks at the camera, then turns to his own RIGHT (benchmarks/liveness_eval.py LIVE_TURNS,
# "hamilton_right_2"). Frames 183..187 are left out: still "frontal" to the tracker (|yaw| <= 0.15)
# yet already turning, a reference the turn that follows clears by too little (measured with the
# server's detector and its LivenessSettings); without them every frontal frame of the loop, on the
# way out or back, is one the turn passes from. (Frames 93 -> 140, "hamilton_right_1", pass only from
# their first few frames: a loop of them fails whenever the recording starts later.)
HEAD_TURN_RIGHT = (*range(172, 183), *range(188, 211))
HEAD_TURN_FPS = 15  # 66 frames a loop: about 4.4 s


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


def write_y4m_frames(clip: Path, out: Path, order: Sequence[int], fps: int) -> int:
    """Frames of `clip` in the given order (repeats allowed) as a 4:2:0 y4m at `fps`; the number written."""
    wanted = set(order)
    frames: dict[int, bytes] = {}
    capture = cv2.VideoCapture(str(clip))
    width = height = 0
    try:
        for index in range(max(order) + 1):
            ok, frame = capture.read()
            if not ok:
                raise AssertionError(f"{clip} has no frame {index}")
            if index in wanted:
                height, width = frame.shape[:2]
                frames[index] = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes()
    finally:
        capture.release()
    with out.open("wb") as file:
        file.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for index in order:
            file.write(b"FRAME\n")
            file.write(frames[index])
    return len(order)


def palindrome(frames: Sequence[int]) -> list[int]:
    """The frames forward, then back without repeating either end: a loop with no jump."""
    return [*frames, *frames[-2:0:-1]]


def write_head_turn(clip: Path, out: Path) -> int:
    """The Hamilton clip's turn to his right as a looping palindrome (module docstring); frames written."""
    return write_y4m_frames(clip, out, palindrome(HEAD_TURN_RIGHT), HEAD_TURN_FPS)


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


def ask_for_side(page: Page, side: str) -> list[str]:
    """Route the page's head-turn challenge endpoint so that the challenge it gets asks for `side`.

    The service draws the side at random (a replayed turn guesses it one time in two), and the clip
    turns one way; no switch in the product picks it. Each try here is a real StartLiveness, answered
    to the page only when it asks for `side`. The sides drawn are returned (for the log's count)."""
    drawn: list[str] = []

    def handle(route: Route) -> None:
        for _ in range(40):  # one side in two: 40 tries miss it once in 10^12
            response = route.fetch()
            assert response.ok, response.text()[:400]
            drawn.append(str(response.json()["direction"]))
            if drawn[-1] == side:
                route.fulfill(response=response)
                return
        raise AssertionError(f"the service never drew {side}: {drawn}")

    # Any query too: the enrolment's endpoint names the holder's language.
    page.unroute("**/head-turn*")
    page.route("**/head-turn*", handle)
    return drawn
