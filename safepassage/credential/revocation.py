"""The issuer's list of retired credentials, signed, so an offline reader can refuse them.

A credential is retired when it is re-issued (the previous one) or when its
record is erased (all of them); a copy of a retired QR code still verifies
by signature and dates, so a reader must also hold its issuer's current
revocation list. The server signs the list with the credential issuer key
(:func:`sign_revocations`); readers sync it (``safepassage credential
revocations``) and check it offline (:func:`verify_revocations`, then
:meth:`RevocationList.check` for each credential). A list says when the next
one is due; a reader whose list is past that (plus a small grace) must refuse
to rely on it (RevocationListStale) rather than pass a credential it cannot
check, so an attacker who blocks the sync gains nothing but a visible error.

File layout, version 1 (ASCII)::

    body + b"\\n" + base64url(signature) + b"\\n"

``body`` is canonical JSON (keys sorted, no spaces, ASCII only, one line)::

    format         "safepassage-revocations/1", the version marker
    issuer_id      the issuer's id
    issuer_key_id  16 hex digits: the key that signed
    issued_at      unix seconds
    next_update    unix seconds: readers must have a newer list by then
    revoked        [[credential id (32 hex digits), its expiry (unix seconds)], ...] sorted by id

The signature is Ed25519 by the issuer key over ``SIGNING_CONTEXT + body``;
the context keeps list signatures apart from the credentials the same key
signs. base64url is RFC 4648 section 5 without padding. Entries of
credentials that no reader would accept any more (expired beyond the clock
skew verify allows) are left out, so the list stays as long as the number of
retired credentials still within validity.

Checks run in the order size -> layout -> issuer trusted -> signature ->
dates, and each failure raises its own error; nothing returns False.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from safepassage.core import signing
from safepassage.credential.credential import DEFAULT_SKEW, CredentialInfo
from safepassage.credential.errors import (
    CredentialRevoked,
    MalformedRevocationList,
    RevocationListNotForIssuer,
    RevocationListStale,
    RevocationListTampered,
    UnknownIssuer,
)
from safepassage.credential.keys import IssuerKey, TrustedIssuers

__all__ = [
    "DEFAULT_GRACE",
    "FORMAT",
    "MAX_ENTRIES",
    "MAX_LIST_BYTES",
    "SIGNING_CONTEXT",
    "RevocationList",
    "sign_revocations",
    "verify_revocations",
]

log = logging.getLogger(__name__)

FORMAT = "safepassage-revocations/1"
SIGNING_CONTEXT = b"SafePassage credential revocation list v1\x00"
MAX_ENTRIES = 200_000
MAX_LIST_BYTES = 12 * 1024 * 1024  # MAX_ENTRIES entries fit; under the 16 MiB gRPC message limit
DEFAULT_GRACE = DEFAULT_SKEW
_FIELDS = frozenset({"format", "issuer_id", "issuer_key_id", "issued_at", "next_update", "revoked"})
_CREDENTIAL_ID = re.compile(r"[0-9a-f]{32}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_B64URL = re.compile(rb"[A-Za-z0-9_-]{86}")  # 64 bytes, unpadded
_MAX_TIME = 2**40


@dataclass(frozen=True)
class RevocationList:
    """A verified revocation list: which credentials of one issuer are retired, and until when it holds."""

    issuer_id: str
    issuer_key_id: str
    issued_at: datetime
    next_update: datetime
    revoked: frozenset[str]  # credential ids, 32 lower-case hex digits

    def is_revoked(self, credential_id: str) -> bool:
        return credential_id.lower() in self.revoked

    def require_current(self, now: datetime | None = None, grace: timedelta = DEFAULT_GRACE) -> None:
        """RevocationListStale when the list is past its next update (plus ``grace``) or from the future."""
        now = _aware(now)
        if now > self.next_update + grace:
            raise RevocationListStale(
                f"the revocation list of issuer {self.issuer_id} was due for renewal at"
                f" {self.next_update.isoformat()}; sync it before checking credentials"
            )
        if self.issued_at > now + grace:
            raise RevocationListStale(
                f"the revocation list of issuer {self.issuer_id} is issued at"
                f" {self.issued_at.isoformat()}, after this device's clock"
            )

    def check(self, credential: CredentialInfo) -> None:
        """CredentialRevoked if the list names ``credential``; RevocationListNotForIssuer if it cannot say."""
        if credential.issuer_id != self.issuer_id:
            raise RevocationListNotForIssuer(
                f"credential {credential.credential_id} is issued by {credential.issuer_id}; the revocation"
                f" list here is {self.issuer_id}'s, so it cannot say whether the credential is revoked"
            )
        if self.is_revoked(credential.credential_id):
            raise CredentialRevoked(
                f"credential {credential.credential_id} is revoked by issuer {self.issuer_id}"
                " (re-issued or erased)"
            )

    def __len__(self) -> int:
        return len(self.revoked)


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise MalformedRevocationList("the time must carry a time zone")
    return now


def _canonical(body: dict[str, object]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _seconds(value: datetime) -> int:
    return math.floor(_aware(value).timestamp())


def sign_revocations(
    issuer: IssuerKey,
    revoked: Sequence[tuple[str, datetime]],
    now: datetime,
    next_update: timedelta,
) -> bytes:
    """Sign the list of ``revoked`` (credential id in hex, expiry) as of ``now``, due ``next_update`` later.

    Entries that no reader would accept any more (expired beyond the clock skew) are left out.
    """
    issued = _seconds(now)
    if next_update <= timedelta(0):
        raise MalformedRevocationList("cannot sign a revocation list: the next update must be in the future")
    due = issued + math.ceil(next_update.total_seconds())
    if not 0 <= issued < due < _MAX_TIME:
        raise MalformedRevocationList("cannot sign a revocation list: its dates are out of range")
    cutoff = issued - math.ceil(DEFAULT_SKEW.total_seconds())
    entries: dict[str, int] = {}
    for credential_id, expires_at in revoked:
        if not isinstance(credential_id, str) or not _CREDENTIAL_ID.fullmatch(credential_id.lower()):
            raise MalformedRevocationList(
                "cannot sign a revocation list: a credential id is not 32 hex digits"
            )
        expiry = _seconds(expires_at)
        if expiry >= cutoff:  # verify still accepts a credential until its expiry plus the clock skew
            key = credential_id.lower()
            entries[key] = max(expiry, entries.get(key, expiry))
    if len(entries) > MAX_ENTRIES:
        raise MalformedRevocationList(
            f"cannot sign a revocation list of {len(entries)} credentials; at most {MAX_ENTRIES}"
        )
    body = _canonical(
        {
            "format": FORMAT,
            "issuer_id": issuer.issuer_id,
            "issuer_key_id": issuer.key_id,
            "issued_at": issued,
            "next_update": due,
            "revoked": [[credential_id, entries[credential_id]] for credential_id in sorted(entries)],
        }
    )
    signature = base64.urlsafe_b64encode(issuer.sign(SIGNING_CONTEXT + body)).rstrip(b"=")
    log.info("signed a revocation list of %d credentials, due again in %s", len(entries), next_update)
    return body + b"\n" + signature + b"\n"


def _time(value: object, what: str) -> datetime:
    if type(value) is not int or not 0 <= value < _MAX_TIME:
        raise MalformedRevocationList(f"the revocation list's {what} is not a unix time in seconds")
    return datetime.fromtimestamp(value, UTC)


def _parse(data: bytes) -> tuple[bytes, bytes, dict[str, object], frozenset[str]]:
    """Body, signature, fields and revoked ids; MalformedRevocationList for anything else."""
    if not isinstance(data, bytes):
        raise MalformedRevocationList("a revocation list must be bytes")
    if len(data) > MAX_LIST_BYTES:
        raise MalformedRevocationList(f"the revocation list is larger than {MAX_LIST_BYTES} bytes")
    lines = data.split(b"\n")
    if len(lines) != 3 or lines[2] or not _B64URL.fullmatch(lines[1]):
        raise MalformedRevocationList("not a revocation list: expected a JSON line and a signature line")
    body, encoded = lines[0], lines[1]
    try:
        signature = base64.urlsafe_b64decode(encoded + b"==")
        fields = json.loads(body.decode("ascii"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise MalformedRevocationList(
            "not a revocation list: the JSON or the signature is unreadable"
        ) from None
    if base64.urlsafe_b64encode(signature).rstrip(b"=") != encoded:
        raise MalformedRevocationList("not a revocation list: the signature is not canonical base64url")
    if not isinstance(fields, dict) or set(fields) != _FIELDS or _canonical(fields) != body:
        raise MalformedRevocationList("not a revocation list: the fields of version 1 are not there")
    if fields["format"] != FORMAT:
        raise MalformedRevocationList("the revocation list is of a format this device does not read")
    issuer_key_id = fields["issuer_key_id"]
    if not isinstance(issuer_key_id, str) or not _KEY_ID.fullmatch(issuer_key_id):
        raise MalformedRevocationList("the revocation list's issuer key id is not 16 hex digits")
    entries = fields["revoked"]
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise MalformedRevocationList(f"the revocation list must hold at most {MAX_ENTRIES} entries")
    ids: list[str] = []
    for entry in entries:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not isinstance(entry[0], str)
            or not _CREDENTIAL_ID.fullmatch(entry[0])
        ):
            raise MalformedRevocationList("a revocation list entry is not [credential id, expiry]")
        _time(entry[1], "entry expiry")
        ids.append(entry[0])
    if ids != sorted(set(ids)):
        raise MalformedRevocationList("the revocation list's entries are not sorted and distinct")
    return body, signature, fields, frozenset(ids)


def verify_revocations(
    data: bytes, trusted: TrustedIssuers, now: datetime, grace: timedelta = DEFAULT_GRACE
) -> RevocationList:
    """Check a revocation list's signature by a trusted issuer and that it is current as of ``now``."""
    now = _aware(now)
    body, signature, fields, revoked = _parse(data)
    key_id = str(fields["issuer_key_id"])
    if key_id not in trusted:
        raise UnknownIssuer(
            f"the revocation list is signed by issuer key {key_id}, which is not trusted here"
        )
    issuer = trusted.get(key_id)
    try:
        signing.verify(issuer.key, signature, SIGNING_CONTEXT + body)
    except signing.SignatureInvalid:
        raise RevocationListTampered(
            f"the revocation list's signature by issuer {issuer.issuer_id} (key {key_id}) fails"
        ) from None
    if fields["issuer_id"] != issuer.issuer_id:
        raise UnknownIssuer(f"the revocation list names another issuer than the one trusted for key {key_id}")
    issued_at, next_update = (
        _time(fields["issued_at"], "issue time"),
        _time(fields["next_update"], "due time"),
    )
    if next_update <= issued_at:
        raise MalformedRevocationList("the revocation list is due before it is issued")
    listed = RevocationList(
        issuer_id=issuer.issuer_id,
        issuer_key_id=key_id,
        issued_at=issued_at,
        next_update=next_update,
        revoked=revoked,
    )
    listed.require_current(now, grace)
    log.info("verified the revocation list of issuer %s: %d credentials", issuer.issuer_id, len(revoked))
    return listed
