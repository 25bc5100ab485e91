"""FailureThrottle bookkeeping: locking, expiry and the memory bound."""

from __future__ import annotations

from auth.throttle import FailureThrottle
from tests.auth.conftest import FakeClock


def test_lock_after_max_failures_and_expiry(clock: FakeClock) -> None:
    """A key locks on its max_failures-th failure and unlocks exactly after lockout, with a fresh count."""
    t = FailureThrottle(max_failures=2, window=10, lockout=30, clock=clock)
    key = ("ip", "192.0.2.1")
    t.record_failure(key)
    assert t.locked_for(key) == 0
    t.record_failure(key)
    assert t.locked_for(key) == 30
    clock.advance(29.5)
    assert t.locked_for(key) == 0.5
    clock.advance(0.5)
    assert t.locked_for(key) == 0
    t.record_failure(key)
    assert t.locked_for(key) == 0  # count restarted after the lockout


def test_tracked_keys_are_bounded(clock: FakeClock) -> None:
    """Beyond max_keys the least recently failed keys are forgotten."""
    t = FailureThrottle(max_failures=5, window=10, lockout=30, clock=clock, max_keys=100)
    for i in range(1000):
        t.record_failure(("name", f"user{i}@example.test"))
    assert len(t) == 100


def test_clear_keeps_an_active_lockout(clock: FakeClock) -> None:
    """clear() forgets failures but never lifts a lockout in force."""
    t = FailureThrottle(max_failures=1, window=10, lockout=30, clock=clock)
    key = ("name", "alice@example.test")
    t.record_failure(key)
    t.clear(key)
    assert t.locked_for(key) == 30
