"""The capture loop: a reader thread between a frame source and the processing that consumes its frames.

Frames wait in a small buffer. When the consumer falls behind a camera (a live source, or a file read
at REALTIME pace, as a camera would deliver it) the OLDEST buffered frame is dropped so the consumer
always gets the newest, and the reader never waits for the consumer. At ASAP pace a finite source is
read only as fast as the consumer takes frames, and nothing is dropped. A live source that drops is
reopened with exponential backoff; when the policy gives up, `frames()` raises SourceUnavailable.

Every frame read is accounted for, at any moment:
    frames_read == frames_delivered + frames_dropped + frames_skipped + frames_buffered
Dropped: read but never delivered because the consumer was behind, or because the loop was stopped
with it still buffered. Skipped: thinned out on purpose by `max_fps`, whether or not the consumer kept
up; a skipped frame never enters the buffer.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

from safepassage.camera_edge.errors import EdgeConfigError, SourceUnavailable
from safepassage.camera_edge.sources import Frame, FrameSource
from safepassage.core.errors import SafePassageError

log = logging.getLogger(__name__)
_JOIN_TIMEOUT_S = 15.0  # longer than a stalled stream's read timeout or V4L2's 10 s select


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a live source that dropped is reopened: exponential backoff with jitter."""

    initial_delay_s: float = 0.5
    max_delay_s: float = 30.0
    multiplier: float = 2.0
    max_attempts: int | None = None  # consecutive failed attempts before giving up; None: forever
    # Each delay is scaled by a random factor in [1 - jitter, 1 + jitter] (and capped at max_delay_s),
    # so the cameras of a site that lost its network do not all retry in step.
    jitter: float = 0.1

    def __post_init__(self) -> None:
        for name in ("initial_delay_s", "max_delay_s", "multiplier", "jitter"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise EdgeConfigError(f"reconnect.{name} must be a finite number >= 0; got {value!r}")
        if self.max_delay_s < self.initial_delay_s:
            raise EdgeConfigError(
                f"reconnect.max_delay_s ({self.max_delay_s}) is below"
                f" reconnect.initial_delay_s ({self.initial_delay_s})"
            )
        if self.multiplier < 1 or self.jitter > 1:
            raise EdgeConfigError(
                f"reconnect.multiplier must be >= 1 and jitter <= 1; got {self.multiplier}, {self.jitter}"
            )
        if self.max_attempts is not None and (
            not isinstance(self.max_attempts, int) or self.max_attempts < 0
        ):
            raise EdgeConfigError(f"reconnect.max_attempts must be None or >= 0; got {self.max_attempts!r}")

    def delay(self, attempt: int, unit: float = 0.5) -> float:
        """Seconds to wait before attempt `attempt` (from 1); `unit` is a uniform draw from [0, 1)."""
        delay = self.initial_delay_s
        for _ in range(attempt - 1):  # a loop, not a power: hours of retries must not overflow
            delay = min(delay * self.multiplier, self.max_delay_s)
            if delay >= self.max_delay_s:
                break
        return min(delay * (1 + self.jitter * (2 * unit - 1)), self.max_delay_s)


class Pace(StrEnum):
    REALTIME = "realtime"  # a finite source is read at its own frame rate, as a camera delivers frames
    ASAP = "asap"  # a finite source is read as fast as the consumer takes frames, never dropping


@dataclass(frozen=True)
class CaptureStats:
    """A snapshot; frames_read == frames_delivered + frames_dropped + frames_skipped + frames_buffered."""

    frames_read: int
    frames_delivered: int
    frames_dropped: int  # the consumer was behind (oldest dropped), or the loop stopped with it buffered
    frames_skipped: int  # thinned out by max_fps
    frames_buffered: int
    reconnects: int  # successful reopenings of a live source
    read_failures: int  # times a live source dropped
    source_ended: bool  # a finite source reached its end
    error: str | None  # why the loop ended, when it failed


class CaptureLoop:
    """Reads `source` on its own thread; the consumer iterates `frames()`."""

    def __init__(
        self,
        source: FrameSource,
        *,
        buffer_size: int = 2,
        pace: Pace = Pace.REALTIME,
        max_fps: float | None = None,
        reconnect: ReconnectPolicy = ReconnectPolicy(),  # frozen, so one shared default is safe
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        uniform: Callable[[], float] = random.random,
    ) -> None:
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise EdgeConfigError(f"capture buffer_size must be an integer >= 1; got {buffer_size!r}")
        if max_fps is not None and not (math.isfinite(max_fps) and max_fps > 0):
            raise EdgeConfigError(f"capture max_fps must be a positive number or None; got {max_fps!r}")
        self._source = source
        self._buffer_size = buffer_size
        self._pace = Pace(pace)
        self._period = None if max_fps is None else 1.0 / max_fps
        self._policy = reconnect
        self._clock = clock
        self._stopping = threading.Event()
        # Default sleep waits on the stop event, so stop() cuts a backoff or pacing wait short.
        self._sleep = sleep if sleep is not None else self._stopping.wait
        self._uniform = uniform
        # Live sources and REALTIME files behave like cameras: they never wait for the consumer.
        self._drop_oldest = source.live or self._pace is Pace.REALTIME
        self._cond = threading.Condition()
        self._buffer: deque[Frame] = deque()
        self._thread: threading.Thread | None = None
        self._finished = False
        self._error: Exception | None = None
        self._next_due: float | None = None  # timestamp from which max_fps delivers again
        self._warned_behind = False
        self._read = self._delivered = self._dropped = self._skipped = 0
        self._reconnects = self._read_failures = 0
        self._ended = False

    def __enter__(self) -> CaptureLoop:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Open the source here (its SourceUnavailable reaches the caller) and start the reader thread."""
        if self._thread is not None or self._stopping.is_set():
            raise RuntimeError(
                f"the capture loop of {self._source.description} was already started or stopped"
            )
        self._source.open()
        self._thread = threading.Thread(
            target=self._run, name=f"capture {self._source.description}", daemon=True
        )
        log.info(
            "capturing %s at %s pace, buffer %d", self._source.description, self._pace, self._buffer_size
        )
        self._thread.start()

    def frames(self, timeout: float | None = None) -> Iterator[Frame]:
        """Frames in order until the source ends or stop(); the loop's failure is raised after the last.

        `timeout` bounds the wait for each frame: past it SourceUnavailable is raised, but the loop
        keeps running (a live source may still be reconnecting) and frames() may be called again.
        """
        if self._thread is None:
            raise RuntimeError(f"start() the capture loop of {self._source.description} first")
        while True:
            with self._cond:
                ready = self._cond.wait_for(self._has_news, timeout)
                if self._buffer and not self._stopping.is_set():
                    frame = self._buffer.popleft()
                    self._delivered += 1
                    self._cond.notify_all()
                elif not ready:
                    raise SourceUnavailable(
                        f"no frame from {self._source.description} within {timeout:g} s;"
                        " the capture loop is still running"
                    )
                elif self._error is not None and not self._stopping.is_set():
                    raise self._error
                else:
                    return
            yield frame  # outside the lock: the consumer's work must not hold up the reader

    def stop(self) -> None:
        """Stop reading, join the reader (which closes the source) and drop what is buffered; idempotent."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT_S)
            if thread.is_alive():  # the source stays with the thread: closing it mid-read could crash
                log.warning("%s: the reader is still blocked in a read", self._source.description)
        with self._cond:
            self._dropped += len(self._buffer)
            self._buffer.clear()

    def stats(self) -> CaptureStats:
        with self._cond:
            return CaptureStats(
                frames_read=self._read,
                frames_delivered=self._delivered,
                frames_dropped=self._dropped,
                frames_skipped=self._skipped,
                frames_buffered=len(self._buffer),
                reconnects=self._reconnects,
                read_failures=self._read_failures,
                source_ended=self._ended,
                error=None if self._error is None else str(self._error),
            )

    def _has_news(self) -> bool:
        return bool(self._buffer) or self._finished or self._stopping.is_set()

    def _run(self) -> None:
        try:
            self._read_all()
        except Exception as error:  # handed to the consumer through frames()
            if isinstance(error, SafePassageError):  # an expected failure: its message says it all
                log.error("%s", error)
            else:
                log.exception("capture of %s failed", self._source.description)
            with self._cond:
                self._error = error
        finally:
            try:
                self._source.close()
            except Exception:
                log.exception("closing %s failed", self._source.description)
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _read_all(self) -> None:
        paced = self._pace is Pace.REALTIME and not self._source.live
        started: float | None = None  # clock time of the first frame, for REALTIME pacing
        attempts = 0  # reconnection attempts since the last good frame
        while not self._stopping.is_set():
            try:
                frame = self._source.read()
            except SourceUnavailable as error:
                if not self._source.live:
                    raise
                with self._cond:
                    self._read_failures += 1
                log.warning("%s", error)
                attempts = self._reopen(error, attempts)
                continue
            if frame is None:
                log.info("%s ended", self._source.description)
                with self._cond:
                    self._ended = True
                return
            attempts = 0
            if paced:
                now = self._clock()
                if started is None:
                    started = now - frame.timestamp
                if (wait := started + frame.timestamp - now) > 0:
                    self._sleep(wait)
            self._offer(frame)

    def _reopen(self, error: SourceUnavailable, attempts: int) -> int:
        """Reopen a live source with backoff; returns the attempts since the last good frame."""
        description = self._source.description
        self._source.close()
        while not self._stopping.is_set():
            if self._policy.max_attempts is not None and attempts >= self._policy.max_attempts:
                raise SourceUnavailable(
                    f"{description} did not come back after {attempts} reconnection attempt(s);"
                    f" last: {str(error).removeprefix(description).strip()}"
                ) from error
            attempts += 1
            delay = self._policy.delay(attempts, self._uniform())
            log.info("%s: reconnection attempt %d in %.2f s", description, attempts, delay)
            self._sleep(delay)
            if self._stopping.is_set():
                break
            try:
                self._source.open()
            except SourceUnavailable as failure:
                log.warning("%s", failure)
                error = failure
                continue
            with self._cond:
                self._reconnects += 1
            log.info("%s reconnected after %d attempt(s)", description, attempts)
            break
        return attempts

    def _offer(self, frame: Frame) -> None:
        with self._cond:
            self._read += 1
            if self._thinned(frame):
                self._skipped += 1
                return
            while len(self._buffer) >= self._buffer_size and not self._drop_oldest:
                if self._stopping.is_set():
                    break
                self._cond.wait()
            if self._stopping.is_set():
                self._dropped += 1
                return
            if len(self._buffer) >= self._buffer_size:
                self._buffer.popleft()  # the oldest: a late consumer wants the present, not the past
                self._dropped += 1
                if not self._warned_behind:
                    self._warned_behind = True
                    log.warning("the consumer of %s is behind; dropping frames", self._source.description)
            self._buffer.append(frame)
            self._cond.notify_all()

    def _thinned(self, frame: Frame) -> bool:
        """Whether max_fps skips `frame`: one frame per period of source time is delivered."""
        if self._period is None:
            return False
        due = self._next_due
        if due is not None and frame.timestamp < due - 1e-3 * self._period:  # float slack at the boundary
            return True
        # After a gap longer than a period (a reconnection), restart the grid at this frame.
        start = due if due is not None and frame.timestamp - due < self._period else frame.timestamp
        self._next_due = start + self._period
        return False
