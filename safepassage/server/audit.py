"""What the server records of every operation: the transparency log, and fishing alerts.

Each operation becomes one log entry (who, what, which gallery, when, outcome,
counts; ``via=console`` when the console acted for the person); nothing
biometric or personal goes in (the log's own event type refuses it).
Searches also feed the fishing detector, counted by what the gallery's
own threshold decided (the ``gallery_decision`` the matching servicer
notes); when a rule trips, an ``alert.fishing`` entry is appended
and a warning logged, for an auditor to find. If the log cannot be written,
the call fails: an operation that leaves no record must not happen.
"""

from __future__ import annotations

import hashlib
import logging
import threading

from safepassage.audit import LogEvent, TransparencyLog
from safepassage.matcher.vectors import GALLERY_ID
from safepassage.server.fishing import FishingDetector, Outcome, SearchKind
from safepassage.server.identity import Caller

log = logging.getLogger(__name__)
ANONYMOUS = "anonymous"
_SEARCHES = {
    "Identify": SearchKind.IDENTIFY,
    "Verify": SearchKind.VERIFY,
    "IdentifyStream": SearchKind.IDENTIFY,
    # Protected records: a duplicate check is a 1:N, a holder check a 1:1 with a credential.
    "CheckDuplicate": SearchKind.IDENTIFY,
    "VerifyHolder": SearchKind.VERIFY,
}
_OUTCOMES = {"MATCH": Outcome.MATCH, "NO_MATCH": Outcome.NO_MATCH}
# A holder check that failed (face, PIN, proof) is a no-match to the fishing detector.
_REFUSED_HOLDER_CHECKS = frozenset({"PERMISSION_DENIED", "FAILED_PRECONDITION"})


class AuditRecorder:
    def __init__(self, transparency_log: TransparencyLog, fishing: FishingDetector) -> None:
        self._log = transparency_log
        self._fishing = fishing
        self._lock = threading.Lock()

    @property
    def transparency_log(self) -> TransparencyLog:
        return self._log

    def record(
        self, caller: Caller | None, operation: str, gallery_id: str, outcome: str, details: dict[str, str]
    ) -> None:
        actor = caller.label if caller else ANONYMOUS
        if caller is not None and caller.via:
            # The person acted; the entry also says which door they came through (the console).
            details = {**details, "via": caller.via}
        if gallery_id and not GALLERY_ID.fullmatch(gallery_id):
            # A malformed id from a refused request: log its hash, never the raw text.
            details = {**details, "gallery_id_sha256": hashlib.sha256(gallery_id.encode()).hexdigest()}
            gallery_id = ""
        self._log.append(
            LogEvent.now(actor, operation, gallery_id=gallery_id, outcome=outcome, details=details)
        )
        short = operation.rsplit("/", 1)[-1]
        # What the gallery's own threshold decided, where the caller chose a stricter one: a
        # stricter threshold must neither hide a trawl's hits nor make honest searches look like misses.
        kind, result = _SEARCHES.get(short), _OUTCOMES.get(details.get("gallery_decision", outcome))
        if short == "VerifyHolder" and outcome in _REFUSED_HOLDER_CHECKS:
            result = Outcome.NO_MATCH
        if details.get("replayed") == "true":
            kind = None  # an answer given again is not a new search
        if caller is None or kind is None or result is None:
            return
        alert = self._fishing.record(caller, kind, gallery_id, result)
        if alert is not None:
            log.warning("fishing alert: %s", alert.summary)
            self._log.append(
                LogEvent.now(
                    actor,
                    "alert.fishing",
                    gallery_id=gallery_id,
                    outcome="ALERT",
                    details={
                        "rules": ".".join(rule.value for rule in alert.rules),
                        "searches": str(alert.searches),
                        "no_matches": str(alert.no_matches),
                        "galleries": str(alert.galleries),
                    },
                )
            )

    def record_change(self, operation: str, metadata: dict[str, str]) -> None:
        """Certificate changes and authorisations (the PKI's on_change hook)."""
        self._log.append(LogEvent.now("pki", operation, details=metadata))
