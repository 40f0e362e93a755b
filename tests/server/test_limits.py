"""Rate limits, daily budgets and the fishing detector, on a fake clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from safepassage.core.errors import TooLarge
from safepassage.server.fishing import (
    Alert,
    FishingDetector,
    FishingRule,
    FishingSettings,
    Outcome,
    SearchKind,
)
from safepassage.server.identity import Caller, Role
from safepassage.server.limits import (
    ClassLimits,
    LimitKind,
    LimitSettings,
    OperationClass,
    RateLimited,
    RateLimiter,
    Rule,
    Scope,
)

SEARCH, WRITE, READ = OperationClass.SEARCH, OperationClass.WRITE, OperationClass.READ
NOON = datetime(2025, 3, 10, 12, 0, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2025, 3, 11, 0, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, t: float = NOON) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def caller(client_id: str = "officer-0001", role: Role = Role.OFFICER) -> Caller:
    return Caller(client_id=client_id, role=role, serial=1, fingerprint="00" * 32)


def limiter(clock: Clock, **roles: dict[OperationClass, ClassLimits]) -> RateLimiter:
    settings = LimitSettings(roles={Role(name): table for name, table in roles.items()})
    return RateLimiter(settings, clock=clock)


def refusal(limits: RateLimiter, who: Caller, op: OperationClass = SEARCH, cost: int = 1) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        limits.check(who, op, cost)
    return caught.value


# Rate limits ---------------------------------------------------------------------------------------------


def test_burst_then_refusal_says_which_limit_and_when() -> None:
    clock = Clock()
    limits = RateLimiter(clock=clock)  # built-in table: officer searches 2/s, burst 20
    officer = caller()
    for _ in range(20):
        limits.check(officer, SEARCH)
    refused = refusal(limits, officer)
    assert isinstance(refused, TooLarge)  # -> RESOURCE_EXHAUSTED at the API
    assert (refused.scope, refused.kind, refused.operation_class) == (Scope.CLIENT, LimitKind.RATE, SEARCH)
    assert refused.retry_after_s == pytest.approx(0.5)
    assert str(refused) == (
        "rate limit for client officer:officer-0001 reached (2 searches/s, burst 20); retry after 0.5 s"
    )
    # Other classes have their own buckets.
    limits.check(officer, READ)


def test_refill_over_time_up_to_burst() -> None:
    clock = Clock()
    limits = limiter(clock, officer={SEARCH: ClassLimits(client=Rule(2, 5))})
    officer = caller()
    for _ in range(5):
        limits.check(officer, SEARCH)
    clock.advance(0.3)
    assert refusal(limits, officer).retry_after_s == pytest.approx(0.2)
    assert "retry after 0.2 s" in str(refusal(limits, officer))
    clock.advance(0.2)
    limits.check(officer, SEARCH)
    refusal(limits, officer)
    # A long idle spell saves up at most `burst`.
    clock.advance(3600)
    for _ in range(5):
        limits.check(officer, SEARCH)
    refusal(limits, officer)


def test_role_limit_is_shared_by_all_its_clients_and_refusals_cost_nothing() -> None:
    clock = Clock()
    limits = limiter(clock, officer={SEARCH: ClassLimits(client=Rule(0.01, 10), role=Rule(1, 15))})
    first, second = caller("officer-0001"), caller("officer-0002")
    for _ in range(10):
        limits.check(first, SEARCH)
    assert refusal(limits, first).scope is Scope.CLIENT
    for _ in range(5):
        limits.check(second, SEARCH)
    for _ in range(3):
        refused = refusal(limits, second)
        assert (refused.scope, refused.kind) == (Scope.ROLE, LimitKind.RATE)
        assert str(refused).startswith("rate limit for role officer (all its clients) reached (1 searches/s")
    # The role refills; the second client's own bucket was not charged for the refused calls.
    clock.advance(10)
    for _ in range(5):
        limits.check(second, SEARCH)
    assert refusal(limits, second).scope is Scope.CLIENT
    # Another role is not affected by the officers' aggregate.
    limits.check(caller("kiosk-1", Role.KIOSK), SEARCH)


def test_the_longest_binding_limit_is_reported() -> None:
    clock = Clock()
    limits = limiter(clock, officer={SEARCH: ClassLimits(client=Rule(1, 1), role=Rule(0.1, 1))})
    limits.check(caller(), SEARCH)
    refused = refusal(limits, caller())
    assert refused.scope is Scope.ROLE  # 10 s for the role beats 1 s for the client
    assert refused.retry_after_s == pytest.approx(10)


def test_daily_budget_is_used_up_and_resets_at_utc_midnight() -> None:
    clock = Clock()
    limits = RateLimiter(clock=clock)  # built-in: 2000 officer searches a day
    officer = caller()
    for _ in range(2000):
        limits.check(officer, SEARCH)
        clock.advance(0.5)  # the rate limit's pace, so only the budget binds
    clock.t = NOON + 3600
    refused = refusal(limits, officer)
    assert (refused.scope, refused.kind) == (Scope.CLIENT, LimitKind.DAILY)
    assert str(refused) == (
        "daily budget of 2000 searches for client officer:officer-0001 used;"
        " resets at 00:00 UTC (in 11 h 0 min)"
    )
    assert refused.retry_after_s == pytest.approx(MIDNIGHT - clock.t)
    # Another officer still has its own budget; long idleness does not reset the day.
    limits.check(caller("officer-0002"), SEARCH)
    clock.t = MIDNIGHT - 1
    assert "(in 1.0 s)" in str(refusal(limits, officer))
    clock.t = MIDNIGHT
    limits.check(officer, SEARCH)


def test_role_daily_budget_and_a_call_that_does_not_fit() -> None:
    clock = Clock()
    limits = limiter(
        clock, ngo_caseworker={WRITE: ClassLimits(client=Rule(100, 100), role=Rule(100, 100, 8))}
    )
    first = caller("ngo-1", Role.NGO_CASEWORKER)
    second = caller("ngo-2", Role.NGO_CASEWORKER)
    limits.check(first, WRITE, cost=5)
    refused = refusal(limits, second, WRITE, cost=4)
    assert (refused.scope, refused.kind) == (Scope.ROLE, LimitKind.DAILY)
    assert str(refused).startswith(
        "daily budget of 8 writes for role ngo_caseworker (all its clients) has 3 left; resets at 00:00 UTC"
    )
    limits.check(second, WRITE, cost=3)
    too_big = refusal(limits, second, WRITE, cost=9)
    assert too_big.retry_after_s is None
    assert (
        str(too_big)
        == "a call of 9 writes exceeds the daily budget of 8 for role ngo_caseworker (all its clients)"
    )
    clock.t = MIDNIGHT
    limits.check(second, WRITE, cost=8)


def test_a_call_larger_than_the_burst_can_never_pass() -> None:
    limits = RateLimiter(clock=Clock())
    refused = refusal(limits, caller(), SEARCH, cost=21)
    assert (refused.kind, refused.retry_after_s) == (LimitKind.RATE, None)
    assert "a call of 21 searches exceeds the rate limit for client officer:officer-0001" in str(refused)
    with pytest.raises(ValueError):
        limits.check(caller(), SEARCH, cost=0)


def test_no_allowance_is_refused_outright() -> None:
    limits = RateLimiter(clock=Clock())
    refused = refusal(limits, caller("audit-1", Role.AUDITOR))
    assert (refused.kind, refused.retry_after_s) == (LimitKind.NONE, None)
    assert str(refused) == "role auditor has no allowance for searches"
    # A class the table does not list for the role is refused too: nothing by default.
    assert refusal(limits, caller("cam-gate-3", Role.CCTV_EDGE), WRITE).kind is LimitKind.NONE
    limits.check(caller("audit-1", Role.AUDITOR), READ)


def test_disabled_limiter_allows_everything() -> None:
    limits = RateLimiter(LimitSettings(enabled=False), clock=Clock())
    for _ in range(100):
        limits.check(caller("audit-1", Role.AUDITOR), SEARCH)


def test_clock_stepping_back_refills_nothing() -> None:
    clock = Clock()
    limits = limiter(clock, officer={SEARCH: ClassLimits(client=Rule(1, 2))})
    limits.check(caller(), SEARCH)
    limits.check(caller(), SEARCH)
    clock.advance(-30)
    refusal(limits, caller())
    clock.advance(30.5)
    refusal(limits, caller())  # the half second since the last charge is not there yet
    clock.advance(0.5)
    limits.check(caller(), SEARCH)


def test_acquire_waits_out_a_rate_limit_but_not_a_daily_budget() -> None:
    clock = Clock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    settings = LimitSettings(roles={Role.ADMIN: {WRITE: ClassLimits(client=Rule(10, 2, per_day=4))}})
    limits = RateLimiter(settings, clock=clock, sleep=sleep)
    admin = caller("admin-1", Role.ADMIN)
    for _ in range(4):
        limits.acquire(admin, WRITE)
    assert slept == [pytest.approx(0.1)] * 2
    with pytest.raises(RateLimited) as caught:
        limits.acquire(admin, WRITE)
    assert caught.value.kind is LimitKind.DAILY
    assert len(slept) == 2
    # A wait longer than max_wait_s is refused at once.
    slow = RateLimiter(
        LimitSettings(roles={Role.ADMIN: {WRITE: ClassLimits(client=Rule(0.1, 1))}}), clock=clock
    )
    slow.acquire(admin, WRITE)
    with pytest.raises(RateLimited):
        slow.acquire(admin, WRITE, max_wait_s=5)


def test_concurrent_checks_never_overspend() -> None:
    clock = Clock()
    limits = limiter(clock, officer={SEARCH: ClassLimits(client=Rule(1e-9, 500))})
    allowed: list[int] = []

    def worker() -> None:
        passed = 0
        for _ in range(200):
            try:
                limits.check(caller(), SEARCH)
                passed += 1
            except RateLimited:
                pass
        allowed.append(passed)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 500


def test_idle_buckets_are_evicted_but_todays_usage_is_kept() -> None:
    clock = Clock()
    settings = LimitSettings(max_buckets=100, sweep_interval_s=60)
    limits = RateLimiter(settings, clock=clock)
    limits.check(caller("kiosk-0", Role.KIOSK), SEARCH)  # first call sweeps nothing, starts the timer
    for i in range(80):
        limits.check(caller(f"kiosk-{i}", Role.KIOSK), READ)
    # Searches carry a daily budget: their buckets must outlive idleness until the day is over,
    # or waiting for eviction would reset a client's budget.
    for i in range(5):
        limits.check(caller(f"officer-{i}"), SEARCH)
    assert (
        limits.bucket_count == 1 + 1 + 80 + 5 + 1
    )  # kiosk search, kiosk role, reads, officers, officer role
    clock.advance(61)
    limits.check(caller("kiosk-x", Role.KIOSK), READ)  # triggers the sweep
    # Gone: the idle, full read buckets and the kiosk role's (no budget). Kept: the kiosk's and the
    # officers' search buckets and the officer role's, which hold today's usage; and the new read.
    assert limits.bucket_count == 1 + 5 + 1 + 1
    clock.t = MIDNIGHT + 1
    limits.check(caller("kiosk-x", Role.KIOSK), READ)
    assert limits.bucket_count == 1


def test_bucket_count_is_capped() -> None:
    clock = Clock()
    limits = RateLimiter(LimitSettings(max_buckets=100), clock=clock)
    for i in range(1000):
        limits.check(caller(f"officer-{i}"), READ)
    assert limits.bucket_count == 100


def test_settings_validate_from_a_config_file_and_override_one_entry_at_a_time() -> None:
    class Config(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        limits: LimitSettings = LimitSettings()
        fishing: FishingSettings = FishingSettings()

    raw = {
        "limits": {"roles": {"officer": {"search": {"client": {"per_s": 3, "burst": 30, "per_day": 3000}}}}},
        "fishing": {"window_s": 300, "roles": ["officer"]},
    }
    config = Config.model_validate(raw)
    officer = config.limits.roles[Role.OFFICER]
    assert officer[SEARCH] == ClassLimits(client=Rule(3, 30, 3000))
    # Untouched entries keep their defaults.
    assert officer[WRITE] == Config().limits.roles[Role.OFFICER][WRITE]
    assert config.limits.roles[Role.KIOSK] == Config().limits.roles[Role.KIOSK]
    assert config.fishing.window_s == 300 and config.fishing.roles == (Role.OFFICER,)
    bad_configs: tuple[dict[str, object], ...] = (
        {"limits": {"roles": {"officer": {"serch": {"client": {"per_s": 1, "burst": 1}}}}}},
        {"limits": {"roles": {"officer": {"search": {"client": {"per_s": 1, "burst": 1, "perday": 5}}}}}},
        {"limits": {"roles": {"officer": {"search": {"client": {"per_s": 1, "burst": 0}}}}}},
        {"limits": {"roles": {"pilot": {}}}},
        {"limits": {"max_bucket": 10}},
        {"fishing": {"max_no_match_share": 1.5}},
        {"fishing": {"window": 60}},
    )
    for bad in bad_configs:
        with pytest.raises(ValidationError):
            Config.model_validate(bad)
    assert TypeAdapter(Rule).validate_python({"per_s": 0, "burst": 0}).allows_nothing


# Fishing -------------------------------------------------------------------------------------------------


def fishing(clock: Clock, **overrides: object) -> FishingDetector:
    return FishingDetector(FishingSettings(**overrides), clock=clock)  # type: ignore[arg-type]


def test_normal_use_raises_no_alert() -> None:
    clock = Clock()
    detector = fishing(clock)
    officer = caller()
    for i in range(30):
        outcome = Outcome.MATCH if i % 4 == 0 else Outcome.NO_MATCH
        gallery = "watchlist" if i % 2 else "protected"
        assert detector.record(officer, SearchKind.IDENTIFY, gallery, outcome) is None
        clock.advance(20)


def test_volume_trips_once_per_window() -> None:
    clock = Clock()
    detector = fishing(clock)
    officer = caller()
    alerts: list[tuple[int, Alert]] = []
    for i in range(450):  # one search every 2 s, a third of them matching
        outcome = Outcome.MATCH if i % 3 == 0 else Outcome.NO_MATCH
        alert = detector.record(officer, SearchKind.IDENTIFY, "watchlist", outcome)
        if alert:
            alerts.append((i, alert))
        clock.advance(2)
    # The 101st search trips; the next alert comes a full window (300 searches) later.
    assert [i for i, _ in alerts] == [100, 400]
    first = alerts[0][1]
    assert first.rules == (FishingRule.VOLUME,)
    assert (first.client, first.window_s, first.searches, first.galleries) == (
        "officer:officer-0001",
        600,
        101,
        1,
    )
    assert first.at == datetime.fromtimestamp(NOON + 200, UTC)
    assert first.summary == "officer:officer-0001 in the last 600 s: volume: 101 searches (limit 100)"


def test_no_match_share_trips_over_enough_searches_only() -> None:
    clock = Clock()
    detector = fishing(clock)
    trawler, careful = caller("officer-0001"), caller("officer-0002")
    # 3 matches in 50 is a 94% miss rate: not above 95%.
    for i in range(50):
        outcome = Outcome.MATCH if i in (10, 20, 30) else Outcome.NO_MATCH
        assert detector.record(careful, SearchKind.IDENTIFY, "protected", outcome) is None
        clock.advance(5)
    alerts = []
    for i in range(70):
        alert = detector.record(trawler, SearchKind.IDENTIFY, "protected", Outcome.NO_MATCH)
        if alert:
            alerts.append((i, alert))
        clock.advance(5)
    assert [i for i, _ in alerts] == [
        49
    ]  # the 50th search: 50 of 50 missed; quiet for the rest of the window
    alert = alerts[0][1]
    assert (alert.rules, alert.searches, alert.no_matches) == ((FishingRule.NO_MATCH_SHARE,), 50, 50)
    assert "no_match_share: 50 of 50 NO_MATCH (limit 95% over at least 50)" in alert.summary


def test_gallery_spread_trips_on_the_fifth_gallery() -> None:
    clock = Clock()
    detector = fishing(clock)
    officer = caller()
    for name in ("a", "b", "c", "d"):
        assert detector.record(officer, SearchKind.VERIFY, name, Outcome.MATCH) is None
        clock.advance(10)
    alert = detector.record(officer, SearchKind.VERIFY, "e", Outcome.MATCH)
    assert alert is not None and alert.rules == (FishingRule.GALLERY_SPREAD,) and alert.galleries == 5
    assert detector.record(officer, SearchKind.VERIFY, "f", Outcome.MATCH) is None
    # Once the first galleries leave the window the spread is back under the limit.
    clock.advance(600)
    assert detector.record(officer, SearchKind.VERIFY, "a", Outcome.MATCH) is None


def test_rules_tripping_together_give_one_alert() -> None:
    clock = Clock()
    detector = fishing(clock, max_searches=10, no_match_min_searches=10, max_galleries=0)
    alerts = []
    for _ in range(11):
        alert = detector.record(caller(), SearchKind.IDENTIFY, "g", Outcome.NO_MATCH)
        if alert:
            alerts.append(alert)
    assert [a.rules for a in alerts] == [(FishingRule.NO_MATCH_SHARE,), (FishingRule.VOLUME,)]
    detector = fishing(clock, max_searches=9, no_match_min_searches=10)
    for _ in range(9):
        detector.record(caller(), SearchKind.IDENTIFY, "g", Outcome.NO_MATCH)
    both = detector.record(caller(), SearchKind.IDENTIFY, "g", Outcome.NO_MATCH)
    assert both is not None and both.rules == (FishingRule.VOLUME, FishingRule.NO_MATCH_SHARE)


def test_unwatched_roles_and_operations_are_not_counted() -> None:
    clock = Clock()
    detector = fishing(clock, operations=(SearchKind.IDENTIFY,))
    camera = caller("cam-gate-3", Role.CCTV_EDGE)
    for _ in range(500):
        assert detector.record(camera, SearchKind.IDENTIFY, "watchlist", Outcome.NO_MATCH) is None
        assert detector.record(caller(), SearchKind.VERIFY, "watchlist", Outcome.NO_MATCH) is None
    assert detector.tracked_clients == 0
    assert (
        FishingDetector(FishingSettings(enabled=False)).record(
            caller(), SearchKind.IDENTIFY, "g", Outcome.NO_MATCH
        )
        is None
    )


def test_idle_clients_are_forgotten_and_tracking_is_capped() -> None:
    clock = Clock()
    detector = fishing(clock, max_clients=100)
    for i in range(100):
        detector.record(caller(f"officer-{i}"), SearchKind.IDENTIFY, "g", Outcome.MATCH)
    assert detector.tracked_clients == 100
    for i in range(100, 300):
        detector.record(caller(f"officer-{i}"), SearchKind.IDENTIFY, "g", Outcome.MATCH)
    assert detector.tracked_clients == 100
    clock.advance(601)
    detector.record(caller("officer-new"), SearchKind.IDENTIFY, "g", Outcome.MATCH)
    assert detector.tracked_clients == 1
