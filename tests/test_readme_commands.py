"""The README's quick start and protected-records command blocks, run verbatim, in order (issue #17).

Each ```sh block of README.md's "## Running it" and "## Protected identity records" sections is cut
into command lines (a line ending in a backslash continues on the next; comment and blank lines are
skipped) and each line runs, as written, through bash in a fresh working directory laid out like a
checkout (``examples/`` and the model pack ``var/models/`` linked in), against a real ``safepassage
serve`` process whose data lives in that directory's ``var/``. Only these differ from a reader's
terminal, each documented here:

- file names the README says stand for the reader's own files (``photo.jpg``, ``face.jpg``, ...)
  exist in the working directory as links to real faces of ../shared/data/faces, chosen so that the
  README's matches really match; the test checks each is documented as a placeholder above its block;
- ``uv run CMD`` runs CMD from the project's virtual environment (a bash function ``uv`` that drops
  ``run``, with the venv's bin first on PATH): the environment the test itself runs in;
- the server listens on a free port, not 50051, and the commands find it through
  ``$SAFEPASSAGE_SERVER``, which the CLI documents (``--server``'s default);
- a line that starts the server (``uv run safepassage serve ...``) is run in the background with
  ``--port 0`` added, after the running server is stopped, as the README's comment asks the reader
  to do; the quick start's server is the one ``make serve`` starts (``safepassage serve``).

Every line must exit 0, or the status its comment documents (``(exit N)``), and never print a
Python traceback: README drift fails this test.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.process import PORT_LINE, STARTED
from tests.server.protected_helpers import HOLDER, person

pytestmark = pytest.mark.server

README = REPO / "README.md"
SECTIONS = ("## Running it", "## Protected identity records")
SERVE = re.compile(r"^uv run safepassage serve\b")
EXPECTED_EXIT = re.compile(r"#.*\(exit (\d+)\)")
# A bash function in place of uv: the test already runs in the project's environment.
UV_SHIM = 'uv() { [ "$1" = run ] || return 2; shift; "$@"; }\n'
# Where to write what a reader would see (each line and its output), when set: for release notes.
TRANSCRIPT_ENV = "SAFEPASSAGE_README_TRANSCRIPT"
# What some lines must print, beyond exiting as documented: the matches the README shows are real
# matches. Each pattern must meet a line, so rewording the README cannot drop a check unnoticed.
OUTPUTS = {
    r"^uv run safepassage identify border-watchlist probe\.jpg --top-k": r"^MATCH .*\n.*\n +1\. case-0001 ",
    r"^uv run safepassage identify .* --restrict-to case-0001 case-0002": r"^MATCH ",
    r"^uv run safepassage verify border-watchlist case-0001 probe\.jpg": r"^MATCH ",
    r"^uv run safepassage import border-watchlist": r"^imported 2 of 2 ",
    r"^uv run safepassage count border-watchlist$": r"^3$",
    r"^uv run safepassage audit verify": r"^audit passed: ",
    r"^uv run safepassage records verify-receipt .*consent-receipt": r"^VALID consent receipt ",
    r"^uv run safepassage credential verify ": r"^VERIFIED credential ",
    r"^uv run safepassage records verify-holder .* # the minimal view": r'"decision": "MATCH"',
    r"^uv run safepassage records erase ": r"^record pr-\S+ erased ",
    r"^uv run safepassage records verify-receipt .*erased": r"^VALID erasure receipt ",
}


@dataclass(frozen=True)
class Section:
    title: str
    prose: str  # the section's text outside its code blocks
    blocks: tuple[str, ...]  # its ```sh blocks


def section(markdown: str, title: str) -> Section:
    start = markdown.index(f"\n{title}\n")
    end = markdown.find("\n## ", start + len(title) + 2)
    body = markdown[start : end if end != -1 else len(markdown)]
    blocks = tuple(re.findall(r"^```sh\n(.*?)^```$", body, re.MULTILINE | re.DOTALL))
    prose = re.sub(r"^```.*?^```$", "", body, flags=re.MULTILINE | re.DOTALL)
    return Section(title, prose, blocks)


def command_lines(block: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and blank lines skipped."""
    commands: list[str] = []
    pending = ""
    for raw in block.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        commands.append(pending + line)
        pending = ""
    assert not pending, f"a block ends in a continuation line: {pending!r}"
    return commands


class Server:
    """`safepassage serve` in the working directory, as the reader starts it (on a free port)."""

    def __init__(self, workdir: Path, argv: list[str], env: dict[str, str]) -> None:
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [*argv, "--port", "0"],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        STARTED.append(self.process)
        found: list[int] = []
        ready = threading.Event()

        def read() -> None:
            assert self.process.stderr is not None
            with self.process.stderr:  # closed at the end of the output
                for line in self.process.stderr:
                    self.log.append(line)
                    match = PORT_LINE.search(line)
                    if match and not found:
                        found.append(int(match.group(1)))
                        ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(120) or not found:
            self.process.kill()
            raise AssertionError(f"{' '.join(argv)} did not start:\n" + "".join(self.log[-30:]))
        self.address = f"localhost:{found[0]}"

    def stop(self) -> None:
        self.process.terminate()
        assert self.process.wait(timeout=60) == 0, "".join(self.log[-30:])
        assert not any("Traceback" in line for line in self.log), "".join(self.log)


def link(target: Path, name: Path) -> None:
    """A placeholder file of the README, as a link to real data (never a copy of it)."""
    assert target.is_file(), target
    name.parent.mkdir(parents=True, exist_ok=True)
    name.symlink_to(target)


def placeholders(faces_dir: Path) -> dict[str, Path]:
    """README file name -> the real face it stands for in this test."""
    fr = faces_dir / "face_recognition"
    holder = person(faces_dir, HOLDER)
    return {
        "photo.jpg": fr / "obama" / "obama.jpg",
        "probe.jpg": fr / "obama" / "obama2.jpg",  # another photo of case-0001: identify and verify match
        "folder-of-photos/case-0002.jpg": fr / "rose_leslie" / "img1.jpg",
        "folder-of-photos/case-0003.jpeg": fr / "kit_harington" / "john1.jpeg",
        "face.jpg": holder.photos[0],  # the protected record's enrolment photo
        "live.jpg": holder.photos[2],  # the same holder, another photo: the live capture
    }


def test_readme_command_blocks_run_verbatim(tmp_path: Path, faces_dir: Path, model_dir: Path) -> None:
    markdown = README.read_text(encoding="utf-8")
    sections = [section(markdown, title) for title in SECTIONS]
    workdir = tmp_path / "checkout"
    (workdir / "var").mkdir(parents=True)
    (workdir / "var" / "models").symlink_to(model_dir, target_is_directory=True)
    (workdir / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    for name, target in placeholders(faces_dir).items():
        link(target, workdir / name)
        shown = re.compile(rf"`(\./)?{re.escape(name.split('/')[0])}`")
        assert any(shown.search(s.prose) for s in sections), f"README never says {name} is your file"

    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("SAFEPASSAGE_SERVER", None)
    server = Server(workdir, [str(venv_bin / "safepassage"), "serve"], env)  # what `make serve` runs
    ran: list[str] = []
    checked: set[str] = set()
    transcript: list[str] = []
    try:
        for part in sections:
            assert part.blocks, f"{part.title} has no sh block"
            for block in part.blocks:
                for line in command_lines(block):
                    if SERVE.match(line):
                        server.stop()
                        words = shlex.split(line, comments=True)[2:]  # without `uv run`
                        server = Server(workdir, [str(venv_bin / words[0]), *words[1:]], env)
                        ran.append(line)
                        continue
                    done = subprocess.run(
                        ["bash", "-c", UV_SHIM + line],
                        cwd=workdir,
                        env={**env, "SAFEPASSAGE_SERVER": server.address},
                        capture_output=True,
                        text=True,
                        timeout=180,
                        check=False,
                    )
                    expected = EXPECTED_EXIT.search(line)
                    status = int(expected.group(1)) if expected else 0
                    said = f"{line}\n-> exit {done.returncode}\n{done.stdout}{done.stderr}"
                    transcript.append(f"$ {line}\n{done.stdout}{done.stderr}")
                    assert done.returncode == status, f"after {len(ran)} lines ran:\n{said}"
                    assert "Traceback" not in done.stdout + done.stderr, said
                    if status:
                        # A refusal is one line on stderr, naming what was refused.
                        assert len(done.stderr.strip().splitlines()) == 1, said
                    for command, output in OUTPUTS.items():
                        if re.search(command, line):
                            assert re.search(output, done.stdout, re.MULTILINE), said
                            checked.add(command)
                    ran.append(line)
    finally:
        server.stop()
        if os.environ.get(TRANSCRIPT_ENV):
            Path(os.environ[TRANSCRIPT_ENV]).write_text("".join(transcript), encoding="utf-8")
    assert checked == set(OUTPUTS), f"README lines no longer found: {set(OUTPUTS) - checked}"
    assert len(ran) >= 20, ran
