"""An officer's decision on an answer the service gave: what a valid one says (RecordDecision, and
RecordDocumentDecision for a chip check).

The officer confirms, rejects, refers or cannot decide, with a reason code from a fixed list and an
optional free-text note. Nothing is stored here: the decision is one transparency-log entry, under
the officer (the access interceptor writes it, refused or not), with the codes as enum names and the
candidate's reference id and the note only as keyed pseudonyms (call_outcome.decision_details). A
note may hold anything an officer types, so it never enters the log as written; the operator, who
holds the pseudonym key, can check a note kept in a case file against the entry.
"""

from __future__ import annotations

import re
from typing import Any

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import travel_document_pb2 as tpb
from safepassage.core.errors import InvalidInput
from safepassage.matcher.vectors import REFERENCE_ID

__all__ = ["CHECK_ID", "MAX_NOTE_CHARACTERS", "InvalidDecision", "check_decision", "check_document_decision"]

MAX_NOTE_CHARACTERS = 2000
# A chip check's id as VerifyDocument makes it: 16 random bytes in lower-case hex after "chk_" (a
# one-case token in the log, never read as a number or a digest).
CHECK_ID = re.compile(r"chk_[0-9a-f]{32}")


class InvalidDecision(InvalidInput):
    """A decision that names no search, outcome or reason, a malformed candidate, or a note too long."""


def _named(enum: Any, value: int, field: str) -> None:
    """`value` must be a defined, specified number of the generated enum `enum`."""
    if value == 0 or value not in enum.values():
        names = ", ".join(enum.keys()[1:])
        raise InvalidDecision(f"{field} must be one of {names}")


def check_decision(request: pb.RecordDecisionRequest) -> None:
    """Raise InvalidDecision unless the request is a complete decision (the gallery is checked apart)."""
    _named(pb.SearchKind, request.search, "search")
    _named(pb.ReviewDecision, request.decision, "decision")
    _named(pb.ReviewReason, request.reason, "reason")
    if request.service_decision not in (pb.MATCH, pb.NO_MATCH):
        raise InvalidDecision("service_decision must be MATCH or NO_MATCH: what the service answered")
    if request.reference_id and not REFERENCE_ID.fullmatch(request.reference_id):
        raise InvalidDecision("reference_id is not a reference id")
    if len(request.note) > MAX_NOTE_CHARACTERS:
        raise InvalidDecision(f"note is longer than {MAX_NOTE_CHARACTERS} characters")


def check_document_decision(request: tpb.RecordDocumentDecisionRequest) -> None:
    """Raise InvalidDecision unless the request is a complete decision on a chip check."""
    if not CHECK_ID.fullmatch(request.check_id):
        raise InvalidDecision("check_id must be a VerifyDocument answer's check_id (chk_ and 32 hex digits)")
    _named(tpb.PassiveAuthenticationStatus, request.passive_authentication, "passive_authentication")
    _named(pb.ReviewDecision, request.decision, "decision")
    _named(pb.ReviewReason, request.reason, "reason")
    if request.service_decision not in (pb.MATCH, pb.NO_MATCH):
        raise InvalidDecision("service_decision must be MATCH or NO_MATCH: what the service answered")
    if len(request.note) > MAX_NOTE_CHARACTERS:
        raise InvalidDecision(f"note is longer than {MAX_NOTE_CHARACTERS} characters")
