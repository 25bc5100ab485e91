"""Opening and closing the SQLite store."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import aiosqlite

from storage.errors import StorageError
from storage.interfaces import CalendarStore, Directory, Locks, MailStore, OutboundQueue
from storage.sqlite.calendar import SqliteCalendarStore
from storage.sqlite.checkpoint import WRITER_AUTOCHECKPOINT_PAGES, Checkpointer
from storage.sqlite.directory import SqliteDirectory
from storage.sqlite.locks import SqliteLocks
from storage.sqlite.mail import SqliteMailStore
from storage.sqlite.queue import SqliteQueue
from storage.sqlite.reader import Reader
from storage.sqlite.schema import migrate
from storage.sqlite.writer import Writer

#: Seconds a statement waits for another process's write lock (the CLI beside the
#: daemon) before failing with Unavailable. Long enough for any one transaction of
#: ours; short enough that a stuck process is reported rather than hanging forever.
BUSY_TIMEOUT_SECONDS = 10.0


def _open_writer(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Connect, set the durability pragmas and migrate; the caller owns the result."""
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        # WAL: readers and the writer do not block each other; persistent in the file.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"database {path}: cannot switch to WAL mode (got {mode})")
        # FULL: the WAL is fsynced at every commit, so a committed delivery (250 sent)
        # survives kill -9 and power loss.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # Checkpoints run on the Checkpointer thread; this is only the safety net.
        conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES}")
        migrate(conn, path)
        return conn
    except BaseException:
        conn.close()
        raise


class SqliteStore:
    """The SQLite backend of :class:`storage.interfaces.Store`.

    Attributes: ``directory`` (Directory), ``mail`` (MailStore), ``queue``
    (OutboundQueue), ``locks`` (Locks: lock files beside the database), ``writer`` (the
    write thread, with ``writer.stats``), ``path``.
    """

    def __init__(
        self, path: Path, reader: Reader, writer: Writer, checkpointer: Checkpointer | None = None
    ) -> None:
        self.path = path
        self.writer = writer
        self._checkpointer = checkpointer
        self._reader = reader
        self._closed = False
        self.directory: Directory = SqliteDirectory(reader, writer)
        self.mail: MailStore = SqliteMailStore(reader, writer)
        self.queue: OutboundQueue = SqliteQueue(reader, writer)
        self.calendars: CalendarStore = SqliteCalendarStore(reader, writer)
        self.locks: Locks = SqliteLocks(path)

    @classmethod
    async def open(cls, path: Path, *, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> SqliteStore:
        """Open the database at ``path``, creating its folder and schema when missing.

        ``busy_timeout`` is how long (seconds) a statement waits for another process's
        write lock before failing with Unavailable.

        Raises StorageError with a one-line message naming the path when the folder
        cannot be created, the file cannot be opened or written, or its schema is newer
        than this program.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(
                f"cannot create database folder {path.parent}: {err.strerror or err}"
            ) from None
        # SQLite opens an unwritable file read-only without complaint and fails only at
        # the first write; say so at open instead. WAL also needs a writable folder.
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise StorageError(f"database {path} is not readable and writable by this user")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise StorageError(f"database folder {path.parent} is not writable by this user")
        try:
            conn = await asyncio.to_thread(_open_writer, path, busy_timeout)
        except sqlite3.Error as err:
            raise StorageError(f"cannot open database {path}: {err}") from None
        try:
            checkpointer = await asyncio.to_thread(Checkpointer, path, busy_timeout)
        except sqlite3.Error as err:
            conn.close()
            raise StorageError(f"cannot open database {path}: {err}") from None
        writer = Writer(conn, on_commit=checkpointer.poke)
        try:
            rconn = await aiosqlite.connect(
                path, timeout=busy_timeout, isolation_level=None
            )
            rconn.row_factory = sqlite3.Row
            await rconn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as err:
            await writer.close()
            await asyncio.to_thread(checkpointer.close)
            raise StorageError(f"cannot open database {path}: {err}") from None
        return cls(path, Reader(rconn), writer, checkpointer)

    async def close(self) -> None:
        """Finish in-flight writes, then close both connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.writer.close()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.close)
        await self._reader.close()
