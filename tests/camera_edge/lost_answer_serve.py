"""`python -m tests.camera_edge.lost_answer_serve TRIGGER serve ...`: the real server, which loses one answer.

Once the file TRIGGER exists, the server ends (exit 137, like ``kill -9``) right
after it has logged its next identify-stream search: the search is done, its
answer kept in the reply ledger and its transparency-log entry written, but the
answer never leaves the process. The client must send that query again, to a
server that has already answered it -- the case de-duplication exists for.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from audit_log import LogEvent, TransparencyLog

STREAM = "MatchingService/IdentifyStream"


def _is_stream_search(event: LogEvent) -> bool:
    """A new search's answer (not a replay, not a refusal) to a query with a request id."""
    return (
        event.operation == STREAM
        and event.outcome in ("MATCH", "NO_MATCH")
        and "request_id_hmac_sha256" in event.details
        and "replayed" not in event.details
    )


def main(argv: list[str]) -> int:
    trigger = Path(argv[0])
    append_many = TransparencyLog.append_many

    def dying(self: TransparencyLog, events: Iterable[LogEvent]) -> list[int]:
        events = list(events)
        indices = append_many(self, events)
        if trigger.exists() and any(_is_stream_search(e) for e in events):
            os._exit(137)
        return indices

    TransparencyLog.append_many = dying  # type: ignore[method-assign]
    from safepassage_cli.main import main as cli

    return cli(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
