"""The read side: one aiosqlite connection, off the event loop.

aiosqlite runs each statement on its own thread (one thread hop per statement), which
suits reads: they are single queries that see the last committed state (WAL readers
never block the writer and are never blocked by it).

:meth:`Reader.scalar_now` is the exception, for point reads that callers make on every
unit of work (the directory version checked at each SMTP transaction): it runs on a
second, read-only connection in the caller's thread, which costs a few microseconds
instead of a thread hop (tens of microseconds, more under load).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from storage.sqlite.util import translate

#: How long a synchronous point read may wait for a lock (seconds) before it is retried
#: on the aiosqlite thread instead: it runs on the event loop, which must not stall.
#: WAL readers only wait in rare cases (recovery after a crash, a WAL reset).
SYNC_READ_TIMEOUT = 0.005


class Reader:
    """Runs read-only queries; errors come out as storage.errors classes."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._sync: sqlite3.Connection | None = None
        self._sync_failed = False

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return list(await self._conn.execute_fetchall(sql, params))
        except sqlite3.Error as err:
            raise translate(err) from err

    async def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self.all(sql, params)
        return rows[0] if rows else None

    async def scalar_now(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row of a tiny, indexed read (None when no row).

        Runs synchronously on a read-only connection of its own (opened at the first
        call); falls back to the aiosqlite thread when that connection cannot be opened
        or the read would have to wait for a lock.
        """
        if self._sync is None and not self._sync_failed:
            await self._open_sync()
        if self._sync is not None:
            try:
                row = self._sync.execute(sql, params).fetchone()
                return None if row is None else row[0]
            except sqlite3.OperationalError:
                pass  # busy or locked: take the slow path this time
        row = await self.one(sql, params)
        return None if row is None else row[0]

    async def _open_sync(self) -> None:
        try:
            rows = await self.all("PRAGMA database_list")
            path = next((r["file"] for r in rows if r["name"] == "main"), "")
            if not path:  # in-memory or temporary database: nothing to share
                self._sync_failed = True
                return
            conn = sqlite3.connect(
                Path(path).as_uri() + "?mode=ro", uri=True, timeout=SYNC_READ_TIMEOUT,
                isolation_level=None, check_same_thread=False,
            )
            conn.execute("PRAGMA query_only = ON")
            self._sync = conn
        except (sqlite3.Error, OSError):
            self._sync_failed = True

    async def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        await self._conn.close()
