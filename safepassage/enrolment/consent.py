"""Granular consent: what the person agreed to, scope by scope, in words they could read.

Consent given to "everything" is not informed consent, so each use of the record
is a separate :class:`Scope` the person grants or refuses: storing it at all,
verifying them at a border, checking for duplicate enrolments, and sharing it
with one named organisation (a grant to share with La Strada is not a grant to
share with anyone else). The text the person was shown, in their language, is
kept by its SHA-256 (of the NFC form, so the same words typed on another
keyboard hash the same): a receipt can then prove which wording they agreed to
without carrying the wording, or anything personal, itself.

Where consent is stored and withdrawn is the store's business; this module
only says what a decision is and answers one question, :func:`require`:
does the consent in force allow this operation? If not, it raises
:class:`ConsentRequired` naming the missing scope.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from safepassage.enrolment.errors import ConsentRequired, InvalidConsent
from safepassage.enrolment.record import IDENTIFIER, LANGUAGE_TAG

__all__ = [
    "CONSENT_TEXT_MAX_CHARS",
    "MAX_GRANTS",
    "ConsentDecision",
    "ConsentText",
    "Scope",
    "ScopeGrant",
    "decide",
    "labels",
    "require",
]

log = logging.getLogger(__name__)

CONSENT_TEXT_MAX_CHARS = 20_000
MAX_GRANTS = 64  # per decision, granted and refused each: more named organisations than any NGO works with
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_TEXT_CONTROLS_ALLOWED = "\n\r\t"


class Scope(StrEnum):
    STORE = "store"  # keep the sealed record at all
    VERIFY_AT_BORDER = "verify_at_border"  # let a border officer match the holder and see the minimal view
    DUPLICATE_CHECK = "duplicate_check"  # compare the face with other enrolments (fraud, double enrolment)
    SHARE = "share"  # disclose the record to one named organisation


@dataclass(frozen=True, order=True)
class ScopeGrant:
    """One scope, and for :attr:`Scope.SHARE` the organisation (an id like "la-strada") it covers."""

    scope: Scope
    organisation: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.scope, Scope):
            raise InvalidConsent("ScopeGrant.scope: must be a Scope")
        if not isinstance(self.organisation, str):
            raise InvalidConsent("ScopeGrant.organisation: must be a string")
        if self.scope is Scope.SHARE and not IDENTIFIER.fullmatch(self.organisation):
            raise InvalidConsent(
                f"ScopeGrant.organisation: share needs an organisation id ({IDENTIFIER.pattern})"
            )
        if self.scope is not Scope.SHARE and self.organisation:
            raise InvalidConsent(f"ScopeGrant.organisation: only {Scope.SHARE.value} names an organisation")

    @property
    def label(self) -> str:
        """``"store"``, ``"verify_at_border"``, ..., or ``"share:<organisation>"``."""
        return f"{self.scope.value}:{self.organisation}" if self.organisation else self.scope.value

    @classmethod
    def parse(cls, label: str) -> ScopeGrant:
        """The grant a :attr:`label` names; InvalidConsent (not quoting it) if it names none."""
        if not isinstance(label, str) or len(label) > 100:
            raise InvalidConsent("scope: must be a scope label of at most 100 characters")
        name, _, organisation = label.partition(":")
        scope = next((s for s in Scope if s.value == name), None)
        if scope is None or (scope is not Scope.SHARE and ":" in label):
            choices = ", ".join(s.value for s in Scope if s is not Scope.SHARE)
            raise InvalidConsent(f"scope: must be one of {choices}, or share:<organisation>")
        return cls(scope, organisation)


@dataclass(frozen=True)
class ConsentText:
    """The consent wording shown to the person, and the language it is in (a BCP 47 tag)."""

    language: str
    text: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.language, str) or not LANGUAGE_TAG.fullmatch(self.language):
            raise InvalidConsent(f"ConsentText.language: must be a language tag ({LANGUAGE_TAG.pattern})")
        if not isinstance(self.text, str) or not self.text.strip():
            raise InvalidConsent("ConsentText.text: must be a non-empty string")
        if len(self.text) > CONSENT_TEXT_MAX_CHARS:
            raise InvalidConsent(f"ConsentText.text: must be at most {CONSENT_TEXT_MAX_CHARS} characters")
        for char in self.text:
            if unicodedata.category(char) in ("Cc", "Cs") and char not in _TEXT_CONTROLS_ALLOWED:
                raise InvalidConsent(
                    "ConsentText.text: must not contain control characters or lone surrogates"
                )

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the NFC-normalised text in UTF-8: the same words give the same hash."""
        return hashlib.sha256(unicodedata.normalize("NFC", self.text).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ConsentDecision:
    """What the person granted and refused, having read the text whose hash is kept.

    Refusals are kept as well as grants: "asked and said no" is a different fact from "never asked",
    and a caseworker must not ask again as if it were the first time.
    """

    language: str
    text_sha256: str
    granted: frozenset[ScopeGrant]
    refused: frozenset[ScopeGrant]

    def __post_init__(self) -> None:
        if not isinstance(self.language, str) or not LANGUAGE_TAG.fullmatch(self.language):
            raise InvalidConsent(f"ConsentDecision.language: must be a language tag ({LANGUAGE_TAG.pattern})")
        if not isinstance(self.text_sha256, str) or not _SHA256_HEX.fullmatch(self.text_sha256):
            raise InvalidConsent("ConsentDecision.text_sha256: must be 64 lower-case hex digits")
        for name in ("granted", "refused"):
            value = getattr(self, name)
            if not isinstance(value, frozenset) or not all(isinstance(g, ScopeGrant) for g in value):
                raise InvalidConsent(f"ConsentDecision.{name}: must be a frozenset of ScopeGrant")
            if len(value) > MAX_GRANTS:
                raise InvalidConsent(f"ConsentDecision.{name}: must hold at most {MAX_GRANTS} scopes")
        overlap = self.granted & self.refused
        if overlap:
            both = ", ".join(labels(overlap))
            raise InvalidConsent(f"ConsentDecision.refused: scopes both granted and refused: {both}")

    def to_dict(self) -> dict[str, str | tuple[str, ...]]:
        """Labels sorted, so the same decision always gives the same dict; also a receipt's body."""
        return {
            "language": self.language,
            "text_sha256": self.text_sha256,
            "granted": labels(self.granted),
            "refused": labels(self.refused),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConsentDecision:
        """The inverse of :meth:`to_dict` (lists or tuples of labels); InvalidConsent if malformed."""
        keys = ("language", "text_sha256", "granted", "refused")
        if not isinstance(data, Mapping) or set(data) != set(keys):
            raise InvalidConsent("ConsentDecision: must be an object with exactly " + ", ".join(keys))
        grants: dict[str, frozenset[ScopeGrant]] = {}
        for name in ("granted", "refused"):
            value = data[name]
            if not isinstance(value, list | tuple) or len(value) > MAX_GRANTS:
                raise InvalidConsent(f"ConsentDecision.{name}: must be a list of at most {MAX_GRANTS} labels")
            grants[name] = frozenset(ScopeGrant.parse(label) for label in value)
        return cls(data["language"], data["text_sha256"], grants["granted"], grants["refused"])


def decide(
    text: ConsentText, granted: Iterable[ScopeGrant], refused: Iterable[ScopeGrant]
) -> ConsentDecision:
    """Record the person's answers to ``text``; InvalidConsent if a scope is both granted and refused."""
    if not isinstance(text, ConsentText):
        raise InvalidConsent("text: must be a ConsentText")
    if isinstance(granted, str | ScopeGrant) or isinstance(refused, str | ScopeGrant):
        raise InvalidConsent("granted, refused: must be collections of ScopeGrant")
    decision = ConsentDecision(text.language, text.sha256, frozenset(granted), frozenset(refused))
    log.info("consent decided: %d scopes granted, %d refused", len(decision.granted), len(decision.refused))
    return decision


def labels(grants: Iterable[ScopeGrant]) -> tuple[str, ...]:
    """The grants' labels, sorted: a stable spelling for receipts and storage."""
    return tuple(sorted(grant.label for grant in grants))


def require(scope_grants_in_force: Iterable[ScopeGrant], needed: ScopeGrant) -> None:
    """Return if ``needed`` is among the grants in force; else ConsentRequired naming the scope.

    Sharing is matched organisation by organisation: consent to share with one organisation
    does not cover another.
    """
    if not isinstance(needed, ScopeGrant):
        raise InvalidConsent("needed: must be a ScopeGrant")
    if needed not in frozenset(scope_grants_in_force):
        raise ConsentRequired(f"consent scope {needed.label} is not granted")
