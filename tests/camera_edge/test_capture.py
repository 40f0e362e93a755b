"""The capture loop on real clips and real HTTP: pacing, drops, skips, reconnection and accounting.

Nothing here depends on the machine's pace. REALTIME pacing is tested on simulated time
(`SimulatedTime`, through the loop's `clock` and `sleep`): the consumer's work advances it, and
the reader's pacing sleeps wait for it, so which frames are dropped is set by the clip's frame
rate and the consumer's simulated speed, not by how fast this machine decodes. With the real
clock only lower bounds are asserted (a frame is never delivered before its time), since a
loaded machine makes everything later, never earlier.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from pathlib import Path

import pytest

from safepassage.camera_edge.capture import CaptureLoop, CaptureStats, Pace, ReconnectPolicy
from safepassage.camera_edge.errors import EdgeConfigError, SourceUnavailable
from safepassage.camera_edge.sources import Frame, SourceSpec, open_source
from tests.camera_edge.test_sources import HAMILTON, MALE_GIF, MALE_MP4, ClipServer

QUICK = ReconnectPolicy(initial_delay_s=0.01, max_delay_s=1.0, multiplier=2.0, max_attempts=3, jitter=0.0)
BOUND_S = 30.0  # generous: a condition that holds is met in well under a second


class SimulatedTime:
    """A clock the consumer advances; the reader's pacing sleeps wait for it to get there.

    `advance` returns once the reader has caught up with the new time (it sleeps until a later
    frame is due, or its source has ended), so every frame due by then has been offered to the
    buffer before the consumer asks for the next one: the same frames on any machine.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._changed = threading.Condition()
        self._wakes_at: float | None = None  # when the sleeping reader wakes; None while it works

    def clock(self) -> float:
        with self._changed:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._changed:
            self._wakes_at = self.now + seconds
            self._changed.notify_all()
            assert self._changed.wait_for(
                lambda: self._wakes_at is None or self.now >= self._wakes_at, BOUND_S
            )
            self._wakes_at = None

    def advance(self, seconds: float, loop: CaptureLoop) -> None:
        """The consumer worked `seconds`; then, if no frame is waiting, it waits for the next one."""
        with self._changed:
            self.now += seconds
            self._changed.notify_all()
            self._catch_up(loop)
            while loop.stats().frames_buffered == 0 and self._wakes_at is not None:
                self.now = self._wakes_at
                self._changed.notify_all()
                self._catch_up(loop)

    def _catch_up(self, loop: CaptureLoop) -> None:
        deadline = time.monotonic() + BOUND_S
        # Polled for the source's end: that is the loop's news, not this condition's.
        while not (self._wakes_at is not None and self._wakes_at > self.now):
            if loop.stats().source_ended:
                self._wakes_at = None
                return
            assert time.monotonic() < deadline, "the reader never caught up"
            self._changed.wait(0.01)

    def release(self) -> None:
        """Wake a reader left asleep (the consumer stopped early)."""
        with self._changed:
            self._wakes_at = None
            self._changed.notify_all()


def assert_accounted(stats: CaptureStats) -> None:
    assert stats.frames_buffered == 0
    assert stats.frames_read == stats.frames_delivered + stats.frames_dropped + stats.frames_skipped


def test_backoff_grows_to_its_cap_with_bounded_jitter() -> None:
    policy = ReconnectPolicy(initial_delay_s=0.5, max_delay_s=30.0, multiplier=2.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert policy.delay(100_000) == 30  # hours of retries do not overflow
    jittery = ReconnectPolicy(initial_delay_s=1.0, jitter=0.2)
    assert jittery.delay(1, 0.0) == pytest.approx(0.8)
    assert jittery.delay(1, 0.999) == pytest.approx(1.2, abs=1e-3)
    assert jittery.delay(50, 0.999) == 30.0  # never past the cap


@pytest.mark.parametrize(
    "fields",
    [
        {"initial_delay_s": -1},
        {"multiplier": 0.5},
        {"jitter": 2.0},
        {"initial_delay_s": 5, "max_delay_s": 1},
        {"max_attempts": -1},
        {"max_delay_s": float("inf")},
    ],
)
def test_a_bad_reconnect_policy_is_a_config_error(fields: dict[str, float]) -> None:
    with pytest.raises(EdgeConfigError, match="reconnect"):
        ReconnectPolicy(**fields)  # type: ignore[arg-type]


def test_bad_loop_settings_are_config_errors(faces_dir: Path) -> None:
    source = open_source(SourceSpec(str(faces_dir / HAMILTON)))
    with pytest.raises(EdgeConfigError, match="buffer_size"):
        CaptureLoop(source, buffer_size=0)
    with pytest.raises(EdgeConfigError, match="max_fps"):
        CaptureLoop(source, max_fps=0.0)


def test_asap_gives_a_slow_consumer_every_frame(faces_dir: Path) -> None:
    with CaptureLoop(open_source(SourceSpec(str(faces_dir / HAMILTON))), pace=Pace.ASAP) as loop:
        indices = []
        for frame in loop.frames(timeout=10):
            indices.append(frame.index)
            time.sleep(0.002)  # slower than decoding: the reader must wait, not drop
    stats = loop.stats()
    assert indices == list(range(275))
    assert (stats.frames_read, stats.frames_delivered, stats.frames_dropped) == (275, 275, 0)
    assert stats.source_ended and stats.error is None
    assert_accounted(stats)


def test_realtime_drops_the_oldest_frames_for_a_consumer_that_falls_behind(faces_dir: Path) -> None:
    # 62 frames at 12.5 fps take 4.9 s, as a camera would give them; the consumer takes 0.4 s a frame.
    simulated = SimulatedTime()
    loop = CaptureLoop(
        open_source(SourceSpec(str(faces_dir / MALE_GIF))),
        pace=Pace.REALTIME,
        clock=simulated.clock,
        sleep=simulated.sleep,
    )
    delivered: list[tuple[float, Frame]] = []
    with loop:
        for frame in loop.frames(timeout=BOUND_S):
            delivered.append((simulated.now, frame))
            simulated.advance(0.4, loop)
    stats = loop.stats()
    indices = [frame.index for _, frame in delivered]
    assert stats.frames_read == 62 and stats.source_ended and stats.frames_skipped == 0
    assert_accounted(stats)
    assert indices == sorted(set(indices)) and indices[-1] == 61  # the newest frame is kept
    # Paced at the clip's frame rate, not read at decoding speed: the last frame came at 4.88 s.
    assert delivered[-1][0] >= 61 / 12.5
    # The consumer gets a frame per 0.4 s of the clip's 4.9 s, about 14: the rest are dropped.
    assert len(delivered) <= 4.88 / 0.4 + 3 and stats.frames_dropped == 62 - len(delivered)
    # Dropping the oldest keeps the consumer near the present: a frame waits at most two frame
    # periods (0.16 s), where dropping the newest would hand over frames as old as the consumer's 0.4 s.
    # (Once the clip has ended, the two frames still buffered wait for the consumer: no newer come.)
    end = 61 / 12.5
    lags = [at - frame.timestamp for at, frame in delivered if at <= end]
    assert max(lags) <= 2 / 12.5 + 1e-6 and len(delivered) - len(lags) <= 2, lags


def test_realtime_loses_nothing_while_the_consumer_keeps_up(faces_dir: Path) -> None:
    simulated = SimulatedTime()
    loop = CaptureLoop(
        open_source(SourceSpec(str(faces_dir / HAMILTON))),
        pace=Pace.REALTIME,
        clock=simulated.clock,
        sleep=simulated.sleep,
    )
    frames = []
    with loop:
        for frame in loop.frames(timeout=BOUND_S):
            frames.append(frame.index)
            if len(frames) == 100:
                break
            simulated.advance(1 / 29.97, loop)  # as fast as the camera: one frame period per frame
        simulated.release()
    stats = loop.stats()
    assert frames == list(range(100))
    # Nothing dropped while the consumer kept up; stopping drops only what was still buffered.
    assert stats.frames_dropped == stats.frames_read - 100 <= 2, stats
    assert_accounted(stats)


def test_realtime_never_delivers_a_frame_before_its_time(faces_dir: Path) -> None:
    """The real clock: each frame comes no earlier than its time in the clip after the start."""
    loop = CaptureLoop(open_source(SourceSpec(str(faces_dir / HAMILTON))), pace=Pace.REALTIME)
    started = time.monotonic()
    early: list[tuple[int, float]] = []
    taken = 0
    with loop:
        for frame in loop.frames(timeout=BOUND_S):
            if (at := time.monotonic() - started) < frame.timestamp - 0.005:
                early.append((frame.index, at))
            taken += 1
            if frame.timestamp >= 0.5:
                break
    assert not early and taken >= 2, early
    stats = loop.stats()
    assert stats.frames_read == stats.frames_delivered + stats.frames_dropped + stats.frames_skipped


def test_max_fps_skips_frames_apart_from_drops(faces_dir: Path) -> None:
    loop = CaptureLoop(open_source(SourceSpec(str(faces_dir / HAMILTON))), pace=Pace.ASAP, max_fps=10.0)
    with loop:
        frames = list(loop.frames(timeout=10))
    stats = loop.stats()
    gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(frames)]
    assert 90 <= stats.frames_delivered <= 93 and stats.frames_dropped == 0
    assert stats.frames_skipped == 275 - stats.frames_delivered
    assert min(gaps) > 0.095 and max(gaps) < 0.14
    assert_accounted(stats)


def test_a_source_that_cannot_open_fails_start_at_once(tmp_path: Path) -> None:
    loop = CaptureLoop(open_source(SourceSpec(str(tmp_path / "missing.mp4"))))
    with pytest.raises(SourceUnavailable, match=r"missing\.mp4 does not exist"):
        loop.start()
    loop.stop()  # harmless after a failed start


def test_stop_part_way_ends_frames_and_accounts_for_what_was_buffered(faces_dir: Path) -> None:
    source = open_source(SourceSpec(str(faces_dir / HAMILTON)))
    loop = CaptureLoop(source, pace=Pace.ASAP, buffer_size=4)
    loop.start()
    taken = []
    for frame in loop.frames(timeout=10):
        taken.append(frame.index)
        if len(taken) == 10:
            break
    deadline = time.monotonic() + BOUND_S
    while loop.stats().frames_buffered < 4:  # the reader fills the buffer, then waits for room
        assert time.monotonic() < deadline, loop.stats()
        time.sleep(0.01)
    loop.stop()
    loop.stop()
    stats = loop.stats()
    assert taken == list(range(10)) and stats.frames_delivered == 10
    # The four buffered, and the frame the reader held waiting for room (if it had read one).
    assert 4 <= stats.frames_dropped <= 5 and not stats.source_ended
    assert_accounted(stats)
    assert list(loop.frames(timeout=1)) == []
    assert not [t for t in threading.enumerate() if t.name == f"capture {source.description}"]


class GatedSource:
    """A finite stand-in source whose frames wait for a gate: a camera that stalls, then resumes."""

    description = "gated test source"
    nominal_fps = 10.0
    live = False

    def __init__(self, frames: int, image: Frame) -> None:
        self.gate = threading.Event()
        self.left = frames
        self.image = image.image
        self.index = 0
        self.closed = False

    def open(self) -> None:
        self.closed = False

    def read(self) -> Frame | None:
        if self.left == 0:
            return None
        self.gate.wait(10)
        self.left -= 1
        self.index += 1
        return Frame(self.index - 1, (self.index - 1) / self.nominal_fps, self.image)

    def close(self) -> None:
        self.closed = True


def test_a_frame_timeout_is_reported_and_the_loop_runs_on(faces_dir: Path) -> None:
    file = open_source(SourceSpec(str(faces_dir / MALE_GIF)))
    file.open()
    first = file.read()
    file.close()
    assert first is not None
    source = GatedSource(3, first)
    with CaptureLoop(source, pace=Pace.ASAP) as loop:
        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match=r"no frame from gated test source within 0\.2 s"):
            next(loop.frames(timeout=0.2))
        assert time.monotonic() - started < 5.0  # the 0.2 s timeout, not the gate's 10 s
        source.gate.set()
        assert [f.index for f in loop.frames(timeout=5)] == [0, 1, 2]
    assert source.closed and loop.stats().source_ended


def test_a_dropped_stream_is_reconnected_with_backoff_and_indices_run_on(
    faces_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = ClipServer(faces_dir / "video")
    server.plan.append(90_000)  # the first connection closes part-way through the clip
    server.start()
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        # The camera goes away, comes back on the same port, plays the clip once more, and is gone.
        delays.append(seconds)
        if len(delays) in (1, 3):
            server.stop()
        elif len(delays) == 2:
            server.start()

    url = server.url(MALE_MP4.removeprefix("video/"), credentials="viewer:hunter2@")
    source = open_source(SourceSpec(url, open_timeout_s=2.0, read_timeout_s=2.0))
    loop = CaptureLoop(source, buffer_size=1000, reconnect=QUICK, sleep=sleep)
    frames: list[Frame] = []
    try:
        loop.start()
        with pytest.raises(
            SourceUnavailable, match=r"did not come back after 3 reconnection attempt"
        ) as gone:
            frames.extend(loop.frames(timeout=10))
    finally:
        loop.stop()
        server.stop()
    stats = loop.stats()
    first_run = stats.frames_read - 62
    assert 0 < first_run < 62  # the cut connection gave part of the clip
    assert [f.index for f in frames] == list(range(first_run + 62))
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(frames))
    # Backoff doubles per failed attempt and starts again after frames flowed.
    assert delays == [0.01, 0.02, 0.01, 0.02, 0.04]
    assert (stats.reconnects, stats.read_failures, stats.frames_dropped) == (1, 2, 0)
    assert stats.error is not None and "did not come back" in stats.error
    assert_accounted(stats)
    assert f"127.0.0.1:{server.port}" in str(gone.value)
    assert "hunter2" not in str(gone.value) and "hunter2" not in caplog.text
    assert "reconnected after 2 attempt(s)" in caplog.text


def test_a_stream_that_never_comes_back_ends_with_source_unavailable(faces_dir: Path) -> None:
    server = ClipServer(faces_dir / "video")
    server.plan.extend([90_000, "503", "503", "503"])
    server.start()
    policy = ReconnectPolicy(initial_delay_s=0.1, multiplier=2.0, max_attempts=2, jitter=0.5)
    delays: list[float] = []

    def sleep(seconds: float) -> None:  # the real wait, recorded
        delays.append(seconds)
        time.sleep(seconds)

    loop = CaptureLoop(
        open_source(SourceSpec(server.url(MALE_MP4.removeprefix("video/")))), reconnect=policy, sleep=sleep
    )
    frames: list[Frame] = []
    try:
        loop.start()
        with pytest.raises(SourceUnavailable, match=r"stream http://127\.0\.0\.1:\d+/\S+ did not come back"):
            for frame in loop.frames(timeout=10):
                frames.append(frame)
                failed_at = time.monotonic()
    finally:
        loop.stop()
        server.stop()
    waited = time.monotonic() - failed_at
    # Two backoff sleeps, 0.1 and 0.2 s, each within +-50 %, really waited (a lower bound: a
    # loaded machine only makes the wait longer).
    assert len(delays) == 2 and 0.05 <= delays[0] <= 0.15 and 0.1 <= delays[1] <= 0.3, delays
    assert waited >= sum(delays)
    assert server.requests == 3  # the cut connection, then one refusal per attempt
    stats = loop.stats()
    assert [f.index for f in frames] == list(range(stats.frames_read)) and frames
    assert (stats.reconnects, stats.read_failures) == (0, 1)
    assert_accounted(stats)
