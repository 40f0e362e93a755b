"""What a border officer sees of a protected record: enough to recognise the holder, no more.

The officer needs to know that the person in front of them is who the NGO
enrolled, which papers they have (or had taken from them) and whom to call.
They do not need document numbers, dates of birth, employers or contract
terms, and every extra field shown at a border is one more that can be copied
or coerced out of an officer, so :func:`minimal_view` builds the view from an
allow-list rather than by removing fields from the record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from safepassage.enrolment.errors import InvalidRecord
from safepassage.enrolment.record import (
    DocumentKind,
    IdentityDocument,
    NgoContact,
    PossessionStatus,
    ProtectedRecord,
    json_shape,
)

__all__ = ["DocumentStatus", "MinimalView", "minimal_view"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DocumentStatus:
    """One document as the officer sees it: no number, no photo of the document."""

    kind: DocumentKind
    issuing_country: str
    expiry: date | None
    valid: bool  # not expired on the day the view was made; documents without an expiry are valid
    possession: PossessionStatus

    @classmethod
    def of(cls, document: IdentityDocument, today: date) -> DocumentStatus:
        valid = document.expiry is None or today <= document.expiry
        return cls(document.kind, document.issuing_country, document.expiry, valid, document.possession)


@dataclass(frozen=True)
class MinimalView:
    """The holder's names and face, the status of their documents, and their NGO contact."""

    given_names: str = field(repr=False)
    family_name: str = field(repr=False)
    face_photo: bytes | None = field(repr=False)
    documents: tuple[DocumentStatus, ...]
    contact: NgoContact

    def to_dict(self) -> dict[str, Any]:
        """JSON shape for a client to display: the face photo base64, dates ISO 8601."""
        shape: dict[str, Any] = json_shape(self)
        return shape


def minimal_view(record: ProtectedRecord, today: date) -> MinimalView:
    """The view of ``record`` for a border officer, with document validity judged on ``today``.

    ``today`` is the caller's (the border's local date), not this machine's: a document valid
    until the 3rd is still valid on the 3rd wherever the border is.
    """
    if not isinstance(record, ProtectedRecord):
        raise InvalidRecord("record: must be a ProtectedRecord")
    if type(today) is not date:
        raise InvalidRecord("today: must be a date")
    return MinimalView(
        given_names=record.details.given_names,
        family_name=record.details.family_name,
        face_photo=record.face_photo,
        documents=tuple(DocumentStatus.of(document, today) for document in record.documents),
        contact=record.contact,
    )
