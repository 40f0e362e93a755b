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

import hashlib
import hmac
import re
import secrets
from typing import Any

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import travel_document_pb2 as tpb
from safepassage.core.errors import InvalidInput
from safepassage.matcher.vectors import REFERENCE_ID

__all__ = [
    "CHECK_ID",
    "MAX_NOTE_CHARACTERS",
    "InvalidDecision",
    "check_decision",
    "check_document_decision",
    "make_check_id",
]

MAX_NOTE_CHARACTERS = 2000
# A chip check's id as VerifyDocument makes it: "chk_", 12 random bytes and a 12-byte tag, in
# lower-case hex (a one-case token in the log, never read as a number or a digest). The tag is an
# HMAC, under a key derived from the server's master key, of the officer, the nonce and what the
# service answered: a decision can name only a check the service made for that officer, with the
# answer it gave (not one made up, another officer's, or another answer), across restarts too.
CHECK_ID = re.compile(r"chk_[0-9a-f]{48}")
_NONCE_HEX = 24


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


def _tag(key: bytes, caller: str, nonce: str, service_decision: int, passive_authentication: int) -> str:
    message = f"document-check:{caller}:{nonce}:{service_decision}:{passive_authentication}"
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()[: len(nonce)]


def make_check_id(key: bytes, caller: str, service_decision: int, passive_authentication: int) -> str:
    """A new check's id, bound to ``caller`` (``role:client id``) and the answer the service gives."""
    nonce = secrets.token_hex(_NONCE_HEX // 2)
    return f"chk_{nonce}{_tag(key, caller, nonce, service_decision, passive_authentication)}"


def check_document_decision(request: tpb.RecordDocumentDecisionRequest, key: bytes, caller: str) -> None:
    """Raise InvalidDecision unless the request is a complete decision on a check made for ``caller``."""
    if not CHECK_ID.fullmatch(request.check_id):
        raise InvalidDecision("check_id must be a VerifyDocument answer's check_id (chk_ and 48 hex digits)")
    nonce, tag = request.check_id[4 : 4 + _NONCE_HEX], request.check_id[4 + _NONCE_HEX :]
    made = _tag(key, caller, nonce, request.service_decision, request.passive_authentication)
    if not hmac.compare_digest(tag, made):
        raise InvalidDecision(
            "check_id: not a check this service made for you with that answer (service_decision and"
            " passive_authentication as the check's answer gave them)"
        )
    _named(tpb.PassiveAuthenticationStatus, request.passive_authentication, "passive_authentication")
    _named(pb.ReviewDecision, request.decision, "decision")
    _named(pb.ReviewReason, request.reason, "reason")
    if request.service_decision not in (pb.MATCH, pb.NO_MATCH):
        raise InvalidDecision("service_decision must be MATCH or NO_MATCH: what the service answered")
    if len(request.note) > MAX_NOTE_CHARACTERS:
        raise InvalidDecision(f"note is longer than {MAX_NOTE_CHARACTERS} characters")
