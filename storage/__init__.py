"""The mail store: typed async interfaces and their backends.

Nothing outside this package sees SQL or driver types; callers use :func:`open_store`
and the protocols in :mod:`storage.interfaces`.
"""

from __future__ import annotations

from pathlib import Path

from storage.errors import (
    AlreadyExists,
    Conflict,
    NotFound,
    SeatsExhausted,
    StorageError,
    Unavailable,
)
from storage.interfaces import Directory, MailStore, Store

__all__ = [
    "AlreadyExists",
    "Conflict",
    "Directory",
    "MailStore",
    "NotFound",
    "SeatsExhausted",
    "StorageError",
    "Store",
    "Unavailable",
    "open_store",
]


async def open_store(backend: str, *, path: Path | None = None, dsn: str | None = None) -> Store:
    """Open (creating and migrating when needed) the store named by ``backend``.

    Raises StorageError with an operator-readable message when it cannot be opened.
    """
    if backend == "sqlite":
        from storage.sqlite import SqliteStore

        if path is None:
            raise StorageError("the sqlite backend needs a database path")
        return await SqliteStore.open(path)
    if backend == "postgres":
        from storage.postgres import PgStore

        if not dsn:
            raise StorageError("the postgres backend needs storage.dsn (postgresql://user@host/db)")
        return await PgStore.open(dsn)
    raise StorageError(f"unknown storage backend {backend!r}")
