"""The in-process half of :class:`storage.interfaces.Locks`, shared by the backends.

Each backend takes its cross-process lock (a file lock, a PostgreSQL advisory lock)
only after the caller holds the name in :class:`LocalLocks`: tasks of one process then
queue in arrival order on an :class:`asyncio.Lock` instead of polling against each
other, and a process holds at most one backend resource (file descriptor, pooled
connection) per name at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from storage.errors import Unavailable


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # tasks holding or waiting: the entry is dropped at zero


class LocalLocks:
    """Per-name asyncio locks, created on first use and dropped when nobody holds or
    waits for them (so a process that locks many names does not keep them all)."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    @asynccontextmanager
    async def hold(self, name: str, deadline: float) -> AsyncIterator[None]:
        """Hold ``name`` in this process; waits until the loop time ``deadline``.

        Raises Unavailable when the deadline passes first. A cancelled or timed-out
        waiter never holds the lock (asyncio.Lock hands it on to the next waiter).
        """
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entries[name] = _Entry()
        entry.users += 1
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await entry.lock.acquire()
            except TimeoutError:
                raise unavailable(name) from None
            try:
                yield
            finally:
                entry.lock.release()
        finally:
            entry.users -= 1
            if entry.users == 0 and self._entries.get(name) is entry:
                del self._entries[name]


def unavailable(name: str) -> Unavailable:
    """The error of a waiter that gave up on ``name``."""
    return Unavailable(f"lock {name!r} is held elsewhere; gave up waiting")
