"""Owner-only files and folders: the one check for secret files, and how folders are made.

Every private key and secret (template key, keyrings, transparency-log, station,
issuer, reader and device keys, TLS keys) is read through :func:`read_private`
(or checked with :func:`check_owner_only` where the caller holds the file open),
so a key file that group or others may read is refused everywhere alike, with
a message that names the file and the command that fixes it. A refusal, not a
warning: whoever can read the file can read everything the key protects.

Every folder the server makes is made by :func:`make_private_folder`: 0700,
missing parents included (``Path.mkdir(parents=True, mode=...)`` gives the
parents the umask's mode), whatever the umask.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from safepassage.core.errors import FailedPrecondition, SafePassageError

__all__ = [
    "PRIVATE_FILE_MODE",
    "PRIVATE_FOLDER_MODE",
    "PUBLIC_FILE_MODE",
    "PrivateFileRefused",
    "check_owner_only",
    "make_private_folder",
    "read_private",
]

PRIVATE_FILE_MODE = 0o600
PRIVATE_FOLDER_MODE = 0o700
PUBLIC_FILE_MODE = 0o644  # public keys and lists: meant to be shared
_DEFAULT_LIMIT = 1024 * 1024  # no key file is anywhere near this; larger is not a key


class PrivateFileRefused(FailedPrecondition):
    """A secret file is missing, unreadable, not a regular file, too large, or readable by others."""


def check_owner_only(
    path: Path, st_mode: int, what: str, error: type[SafePassageError] = PrivateFileRefused
) -> None:
    """Raise ``error`` unless ``st_mode`` gives group and others no access at all."""
    mode = stat.S_IMODE(st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise error(
            f"the {what} file {str(path)!r} is accessible to group or others (mode {mode:o}):"
            f" it must be readable by its owner only; run `chmod 600 {path}`"
        )


def read_private(
    path: Path,
    what: str,
    *,
    limit: int = _DEFAULT_LIMIT,
    error: type[SafePassageError] = PrivateFileRefused,
    owner_only: bool = True,
) -> bytes:
    """The bytes of the secret file ``path``: a regular file only its owner may access, at most ``limit``.

    The mode is taken from the open file (``fstat``), so a file swapped after the
    check is not the one read. ``what`` names the file in messages ("station key");
    ``error`` is the caller's own error class, so each package keeps its hierarchy.
    ``owner_only`` false skips the mode check, for the public half of a key.
    Messages never quote the content.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"cannot read the {what} file {str(path)!r}: {exc.strerror}") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"cannot read the {what} file {str(path)!r}: it is not a regular file")
        if owner_only:
            check_owner_only(path, info.st_mode, what, error)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(descriptor, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise error(f"cannot read the {what} file {str(path)!r}: {exc.strerror}") from None
    finally:
        os.close(descriptor)
    if size > limit:
        raise error(f"the {what} file {str(path)!r} is larger than {limit} bytes: not a key")
    return b"".join(chunks)


def make_private_folder(path: Path) -> Path:
    """Make ``path`` and its missing parents, each 0700; folders already there are left as they are.

    An existing folder is the operator's (``/srv``, a mounted volume): its mode is
    theirs to choose. Only what this call creates is made owner-only, and chmod
    after mkdir, since the umask may have taken bits from the mode asked for.
    """
    missing: list[Path] = []
    folder = path
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_FOLDER_MODE)
        except FileExistsError:
            if folder.is_dir():
                continue  # another process made it first
            raise
        os.chmod(folder, PRIVATE_FOLDER_MODE)
    return path
