"""WAL checkpoints on a thread of their own, so the writer thread never runs one inline.

In WAL mode every committed page is written twice: to the WAL at commit, and to the
database file when a checkpoint copies it back. By default SQLite runs that copy inside
the COMMIT that pushes the WAL past ``wal_autocheckpoint`` pages, i.e. on the writer
thread, holding up every delivery waiting for the next batch. Here the writer's own
auto-checkpoint is raised to a safety net (:data:`WRITER_AUTOCHECKPOINT_PAGES`) and a
:class:`Checkpointer` thread, woken after commits, runs ``PRAGMA wal_checkpoint(PASSIVE)``
on its own connection: PASSIVE never takes the write lock, so commits go on while it copies
(sqlite.org/wal.html, "Checkpointing"). Durability is unchanged: a commit is durable once
its WAL frames are fsynced (``synchronous=FULL``); a checkpoint only moves committed pages
and fsyncs the database file before the WAL may be reused.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import threading
from pathlib import Path

log = logging.getLogger(__name__)

#: WAL size (pages) at which the writer checkpoints inline after all, when this thread
#: falls behind (or is gone). Bounds the WAL at ~80 MiB with 4 KiB pages.
WRITER_AUTOCHECKPOINT_PAGES = 20_000
#: WAL frames not yet copied at which a background checkpoint runs: SQLite's own default
#: auto-checkpoint (1,000 pages), so small commits are not followed by a database fsync
#: each (a checkpoint after every commit cost ~5% of CPU per message at 1 connection).
CHECKPOINT_PAGES = 1000
#: Least time between two background checkpoints: one copies the frames of many group
#: commits at once (fewer database fsyncs), and a quiet WAL costs nothing.
MIN_INTERVAL_SECONDS = 0.05


class Checkpointer:
    """A thread that checkpoints the WAL of ``path`` (PASSIVE) after commits.

    :meth:`poke` (any thread, cheap) says something was committed; :meth:`close` stops the
    thread after one last checkpoint.
    """

    def __init__(self, path: Path, busy_timeout: float, name: str = "sqlite-checkpoint") -> None:
        self._conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA synchronous = FULL")
        self._shm_path = Path(f"{path}-shm")
        self._shm: int | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.checkpoints = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Ask for a checkpoint soon (called after each commit)."""
        self._wake.set()

    def close(self) -> None:
        """Checkpoint once more, stop the thread and close its connection (blocking)."""
        self._stopping.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._pending_frames() >= CHECKPOINT_PAGES:
                    self._checkpoint()
                if self._stopping.wait(MIN_INTERVAL_SECONDS):
                    self._checkpoint()
                    break
        finally:
            if self._shm is not None:
                os.close(self._shm)
            self._conn.close()

    def _pending_frames(self) -> int:
        """WAL frames committed but not yet checkpointed, read from the wal-index header
        (sqlite.org/walformat.html §2.2.1: mxFrame, a native-order u32 at offset 16 of the
        -shm file; nBackfill at offset 96). Read without SQLite's locks, so it is only a
        hint: a torn read gives a wrong count once, and the writer's own auto-checkpoint
        bounds the WAL whatever happens. When the file cannot be read, say "many"."""
        try:
            if self._shm is None:
                self._shm = os.open(self._shm_path, os.O_RDONLY)
            header = os.pread(self._shm, 100, 0)
            (max_frame,) = struct.unpack_from("=I", header, 16)
            (backfilled,) = struct.unpack_from("=I", header, 96)
        except (OSError, struct.error):
            return CHECKPOINT_PAGES
        return max(0, max_frame - backfilled)

    def _checkpoint(self) -> None:
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as err:  # busy or I/O: the writer's safety net still holds
            log.warning("background checkpoint failed: %s", err)
