"""`mailserver store copy` moves a populated SQLite store into PostgreSQL unchanged."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storage.interfaces import Store
from storage.postgres import PgStore
from storage.sqlite import SqliteStore
from storage.types import AccountKind, BusyInterval, LocalRecipient, Right
from tests.helpers import ROOT

D = "example.test"


async def populate(store: Store) -> None:
    """Every kind of thing the store holds, with UID gaps and changed modseqs."""
    d, m = store.directory, store.mail
    await d.add_domain(D)
    await d.add_domain("other.test")
    alice = await d.create_account(f"alice@{D}", AccountKind.USER, "Alice", password_hash="$argon2$x",
                                   licensed=True, settings={"lang": "fr"})
    bob = await d.create_account(f"bob@{D}", AccountKind.USER, "Bob")
    await d.set_enabled(bob.address, False)
    sales = await d.create_account(f"sales@{D}", AccountKind.SHARED, "Sales")
    await d.create_account(f"room1@{D}", AccountKind.ROOM, "Room 1", settings={"capacity": 8})
    await d.create_account(f"team@{D}", AccountKind.LIST, "Team")
    await d.add_members(f"team@{D}", [alice.address, "ext@remote.test"])
    await d.add_alias(f"al@{D}", alice.address)
    await d.grant(sales.address, alice.address, [Right.FULL_ACCESS, Right.SEND_AS])
    await d.grant(sales.address, bob.address, [Right.SEND_ON_BEHALF])
    inbox = await m.get_folder(alice.id, "INBOX")
    assert inbox is not None
    for i in range(6):
        await m.deliver(f"Subject: {i}\r\n\r\nbody {i}\r\n".encode(), [LocalRecipient(alice.id), LocalRecipient(sales.id)])
    await m.store_flags(inbox.id, [1, 2], "add", ["\\Deleted"])
    await m.expunge(inbox.id)  # UIDs 3..6 left, uidnext 7
    await m.store_flags(inbox.id, [3], "add", ["\\Seen", "$Forwarded"])
    await m.append(inbox.id, b"Subject: idx\r\n\r\nx\r\n", ["\\Flagged"],
                   datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), index_json='{"subject": "idx"}')
    await m.create_folder(alice.id, "Projects/2024")
    await m.deliver(b"Subject: out\r\n\r\nq\r\n", [], mail_from=alice.address,
                    remote_recipients=["x@remote.test", "y@remote.test"])
    cols = await store.calendars.ensure_default_collections(alice.id)
    cal = next(c for c in cols if c.name == "calendar")
    await store.calendars.put_item(cal.id, "a.ics", "uid-a", "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
                                   [BusyInterval(datetime(2030, 1, 1, 9, tzinfo=UTC), datetime(2030, 1, 1, 10, tzinfo=UTC))])


async def snapshot(store: Store) -> dict[str, Any]:
    """Everything a client or the CLI can see, as plain data."""
    d, m = store.directory, store.mail
    doc: dict[Any, Any] = {
        "domains": await d.list_domains(),
        "accounts": await d.list_accounts(),
        "aliases": await d.list_aliases(),
        "licensed": await d.count_licensed(),
        "members": await d.members(f"team@{D}"),
        "folders": {}, "messages": {}, "bodies": set(),
    }
    for a in doc["accounts"]:
        doc[f"grants_on {a.address}"] = await d.grants_on(a.address)
        for f in await m.list_folders(a.id):
            doc["folders"][(a.address, f.name)] = f
            msgs = await m.list_messages(f.id)
            doc["messages"][(a.address, f.name)] = msgs
            doc["bodies"] |= {await m.get_body(x.blob_id) for x in msgs}
            doc["index", a.address, f.name] = await m.fetch_range(f.id, 1, 1 << 31, with_index=True)
        for c in await store.calendars.list_collections(a.id):
            doc["cal", a.address, c.name] = (c, await store.calendars.list_items(c.id),
                                             await store.calendars.busy(c.id, datetime(2000, 1, 1, tzinfo=UTC),
                                                                        datetime(2100, 1, 1, tzinfo=UTC)))
    doc["queue"] = await store.queue.list_queue()
    return doc


def run_copy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailserver", "store", "copy", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


async def test_store_copy_round_trip(tmp_path: Path, pg_dsn: str) -> None:
    """Accounts, grants, lists, rooms, folders, flags, UIDs, UIDVALIDITY, modseqs, bodies,
    queue and calendars arrive unchanged; the copy reports progress; UIDs go on from uidnext."""
    path = tmp_path / "mail.sqlite3"
    src = await SqliteStore.open(path)
    try:
        await populate(src)
        before = await snapshot(src)
    finally:
        await src.close()

    done = await asyncio.to_thread(run_copy, "--from", str(path), "--to", pg_dsn)
    assert done.returncode == 0, done.stderr
    assert "messages: " in done.stdout and "bodies: " in done.stdout and done.stdout.startswith("copying")

    pg = await PgStore.open(pg_dsn)
    try:
        after = await snapshot(pg)
        assert after == before
        alice = await pg.directory.get_account(f"alice@{D}")
        assert alice is not None
        inbox = await pg.mail.get_folder(alice.id, "INBOX")
        assert inbox is not None and inbox.uidnext == 8
        meta = await pg.mail.append(inbox.id, b"new")
        assert meta.uid == 8 and meta.modseq > before["folders"][(alice.address, "INBOX")].highestmodseq
        # New rows get fresh ids after the copied ones.
        carol = await pg.directory.create_account(f"carol@{D}", AccountKind.USER)
        assert carol.id > max(a.id for a in before["accounts"])
        new_folder = await pg.mail.create_folder(alice.id, "Later")
        assert new_folder.uidvalidity > max(f.uidvalidity for f in before["folders"].values())
    finally:
        await pg.close()


async def test_store_copy_refuses_non_empty_target(tmp_path: Path, pg_dsn: str) -> None:
    """A second copy into the same database is refused, and --force replaces it."""
    path = tmp_path / "mail.sqlite3"
    src = await SqliteStore.open(path)
    try:
        await src.directory.add_domain(D)
        await src.directory.create_account(f"alice@{D}", AccountKind.USER)
    finally:
        await src.close()
    config = tmp_path / "config.toml"
    config.write_text(f'[server]\nhostname = "mail.{D}"\ndomain = "{D}"\n[storage]\npath = "{path}"\n')

    first = await asyncio.to_thread(run_copy, "--from", str(config), "--to", pg_dsn)
    assert first.returncode == 0, first.stderr
    again = await asyncio.to_thread(run_copy, "--from", str(config), "--to", pg_dsn)
    assert again.returncode == 1 and "already holds a store" in again.stderr and "--force" in again.stderr
    forced = await asyncio.to_thread(run_copy, "--from", str(path), "--to", pg_dsn, "--force")
    assert forced.returncode == 0, forced.stderr
    pg = await PgStore.open(pg_dsn)
    try:
        assert [a.address for a in await pg.directory.list_accounts()] == [f"alice@{D}"]
    finally:
        await pg.close()
