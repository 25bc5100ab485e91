"""The writer thread is called once per batch: jobs submitted in one event-loop iteration
are handed over together and committed in one transaction (issue 9 §2)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from storage.sqlite import SqliteStore


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "mail.sqlite3")
    yield s
    await s.close()


async def test_one_handover_and_one_commit_per_loop_iteration(db: SqliteStore) -> None:
    """50 jobs submitted without yielding reach the thread in one queue operation and one commit."""
    w = db.writer
    before = (w.stats.handovers, w.stats.commits, w.stats.jobs)

    def job(i: int) -> Callable[[sqlite3.Connection], int]:
        def run(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO domains (name) VALUES (?)", (f"d{i}.example",))
            return i

        return run

    futures = [w.submit(job(i)) for i in range(50)]  # same iteration: nothing awaited in between
    assert await asyncio.gather(*futures) == list(range(50))
    after = (w.stats.handovers, w.stats.commits, w.stats.jobs)
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (1, 1, 50)


async def test_jobs_submitted_just_before_close_still_run(db: SqliteStore) -> None:
    """close() hands over what was submitted in the current iteration before stopping the thread."""
    w = db.writer

    def run(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO domains (name) VALUES ('late.example')")
        return "ok"

    future = w.submit(run)
    await db.close()
    assert await future == "ok"
