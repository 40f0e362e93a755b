"""What the transparency log says of CCTV authorisations and fishing alerts, for their overseers.

The server keeps no register of CCTV authorisations: an authority signs them off the server
(`safepassage authorise`, with the key of an admin's certificate) and cameras present them. The
server learns of one when a camera first presents it, and the log then holds an
``authorisation.use`` entry (its id, gallery, signer, number of cameras, the legal basis's SHA-256,
its expiry; once per authorisation per server run), and every search a camera streams under it
(IdentifyStream entries naming the ``authorisation``). Where the deployment signs on the server
(cctv_authority.py), a ``SignAuthorisation`` entry under the administrator who asked lists the
authorisation before any camera presents it. Fishing alerts are ``alert.fishing`` entries
(fishing.py, audit.py). This module reads those back; it changes nothing.

The scan covers the newest `max_entries` entries of the log (older ones are the log's own export's
business: `safepassage audit`); the answer says whether it reached the log's start.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import Counter
from dataclasses import dataclass

from safepassage.audit import LogEvent, TransparencyLog

__all__ = ["AuthorisationSeen", "FishingAlertSeen", "Oversight", "read_oversight"]

USE = "authorisation.use"
ALERT = "alert.fishing"
SEARCH = "/IdentifyStream"
# An authorisation signed on the server for an administrator (cctv_authority.py), before any camera used it.
SIGNED = "AdministrationService/SignAuthorisation"
_CHUNK = 5_000
DEFAULT_MAX_ENTRIES = 100_000
LATEST_USES = 100


@dataclass(frozen=True)
class Use:
    at: datetime.datetime
    camera: str  # the camera's log label, cctv_edge:ID
    outcome: str  # MATCH, NO_MATCH, or an error's status name


@dataclass(frozen=True)
class AuthorisationSeen:
    authorisation_id: str
    gallery_id: str
    issued_by: str
    signer_serial: str
    cameras: int
    legal_basis_sha256: str
    expires: datetime.datetime | None
    first_used: datetime.datetime | None  # None: signed on this server, no camera has presented it yet
    uses: int = 0
    matches: int = 0
    latest_uses: tuple[Use, ...] = ()  # newest first, at most LATEST_USES
    # Signed on this server: the administrator who asked (their log label) and when.
    signed_for: str = ""
    signed_at: datetime.datetime | None = None

    @property
    def since(self) -> datetime.datetime:
        moment = self.first_used or self.signed_at
        assert moment is not None  # every grant is seen used, signed, or both
        return moment

    def active(self, now: datetime.datetime) -> bool:
        return self.expires is not None and now < self.expires


@dataclass(frozen=True)
class FishingAlertSeen:
    at: datetime.datetime
    actor: str
    gallery_id: str
    rules: tuple[str, ...]
    searches: int
    no_matches: int
    galleries: int


@dataclass(frozen=True)
class Oversight:
    authorisations: list[AuthorisationSeen]  # newest first use first
    alerts: list[FishingAlertSeen]  # newest first
    complete: bool  # the scan reached the log's first entry


def read_oversight(log: TransparencyLog, max_entries: int = DEFAULT_MAX_ENTRIES) -> Oversight:
    end = log.size()
    start = max(0, end - max_entries)
    grants: dict[str, AuthorisationSeen] = {}
    uses: list[tuple[str, Use]] = []
    alerts: list[FishingAlertSeen] = []
    signed: dict[str, LogEvent] = {}
    for chunk in range(start, end, _CHUNK):
        for entry in log.entries(chunk, min(chunk + _CHUNK, end)):
            event = entry.event()
            if event.operation == USE:
                _note_grant(grants, event)
            elif event.operation.endswith(SEARCH) and "authorisation" in event.details:
                uses.append((event.details["authorisation"], Use(_at(event), event.actor, event.outcome)))
            elif event.operation == ALERT:
                alerts.append(_alert(event))
            elif event.operation == SIGNED and event.outcome == "OK":
                signed.setdefault(event.details.get("authorisation", ""), event)
    counts: Counter[str] = Counter()
    matches: Counter[str] = Counter()
    latest: dict[str, list[Use]] = {}
    for authorisation_id, use in reversed(uses):
        if authorisation_id not in grants:  # its first use lies before the scan
            continue
        counts[authorisation_id] += 1
        matches[authorisation_id] += use.outcome == "MATCH"
        kept = latest.setdefault(authorisation_id, [])
        if len(kept) < LATEST_USES:
            kept.append(use)
    for authorisation_id, event in signed.items():
        if authorisation_id and authorisation_id not in grants:
            grants[authorisation_id] = _signed_grant(event)
    seen = [
        dataclasses.replace(
            grant,
            uses=counts[grant.authorisation_id],
            matches=matches[grant.authorisation_id],
            latest_uses=tuple(latest.get(grant.authorisation_id, ())),
            signed_for=signed[grant.authorisation_id].actor if grant.authorisation_id in signed else "",
            signed_at=_at(signed[grant.authorisation_id]) if grant.authorisation_id in signed else None,
        )
        for grant in grants.values()
    ]
    return Oversight(
        sorted(seen, key=lambda g: g.since, reverse=True),
        list(reversed(alerts)),
        complete=start == 0,
    )


def _at(event: LogEvent) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(event.timestamp / 1000, datetime.UTC)


def _note_grant(grants: dict[str, AuthorisationSeen], event: LogEvent) -> None:
    details = event.details
    authorisation_id = details.get("authorisation", "")
    if not authorisation_id or authorisation_id in grants:
        return  # seen again after a restart: the first use stands
    expires = details.get("expires", "")
    grants[authorisation_id] = AuthorisationSeen(
        authorisation_id=authorisation_id,
        gallery_id=event.gallery_id,
        issued_by=details.get("issued_by", ""),
        signer_serial=details.get("signer_serial", ""),
        cameras=int(details.get("cameras", "0") or 0),
        legal_basis_sha256=details.get("legal_basis_sha256", ""),
        expires=datetime.datetime.fromisoformat(expires.replace("Z", "+00:00")) if expires else None,
        first_used=_at(event),
    )


def _signed_grant(event: LogEvent) -> AuthorisationSeen:
    """An authorisation signed on this server that no camera presented yet (within the scan)."""
    details = event.details
    expires = details.get("expires", "")
    return AuthorisationSeen(
        authorisation_id=details.get("authorisation", ""),
        gallery_id=event.gallery_id,
        issued_by=details.get("issued_by", ""),
        signer_serial=details.get("signer_serial", ""),
        cameras=int(details.get("cameras", "0") or 0),
        legal_basis_sha256="",  # the entry holds the keyed hash only; a camera's first use adds the SHA-256
        expires=datetime.datetime.fromisoformat(expires.replace("Z", "+00:00")) if expires else None,
        first_used=None,
    )


def _alert(event: LogEvent) -> FishingAlertSeen:
    details = event.details
    return FishingAlertSeen(
        at=_at(event),
        actor=event.actor,
        gallery_id=event.gallery_id,
        rules=tuple(rule for rule in details.get("rules", "").split(".") if rule),
        searches=int(details.get("searches", "0") or 0),
        no_matches=int(details.get("no_matches", "0") or 0),
        galleries=int(details.get("galleries", "0") or 0),
    )
