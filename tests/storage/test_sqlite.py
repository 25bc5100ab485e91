"""SQLite-specific behaviour: pragmas, schema versions, path errors, group commit, durability."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from storage.errors import StorageError, Unavailable
from storage.sqlite import SqliteStore, schema
from storage.types import AccountKind, LocalRecipient

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "example.test"


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(tmp_path / "mail.sqlite3")
    await store.directory.add_domain(DOMAIN)
    yield store
    await store.close()


async def test_pragmas(sqlite_store: SqliteStore) -> None:
    """The writer runs in WAL mode with synchronous=FULL and foreign keys on."""

    def read(conn: sqlite3.Connection) -> tuple[str, int, int, int]:
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
            conn.execute("PRAGMA foreign_keys").fetchone()[0],
            conn.execute("PRAGMA busy_timeout").fetchone()[0],
        )

    mode, sync, fk, busy = await sqlite_store.writer.submit(read)
    assert (mode, sync, fk) == ("wal", 2, 1)
    assert busy >= 1000


async def test_creates_parent_folder_and_schema(tmp_path: Path) -> None:
    """open creates missing folders and stamps the current schema version."""
    path = tmp_path / "a" / "b" / "mail.sqlite3"
    store = await SqliteStore.open(path)
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database from a newer program is refused with one line naming the path."""
    path = tmp_path / "mail.sqlite3"
    await (await SqliteStore.open(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="newer") as info:
        await SqliteStore.open(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


async def test_migration_steps_applied_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An older database gets only the missing steps at open, and its data stays."""
    path = tmp_path / "mail.sqlite3"
    store = await SqliteStore.open(path)
    await store.directory.add_domain(DOMAIN)
    await store.close()
    steps = [*schema.MIGRATIONS, ["CREATE TABLE extra (x INTEGER)", "INSERT INTO extra VALUES (7)"]]
    monkeypatch.setattr(schema, "MIGRATIONS", steps)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(steps))
    store = await SqliteStore.open(path)
    await store.close()
    store = await SqliteStore.open(path)  # reopening applies nothing twice
    try:
        assert await store.directory.list_domains() == [DOMAIN]
        rows = await store.writer.submit(lambda c: c.execute("SELECT x FROM extra").fetchall())
        assert [tuple(r) for r in rows] == [(7,)]
    finally:
        await store.close()


async def test_unusable_paths_give_one_line_errors(tmp_path: Path) -> None:
    """A parent that is a file, or a path that is a folder, is a StorageError naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError) as info:
        await SqliteStore.open(blocker / "mail.sqlite3")
    assert str(blocker) in str(info.value) and "\n" not in str(info.value)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(StorageError) as info:
        await SqliteStore.open(folder)
    assert str(folder) in str(info.value) and "\n" not in str(info.value)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError) as info:
        await SqliteStore.open(garbage)
    assert str(garbage) in str(info.value)


async def test_group_commit(sqlite_store: SqliteStore) -> None:
    """50 concurrent deliveries share few transactions (one fsync for many)."""
    acc = await sqlite_store.directory.create_account(f"a@{DOMAIN}", AccountKind.USER)
    before = sqlite_store.writer.stats.commits
    await asyncio.gather(
        *(sqlite_store.mail.deliver(b"m%d" % i, [LocalRecipient(acc.id)]) for i in range(50))
    )
    commits = sqlite_store.writer.stats.commits - before
    assert commits <= 10
    assert sqlite_store.writer.stats.largest_batch >= 5


async def test_failing_job_rolls_back_alone(sqlite_store: SqliteStore) -> None:
    """In one batch, a job that wrote and then failed is undone; its neighbours commit."""

    def insert(name: str, fail: bool) -> Callable[[sqlite3.Connection], str]:
        def job(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT INTO domains (name) VALUES (?)", (name,))
            if fail:
                raise ValueError("boom")
            return name

        return job

    w = sqlite_store.writer
    futures = [w.submit(insert(f"d{i}.test", i == 1)) for i in range(3)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[0] == "d0.test" and results[2] == "d2.test"
    assert isinstance(results[1], ValueError)
    assert await sqlite_store.directory.list_domains() == ["d0.test", "d2.test", DOMAIN]


async def test_integrity_error_is_translated(sqlite_store: SqliteStore) -> None:
    """Driver errors reach callers as storage errors, never sqlite3 exceptions."""
    with pytest.raises(StorageError):
        await sqlite_store.writer.submit(
            lambda c: c.execute("INSERT INTO domains (name) VALUES (?)", (DOMAIN,))
        )


async def test_locked_by_other_process_is_unavailable(tmp_path: Path) -> None:
    """A write lock held elsewhere past busy_timeout gives Unavailable; afterwards writes work."""
    path = tmp_path / "m.sqlite3"
    store = await SqliteStore.open(path, busy_timeout=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Unavailable):
            await store.directory.add_domain("x.test")
        other.execute("ROLLBACK")
        await store.directory.add_domain("x.test")
        assert await store.directory.list_domains() == ["x.test"]
    finally:
        other.close()
        await store.close()


async def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    """After close, writes raise StorageError instead of hanging."""
    store = await SqliteStore.open(tmp_path / "m.sqlite3")
    await store.close()
    with pytest.raises(StorageError):
        await store.directory.add_domain("x.test")


_CHILD = """
import asyncio, sys
from pathlib import Path
from storage.sqlite import SqliteStore
from storage.types import LocalRecipient

async def main() -> None:
    store = await SqliteStore.open(Path(sys.argv[1]))
    account_id = int(sys.argv[2])

    async def worker(w: int) -> None:
        i = 0
        while True:
            res = await store.mail.deliver(b"w%d m%d" % (w, i), [LocalRecipient(account_id)])
            # Printed only after deliver() returned: the caller would now answer 250.
            print(res.uids[(account_id, "INBOX")], res.blob_id, flush=True)
            i += 1

    await asyncio.gather(*(worker(w) for w in range(8)))

asyncio.run(main())
"""

#: Confirmed deliveries to see before the SIGKILL: enough that it lands mid-burst.
_KILL_AFTER = 300


@pytest.mark.slow
async def test_kill_9_loses_no_confirmed_delivery(tmp_path: Path) -> None:
    """Every delivery confirmed before a SIGKILL is in the database after reopening."""
    path = tmp_path / "mail.sqlite3"
    store = await SqliteStore.open(path)
    await store.directory.add_domain(DOMAIN)
    acc = await store.directory.create_account(f"a@{DOMAIN}", AccountKind.USER)
    await store.close()
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(path), str(acc.id),
        stdout=asyncio.subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None
    data = b""
    try:
        async with asyncio.timeout(60):
            while data.count(b"\n") < _KILL_AFTER:
                chunk = await proc.stdout.read(65536)
                assert chunk, "child exited early"
                data += chunk
    finally:
        proc.send_signal(signal.SIGKILL)
    data += await proc.stdout.read()
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    confirmed = [line.split() for line in data.split(b"\n")[:-1]]  # last piece may be partial
    assert len(confirmed) >= _KILL_AFTER
    store = await SqliteStore.open(path)
    try:
        inbox = await store.mail.get_folder(acc.id, "INBOX")
        assert inbox is not None
        stored = {m.uid: m.blob_id for m in await store.mail.list_messages(inbox.id)}
        for uid, blob_id in confirmed:
            assert stored.get(int(uid)) == blob_id.decode()
    finally:
        await store.close()
