"""Files written whole or not at all: a temporary file beside the target, fsynced, then published.

Readers and crashes see the old file or the new one, never half of either. Two ways to publish:

* :func:`replacing` / :func:`replace` rename the temporary file over the target (``os.replace``);
* :func:`create` links it into place (``os.link``), which fails if the name exists: a file another
  process made first is never overwritten, so two processes racing to create a key end up with the
  same key and no reader ever sees a half-written one.

Either way the folder is fsynced afterwards, so the new name survives a power cut, and a failed
write removes its temporary file and leaves the target as it was. ``mode`` is the file's mode,
set with ``fchmod`` because the umask may have taken bits from the one asked for: by default 0600
in a folder made 0700 (:func:`~safepassage.core.private_files.make_private_folder`); ``None`` leaves
the mode to the umask, for files meant to be shared, whose folders are made as the umask says too.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from safepassage.core.private_files import PRIVATE_FILE_MODE, make_private_folder

__all__ = ["create", "fsync_folder", "replace", "replacing"]


def fsync_folder(folder: Path) -> None:
    """Make the folder's entries (a rename, a new link) durable."""
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _make_folder(folder: Path, mode: int | None) -> None:
    if mode is not None and not mode & 0o077:
        make_private_folder(folder)
    else:
        folder.mkdir(parents=True, exist_ok=True)


@contextmanager
def _temporary(path: Path, mode: int | None, temporary: Path | None) -> Iterator[tuple[Path, BinaryIO]]:
    """A new file beside ``path``, open for writing; removed on the way out unless published by then."""
    _make_folder(path.parent, mode)
    if temporary is None:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    else:
        temporary.unlink(missing_ok=True)  # a fixed name a crash may have left behind
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        with os.fdopen(os.open(temporary, flags, 0o666 if mode is None else mode), "wb") as out:
            if mode is not None:
                os.fchmod(out.fileno(), mode)
            yield temporary, out
    finally:
        temporary.unlink(missing_ok=True)


def _durable(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


@contextmanager
def replacing(
    path: Path, *, mode: int | None = PRIVATE_FILE_MODE, temporary: Path | None = None
) -> Iterator[BinaryIO]:
    """Write ``path`` through the yielded file: renamed over ``path`` on a clean exit, else discarded.

    ``temporary`` names the temporary file, for an owner that clears what crashes leave by name.
    """
    with _temporary(path, mode, temporary) as (written, out):
        yield out
        _durable(out)
        os.replace(written, path)
    fsync_folder(path.parent)


def replace(path: Path, data: bytes, *, mode: int | None = PRIVATE_FILE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically (see the module notes)."""
    with replacing(path, mode=mode) as out:
        out.write(data)


def create(path: Path, data: bytes, *, mode: int | None = PRIVATE_FILE_MODE) -> bool:
    """Publish ``data`` at ``path`` unless a file is there; False when one was (that file stands)."""
    with _temporary(path, mode, None) as (written, out):
        out.write(data)
        _durable(out)
        try:
            os.link(written, path)
        except FileExistsError:
            return False
    fsync_folder(path.parent)
    return True
