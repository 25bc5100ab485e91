"""Named cross-process locks of the SQLite backend (:class:`storage.interfaces.Locks`).

Every process that opens the database ``mail.sqlite3`` uses the lock files in
``mail.sqlite3.locks/``: one file per name, called after the SHA-1 of the name (any
name becomes a safe file name), locked with ``flock(2)``. A ``flock`` belongs to the
open file description, so two store objects of one process exclude each other as two
processes do, and the kernel drops the lock when its holder exits or is killed: a
crashed daemon never leaves a room locked.

The file lock is tried with ``LOCK_NB``, which never blocks, and between tries the
waiter sleeps on the event loop. A blocking ``flock`` in a worker thread would leave a
lock taken by a thread whose waiter had already been cancelled; a try that cannot
block needs no thread, and cancellation can only land in the sleep, when nothing is
held. Lock files are never deleted (deleting a lock file while another process has it
open is how two holders would end up with different files): there is one per name
ever locked, empty.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from storage.errors import Unavailable
from storage.interfaces import DEFAULT_LOCK_TIMEOUT_SECONDS
from storage.locks import LocalLocks, unavailable

#: First pause (seconds) between tries while another process holds the lock: short,
#: because the locks guard work of a few milliseconds (one booking decision).
POLL_FIRST_SECONDS = 0.002
#: Longest pause between tries: a waiter notices a release within this time, and a
#: long wait costs at most 20 wake-ups a second.
POLL_MAX_SECONDS = 0.05


def lock_dir(db_path: Path) -> Path:
    """The folder of the lock files of the database at ``db_path``."""
    return db_path.with_name(db_path.name + ".locks")


class SqliteLocks:
    """The named locks of one SQLite database (``path``); see the module docstring."""

    def __init__(self, db_path: Path) -> None:
        self.dir = lock_dir(Path(db_path))
        self._local = LocalLocks()

    def file_for(self, name: str) -> Path:
        """The lock file of ``name``."""
        return self.dir / hashlib.sha1(name.encode("utf-8")).hexdigest()

    @asynccontextmanager
    async def exclusive(
        self,
        name: str,
        timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS,  # noqa: ASYNC109 - bounds the wait, not the block
    ) -> AsyncIterator[None]:
        """Hold ``name`` for the block (see :class:`storage.interfaces.Locks`).

        Raises Unavailable after ``timeout`` seconds, or when the lock file cannot be
        created or opened.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._local.hold(name, deadline):
            fd = self._open(name)
            try:
                pause = POLL_FIRST_SECONDS
                while not _try_lock(fd):
                    left = deadline - loop.time()
                    if left <= 0:
                        raise unavailable(name)
                    await asyncio.sleep(min(pause, left))
                    pause = min(pause * 2, POLL_MAX_SECONDS)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _open(self, name: str) -> int:
        path = self.file_for(name)
        try:
            self.dir.mkdir(exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise Unavailable(f"cannot open lock file {path}: {err.strerror or err}") from None


def _try_lock(fd: int) -> bool:
    """Take the exclusive flock on ``fd`` if nobody else holds it; never blocks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EINTR):
            return False
        raise Unavailable(f"cannot lock: {err.strerror or err}") from None
    return True
