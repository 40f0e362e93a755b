"""`python -m tests.camera_edge.lost_answer_serve TRIGGER serve ...`: the real server, which loses one answer.

Once the file TRIGGER exists, the server ends (exit 137, like ``kill -9``) right
after it has kept its next identify-stream answer in the reply ledger: the search
is done, its transparency-log entry written (before the ledger, always) and its
answer kept, but the answer never leaves the process. The client must send that query again, to a
server that has already answered it -- the case de-duplication exists for.

A TRIGGER holding a number N (written before the server starts) names the answer instead: the
server dies right after keeping its Nth, whatever the pace of the client or the machine.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from safepassage.store import ReplyLedger


def main(argv: list[str]) -> int:
    trigger = Path(argv[0])
    put = ReplyLedger.put
    kept = [0]

    def dying(
        self: ReplyLedger,
        client_id: str,
        request_id: str,
        query_sha256: bytes,
        answer: bytes,
        answered_at: float | None = None,
    ) -> None:
        # The ledger is written only after the search's log entry (call_notes.after_logged): dying
        # here leaves a search both logged and kept, whose answer never left the process.
        put(self, client_id, request_id, query_sha256, answer, answered_at)
        kept[0] += 1
        if trigger.exists():
            nth = trigger.read_text().strip()
            if not nth or kept[0] >= int(nth):
                os._exit(137)

    ReplyLedger.put = dying  # type: ignore[method-assign]
    from safepassage.cli.main import main as cli

    return cli(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
