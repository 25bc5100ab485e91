"""SQLite WAL checkpoints run on the background Checkpointer thread, not inline in the writer."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

from storage.sqlite import SqliteStore
from storage.sqlite.checkpoint import CHECKPOINT_PAGES, WRITER_AUTOCHECKPOINT_PAGES
from storage.types import AccountKind, LocalRecipient

DOMAIN = "example.test"


def _messages_in_main_file(path: Path, copy: Path) -> int:
    """Messages in a copy of the database file alone (no WAL): what checkpoints moved there."""
    shutil.copyfile(path, copy)
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    except sqlite3.DatabaseError:  # copied while a checkpoint was writing it, or empty
        return -1
    finally:
        conn.close()


async def test_background_checkpoint_moves_deliveries_into_the_database_file(tmp_path: Path) -> None:
    """Past CHECKPOINT_PAGES WAL frames, the Checkpointer copies commits into the main file, the writer not."""
    path = tmp_path / "mail.sqlite3"
    store = await SqliteStore.open(path)
    try:
        await store.directory.add_domain(DOMAIN)
        bob = await store.directory.create_account(f"bob@{DOMAIN}", AccountKind.USER)
        body = b"Subject: hi\r\n\r\n" + b"x" * (100 * 4096) + b"\r\n"  # ~100 pages each
        count = CHECKPOINT_PAGES // 100 + 2
        for i in range(count):
            await store.mail.deliver(body + str(i).encode(), [LocalRecipient(bob.id)])

        def autocheckpoint(conn: sqlite3.Connection) -> int:
            return int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

        assert await store.writer.submit(autocheckpoint) == WRITER_AUTOCHECKPOINT_PAGES
        # The batch that crossed CHECKPOINT_PAGES (9 or 10 messages, depending on when the
        # checkpointer looked) lands in the main file; the writer alone would leave 0 there.
        # The rest stays in the WAL until the next full batch.
        found = -1
        for _ in range(400):  # up to 20 s on a loaded machine
            found = _messages_in_main_file(path, tmp_path / "copy.sqlite3")
            if found >= count // 2:
                break
            await asyncio.sleep(0.05)
        assert found >= count // 2
    finally:
        await store.close()


async def test_small_commits_wait_for_a_full_checkpoint_batch(tmp_path: Path) -> None:
    """A few small commits (far below CHECKPOINT_PAGES frames) cause no checkpoint until close."""
    store = await SqliteStore.open(tmp_path / "mail.sqlite3")
    try:
        await store.directory.add_domain(DOMAIN)
        bob = await store.directory.create_account(f"bob@{DOMAIN}", AccountKind.USER)
        for i in range(5):
            await store.mail.deliver(b"Subject: %d\r\n\r\nhi\r\n" % i, [LocalRecipient(bob.id)])
        await asyncio.sleep(0.2)
        checkpointer = store._checkpointer
        assert checkpointer is not None
        assert checkpointer.checkpoints == 0
    finally:
        await store.close()
    assert _messages_in_main_file(tmp_path / "mail.sqlite3", tmp_path / "copy.sqlite3") == 5
