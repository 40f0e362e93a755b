"""The tree heads an auditor has verified, kept by the auditor from one audit to the next.

An export checks out against itself, so a log cut back together with its
heads, or rewritten and re-signed with the key beside it, passes an audit
that starts from nothing. What it cannot pass is a head the auditor saw
before: ``safepassage audit verify FOLDER --state FILE`` hands every head in
FILE to :func:`safepassage.audit.audit` as a known head (the export must still hold
it: as long, and consistent with it) and, when the audit passes, adds the
export's newest head to FILE.

The file is the auditor's, on the auditor's machine: the log's operator
never writes it. Its lines are tree heads in the form of
``tree_heads.jsonl``, oldest first, so it can also be given to ``--known``.
It is replaced atomically, never left half-written.
"""

from __future__ import annotations

from pathlib import Path

from safepassage.audit.auditor import read_tree_heads_file
from safepassage.audit.tree_head import SignedTreeHead
from safepassage.core import atomic_file

__all__ = ["AuditorState"]


class AuditorState:
    """The state file of one auditor for one log."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    @property
    def path(self) -> Path:
        return self._path

    def exists(self) -> bool:
        return self._path.exists()

    def heads(self) -> list[SignedTreeHead]:
        """The heads kept so far, oldest first; none before the first audit. AuditFailure if malformed."""
        if not self._path.exists():
            return []
        return read_tree_heads_file(self._path)

    def remember(self, head: SignedTreeHead) -> bool:
        """Keep ``head`` if it is larger than every head kept; returns whether it was added."""
        kept = self.heads()
        if kept and head.tree_size <= max(held.tree_size for held in kept):
            return False
        lines = [held.to_line() for held in kept] + [head.to_line()]
        data = "".join(line + "\n" for line in lines).encode("ascii")
        atomic_file.replace(self._path, data, mode=None)  # the auditor's own file: its umask decides
        return True
