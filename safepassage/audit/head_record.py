"""The newest tree head the server published, in a file of its own outside the log's database.

An intruder who cuts the newest entries and heads out of the SQLite file
leaves a log that agrees with itself; what it no longer agrees with is a
head handed out before. This file keeps the newest such head where a copy
or a rollback of the data folder does not reach (by default beside the
keys, in ``storage.keys_dir``), and :meth:`TransparencyLog.open` refuses a
log that is shorter than it or inconsistent with it.

It guards against losing or rolling back the data folder, not against
someone who holds the keys folder too: that one can rewrite this file as
well. That is what a witness is for (:mod:`safepassage.audit.witness`).

Format: one JSON object, ``{"version": 1, "tree_head": {...}}``, replaced
atomically (written under a temporary name, fsynced, renamed, the folder
fsynced), mode 0600.
"""

from __future__ import annotations

import json
from pathlib import Path

from safepassage.audit.errors import LogCorrupted, LogRolledBack
from safepassage.audit.tree_head import SignedTreeHead
from safepassage.core import atomic_file

__all__ = ["HeadRecord"]

_VERSION = 1


class HeadRecord:
    """The file holding the newest published tree head of one log."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    @property
    def path(self) -> Path:
        return self._path

    def read(self) -> SignedTreeHead | None:
        """The recorded head, or None before the first one; LogCorrupted if the file is unreadable."""
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise LogCorrupted(
                f"cannot read the published-head file {self._path}: {error.strerror}"
            ) from None
        try:
            obj = json.loads(data)
            if (
                not isinstance(obj, dict)
                or obj.get("version") != _VERSION
                or set(obj) != {"version", "tree_head"}
            ):
                raise ValueError(f"expected {{'version': {_VERSION}, 'tree_head': ...}}")
            return SignedTreeHead.from_json(obj["tree_head"])
        except ValueError as error:
            # Fail closed: an unreadable record must not read as "nothing published yet".
            raise LogCorrupted(f"the published-head file {self._path} is malformed: {error}") from None

    def write(self, head: SignedTreeHead) -> None:
        """Record ``head``; LogRolledBack if it is smaller than, or forks from, the recorded one."""
        current = self.read()
        if current is not None and (
            head.tree_size < current.tree_size
            or (head.tree_size == current.tree_size and head.root_hash != current.root_hash)
        ):
            raise LogRolledBack(
                f"tree head of size {head.tree_size} would replace the published one of size"
                f" {current.tree_size} in {self._path}: the log went back"
            )
        body = json.dumps({"version": _VERSION, "tree_head": head.to_json()}, sort_keys=True) + "\n"
        atomic_file.replace(self._path, body.encode("ascii"))
