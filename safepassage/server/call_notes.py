"""What a call learned that the transparency log must show, passed between interceptor and servicer.

The access interceptor records every call, allowed or refused, but some of
what the entry must say is known only inside the servicer, and the servicer
needs some of what the interceptor checked. One fresh `CallNotes` per call,
set by the interceptor, carries both:

* which protected record a request is about: the servicer notes it as soon as
  it has found it (by recovery code or credential), before anything else can
  fail, so that a refused PIN, a face that did not match or a policy refusal
  is logged with the record's hash, the record's organisation and the proof
  the caller brought, under the caller's name;
* the threshold a search used, where it came from (the gallery, the request,
  a target FPIR), and what the gallery's own threshold would have decided:
  the fishing detector counts that decision, so a caller choosing a stricter
  threshold neither hides nor invents misses (noted per search by the
  matching servicer; per message of a stream, the interceptor takes it with
  each answer);
* the CCTV authorisation that admitted the message being searched (noted by
  the interceptor), which a kept hit records;
* work that must wait until the answer is in the transparency log
  (`after_logged`): an identify stream's answer goes into the reply ledger only
  once its search is logged, so a crash between the two can cost a second
  search (logged too) but never a search the log does not show.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = [
    "CALL_NOTES",
    "CallNotes",
    "SearchNote",
    "after_logged",
    "note_record",
    "note_search",
    "noted_authorisation",
    "noted_authorisation_terms",
    "record_sha256",
]

# The log's counts are integers of at most nine digits.
_MAX_MICRO = 999_999_999


def record_sha256(record_id: str) -> str:
    """How logs name a protected record: its id's SHA-256 (96 random bits: the holder, who holds the
    id on every receipt, can find each access; nobody can guess an id from the hash)."""
    return hashlib.sha256(record_id.encode()).hexdigest()


@dataclass(frozen=True)
class SearchNote:
    """One answered search: the threshold used, its source, and the gallery's own threshold's decision."""

    threshold: float
    source: str  # GALLERY, REQUEST or TARGET_FPIR
    gallery_match: bool

    def details(self) -> dict[str, str]:
        # The log's shape rules keep decimals out: the threshold goes in as millionths, sign apart.
        micro = round(self.threshold * 1_000_000)
        details = {
            "threshold_micro": str(min(abs(micro), _MAX_MICRO)),
            "threshold_source": self.source,
            "gallery_decision": "MATCH" if self.gallery_match else "NO_MATCH",
        }
        if micro < 0:
            details["threshold_sign"] = "negative"
        return details


@dataclass
class CallNotes:
    record_id: str = ""
    organisation: str = ""  # the record's enrolling organisation
    proof: str = ""  # what the holder proved: none, credential, face, holder
    search: SearchNote | None = None
    authorisation_id: str = ""  # the CCTV authorisation that admitted the current message
    authorisation_terms: tuple[str, int] = ("", 0)  # its legal basis and expiry, for a kept hit's reviewers
    # Called with True once the current answer is logged, or with False if it never will be.
    pending: list[Callable[[bool], None]] = field(default_factory=list)

    def details(self) -> dict[str, str]:
        details: dict[str, str] = {}
        if self.record_id:
            details["record_sha256"] = record_sha256(self.record_id)
            if self.organisation:
                details["organisation"] = self.organisation
            if self.proof:
                details["proof"] = self.proof
        if self.search is not None:
            details.update(self.search.details())
        return details

    def settle(self, logged: bool) -> None:
        """Run the work waiting on the current answer's log entry (each runs once, errors apart)."""
        pending, self.pending = self.pending, []
        failure: BaseException | None = None
        for work in pending:
            try:
                work(logged)
            except BaseException as error:  # the others still run: each releases something
                failure = failure or error
        if failure is not None:
            raise failure

    def take_search(self) -> dict[str, str]:
        """The current search's details, cleared for the next message of a stream."""
        search, self.search = self.search, None
        return search.details() if search is not None else {}


CALL_NOTES: ContextVar[CallNotes] = ContextVar("safepassage_call_notes")


def _notes() -> CallNotes | None:
    try:
        return CALL_NOTES.get()
    except LookupError:
        return None


def note_record(record_id: str, organisation: str, proof: str) -> None:
    """Tell the interceptor which record this call is about (no-op outside an intercepted call)."""
    notes = _notes()
    if notes is not None:
        notes.record_id, notes.organisation, notes.proof = record_id, organisation, proof


def note_search(threshold: float, source: str, gallery_match: bool) -> None:
    """Tell the interceptor the threshold a search used and the gallery's own decision (no-op outside)."""
    notes = _notes()
    if notes is not None:
        notes.search = SearchNote(threshold, source, gallery_match)


def noted_authorisation() -> str:
    """The CCTV authorisation that admitted the message being served; "" if none did."""
    notes = _notes()
    return notes.authorisation_id if notes is not None else ""


def noted_authorisation_terms() -> tuple[str, int]:
    """The legal basis and expiry (epoch seconds) of the authorisation noted_authorisation names."""
    notes = _notes()
    return notes.authorisation_terms if notes is not None else ("", 0)


def after_logged(work: Callable[[bool], None]) -> None:
    """Run `work(True)` once the current answer is in the transparency log, `work(False)` if it
    never will be; outside an intercepted call (nothing to wait for), `work(True)` at once."""
    notes = _notes()
    if notes is None:
        work(True)
    else:
        notes.pending.append(work)
