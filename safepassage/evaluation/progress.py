"""Progress of long evaluation work on stderr: how many done, how fast, about how long is left.

Embedding LFW through both pipelines takes minutes; a silent terminal looks hung. On a terminal the
line is rewritten in place (at most every ``TTY_EVERY_S``); anywhere else (a log file, a CI job) a
new line is written at most every ``LOG_EVERY_S``, so a log holds a few lines, not one per image.
Either way a last line says how many were done and how long it took.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

TTY_EVERY_S = 0.5
LOG_EVERY_S = 30.0


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """A counter of ``unit`` for ``label``; call it with (done, total) as work goes, then ``finish``.

    The call signature is the one ``EmbeddingRunner.embed`` takes as its ``progress`` callback.
    """

    def __init__(
        self,
        label: str,
        unit: str = "images",
        stream: TextIO | None = None,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = every_s if every_s is not None else (TTY_EVERY_S if self.tty else LOG_EVERY_S)
        self.clock = clock
        self.started = clock()
        self.last_shown = self.started
        self.done = 0
        self.total = 0

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        share = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
        left = (
            f", about {_duration((self.total - self.done) / rate)} left"
            if rate > 0 and self.total > self.done
            else ""
        )
        count = f"{self.done:,} of {self.total:,} {self.unit}{share}"
        return f"{self.label}: {count}, {rate:.1f} {self.unit}/s{left}"

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = self.clock()
        # The last one is finish()'s to write, with the time it all took.
        if done >= total or now - self.last_shown < self.every_s:
            return
        self.last_shown = now
        self._write(self.line())

    def finish(self, detail: str = "") -> None:
        elapsed = self.clock() - self.started
        rate = f" ({self.done / elapsed:.1f} {self.unit}/s)" if elapsed > 0 and self.done else ""
        extra = f", {detail}" if detail else ""
        took = f"{self.done:,} {self.unit} in {_duration(elapsed)}"
        self._write(f"{self.label}: {took}{rate}{extra}", last=True)

    def _write(self, text: str, last: bool = False) -> None:
        if self.tty:
            # \r and a clear to the end of the line: the shorter line leaves no tail of the longer one.
            self.stream.write("\r" + text + "\x1b[K" + ("\n" if last else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
