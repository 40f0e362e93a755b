"""Spotting fishing: an operator trawling faces through the matcher in the hope of a hit.

Checking a specific person looks like a trickle of searches against one or
two galleries, some of which match. Fishing (photos scraped from the web or
taken at a demonstration, run 1:N against the protected-identity gallery to
find people) looks different, and three rules over a sliding window per
client catch its usual shapes:

* VOLUME: more than `max_searches` searches in the window;
* NO_MATCH_SHARE: at least `no_match_min_searches` searches in the window and a
  share of NO_MATCH answers above `max_no_match_share`;
* GALLERY_SPREAD: more than `max_galleries` distinct galleries searched in the window.

`record` returns an `Alert` the first time a rule trips, then stays quiet on
that rule for that client for one window, so a sustained trawl gives one
alert per rule per window rather than one per search. The server writes
alerts to the transparency log and the alerts table; the detector blocks
nothing (the rate limiter does that).

Only counts, gallery ids and timestamps are held: never probes, results or
reference ids. Pure: no grpc.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import ConfigDict

from safepassage.server.identity import Caller, Role

log = logging.getLogger(__name__)

# Events kept per client at most. The rate limiter keeps honest roles far below this; past it
# the oldest events go, so counts in an alert are then lower bounds (and VOLUME has long tripped).
MAX_EVENTS_PER_CLIENT = 10_000


class SearchKind(enum.StrEnum):
    IDENTIFY = "identify"  # 1:N
    IDENTIFY_FEW = "identify_few"  # 1:few, Identify with restrict_to
    VERIFY = "verify"  # 1:1


class Outcome(enum.StrEnum):
    MATCH = "match"
    NO_MATCH = "no_match"


class FishingRule(enum.StrEnum):
    VOLUME = "volume"
    NO_MATCH_SHARE = "no_match_share"
    GALLERY_SPREAD = "gallery_spread"


@dataclass(frozen=True)
class FishingSettings:
    """The `fishing` section of the server's configuration. A threshold of 0 turns its rule off."""

    # Validated by pydantic inside the server's Config: unknown keys fail loudly.
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    enabled: bool = True
    # Roles watched. Gate cameras search every passing face by design; their volume is not a signal.
    roles: tuple[Role, ...] = (Role.OFFICER, Role.KIOSK, Role.NGO_CASEWORKER, Role.ADMIN)
    operations: tuple[SearchKind, ...] = (SearchKind.IDENTIFY, SearchKind.IDENTIFY_FEW, SearchKind.VERIFY)
    window_s: float = 600.0
    # VOLUME: an officer handles about one traveller a minute; 100 in 10 minutes is not a queue.
    max_searches: int = 100
    # NO_MATCH_SHARE: a watchlist check is mostly NO_MATCH too, so the share is judged only over
    # a volume well above one desk's; at that volume nearly all misses means trawling.
    no_match_min_searches: int = 50
    max_no_match_share: float = 0.95
    # GALLERY_SPREAD: a task needs one or two galleries; sweeping many is looking for anyone anywhere.
    max_galleries: int = 4
    # Clients tracked at most; past it the least recently seen is forgotten.
    max_clients: int = 100_000

    def __post_init__(self) -> None:
        if not (math.isfinite(self.window_s) and 0 < self.window_s <= 86_400):
            raise ValueError(f"window_s must be in (0, 86400], not {self.window_s}")
        for name in ("max_searches", "no_match_min_searches", "max_galleries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        if not 0 <= self.max_no_match_share < 1:
            raise ValueError(f"max_no_match_share must be in [0, 1), not {self.max_no_match_share}")
        if self.max_clients < 100:
            raise ValueError(f"max_clients must be >= 100, not {self.max_clients}")


@dataclass(frozen=True)
class Alert:
    """Rules that tripped for one client, with the window's counts when they did."""

    client: str  # Caller.label: role and opaque id
    rules: tuple[FishingRule, ...]
    window_s: float
    searches: int  # in the window, this search included
    no_matches: int
    galleries: int  # distinct gallery ids
    at: datetime  # UTC
    summary: str  # one line for logs and the alerts table: ids and counts only


@dataclass
class _Track:
    """One client's window; only touched under the detector's lock."""

    events: deque[tuple[float, bool, str]] = field(default_factory=deque)  # (time, no_match, gallery)
    no_matches: int = 0
    galleries: Counter[str] = field(default_factory=Counter)
    alerted: dict[FishingRule, float] = field(default_factory=dict)  # rule -> time of its last alert

    def drop_oldest(self) -> None:
        _, no_match, gallery = self.events.popleft()
        self.no_matches -= no_match
        self.galleries[gallery] -= 1
        if not self.galleries[gallery]:
            del self.galleries[gallery]

    def trim(self, now: float, window_s: float) -> None:
        while self.events and self.events[0][0] <= now - window_s:
            self.drop_oldest()

    def idle(self, now: float, window_s: float) -> bool:
        """Nothing left in the window and no alert still holding back a repeat."""
        self.trim(now, window_s)
        return not self.events and all(now - at >= window_s for at in self.alerted.values())


class FishingDetector:
    """Sliding-window fishing rules per client. Thread-safe; `clock` gives Unix time in seconds."""

    def __init__(self, settings: FishingSettings | None = None, *, clock: Callable[[], float] = time.time):
        self._settings = settings or FishingSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._tracks: OrderedDict[str, _Track] = OrderedDict()  # least recently seen first
        self._last_sweep: float | None = None

    @property
    def tracked_clients(self) -> int:
        with self._lock:
            return len(self._tracks)

    def record(
        self,
        caller: Caller,
        operation: SearchKind,
        gallery_id: str,
        outcome: Outcome,
        now: float | None = None,
    ) -> Alert | None:
        """Count one answered search; an `Alert` when a rule trips that has not alerted in this window."""
        s = self._settings
        if not s.enabled or caller.role not in s.roles or SearchKind(operation) not in s.operations:
            return None
        t = self._clock() if now is None else now
        with self._lock:
            self._maybe_sweep(t)
            track = self._track(caller.label)
            track.trim(t, s.window_s)
            if len(track.events) >= MAX_EVENTS_PER_CLIENT:
                track.drop_oldest()
            no_match = Outcome(outcome) is Outcome.NO_MATCH
            track.events.append((t, no_match, gallery_id))
            track.no_matches += no_match
            track.galleries[gallery_id] += 1
            tripped = tuple(
                rule for rule in self._tripped(track) if _since(track.alerted.get(rule), t) >= s.window_s
            )
            if not tripped:
                return None
            for rule in tripped:
                track.alerted[rule] = t
            alert = self._alert(caller, tripped, track, t)
        # INFO: the server's recorder logs the alert as a warning when it writes it to the log.
        log.info("fishing alert: %s", alert.summary)
        return alert

    def _tripped(self, track: _Track) -> list[FishingRule]:
        s = self._settings
        searches = len(track.events)
        rules = []
        if s.max_searches and searches > s.max_searches:
            rules.append(FishingRule.VOLUME)
        if (
            s.no_match_min_searches
            and searches >= s.no_match_min_searches
            and track.no_matches / searches > s.max_no_match_share
        ):
            rules.append(FishingRule.NO_MATCH_SHARE)
        if s.max_galleries and len(track.galleries) > s.max_galleries:
            rules.append(FishingRule.GALLERY_SPREAD)
        return rules

    def _alert(self, caller: Caller, rules: tuple[FishingRule, ...], track: _Track, now: float) -> Alert:
        s = self._settings
        searches, no_matches, galleries = len(track.events), track.no_matches, len(track.galleries)
        why = {
            FishingRule.VOLUME: f"{searches} searches (limit {s.max_searches})",
            FishingRule.NO_MATCH_SHARE: (
                f"{no_matches} of {searches} NO_MATCH (limit {s.max_no_match_share:.0%}"
                f" over at least {s.no_match_min_searches})"
            ),
            FishingRule.GALLERY_SPREAD: f"{galleries} galleries (limit {s.max_galleries})",
        }
        reasons = "; ".join(f"{rule.value}: {why[rule]}" for rule in rules)
        return Alert(
            client=caller.label,
            rules=rules,
            window_s=s.window_s,
            searches=searches,
            no_matches=no_matches,
            galleries=galleries,
            at=datetime.fromtimestamp(now, UTC),
            summary=f"{caller.label} in the last {s.window_s:g} s: {reasons}",
        )

    def _track(self, label: str) -> _Track:
        track = self._tracks.get(label)
        if track is None:
            if len(self._tracks) >= self._settings.max_clients:
                forgotten, _ = self._tracks.popitem(last=False)
                log.warning("fishing detector full (%d clients); forgot %s", len(self._tracks) + 1, forgotten)
            track = self._tracks[label] = _Track()
        else:
            self._tracks.move_to_end(label)
        return track

    def _maybe_sweep(self, now: float) -> None:
        # Every tenth of a window, at most a minute: often enough to bound memory, rarely enough to be cheap.
        interval = min(60.0, self._settings.window_s / 10)
        if self._last_sweep is not None and now - self._last_sweep < interval:
            return
        self._last_sweep = now
        idle = [label for label, track in self._tracks.items() if track.idle(now, self._settings.window_s)]
        for label in idle:
            del self._tracks[label]


def _since(then: float | None, now: float) -> float:
    """Seconds from `then` to `now`; infinite when `then` never happened."""
    return math.inf if then is None else now - then
