"""Where the server's tree heads go besides its own database: a head file, and a witness.

:class:`TransparencyLog` takes a publisher when it opens (the server gives
it one; tools that only read or append do not). Then:

* at open, every head published before (the head file's, and the witness's
  newest cosigned one) must still hold: the log is at least that long and
  consistent with it, or the log refuses to open (:class:`LogRolledBack`);
* each signed head is written to the head file;
* :meth:`TransparencyLog.publish_tree_head` also sends it to the witness
  with a consistency proof from the size the witness holds, and stores the
  cosignature in the log, from where exports carry it to auditors.

The head file alone catches a data folder cut back or restored from a copy;
the witness also catches someone who holds the keys folder, and so can
re-sign a rewritten log and rewrite the head file: they cannot make the
witness forget what it cosigned.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from safepassage.audit.cosignature import Cosignature
from safepassage.audit.errors import UnknownLog, WitnessConflict, WitnessRefused, WitnessUnavailable
from safepassage.audit.head_record import HeadRecord
from safepassage.audit.tree_head import SignedTreeHead
from safepassage.audit.witness_http import WitnessClient
from safepassage.core.signing import VerifyingKey

__all__ = ["PublishedHead", "TreeHeadPublisher"]

_log = logging.getLogger(__name__)

PublishedHead = tuple[str, SignedTreeHead]  # (where it was published, the head)
ConsistencyProof = Callable[[int, int], Sequence[bytes]]


class TreeHeadPublisher:
    """The head file and the witness (either may be absent) of one log."""

    def __init__(
        self,
        record: HeadRecord | None = None,
        witness: WitnessClient | None = None,
        *,
        witness_required: bool = False,
    ) -> None:
        self._record = record
        self._witness = witness
        self._required = witness_required
        self._lock = threading.Lock()
        self._witness_size = 0  # the size the witness holds, as far as this process knows

    @property
    def witness(self) -> WitnessClient | None:
        return self._witness

    def published_heads(self, log_key: VerifyingKey) -> list[PublishedHead]:
        """The heads the log must still be consistent with: the head file's and the witness's.

        An unreachable or unknowing witness raises when the witness is
        required; otherwise it is logged and only the head file is checked.
        """
        heads: list[PublishedHead] = []
        if self._record is not None:
            recorded = self._record.read()
            if recorded is not None:
                heads.append((f"the head file {self._record.path}", recorded))
        if self._witness is not None:
            try:
                seen = self._witness.latest(log_key)
            except (WitnessUnavailable, UnknownLog) as error:
                if self._required:
                    raise
                _log.warning("not checking the log against its witness: %s", error)
            else:
                if seen is not None:
                    heads.append((f"the witness at {self._witness.url}", seen.tree_head))
                    with self._lock:
                        self._witness_size = seen.tree_head.tree_size
        return heads

    def record(self, head: SignedTreeHead) -> None:
        """Write ``head`` to the head file (if any); LogRolledBack if it goes back."""
        if self._record is not None:
            self._record.write(head)

    def publish(self, log_key_id: str, head: SignedTreeHead, proof: ConsistencyProof) -> Cosignature | None:
        """Send ``head`` to the witness (None without one) and return its checked cosignature.

        ``proof(old, new)`` is the log's consistency proof. When the witness
        holds another size than this process thought, the proof is rebuilt
        from the size it names, once. Raises WitnessRefused when the witness
        holds a larger tree than ``head`` or one it does not extend.
        """
        if self._witness is None:
            return None
        with self._lock:
            old = self._witness_size
            for _ in range(2):
                if old > head.tree_size:
                    raise WitnessRefused(
                        f"the witness at {self._witness.url} cosigned size {old} of this log, which now"
                        f" signs size {head.tree_size}: the log went back"
                    )
                try:
                    cosignature = self._witness.add(log_key_id, old, proof(old, head.tree_size), head)
                except WitnessConflict as conflict:
                    old = conflict.tree_size
                    continue
                self._witness_size = head.tree_size
                return cosignature
        raise WitnessUnavailable(f"the witness at {self._witness.url} kept changing size; publish later")
