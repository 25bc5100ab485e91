"""The read side: one aiosqlite connection, off the event loop.

aiosqlite runs each statement on its own thread (one thread hop per statement), which
suits reads: they are single queries that see the last committed state (WAL readers
never block the writer and are never blocked by it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite

from storage.sqlite.util import translate


class Reader:
    """Runs read-only queries; errors come out as storage.errors classes."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return list(await self._conn.execute_fetchall(sql, params))
        except sqlite3.Error as err:
            raise translate(err) from err

    async def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self.all(sql, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        await self._conn.close()
