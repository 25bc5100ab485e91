"""Counting authentication failures and refusing attempts after too many.

Rules (kept simple on purpose):

* failures are counted separately per client IP and per attempted account name, each
  within a sliding window of ``window`` seconds;
* when a key reaches ``max_failures`` failures it is locked for ``lockout`` seconds, and
  its count starts from zero when the lockout ends;
* an attempt is refused when its IP *or* its account name is locked;
* a success clears the failures of that account name only: the IP's count stays, so one
  valid account cannot be used to wash away guesses against others.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

#: Keys (IPs and names) remembered at once. Each costs a few hundred bytes; beyond this
#: the least recently failed keys are forgotten, which bounds memory under a spray of
#: random names or addresses at the price of forgetting the oldest counts.
MAX_TRACKED_KEYS = 50_000


@dataclass(slots=True)
class _Entry:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class FailureThrottle:
    """Failure counts and lockouts for keys such as ``("ip", "192.0.2.1")``."""

    def __init__(
        self,
        max_failures: int,
        window: float,
        lockout: float,
        clock: Callable[[], float],
        max_keys: int = MAX_TRACKED_KEYS,
    ) -> None:
        self._max = max_failures
        self._window = window
        self._lockout = lockout
        self._clock = clock
        self._max_keys = max_keys
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def locked_for(self, *keys: tuple[str, str]) -> float:
        """Seconds until every one of ``keys`` is unlocked (0.0 when none is locked)."""
        now = self._clock()
        longest = 0.0
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None and entry.locked_until > now:
                longest = max(longest, entry.locked_until - now)
        return longest

    def record_failure(self, *keys: tuple[str, str]) -> None:
        """Count one failure against each key; lock a key that reaches max_failures."""
        now = self._clock()
        for key in keys:
            entry = self._entries.pop(key, None) or _Entry()
            self._entries[key] = entry  # most recently failed last
            failures = entry.failures
            while failures and failures[0] <= now - self._window:
                failures.popleft()
            failures.append(now)
            if len(failures) >= self._max:
                entry.locked_until = now + self._lockout
                failures.clear()
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)

    def clear(self, key: tuple[str, str]) -> None:
        """Forget the failures of ``key`` (not an active lockout)."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.failures.clear()
            if entry.locked_until <= self._clock():
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
