"""SQLite WAL checkpoints run on the background Checkpointer thread, not inline in the writer."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

from storage.sqlite import SqliteStore
from storage.sqlite.checkpoint import WRITER_AUTOCHECKPOINT_PAGES
from storage.types import AccountKind, LocalRecipient

DOMAIN = "example.test"


async def test_background_checkpoint_moves_deliveries_into_the_database_file(tmp_path: Path) -> None:
    """After commits, the Checkpointer copies them from the WAL into the main file without a writer checkpoint."""
    path = tmp_path / "mail.sqlite3"
    store = await SqliteStore.open(path)
    try:
        await store.directory.add_domain(DOMAIN)
        bob = await store.directory.create_account(f"bob@{DOMAIN}", AccountKind.USER)
        body = b"Subject: hi\r\n\r\n" + b"x" * 20_000 + b"\r\n"
        for i in range(5):  # ~30 pages, far below the writer's own auto-checkpoint
            await store.mail.deliver(body + str(i).encode(), [LocalRecipient(bob.id)])

        def autocheckpoint(conn: sqlite3.Connection) -> int:
            return int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

        assert await store.writer.submit(autocheckpoint) == WRITER_AUTOCHECKPOINT_PAGES
        copy = tmp_path / "copy.sqlite3"
        for _ in range(100):  # the main file alone (no WAL) must hold all five
            shutil.copyfile(path, copy)
            conn = sqlite3.connect(copy)
            try:
                count = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            except sqlite3.DatabaseError:
                count = -1
            finally:
                conn.close()
            if count == 5:
                break
            await asyncio.sleep(0.05)
        assert count == 5
    finally:
        await store.close()
