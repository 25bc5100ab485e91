"""The single writer thread: every write of this process goes through it.

Callers :meth:`Writer.submit` a job, a plain function ``job(conn) -> T`` that runs on
the writer's own :class:`sqlite3.Connection`. Jobs submitted during one event-loop
iteration are handed to the thread together, in one queue operation (one wake-up of
the thread, not one per job). The thread takes every job that is ready
(up to :data:`MAX_BATCH`), opens one ``BEGIN IMMEDIATE`` transaction, runs each job in
its own ``SAVEPOINT`` (a failing job is rolled back alone and gets its exception),
commits once, and only then settles all the jobs' futures with one
``loop.call_soon_threadsafe`` per event loop. Many concurrent deliveries thus share one
fsync (group commit) and one thread hop per batch.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from storage.errors import StorageError
from storage.sqlite.util import translate

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Most jobs in one transaction. Bounds how long the write lock is held and how long
#: the first job of a batch waits for the last; 256 deliveries of 64 KiB are ~16 MiB.
MAX_BATCH = 256


@dataclass(slots=True, eq=False)
class _Job(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    future: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop
    after_commit: Callable[[T], None] | None
    result: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class WriterStats:
    """Counters for tests and benchmarks: jobs run and transactions committed."""

    jobs: int = 0
    commits: int = 0
    handovers: int = 0  # queue operations from event loops to the thread
    largest_batch: int = 0


class Writer:
    """Owns one sqlite3 connection and a thread that runs write jobs in batches."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        name: str = "sqlite-writer",
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._conn = conn
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[list[_Job[Any]] | None] = queue.SimpleQueue()
        # Jobs submitted in the current iteration of each event loop, not yet handed over.
        self._pending: dict[asyncio.AbstractEventLoop, list[_Job[Any]]] = {}
        self._closed = False
        self.stats = WriterStats()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(
        self,
        fn: Callable[[sqlite3.Connection], T],
        after_commit: Callable[[T], None] | None = None,
    ) -> asyncio.Future[T]:
        """Queue ``fn``; the future resolves after the transaction that ran it committed.

        ``after_commit(result)`` runs on the caller's event loop after the commit and
        before the future resolves (even if the caller stopped waiting).
        Raises StorageError when the writer is closed.
        """
        if self._closed:
            raise StorageError("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(fn, future, loop, after_commit)
        pending = self._pending.get(loop)
        if pending is None:
            self._pending[loop] = [job]
            loop.call_soon(self._hand_over, loop)
        else:
            pending.append(job)
        return future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give the thread the jobs ``loop`` submitted in this iteration, in one put."""
        jobs = self._pending.pop(loop, None)
        if jobs:
            self.stats.handovers += 1
            self._queue.put(jobs)

    async def close(self) -> None:
        """Run every job already submitted, then stop the thread and close the connection."""
        if self._closed:
            return
        self._closed = True
        for loop in list(self._pending):
            self._hand_over(loop)
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    # -- writer thread

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is None:
                    break
                batch: list[_Job[Any]] = list(first)
                while len(batch) < MAX_BATCH:
                    try:
                        jobs = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if jobs is None:
                        stop = True
                        break
                    batch.extend(jobs)
                for start in range(0, len(batch), MAX_BATCH):
                    self._run_batch(batch[start:start + MAX_BATCH])
        finally:
            self._conn.close()

    def _run_batch(self, batch: list[_Job[Any]]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            self._fail_all(batch, err)
            return
        for job in batch:
            try:
                conn.execute("SAVEPOINT job")
                job.result = job.fn(conn)
                conn.execute("RELEASE job")
            except BaseException as err:  # noqa: BLE001 - handed to the caller
                job.error = translate(err)
                try:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                except sqlite3.Error as rollback_err:
                    # The transaction itself is gone: on SQLITE_FULL, SQLITE_IOERR and the
                    # like SQLite may roll back the whole transaction (sqlite.org/lang_transaction.html,
                    # "Response To Errors Within A Transaction"), savepoints included.
                    # Nothing of this batch is committed, so every job fails, with the
                    # error that ended the transaction (StorageFull for a full disk), not
                    # with "no such savepoint".
                    self._fail_all(batch, err if isinstance(err, sqlite3.Error) else rollback_err)
                    return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            self._fail_all(batch, err)
            return
        self.stats.jobs += len(batch)
        self.stats.commits += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        self._settle(batch)
        if self._on_commit is not None:
            self._on_commit()

    def _fail_all(self, batch: list[_Job[Any]], err: sqlite3.Error) -> None:
        log.warning("write transaction failed: %s", err)
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback failed")
        for job in batch:
            if job.error is None:  # a job's own refusal (AlreadyExists...) stays its answer
                job.error = translate(err)
            job.result = None
        self._settle(batch)

    def _settle(self, batch: list[_Job[Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job[Any]]] = {}
        for job in batch:
            by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, jobs)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass


def _resolve(jobs: list[_Job[Any]]) -> None:
    """On the event loop: run after-commit hooks, then settle the futures."""
    for job in jobs:
        if job.error is None and job.after_commit is not None:
            try:
                job.after_commit(job.result)
            except Exception:
                log.exception("after-commit hook failed")
        if job.future.cancelled():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)
