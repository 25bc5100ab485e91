"""CalendarStore on SQLite: collections, items, busy intervals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.errors import AlreadyExists, Conflict
from storage.sqlite import SqliteStore
from storage.types import AccountKind, BusyInterval, CollectionKind


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "mail.sqlite3")
    await s.directory.add_domain("example.test")
    try:
        yield s
    finally:
        await s.close()


def t(hour: int, day: int = 1) -> datetime:
    return datetime(2030, 5, day, hour, tzinfo=UTC)


async def test_default_collections_created_once(store: SqliteStore) -> None:
    """ensure_default_collections creates calendar, tasks and contacts once."""
    room = await store.directory.create_account("r@example.test", AccountKind.ROOM)
    first = await store.calendars.ensure_default_collections(room.id)
    again = await store.calendars.ensure_default_collections(room.id)
    assert [(c.name, c.kind) for c in first] == [
        ("calendar", CollectionKind.CALENDAR), ("contacts", CollectionKind.CONTACTS), ("tasks", CollectionKind.TASKS)
    ]
    assert [c.id for c in again] == [c.id for c in first]
    with pytest.raises(AlreadyExists):
        await store.calendars.create_collection(room.id, "calendar", CollectionKind.CALENDAR)


async def test_put_busy_replace_and_delete(store: SqliteStore) -> None:
    """Busy intervals follow their item: replaced with it, excluded by uid, gone with it."""
    room = await store.directory.create_account("r@example.test", AccountKind.ROOM)
    cal = (await store.calendars.ensure_default_collections(room.id))[0]
    item, old = await store.calendars.put_item(cal.id, "a.ics", "uid-a", "TEXT1", [BusyInterval(t(9), t(10))])
    assert old is None and item.etag and item.uid == "uid-a"
    assert [b.uid for b in await store.calendars.busy(cal.id, t(9, 1), t(11))] == ["uid-a"]
    assert await store.calendars.busy(cal.id, t(10), t(11)) == []  # half-open interval
    assert await store.calendars.busy(cal.id, t(8), t(12), exclude_uid="uid-a") == []
    item2, old2 = await store.calendars.put_item(cal.id, "a.ics", "uid-a", "TEXT2", [BusyInterval(t(14), t(15))])
    assert old2 is not None and old2.etag == item.etag and item2.etag != item.etag
    assert await store.calendars.busy(cal.id, t(9), t(10)) == []
    with pytest.raises(Conflict):
        await store.calendars.put_item(cal.id, "b.ics", "uid-a", "X")
    await store.calendars.put_item(cal.id, "b.ics", "uid-a", "X", replace_uid=True)
    assert [i.href for i in await store.calendars.list_items(cal.id)] == ["b.ics"]
    assert (await store.calendars.delete_item(cal.id, "b.ics")) is not None
    assert await store.calendars.list_items(cal.id) == []


async def test_account_removal_removes_collections(store: SqliteStore) -> None:
    """Removing an account removes its collections and items."""
    user = await store.directory.create_account("u@example.test", AccountKind.USER)
    cal = (await store.calendars.ensure_default_collections(user.id))[0]
    await store.calendars.put_item(cal.id, "a.ics", "u1", "T", [BusyInterval(t(9), t(10))])
    await store.directory.remove_account("u@example.test")
    assert await store.calendars.list_collections(user.id) == []
    assert await store.calendars.busy(cal.id, t(0), t(23)) == []
