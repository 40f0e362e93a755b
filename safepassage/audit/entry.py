"""One event of the service as the transparency log records it, and its canonical bytes.

The log is public to auditors and append-only forever, so nothing personal
may enter it: not a face, a vector, a name, a reference id or a free-text
message. The shape of every field is therefore restricted to what an id, a
hash, a count or an enum can look like, and anything else is refused
(:class:`InvalidEvent`) *before* it is written. The restriction cannot tell
a one-word lowercase name or a date from an enum token, or 32 bytes of a
vector from a digest; what it does guarantee is that no spaces, no
capitalised words, no decimals and no long values get in.
Values that identify a person's record (reference ids) go in as digests
under a ``*_sha256`` key; :func:`pseudonym` makes a keyed one that an
auditor without the key cannot reverse by guessing ids.

Leaf data (what the Merkle leaf hashes) is the event as compact JSON with
sorted keys, UTF-8, one version field ``v``; :meth:`LogEvent.from_leaf`
accepts exactly those bytes and nothing that merely parses to the same event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from safepassage.audit.errors import InvalidEvent
from safepassage.audit.merkle import leaf_hash

__all__ = ["EVENT_VERSION", "MAX_DETAILS", "LogEntry", "LogEvent", "pseudonym", "sha256_hex"]

EVENT_VERSION = 1
MAX_DETAILS = 16
_MAX_TIMESTAMP = 2**63 - 1

# Caller.label: "<role>:<certificate CN>" (CNs as the PKI allows them), or a
# bare word for the service itself ("system").
_ACTOR = re.compile(r"[a-z][a-z0-9_]{0,31}(?::[a-z0-9][a-z0-9._-]{0,62})?")
# "MatchingService/Identify", "/safepassage.v1.MatchingService/Identify", "certificate.revoke".
_OPERATION = re.compile(r"/?[A-Za-z][A-Za-z0-9_]*(?:[./][A-Za-z][A-Za-z0-9_]*){0,7}")
_GALLERY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
# gRPC status names and the like.
_OUTCOME = re.compile(r"[A-Z][A-Z0-9_]{0,31}")
_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
# Keys whose values are SHA-256 digests, and the only keys that may hold one.
_DIGEST_SUFFIXES = ("_sha256", "fingerprint")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
# Certificate validity and the like, as datetime.isoformat() writes it.
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_SMALL_INT = re.compile(r"0|[1-9][0-9]{0,8}")
# One case throughout: "watchlist", "PERMISSION_DENIED", "v1.2"; a capitalised
# word ("Maria", "MariaLopez") is neither.
_TOKEN = re.compile(r"[a-z0-9_.:-]{0,64}|[A-Z0-9_.:-]{0,64}")
# Keys that name personal data: such a value may only enter as a digest.
_PERSONAL_KEY_WORDS = (
    "name",
    "birth",
    "dob",
    "passport",
    "address",
    "email",
    "phone",
    "nationality",
    "reference",
    "vector",
    "embedding",
)


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``, the form digests take in ``details``."""
    return hashlib.sha256(data).hexdigest()


def pseudonym(key: bytes, value: str) -> str:
    """Hex HMAC-SHA256 of ``value`` under a deployment secret.

    A plain SHA-256 of a reference id can be reversed by hashing candidate
    ids; a keyed one can be recomputed only by whoever holds ``key`` (the
    operator, to answer "is this record's erasure in the log?").
    """
    if len(key) < 16:
        raise ValueError("a pseudonym key must be at least 16 bytes")
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def _check(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        # Never echo the value: it may be exactly what must not be logged.
        raise InvalidEvent(f"{what} has a shape the transparency log does not accept")
    return value


def _is_floatish(value: str) -> bool:
    """A decimal, exponent, nan or inf: how a vector's components would be written.

    Plain hex ("1E5", a certificate serial) is not, though float() reads it.
    """
    if _HEX.fullmatch(value):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _check_detail(key: object, value: object) -> tuple[str, str]:
    key = _check(_KEY, key, "a details key")
    what = f"details[{key!r}]"
    if not isinstance(value, str):
        raise InvalidEvent(f"{what} must be a string")
    if key.endswith(_DIGEST_SUFFIXES):
        if _HEX_DIGEST.fullmatch(value) is None:
            raise InvalidEvent(f"{what} must be a lowercase hex SHA-256 digest")
        return key, value
    if any(word in key for word in _PERSONAL_KEY_WORDS):
        raise InvalidEvent(f"details key {key!r} names personal data; log a digest as {key}_sha256")
    if _SMALL_INT.fullmatch(value) or _ISO_TIME.fullmatch(value):
        return key, value
    if (
        _TOKEN.fullmatch(value) is None
        or _is_floatish(value)
        or _HEX_DIGEST.fullmatch(value)
        # Digits beyond a count: a phone, document or case number, or a date.
        or value.isdigit()
    ):
        raise InvalidEvent(
            f"{what} must be a digest (under a *_sha256 key), a count, a time or a one-case token"
        )
    return key, value


@dataclass(frozen=True)
class LogEvent:
    """An operation of the service: who, what, on which gallery, with what outcome, when.

    ``details`` maps short keys to digests (keys ending ``_sha256`` or
    ``fingerprint``), counts (up to 9 digits), ISO 8601 times or one-case
    tokens of up to 64 characters; it is copied into a read-only mapping
    sorted by key.
    """

    timestamp: int  # milliseconds since the Unix epoch
    actor: str  # Caller.label, e.g. "officer:officer-0042"; an account or device id
    operation: str
    gallery_id: str = ""
    outcome: str = "OK"
    details: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (
            isinstance(self.timestamp, bool)
            or not isinstance(self.timestamp, int)
            or not 0 <= self.timestamp <= _MAX_TIMESTAMP
        ):
            raise InvalidEvent("timestamp must be a non-negative integer of milliseconds")
        _check(_ACTOR, self.actor, "actor")
        if len(_check(_OPERATION, self.operation, "operation")) > 128:
            raise InvalidEvent("operation is longer than 128 characters")
        if self.gallery_id != "":
            _check(_GALLERY, self.gallery_id, "gallery_id")
        _check(_OUTCOME, self.outcome, "outcome")
        if not isinstance(self.details, Mapping):
            raise InvalidEvent("details must be a mapping of strings")
        if len(self.details) > MAX_DETAILS:
            raise InvalidEvent(f"details has {len(self.details)} entries; at most {MAX_DETAILS}")
        checked = dict(sorted(_check_detail(k, v) for k, v in self.details.items()))
        object.__setattr__(self, "details", MappingProxyType(checked))

    def __hash__(self) -> int:
        # The generated hash would hash the details mapping, which is unhashable.
        return hash(self.to_leaf())

    @classmethod
    def now(
        cls,
        actor: str,
        operation: str,
        gallery_id: str = "",
        outcome: str = "OK",
        details: Mapping[str, str] | None = None,
    ) -> LogEvent:
        """An event stamped with the current time."""
        return cls(time.time_ns() // 1_000_000, actor, operation, gallery_id, outcome, dict(details or {}))

    def to_json(self) -> dict[str, Any]:
        return {
            "v": EVENT_VERSION,
            "timestamp": self.timestamp,
            "actor": self.actor,
            "operation": self.operation,
            "gallery_id": self.gallery_id,
            "outcome": self.outcome,
            "details": dict(self.details),
        }

    def to_leaf(self) -> bytes:
        """The canonical leaf data: sorted-key compact JSON, UTF-8."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8"
        )

    @classmethod
    def from_leaf(cls, data: bytes) -> LogEvent:
        """Parse leaf data; raises InvalidEvent unless it is exactly some event's canonical bytes."""
        try:
            parsed = json.loads(
                data.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constants
            )
        except (UnicodeDecodeError, ValueError) as error:
            raise InvalidEvent(f"leaf data is not JSON: {type(error).__name__}") from None
        if not isinstance(parsed, dict):
            raise InvalidEvent("leaf data is not a JSON object")
        expected = {"v", "timestamp", "actor", "operation", "gallery_id", "outcome", "details"}
        if set(parsed) != expected:
            raise InvalidEvent(f"leaf data has fields {sorted(parsed)}, expected {sorted(expected)}")
        if parsed["v"] != EVENT_VERSION or isinstance(parsed["v"], bool):
            raise InvalidEvent(f"unknown event version {parsed['v']!r}")
        details = parsed["details"]
        if not isinstance(details, dict):
            raise InvalidEvent("details must be a JSON object")
        event = cls(
            parsed["timestamp"],
            parsed["actor"],
            parsed["operation"],
            parsed["gallery_id"],
            parsed["outcome"],
            details,
        )
        if event.to_leaf() != data:
            raise InvalidEvent("leaf data is not in canonical form")
        return event


@dataclass(frozen=True)
class LogEntry:
    """One stored leaf: its index in the log and its leaf data (an event's canonical bytes)."""

    index: int
    data: bytes

    @property
    def leaf_hash(self) -> bytes:
        return leaf_hash(self.data)

    def event(self) -> LogEvent:
        """The event the leaf records; InvalidEvent if the data is not one."""
        return LogEvent.from_leaf(self.data)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
