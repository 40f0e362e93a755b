"""What a servicer learned during a call that the transparency log must show: which record.

The access interceptor records every call, allowed or refused, but it cannot
know which protected record a request is about until the servicer has found
it (by recovery code or credential). The servicer notes it here as soon as
it knows, before anything else can fail, so that a refused PIN, a face that
did not match or a policy refusal is logged with the record's hash, the
record's organisation and the proof the caller brought, under the caller's
name. One fresh `CallNotes` per call, set by the interceptor.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["CALL_NOTES", "CallNotes", "note_record", "record_sha256"]


def record_sha256(record_id: str) -> str:
    """How logs name a protected record: its id's SHA-256 (96 random bits: the holder, who holds the
    id on every receipt, can find each access; nobody can guess an id from the hash)."""
    return hashlib.sha256(record_id.encode()).hexdigest()


@dataclass
class CallNotes:
    record_id: str = ""
    organisation: str = ""  # the record's enrolling organisation
    proof: str = ""  # what the holder proved: none, credential, face, holder

    def details(self) -> dict[str, str]:
        if not self.record_id:
            return {}
        details = {"record_sha256": record_sha256(self.record_id)}
        if self.organisation:
            details["organisation"] = self.organisation
        if self.proof:
            details["proof"] = self.proof
        return details


CALL_NOTES: ContextVar[CallNotes] = ContextVar("safepassage_call_notes")


def note_record(record_id: str, organisation: str, proof: str) -> None:
    """Tell the interceptor which record this call is about (no-op outside an intercepted call)."""
    try:
        notes = CALL_NOTES.get()
    except LookupError:
        return
    notes.record_id, notes.organisation, notes.proof = record_id, organisation, proof
