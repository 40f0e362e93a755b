"""The ABIS API's requests and answers: strict reading with the spec's failure reasons, and writing.

Every request names ``id`` (the operation), ``version`` ("1.1"), ``requestId`` and
``requesttime`` (ISO 8601, UTC); insert, identify and delete name a ``referenceId``, insert a
``referenceURL`` (the datashare), identify optionally a ``gallery`` of reference ids and ``flags``
(``maxResults``, ``targetFPIR``). The checks run in a fixed order so one request always earns the
same reason: not JSON or not an object (4), the operation (14), requestId (6), version (13),
requesttime (9 missing, 15 malformed), then the operation's own fields (5, 8, 4).

Older MOSIP deployments send numbers where newer ones send strings (``"version": 1.1``,
``"maxResults": 10``): both are read. Answers always carry strings, as the spec's examples do.
"""

from __future__ import annotations

import datetime
import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from safepassage.abis.errors import AbisRefusal, FailureReason
from safepassage.matcher.vectors import REFERENCE_ID

__all__ = [
    "Operation",
    "Request",
    "answer",
    "encode_answer",
    "failure",
    "read_request",
    "request_id_of",
]

API_VERSION = "1.1"
MAX_MESSAGE_BYTES = 1 << 20
MAX_GALLERY = 10_000


class Operation(enum.StrEnum):
    INSERT = "mosip.abis.insert"
    IDENTIFY = "mosip.abis.identify"
    DELETE = "mosip.abis.delete"
    PING = "mosip.abis.ping"
    PENDING_JOBS = "mosip.abis.pendingJobs"
    REFERENCE_COUNT = "mosip.abis.referenceCount"


_NEEDS_REFERENCE = frozenset({Operation.INSERT, Operation.IDENTIFY, Operation.DELETE})


@dataclass(frozen=True)
class Request:
    """One request as read; fields an operation does not take are empty."""

    operation: Operation
    request_id: str
    request_time: datetime.datetime
    reference_id: str = ""
    reference_url: str = ""
    gallery: tuple[str, ...] | None = None  # identify: None = the whole database
    max_results: int | None = None
    target_fpir: float | None = None  # the flag as sent: round(-10 log10 FPIR)

    @property
    def fpir(self) -> float | None:
        """The false positive identification rate the targetFPIR flag asks for: 10^(-flag/10)."""
        return None if self.target_fpir is None else 10.0 ** (-self.target_fpir / 10.0)


def _refuse(reason: FailureReason, message: str) -> AbisRefusal:
    return AbisRefusal(reason, message)


def _text(value: object) -> str | None:
    """A string field as text (numbers accepted, as older deployments send them); None if absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return format(value, "g") if isinstance(value, float) else str(value)
    return value if isinstance(value, str) else None


def _parse(body: bytes) -> dict[str, object]:
    if len(body) > MAX_MESSAGE_BYTES:
        raise _refuse(FailureReason.INVALID_REQUEST, f"message of {len(body)} bytes is over the limit")
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _refuse(FailureReason.INVALID_REQUEST, "the message is not JSON") from None
    if not isinstance(parsed, dict):
        raise _refuse(FailureReason.INVALID_REQUEST, "the message is not a JSON object")
    return parsed


def request_id_of(body: bytes) -> str:
    """The requestId of a message, as far as one can be read (for answering refusals); else ""."""
    try:
        parsed = _parse(body)
    except AbisRefusal:
        return ""
    return _text(parsed.get("requestId")) or ""


def _reference_id(value: object, what: str) -> str:
    text = _text(value)
    if not text:
        raise _refuse(FailureReason.MISSING_REFERENCE_ID, f"{what} is missing")
    if not REFERENCE_ID.fullmatch(text):
        raise _refuse(FailureReason.INVALID_REQUEST, f"{what} is not a valid reference id")
    return text


def _request_time(value: object) -> datetime.datetime:
    text = _text(value)
    if not text:
        raise _refuse(FailureReason.MISSING_REQUEST_TIME, "requesttime is missing")
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise _refuse(FailureReason.INVALID_REQUEST_TIME, "requesttime is not an ISO 8601 time") from None
    if "T" not in text or moment.tzinfo is None:
        raise _refuse(FailureReason.INVALID_REQUEST_TIME, "requesttime must be a UTC time (…Z)")
    return moment


def _positive_number(value: object, what: str) -> float:
    text = _text(value)
    try:
        number = float(text) if text else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise _refuse(FailureReason.INVALID_REQUEST, f"flags.{what} must be a positive number")
    return number


def _gallery(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    ids = value.get("referenceIds") if isinstance(value, dict) else None
    if not isinstance(ids, list) or not ids or len(ids) > MAX_GALLERY:
        raise _refuse(FailureReason.INVALID_REQUEST, "gallery.referenceIds must be a non-empty list")
    found = []
    for item in ids:
        if not isinstance(item, dict):
            raise _refuse(FailureReason.INVALID_REQUEST, "gallery.referenceIds holds a non-object")
        found.append(_reference_id(item.get("referenceId"), "a gallery referenceId"))
    return tuple(dict.fromkeys(found))


def read_request(body: bytes) -> Request:
    """The request in ``body``; raises AbisRefusal with the spec's reason for the first fault found."""
    raw = _parse(body)
    name = _text(raw.get("id"))
    try:
        operation = Operation(name or "")
    except ValueError:
        raise _refuse(FailureReason.INVALID_ID, "id names no ABIS operation") from None
    request_id = _text(raw.get("requestId"))
    if not request_id:
        raise _refuse(FailureReason.MISSING_REQUEST_ID, "requestId is missing")
    if len(request_id) > 128:
        raise _refuse(FailureReason.INVALID_REQUEST, "requestId is longer than 128 characters")
    if _text(raw.get("version")) != API_VERSION:
        raise _refuse(FailureReason.INVALID_VERSION, f"version must be {API_VERSION}")
    request_time = _request_time(raw.get("requesttime"))
    if operation not in _NEEDS_REFERENCE:
        return Request(operation, request_id, request_time)
    reference_id = _reference_id(raw.get("referenceId"), "referenceId")
    reference_url = _text(raw.get("referenceURL")) or ""
    if operation is Operation.INSERT and not reference_url:
        raise _refuse(FailureReason.MISSING_REFERENCE_URL, "referenceURL is missing")
    if operation is not Operation.IDENTIFY:
        return Request(operation, request_id, request_time, reference_id, reference_url)
    flags = raw.get("flags")
    if flags is not None and not isinstance(flags, dict):
        raise _refuse(FailureReason.INVALID_REQUEST, "flags must be an object")
    flags = flags or {}
    max_results = None
    if flags.get("maxResults") not in (None, ""):
        number = _positive_number(flags["maxResults"], "maxResults")
        if number != int(number):
            raise _refuse(FailureReason.INVALID_REQUEST, "flags.maxResults must be a whole number")
        max_results = int(number)
    target = None
    if flags.get("targetFPIR") not in (None, ""):
        target = _positive_number(flags["targetFPIR"], "targetFPIR")
    return Request(
        operation,
        request_id,
        request_time,
        reference_id,
        reference_url,
        _gallery(raw.get("gallery")),
        max_results,
        target,
    )


def _now() -> str:
    moment = datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def answer(operation: str, request_id: str, fields: Mapping[str, object] | None = None) -> dict[str, object]:
    """A success answer (returnValue "1") with the operation's own ``fields``."""
    return {
        "id": operation,
        "requestId": request_id,
        "responsetime": _now(),
        "returnValue": "1",
        **(fields or {}),
    }


def failure(operation: str, request_id: str, reason: FailureReason) -> dict[str, object]:
    """A failure answer: returnValue "2" and the reason's code, as a string."""
    return {
        "id": operation,
        "requestId": request_id,
        "responsetime": _now(),
        "returnValue": "2",
        "failureReason": str(int(reason)),
    }


def encode_answer(reply: Mapping[str, object]) -> bytes:
    return json.dumps(reply, separators=(",", ":")).encode("utf-8")
