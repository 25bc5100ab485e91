"""The connection pool and error translation of the PostgreSQL backend.

Every query goes through :class:`Db`: reads run on any pooled connection (READ
COMMITTED: they see what is committed), writes run in :meth:`Db.transaction`, which
retries a transaction PostgreSQL aborted for a serialization failure or deadlock and
turns every driver error into a :mod:`storage.errors` class. A connection lost while
serving is :class:`~storage.errors.Unavailable`; the pool opens fresh connections on
the next call, so the store recovers by itself once the server is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias, TypeVar

import asyncpg

from storage.errors import AlreadyExists, Conflict, StorageError, StorageFull, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
# asyncpg ships no type information: these aliases name what a value is.
Connection: TypeAlias = asyncpg.Connection
Record: TypeAlias = asyncpg.Record

#: Seconds closing the pool may wait for in-flight transactions. (Taking a connection
#: has no timeout of its own: a new connection times out after the pool's connect
#: timeout, and asyncio.wait_for around every acquire would cost a task per call.)
ACQUIRE_TIMEOUT_SECONDS = 10.0
#: Attempts of one transaction aborted by a serialization failure or deadlock (two
#: daemons moving mail between the same two folders in opposite directions). Each such
#: abort means another transaction committed, so a few retries always make progress.
MAX_TX_ATTEMPTS = 5


def is_unavailable(err: BaseException) -> bool:
    """True for errors meaning "the server cannot be reached right now"."""
    return isinstance(
        err,
        (
            OSError,
            TimeoutError,
            asyncpg.PostgresConnectionError,  # class 08: connection exceptions
            asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, cannot connect now
            asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
            asyncpg.exceptions.ConnectionDoesNotExistError,
            # a pooled connection whose protocol state broke when the server cut it
            # mid-operation ("cannot switch to state ...; another operation is in progress")
            asyncpg.exceptions.InternalClientError,
        ),
    ) or (isinstance(err, asyncpg.InterfaceError) and "connection" in str(err).lower()
          and "closed" in str(err).lower())


def translate(err: BaseException) -> BaseException:
    """Map a driver exception to a storage.errors class; other exceptions pass through."""
    if isinstance(err, StorageError):
        return err
    if isinstance(err, asyncpg.exceptions.DiskFullError):  # SQLSTATE 53100 disk_full
        return StorageFull(f"the database server is out of disk space: {err}")
    if is_unavailable(err):
        return Unavailable(f"database unavailable: {err or type(err).__name__}")
    if isinstance(err, asyncpg.UniqueViolationError):
        return AlreadyExists(f"already exists ({err})")
    if isinstance(err, asyncpg.IntegrityConstraintViolationError):
        return Conflict(f"the change breaks a database invariant ({err})")
    if isinstance(err, (asyncpg.PostgresError, asyncpg.InterfaceError)):
        return StorageError(f"database error: {err}")
    return err


class Db:
    """A pool plus the one place where driver errors become storage errors."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        #: Committed write transactions and retried ones (tests and benchmarks).
        self.commits = 0
        self.retries = 0
        #: Calls retried on a fresh connection after finding a dropped one.
        self.reconnects = 0

    async def fetch(self, sql: str, *args: Any) -> list[Record]:
        """Run one read. A read is idempotent, so one that lost its connection (the
        pool still held a connection the server had dropped: failover, restart) is
        tried once more on a fresh one before answering Unavailable."""
        for attempt in (1, 2):
            try:
                async with self.pool.acquire() as conn:
                    try:
                        rows: list[Record] = await conn.fetch(sql, *args)
                    except asyncpg.exceptions.InternalClientError:
                        conn.terminate()  # its protocol state is broken: never reuse it
                        raise
                    return rows
            except Exception as err:
                if attempt == 1 and _connection_lost(err):
                    self.reconnects += 1
                    continue
                raise _translated(err) from err
        raise AssertionError("unreachable")  # pragma: no cover

    async def fetchrow(self, sql: str, *args: Any) -> Record | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    async def transaction(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``fn(conn)`` in one transaction and commit; the result once committed.

        Retried (from the start) when PostgreSQL aborts it for a serialization failure
        or deadlock. Raises storage errors only; Unavailable when the server is gone
        (if that happens during COMMIT the outcome is unknown: callers answer with a
        temporary failure, so the client retries and nothing is lost).
        """
        for attempt in range(1, MAX_TX_ATTEMPTS + 1):
            began = False
            try:
                async with self.pool.acquire() as conn:
                    try:
                        async with conn.transaction():
                            began = True
                            result = await fn(conn)
                    except asyncpg.exceptions.InternalClientError:
                        conn.terminate()  # its protocol state is broken: never reuse it
                        raise
                self.commits += 1
                return result
            except asyncpg.TransactionRollbackError as err:
                if attempt == MAX_TX_ATTEMPTS:
                    raise StorageError(f"database busy: {err}") from err
                self.retries += 1
                log.debug("transaction retried after %s", err)
                await asyncio.sleep(0.005 * attempt)
            except Exception as err:
                # A connection found dead at BEGIN ran nothing: safe to try a fresh one.
                if not began and attempt == 1 and _connection_lost(err):
                    self.reconnects += 1
                    continue
                raise _translated(err) from err
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.pool.close(), timeout=ACQUIRE_TIMEOUT_SECONDS)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self.pool.terminate()


def _connection_lost(err: BaseException) -> bool:
    """The pooled connection was dropped by the server (not: cannot connect now)."""
    return isinstance(
        err,
        (asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.AdminShutdownError,
         asyncpg.exceptions.InternalClientError, ConnectionResetError, BrokenPipeError),
    )


def _translated(err: BaseException) -> BaseException:
    out = translate(err)
    if isinstance(out, Unavailable):
        log.warning("%s", out)
    return out


def uid_array(uids: Sequence[int]) -> list[int]:
    return [int(u) for u in uids]
