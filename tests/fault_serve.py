"""`python -m tests.fault_serve FAULT serve ...`: the real server under one injected fault.

FAULT is one of:

* ``full-disk``: RLIMIT_FSIZE 0, set before anything runs: every write(2) fails with
  EFBIG (stricter than a full disk, where bytes a file already has can be rewritten);
  creating empty files, renaming and unlinking still work, as on a full disk.
* ``die-at-gallery-drop``: the process exits (137, like ``kill -9``) right after
  DeleteGallery's commit, before the gallery's snapshot file is removed.
* ``die-at-snapshot-rename``: the process exits (137) with a snapshot fully written
  to its ``.tmp`` file, before it is renamed into place.
"""

from __future__ import annotations

import os
import resource
import sys
from typing import Any


def _die(*args: object, **kwargs: object) -> None:
    os._exit(137)


def _replace_or_die(source: Any, target: Any) -> None:
    if str(target).endswith(".snapshot"):
        os._exit(137)
    os.replace(source, target)


class _OsDyingAtSnapshotReplace:
    """The os module as safepassage.core.atomic_file sees it, but renaming a snapshot into place ends
    the process (the other files it writes are renamed as ever)."""

    def __getattr__(self, name: str) -> Any:
        return _replace_or_die if name == "replace" else getattr(os, name)


def main(argv: list[str]) -> int:
    fault, rest = argv[0], argv[1:]
    if fault == "full-disk":
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    elif fault == "die-at-gallery-drop":
        from safepassage.matcher.index_loader import IndexLoader

        IndexLoader.drop = _die  # type: ignore[method-assign]
    elif fault == "die-at-snapshot-rename":
        from safepassage.core import atomic_file

        atomic_file.os = _OsDyingAtSnapshotReplace()  # type: ignore[attr-defined,assignment]
    else:
        raise SystemExit(f"unknown fault {fault!r}")
    from safepassage.cli.main import main as cli

    return cli(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
