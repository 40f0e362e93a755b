"""Progress of long evaluation work: count, rate and time left; in place on a terminal, sparse in a log."""

from __future__ import annotations

import io
import os
import re
import tty

from safepassage.evaluation.progress import LOG_EVERY_S, Progress

LINE = re.compile(
    r"^embedding \(onnx\): (?P<done>[\d,]+) of 1,000 images \(\d+ %\), [\d.]+ images/s, about .+ left$"
)


def test_each_line_says_how_many_how_fast_and_how_long_is_left() -> None:
    out = io.StringIO()
    progress = Progress("embedding (onnx)", stream=out, every_s=0)
    for done in range(1, 1001):
        progress(done, 1000)
    progress.finish("12 embedded now")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1000  # 999 updates and the last line
    for number, line in enumerate(lines[:-1], 1):
        match = LINE.match(line)
        assert match, line
        assert match["done"] == f"{number:,}"
    assert re.match(r"^embedding \(onnx\): 1,000 images in \d+ s .*, 12 embedded now$", lines[-1]), lines[-1]


def test_in_a_log_it_writes_a_few_lines_not_one_per_image() -> None:
    out = io.StringIO()  # not a terminal
    progress = Progress("embedding (onnx)", stream=out)
    assert progress.every_s == LOG_EVERY_S
    for done in range(1, 5001):
        progress(done, 5000)
    progress.finish()
    # Five thousand images in far less than LOG_EVERY_S: only the closing line.
    assert out.getvalue().count("\n") == 1
    assert out.getvalue().startswith("embedding (onnx): 5,000 images in ")


def test_on_a_terminal_the_line_is_rewritten_in_place() -> None:
    leader, follower = os.openpty()
    tty.setraw(follower)  # no newline translation: what is read is what was written
    with os.fdopen(follower, "w") as terminal:
        progress = Progress("embedding (onnx)", stream=terminal, every_s=0)
        assert progress.tty
        for done in range(1, 5):
            progress(done, 4)
        progress.finish()
    shown = b""
    while b"\n" not in shown:
        shown += os.read(leader, 65536)
    os.close(leader)
    # Three updates and the last line, each from the start of the one line, cleared to its end.
    assert shown.count(b"\r") == 4 and shown.count(b"\n") == 1 and shown.endswith(b"\x1b[K\n")
    assert shown.decode().split("\r")[-1].startswith("embedding (onnx): 4 images in ")
