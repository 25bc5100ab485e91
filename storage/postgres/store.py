"""Opening and closing the PostgreSQL store."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from storage.blobs import BlobStore
from storage.errors import StorageError
from storage.interfaces import CalendarStore, Directory, Locks, MailStore, OutboundQueue
from storage.postgres.blobs import PgBlobStore
from storage.postgres.calendar import PgCalendarStore
from storage.postgres.db import Db, is_unavailable
from storage.postgres.directory import PgDirectory
from storage.postgres.locks import PgLocks
from storage.postgres.mail import PgMailStore
from storage.postgres.notify import Notifier
from storage.postgres.queue import PgQueue
from storage.postgres.schema import migrate

log = logging.getLogger(__name__)

#: Connections per store. SMTP deliveries, IMAP reads and the outbound worker of one
#: daemon share them; a transaction holds one only for its own statements (never
#: across network I/O with a client), so a few serve hundreds of sessions. PostgreSQL's
#: default max_connections (100) thus leaves room for about eight daemons plus CLIs.
POOL_MAX_SIZE = 10
POOL_MIN_SIZE = 1
#: Seconds to wait for the server when opening: a missing or unreachable database is
#: reported at start within this time instead of hanging.
CONNECT_TIMEOUT_SECONDS = 10.0


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "(unparsable DSN)"
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class PgStore:
    """The PostgreSQL backend of :class:`storage.interfaces.Store`.

    Attributes: ``directory``, ``mail``, ``queue``, ``calendars``, ``locks``, ``blobs`` (the body
    store), ``db`` (pool wrapper with commit counters), ``notifier`` and ``dsn``.
    """

    def __init__(self, dsn: str, db: Db, notifier: Notifier) -> None:
        self.dsn = dsn
        self.db = db
        self.notifier = notifier
        self.blobs: BlobStore = PgBlobStore(db)
        self.directory: Directory = PgDirectory(db)
        self.mail: MailStore = PgMailStore(db, self.blobs, notifier)
        self.queue: OutboundQueue = PgQueue(db)
        self.calendars: CalendarStore = PgCalendarStore(db)
        self.locks: Locks = PgLocks(db.pool)
        self._closed = False

    @classmethod
    async def open(cls, dsn: str, *, pool_size: int = POOL_MAX_SIZE) -> PgStore:
        """Connect to ``dsn``, migrate the schema, start listening for changes.

        Raises StorageError with one line naming the database (password hidden) when it
        cannot be reached, refuses the login, does not exist, or has a newer schema.
        """
        where = redact(dsn)

        def connect() -> Coroutine[Any, Any, asyncpg.Connection]:
            return asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SECONDS)

        try:
            first = await connect()
        except Exception as err:  # noqa: BLE001 - every cause becomes one line
            raise StorageError(f"cannot connect to PostgreSQL at {where}: {_reason(err)}") from None
        try:
            await migrate(first, where)
            pool = await asyncpg.create_pool(
                dsn, min_size=POOL_MIN_SIZE, max_size=pool_size, timeout=CONNECT_TIMEOUT_SECONDS,
                reset=_no_reset,
            )
        except StorageError:
            await first.close()
            raise
        except Exception as err:  # noqa: BLE001
            first.terminate()
            raise StorageError(f"cannot open PostgreSQL store at {where}: {_reason(err)}") from None
        assert pool is not None
        db = Db(pool)
        notifier = Notifier(connect)
        store = cls(dsn, db, notifier)
        await notifier.start(first, store._all_folder_ids)
        return store

    async def _all_folder_ids(self) -> list[int]:
        return [r[0] for r in await self.db.fetch("SELECT id FROM folders")]

    async def close(self) -> None:
        """Stop listening and close the pool (waiting for in-flight transactions). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.notifier.close()
        await self.db.close()


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is.

    asyncpg's default reset sends ``RESET ALL; UNLISTEN *; CLOSE ALL ...``: one more
    round trip per call, for session state this backend never leaves behind (pooled
    connections run only whole transactions, take only transaction-level advisory
    locks, and never LISTEN: the notifier has its own connection).
    """


def _reason(err: BaseException) -> str:
    if isinstance(err, asyncio.TimeoutError):
        return "timed out"
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno).lower()  # "connection refused", not asyncio's wording
    text = str(err).strip().splitlines()
    reason = text[0] if text else type(err).__name__
    if is_unavailable(err) and not reason:
        return "connection failed"
    return reason


Opener = Callable[[], Coroutine[Any, Any, PgStore]]
