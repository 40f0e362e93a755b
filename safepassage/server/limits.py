"""Rate limits and daily budgets: how much each client, and each role, may ask of the server.

A face-matching service at a border is a tool that can be turned into a
surveillance engine by volume alone, so every call is charged against two
kinds of limit, each held for the client (its certificate's role and CN) and
for its whole role (every client of the role together):

* a token bucket per operation class: ``per_s`` tokens a second, up to
  ``burst`` saved up; it smooths load and stops a stolen credential from
  draining a gallery at machine speed;
* a daily budget per operation class (``per_day``, UTC days): a ceiling that
  patience cannot get around, so misuse stays slow enough to be seen.

A call is charged only when every limit that applies has room, so a refusal
by the role's limit does not cost the client anything. A role or operation
class with no entry, or with a zero rule, is refused: new roles start with
nothing rather than with everything.

State lives in memory only (a restart starts a fresh day); it is a brake and
an alarm, not an accounting system. Pure: no grpc; the server's interceptor
maps `RateLimited` (a `TooLarge`) to RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import ConfigDict

from safepassage.core.errors import TooLarge
from safepassage.server.identity import Caller, Role

log = logging.getLogger(__name__)

DAY_S = 86_400
_TOKEN_SLACK = 1e-6


class OperationClass(enum.StrEnum):
    """What a call costs against. The interceptor maps each RPC to one class."""

    SEARCH = "search"  # Identify, Verify, each IdentifyStream request
    WRITE = "write"  # InsertTemplate, each BulkInsertTemplates item, DeleteTemplate
    READ = "read"  # ListGalleries, DescribeGallery, CountTemplates
    ADMIN = "admin"  # CreateGallery, DeleteGallery


_NOUN = {
    OperationClass.SEARCH: "searches",
    OperationClass.WRITE: "writes",
    OperationClass.READ: "reads",
    OperationClass.ADMIN: "admin operations",
}


class Scope(enum.StrEnum):
    CLIENT = "client"
    ROLE = "role"


class LimitKind(enum.StrEnum):
    RATE = "rate"  # the token bucket is empty; it refills
    DAILY = "daily"  # the day's budget is spent; it resets at 00:00 UTC
    NONE = "none"  # the role has no allowance for this class at all


# Pydantic validates these dataclasses when they sit in the server's Config;
# unknown keys in the TOML file must fail loudly, not be dropped.
_STRICT: ConfigDict = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Rule:
    """One token bucket and an optional daily budget. per_s = burst = 0: nothing allowed."""

    __pydantic_config__: ClassVar[ConfigDict] = _STRICT

    per_s: float
    burst: int
    per_day: int | None = None  # None: no daily budget

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_s) and self.per_s >= 0):
            raise ValueError(f"per_s must be a finite number >= 0, not {self.per_s}")
        if self.burst < 0:
            raise ValueError(f"burst must be >= 0, not {self.burst}")
        # A bucket that never refills, or one too small for a single call, is a typo, not a policy.
        if (self.per_s == 0) != (self.burst == 0):
            raise ValueError("per_s and burst must both be 0 (nothing allowed) or both positive")
        if self.per_day is not None and self.per_day < 0:
            raise ValueError(f"per_day must be >= 0, not {self.per_day}")

    @property
    def allows_nothing(self) -> bool:
        return self.burst == 0 or self.per_day == 0


NOTHING = Rule(0, 0)


@dataclass(frozen=True)
class ClassLimits:
    """The limits of one role for one operation class."""

    __pydantic_config__: ClassVar[ConfigDict] = _STRICT

    client: Rule  # each client of the role on its own
    role: Rule | None = None  # all clients of the role together; None: no aggregate limit


LimitTable = Mapping[Role, Mapping[OperationClass, ClassLimits]]


def default_limits() -> dict[Role, dict[OperationClass, ClassLimits]]:
    """The built-in table. Sized for a few hundred officers and cameras; tune per deployment."""
    S, W, R, A = OperationClass.SEARCH, OperationClass.WRITE, OperationClass.READ, OperationClass.ADMIN
    return {
        # An officer checks the traveller in front of them: about one a minute, bursts at a busy desk.
        Role.OFFICER: {
            S: ClassLimits(client=Rule(2, 20, 2_000), role=Rule(50, 500, 200_000)),
            W: ClassLimits(client=Rule(1, 10, 500), role=Rule(20, 100, 20_000)),
            R: ClassLimits(client=Rule(5, 50)),
        },
        # A gate camera searches every face it sees, by design; its ceiling is the camera's frame rate.
        Role.CCTV_EDGE: {
            S: ClassLimits(client=Rule(20, 100, 1_000_000), role=Rule(1_000, 5_000)),
            R: ClassLimits(client=Rule(1, 10)),
        },
        # A kiosk verifies, or enrols, the one person standing at it.
        Role.KIOSK: {
            S: ClassLimits(client=Rule(1, 5, 5_000), role=Rule(100, 500)),
            W: ClassLimits(client=Rule(1, 5, 1_000), role=Rule(20, 100)),
            R: ClassLimits(client=Rule(1, 10)),
        },
        # A caseworker enrols and finds the protected-identity records of the workers they assist.
        Role.NGO_CASEWORKER: {
            S: ClassLimits(client=Rule(1, 10, 200), role=Rule(10, 50, 5_000)),
            W: ClassLimits(client=Rule(1, 20, 500), role=Rule(10, 100, 10_000)),
            R: ClassLimits(client=Rule(2, 20)),
        },
        # An auditor reads the logs and the galleries' sizes; it never searches faces.
        Role.AUDITOR: {
            S: ClassLimits(client=NOTHING),
            R: ClassLimits(client=Rule(5, 50)),
        },
        # An administrator manages galleries and watchlist imports; it never searches faces.
        Role.ADMIN: {
            S: ClassLimits(client=NOTHING),
            W: ClassLimits(client=Rule(1_000, 10_000)),
            R: ClassLimits(client=Rule(10, 100)),
            A: ClassLimits(client=Rule(1, 20, 1_000), role=Rule(5, 50)),
        },
    }


@dataclass(frozen=True)
class LimitSettings:
    """The `limits` section of the server's configuration.

    `roles` overrides the built-in table (`default_limits`) one role and class
    at a time: an entry replaces the built-in entry for that role and class
    whole (give its `role` rule too, or the aggregate limit is gone); every
    other entry keeps its default.
    """

    __pydantic_config__: ClassVar[ConfigDict] = _STRICT

    enabled: bool = True
    roles: dict[Role, dict[OperationClass, ClassLimits]] = field(default_factory=dict)
    # Buckets held at most. Idle buckets that are full again and hold no usage for today are
    # dropped every sweep_interval_s; past max_buckets the least recently used one goes.
    max_buckets: int = 100_000
    sweep_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_buckets < 100:
            raise ValueError(f"max_buckets must be >= 100, not {self.max_buckets}")
        if not (math.isfinite(self.sweep_interval_s) and self.sweep_interval_s > 0):
            raise ValueError(f"sweep_interval_s must be > 0, not {self.sweep_interval_s}")
        merged = default_limits()
        for role, classes in self.roles.items():
            merged.setdefault(Role(role), {}).update(
                {OperationClass(op): limits for op, limits in classes.items()}
            )
        # Frozen: the merged table is set once here, so `roles` always reads as the effective table.
        object.__setattr__(self, "roles", merged)


class RateLimited(TooLarge):
    """A rate limit or daily budget refused the call; the message says which and when it frees."""

    def __init__(
        self,
        message: str,
        *,
        scope: Scope,
        kind: LimitKind,
        operation_class: OperationClass,
        retry_after_s: float | None,
    ) -> None:
        super().__init__(message)
        self.scope = scope
        self.kind = kind
        self.operation_class = operation_class
        # None: waiting cannot help (no allowance, or a call larger than the bucket or the budget).
        self.retry_after_s = retry_after_s


@dataclass
class _Bucket:
    """Mutable state of one (scope, name, class); only touched under the limiter's lock."""

    rule: Rule
    tokens: float
    updated: float
    day: int
    used: int = 0  # units charged on `day`
    warned: bool = False  # the daily budget's refusal was logged for `day`

    def advance(self, now: float) -> None:
        # A clock stepped backwards refills nothing (and is not undone); forwards refills up to burst.
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.rule.burst), self.tokens + elapsed * self.rule.per_s)
        self.updated = max(self.updated, now)
        today = _day(now)
        if today > self.day:
            self.day, self.used, self.warned = today, 0, False

    def forgettable(self, now: float) -> bool:
        """Whether a fresh bucket would behave the same: full again and no usage left for today."""
        full = self.tokens + max(0.0, now - self.updated) * self.rule.per_s >= self.rule.burst
        return full and (self.rule.per_day is None or self.used == 0 or _day(now) > self.day)


def _day(now: float) -> int:
    # Unix time has no leap seconds, so whole multiples of 86400 are exactly 00:00 UTC.
    return math.floor(now / DAY_S)


def _wait(seconds: float) -> str:
    if seconds < 60:
        # Rounded up so a client that obeys is not refused again; the slack absorbs float noise.
        return f"{max(1, math.ceil(seconds * 10 - 1e-3)) / 10:.1f} s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


class RateLimiter:
    """Token buckets and daily budgets per client and per role. Thread-safe.

    `clock` gives Unix time in seconds (UTC days are derived from it); tests pass a
    fake one, or `now` per call.
    """

    def __init__(
        self,
        settings: LimitSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings or LimitSettings()
        self._table: LimitTable = self._settings.roles
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # Least recently used first, so that eviction under pressure drops the idlest.
        self._buckets: OrderedDict[tuple[Scope, str, OperationClass], _Bucket] = OrderedDict()
        self._last_sweep: float | None = None
        self._evicted_in_use = 0

    @property
    def bucket_count(self) -> int:
        with self._lock:
            return len(self._buckets)

    def limits_for(self, role: Role, operation_class: OperationClass) -> ClassLimits | None:
        return self._table.get(role, {}).get(operation_class)

    def check(
        self, caller: Caller, operation_class: OperationClass, cost: int = 1, now: float | None = None
    ) -> None:
        """Charge `cost` units of `operation_class` to the caller and its role, or raise `RateLimited`."""
        if cost < 1:
            raise ValueError(f"cost must be >= 1, not {cost}")
        if not self._settings.enabled:
            return
        op = OperationClass(operation_class)
        limits = self.limits_for(caller.role, op)
        scopes: list[tuple[Scope, str, Rule]] = [
            (Scope.CLIENT, caller.label, limits.client if limits else NOTHING)
        ]
        if limits is not None and limits.role is not None:
            scopes.append((Scope.ROLE, caller.role.value, limits.role))
        t = self._clock() if now is None else now
        with self._lock:
            self._maybe_sweep(t)
            refusals: list[RateLimited] = []
            buckets: list[_Bucket] = []
            for scope, name, rule in scopes:
                if rule.allows_nothing:
                    refusals.append(self._no_allowance(caller, scope, op))
                    continue
                bucket = self._bucket((scope, name, op), rule, t)
                refusal = self._refusal(bucket, caller, scope, op, cost, t)
                if refusal is None:
                    buckets.append(bucket)
                else:
                    refusals.append(refusal)
            if refusals:
                # Report the limit that binds longest: waiting out a shorter one would not help.
                worst = max(refusals, key=lambda r: math.inf if r.retry_after_s is None else r.retry_after_s)
                log.debug("refused %s %s: %s %s limit", caller.label, op.value, worst.scope, worst.kind)
                raise worst
            for bucket in buckets:
                bucket.tokens -= cost
                bucket.used += cost

    def acquire(
        self,
        caller: Caller,
        operation_class: OperationClass,
        cost: int = 1,
        max_wait_s: float = 5.0,
    ) -> None:
        """Like `check`, but waits out a rate limit of up to `max_wait_s` instead of refusing.

        For streams (bulk imports, IdentifyStream): sleeping in the handler pushes back on
        the sender through gRPC flow control. Daily budgets and missing allowances still
        raise at once; so does a wait longer than what is left of `max_wait_s`.
        """
        deadline = self._clock() + max_wait_s
        while True:
            try:
                self.check(caller, operation_class, cost)
                return
            except RateLimited as refusal:
                wait = refusal.retry_after_s
                if refusal.kind is not LimitKind.RATE or wait is None or self._clock() + wait > deadline:
                    raise
                # At least a millisecond, so a clock too coarse to see a tiny wait still moves on.
                self._sleep(max(wait, 0.001))

    def _bucket(self, key: tuple[Scope, str, OperationClass], rule: Rule, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._settings.max_buckets:
                _, dropped = self._buckets.popitem(last=False)
                if not dropped.forgettable(now):
                    self._evicted_in_use += 1
            bucket = _Bucket(rule=rule, tokens=float(rule.burst), updated=now, day=_day(now))
            self._buckets[key] = bucket
        else:
            self._buckets.move_to_end(key)
            bucket.advance(now)
        return bucket

    def _refusal(
        self, bucket: _Bucket, caller: Caller, scope: Scope, op: OperationClass, cost: int, now: float
    ) -> RateLimited | None:
        rule, noun = bucket.rule, _NOUN[op]
        who = (
            f"client {caller.label}"
            if scope is Scope.CLIENT
            else f"role {caller.role.value} (all its clients)"
        )

        def refused(message: str, kind: LimitKind, retry_after_s: float | None) -> RateLimited:
            return RateLimited(
                message, scope=scope, kind=kind, operation_class=op, retry_after_s=retry_after_s
            )

        if rule.per_day is not None and bucket.used + cost > rule.per_day:
            if not bucket.warned:
                # Once per bucket and day: hitting the ceiling is worth a look, every refusal after it is not.
                bucket.warned = True
                log.warning("daily budget of %d %s for %s reached", rule.per_day, op.value, who)
            if cost > rule.per_day:
                message = f"a call of {cost} {noun} exceeds the daily budget of {rule.per_day} for {who}"
                return refused(message, LimitKind.DAILY, None)
            until = (bucket.day + 1) * DAY_S - now
            state = "used" if bucket.used >= rule.per_day else f"has {rule.per_day - bucket.used} left"
            message = (
                f"daily budget of {rule.per_day} {noun} for {who} {state}; "
                f"resets at 00:00 UTC (in {_wait(until)})"
            )
            return refused(message, LimitKind.DAILY, until)
        # Unix times near 1.7e9 carry about 2e-7 s of float noise; a bucket that short of a token is full.
        if bucket.tokens + _TOKEN_SLACK < cost:
            limit = f"{rule.per_s:g} {noun}/s, burst {rule.burst}"
            if cost > rule.burst:
                return refused(
                    f"a call of {cost} {noun} exceeds the rate limit for {who} ({limit})",
                    LimitKind.RATE,
                    None,
                )
            wait = (cost - bucket.tokens) / rule.per_s
            return refused(
                f"rate limit for {who} reached ({limit}); retry after {_wait(wait)}", LimitKind.RATE, wait
            )
        return None

    @staticmethod
    def _no_allowance(caller: Caller, scope: Scope, op: OperationClass) -> RateLimited:
        message = f"role {caller.role.value} has no allowance for {_NOUN[op]}"
        return RateLimited(message, scope=scope, kind=LimitKind.NONE, operation_class=op, retry_after_s=None)

    def _maybe_sweep(self, now: float) -> None:
        if self._last_sweep is not None and now - self._last_sweep < self._settings.sweep_interval_s:
            return
        self._last_sweep = now
        idle = [key for key, bucket in self._buckets.items() if bucket.forgettable(now)]
        for key in idle:
            del self._buckets[key]
        if idle:
            log.debug("dropped %d idle rate-limit buckets; %d remain", len(idle), len(self._buckets))
        if self._evicted_in_use:
            log.warning(
                "evicted %d rate-limit buckets still in use to stay under max_buckets=%d",
                self._evicted_in_use,
                self._settings.max_buckets,
            )
            self._evicted_in_use = 0
