"""PIN attempts in the record vault: reserved atomically, locked out for ever longer.

Real SQLite files, real threads; two vault objects on one file stand in for two processes.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from safepassage.enrolment.errors import PinLocked, RecordErased, RecordNotFound
from safepassage.enrolment.pin_attempts import MAX_LOCK_S, PinLockout, lock_seconds
from safepassage.enrolment.vault import RecordVault
from safepassage.enrolment.vault_erasures import Tombstone
from tests.enrolment.test_vault import T0, _insert, _record

LOCK_S = 60.0


def _lock_out(vault: RecordVault, now: float, max_failures: int = 3) -> PinLockout:
    """Run wrong PINs until one locks the record; returns that lockout."""
    for _ in range(max_failures):
        vault.pins.reserve("pr-1", now, max_failures)
        lockout = vault.pins.failed("pr-1", now, max_failures, LOCK_S)
        if lockout is not None:
            return lockout
    raise AssertionError("no lockout after max_failures wrong PINs")


def _race(vaults: list[RecordVault], threads: int, max_failures: int) -> tuple[int, int, list[PinLockout]]:
    """`threads` wrong PINs at once; (reservations granted, refused, lockouts started)."""
    start = threading.Barrier(threads)
    lock = threading.Lock()
    granted, refused, lockouts = [0], [0], []
    errors: list[BaseException] = []

    def attempt(n: int) -> None:
        vault = vaults[n % len(vaults)]
        start.wait()
        try:
            try:
                vault.pins.reserve("pr-1", T0, max_failures)
            except PinLocked:
                with lock:
                    refused[0] += 1
                return
            with lock:
                granted[0] += 1
            lockout = vault.pins.failed("pr-1", T0, max_failures, LOCK_S)  # the PIN was wrong
            if lockout is not None:
                with lock:
                    lockouts.append(lockout)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    workers = [threading.Thread(target=attempt, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    return granted[0], refused[0], lockouts


@pytest.mark.parametrize("vault_objects", [1, 2])
def test_concurrent_wrong_pins_get_exactly_max_failures_attempts(path: Path, vault_objects: int) -> None:
    vaults = [RecordVault.open(path) for _ in range(vault_objects)]
    try:
        _insert(vaults[0], _record("pr-1"))
        granted, refused, lockouts = _race(vaults, threads=20, max_failures=5)
        assert (granted, refused) == (5, 15)
        assert lockouts == [PinLockout(1, T0 + LOCK_S)]
        assert vaults[-1].pins.locked_until("pr-1") == T0 + LOCK_S
        with pytest.raises(PinLocked, match="locked for 60 s"):
            vaults[0].pins.reserve("pr-1", T0 + 0.5, 5)
    finally:
        for vault in vaults:
            vault.close()


def test_reserved_attempts_in_flight_refuse_more(vault: RecordVault) -> None:
    for _ in range(3):
        vault.pins.reserve("pr-1", T0, max_failures=3)
    with pytest.raises(PinLocked, match="at once"):
        vault.pins.reserve("pr-1", T0, max_failures=3)
    vault.pins.reserve("pr-2", T0, max_failures=3)  # per record
    assert vault.pins.locked_until("pr-1") == 0.0  # not locked: the checks are still running
    # One of them was the right PIN: the holder gets in and the count is cleared.
    vault.pins.passed("pr-1")
    vault.pins.reserve("pr-1", T0, max_failures=3)


def test_lockouts_grow_and_a_right_pin_resets_them(vault: RecordVault) -> None:
    first = _lock_out(vault, T0)
    assert first == PinLockout(1, T0 + LOCK_S)
    with pytest.raises(PinLocked):
        vault.pins.reserve("pr-1", first.locked_until - 1, 3)
    second = _lock_out(vault, first.locked_until)
    assert second == PinLockout(2, first.locked_until + 2 * LOCK_S)
    third = _lock_out(vault, second.locked_until + 5)
    assert third == PinLockout(3, second.locked_until + 5 + 4 * LOCK_S)
    assert vault.pins.locked_until("pr-1") == third.locked_until
    assert vault.pins.locked_until("pr-2") == 0.0

    vault.pins.passed("pr-1")
    assert vault.pins.locked_until("pr-1") == 0.0
    assert _lock_out(vault, third.locked_until) == PinLockout(1, third.locked_until + LOCK_S)


def test_a_lock_expires_without_a_right_pin(vault: RecordVault) -> None:
    lockout = _lock_out(vault, T0)
    vault.pins.reserve("pr-1", lockout.locked_until, 3)  # not before, but then
    assert vault.pins.failed("pr-1", lockout.locked_until, 3, LOCK_S) is None


def test_the_lock_is_capped(vault: RecordVault, path: Path) -> None:
    assert lock_seconds(LOCK_S, 1) == LOCK_S
    assert lock_seconds(LOCK_S, 5) == 16 * LOCK_S
    assert lock_seconds(LOCK_S, 40) == MAX_LOCK_S
    assert lock_seconds(LOCK_S, 10**9) == MAX_LOCK_S
    assert lock_seconds(2 * MAX_LOCK_S, 3) == 2 * MAX_LOCK_S  # a configured lock longer than the cap
    conn = sqlite3.connect(path)
    conn.execute("UPDATE records SET pin_lockouts = 1000000 WHERE record_id = 'pr-1'")
    conn.commit()
    conn.close()
    assert _lock_out(vault, T0) == PinLockout(1_000_001, T0 + MAX_LOCK_S)


def test_pin_state_of_missing_and_erased_records(vault: RecordVault) -> None:
    for call in (
        lambda: vault.pins.reserve("pr-9", T0, 3),
        lambda: vault.pins.failed("pr-9", T0, 3, LOCK_S),
        lambda: vault.pins.passed("pr-9"),
        lambda: vault.pins.locked_until("pr-9"),
    ):
        with pytest.raises(RecordNotFound):
            call()
    vault.pins.reserve("pr-1", T0, 3)
    vault.erasures.erase(Tombstone("pr-1", T0, "holder", "00" * 32))  # erased while its PIN was being checked
    for call in (
        lambda: vault.pins.reserve("pr-1", T0, 3),
        lambda: vault.pins.failed("pr-1", T0, 3, LOCK_S),
        lambda: vault.pins.passed("pr-1"),
    ):
        with pytest.raises(RecordErased):
            call()


def test_lockouts_survive_reopening(path: Path, vault: RecordVault) -> None:
    first = _lock_out(vault, T0)
    vault.close()
    again = RecordVault.open(path)
    try:
        assert again.pins.locked_until("pr-1") == first.locked_until
        assert _lock_out(again, first.locked_until) == PinLockout(2, first.locked_until + 2 * LOCK_S)
    finally:
        again.close()
