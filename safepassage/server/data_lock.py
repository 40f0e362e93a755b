"""One server per data folder: an exclusive lock held for the process's lifetime.

Two servers on one folder would each keep their own index over the same store:
an enrolment made through one is never searched by the other, so a watchlist
hit is silently missed. `DataFolderLock.acquire` takes ``flock(LOCK_EX)`` on
``<data_dir>/server.lock`` before anything else touches the folder. The kernel
drops the lock when the holder's file is closed or its process ends, however
it ends (``kill -9`` included), so a lock file left behind never blocks a
restart; the file is never removed (removing it would let two processes lock
two different files of one name).

The holder's pid is written into the file only so a refused server can name
it. Writing it is best effort: on a full disk the server still starts
(read-only where it must) and the refusal then says the pid is unknown.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from safepassage.core.errors import FailedPrecondition
from safepassage.core.private_files import make_private_folder

__all__ = ["LOCK_NAME", "DataFolderInUse", "DataFolderLock"]

log = logging.getLogger(__name__)

LOCK_NAME = "server.lock"
# The pid is written over the same bytes each time, so a restart on a full disk can still
# record it when the file already holds an earlier pid (nothing is appended).
_PID_WIDTH = 16


class DataFolderInUse(FailedPrecondition):
    """Another process holds the data folder's lock, or the lock cannot be taken."""


class DataFolderLock:
    """The held lock on one data folder; `release` (or process exit) frees it."""

    def __init__(self, path: Path, descriptor: int) -> None:
        """Use :meth:`acquire`."""
        self.path = path
        self._descriptor: int | None = descriptor

    @classmethod
    def acquire(cls, data_dir: Path) -> DataFolderLock:
        """Lock ``data_dir`` for this process; DataFolderInUse naming the holder if another has it."""
        path = data_dir / LOCK_NAME
        descriptor = _open(data_dir, path)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            holder = _holder(path)
            named = f"pid {holder}" if holder is not None else "pid unknown"
            raise DataFolderInUse(
                f"data folder {data_dir} is in use by another SafePassage server ({named});"
                " stop it first, or give this server its own storage.data_dir"
            ) from None
        except OSError as error:
            os.close(descriptor)
            raise DataFolderInUse(f"cannot lock the data folder {data_dir}: {error.strerror}") from None
        _write_pid(descriptor, path)
        return cls(path, descriptor)

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def release(self) -> None:
        """Free the lock (closing the file frees it); a second call does nothing."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            os.close(descriptor)


def _open(data_dir: Path, path: Path) -> int:
    try:
        make_private_folder(data_dir)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        if path.exists():
            # A read-only folder: flock needs no write access, so the lock still excludes others.
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                pass
        raise DataFolderInUse(f"cannot open the lock file {path}: {error.strerror}") from None


def _write_pid(descriptor: int, path: Path) -> None:
    record = f"{os.getpid()}\n".ljust(_PID_WIDTH).encode()
    try:
        os.pwrite(descriptor, record, 0)
        os.ftruncate(descriptor, len(record))
    except OSError as error:
        log.warning("data folder locked; could not write the pid into %s (%s)", path, error.strerror)


def _holder(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
