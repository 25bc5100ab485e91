"""Named cross-process locks of the PostgreSQL backend (:class:`storage.interfaces.Locks`).

A name is a transaction-level advisory lock (``pg_advisory_xact_lock``) on a 64-bit
key derived from the name, taken in a transaction on a pooled connection that is kept
for as long as the block runs and then rolled back and returned. Every daemon and CLI
on the same database sees the same keys, so they exclude each other. The wait is
bounded by ``SET LOCAL lock_timeout``; PostgreSQL queues waiters of one key in
arrival order.

Why a transaction-level lock: it cannot outlive its transaction. Rollback releases it;
if the rollback cannot be sent (the task is cancelled again, the server is gone), the
connection is terminated, and the end of the session releases it too. The pool thus
never gets back a connection still holding a lock (its reset is a no-op, see
``storage.postgres.store._no_reset``).

The lock connection comes from the store's pool. Holders and waiters together may
use at most :data:`MAX_LOCK_CONNECTIONS_SHARE` of it, so the work inside the blocks
(which needs connections of its own) always finds one.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from storage.errors import Unavailable
from storage.interfaces import DEFAULT_LOCK_TIMEOUT_SECONDS
from storage.locks import LocalLocks, unavailable
from storage.postgres.db import Connection, translate

#: Share of the pool that lock holders and waiters may occupy at once. Half: if every
#: lock connection were held while the blocks wait for connections of their own,
#: nothing could finish until the lock timeouts.
MAX_LOCK_CONNECTIONS_SHARE = 0.5
#: Prefix of the hashed names, so these keys do not meet the other advisory locks of
#: the schema (the migration lock is a small constant).
_KEY_NAMESPACE = b"mailserver.lock:"


def key_of(name: str) -> int:
    """The signed 64-bit advisory-lock key of ``name`` (the same in every process)."""
    digest = hashlib.blake2b(_KEY_NAMESPACE + name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PgLocks:
    """The named locks of one PostgreSQL store (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._local = LocalLocks()
        size = max(1, int(pool.get_max_size() * MAX_LOCK_CONNECTIONS_SHARE))
        self._connections = asyncio.Semaphore(size)

    @asynccontextmanager
    async def exclusive(
        self,
        name: str,
        timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS,  # noqa: ASYNC109 - bounds the wait, not the block
    ) -> AsyncIterator[None]:
        """Hold ``name`` for the block (see :class:`storage.interfaces.Locks`).

        Raises Unavailable after ``timeout`` seconds or when the server cannot be
        reached.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._local.hold(name, deadline):
            try:
                async with asyncio.timeout_at(deadline):
                    await self._connections.acquire()
            except TimeoutError:
                raise unavailable(name) from None
            try:
                conn = await self._acquire(name, deadline)
                try:
                    await self._lock(conn, name, deadline)
                    yield
                finally:
                    await _finish(conn, self._pool)
            finally:
                self._connections.release()

    async def _acquire(self, name: str, deadline: float) -> Connection:
        try:
            async with asyncio.timeout_at(deadline):
                conn: Connection = await self._pool.acquire()
                return conn
        except TimeoutError:
            raise unavailable(name) from None
        except Exception as err:
            raise _unavailable(err) from err

    async def _lock(self, conn: Connection, name: str, deadline: float) -> None:
        left = deadline - asyncio.get_running_loop().time()
        # lock_timeout 0 would mean "wait forever": at least one millisecond.
        millis = max(1, int(left * 1000))
        try:
            await conn.execute("BEGIN")
            await conn.execute(f"SET LOCAL lock_timeout = {millis}")
            await conn.execute("SELECT pg_advisory_xact_lock($1)", key_of(name))
        except asyncpg.exceptions.LockNotAvailableError:
            raise unavailable(name) from None
        except Exception as err:
            raise _unavailable(err) from err


async def _finish(conn: Connection, pool: asyncpg.Pool) -> None:
    """End the lock's transaction (releasing it) and give the connection back, even if
    the task is cancelled meanwhile: a connection that cannot be rolled back at once is
    terminated, which ends its session and so its locks."""
    cleanup = asyncio.ensure_future(_rollback_and_release(conn, pool))
    try:
        await asyncio.shield(cleanup)
    except asyncio.CancelledError:
        conn.terminate()
        await asyncio.shield(cleanup)  # returns at once: the rollback fails, the release runs
        raise


async def _rollback_and_release(conn: Connection, pool: asyncpg.Pool) -> None:
    try:
        if not conn.is_closed():
            await conn.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - any failure: end the session, which drops the lock
        conn.terminate()
    finally:
        await pool.release(conn)


def _unavailable(err: BaseException) -> BaseException:
    out = translate(err)
    return out if isinstance(out, Unavailable) else Unavailable(f"cannot take lock: {out}")
