"""Room bookings are serialised through the store, not per process (issue 8): two
attendants on two store objects of one SQLite file (two daemons, or the CLI beside the
daemon) never book the same slot twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from delivery.booking.attendant import ROOM_CALENDAR, Attendant
from delivery.booking.policy import PartStat
from storage.sqlite import SqliteStore
from storage.types import AccountKind
from tests.calendar.fixtures import day, thunderbird_request

DOMAIN = "example.test"
ROOM = f"room@{DOMAIN}"
ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    """Two store objects on one database file, as two processes would open it."""
    path = tmp_path / "mail.sqlite3"
    first = await SqliteStore.open(path)
    second = await SqliteStore.open(path)
    try:
        await first.directory.add_domain(DOMAIN)
        await first.directory.create_account(ROOM, AccountKind.ROOM, "Room")
        for user in (ALICE, BOB):
            await first.directory.create_account(user, AccountKind.USER, user, licensed=True, max_seats=10)
        yield first, second
    finally:
        await second.close()
        await first.close()


async def test_two_attendants_on_two_stores_book_a_slot_once(stores: tuple[SqliteStore, SqliteStore]) -> None:
    """Conflicting requests handled at once by attendants on different store objects:
    exactly one is accepted and the room's calendar holds one booking per slot."""
    first, second = stores
    attendants = (Attendant(first, "mx1.example.test"), Attendant(second, "mx2.example.test"))
    room = await first.directory.get_account(ROOM)
    alice = await first.directory.get_account(ALICE)
    bob = await first.directory.get_account(BOB)
    assert room is not None and alice is not None and bob is not None
    for round_ in range(3):
        start = day(2 + round_, 10)
        end = start + timedelta(hours=1)
        requests = [
            (attendants[0], thunderbird_request(ALICE, ROOM, f"a-{round_}", start, end), alice),
            (attendants[1], thunderbird_request(BOB, ROOM, f"b-{round_}", start, end), bob),
        ]
        outcomes = await asyncio.gather(*(a.handle(room, body, who) for a, body, who in requests))
        assert sorted(o.partstat.value for o in outcomes if o.partstat) == ["ACCEPTED", "DECLINED"]
        calendar = next(c for c in await second.calendars.list_collections(room.id) if c.name == ROOM_CALENDAR)
        booked = {b.uid for b in await second.calendars.busy(calendar.id, start, end)}
        accepted = [o for o in outcomes if o.partstat is PartStat.ACCEPTED]
        assert len(accepted) == 1
        winner = "ab"[outcomes.index(accepted[0])]
        assert booked == {f"{winner}-{round_}"}


async def test_attendant_waits_for_the_room_lock_held_elsewhere(stores: tuple[SqliteStore, SqliteStore]) -> None:
    """While another store object holds the room's booking lock (the CLI approving a
    request), the attendant does not decide; it books once the lock is released."""
    first, second = stores
    room = await first.directory.get_account(ROOM)
    alice = await first.directory.get_account(ALICE)
    assert room is not None and alice is not None
    start = day(5, 9)
    body = thunderbird_request(ALICE, ROOM, "held-1", start, start + timedelta(hours=1))
    attendant = Attendant(first, "mx1.example.test")
    async with second.locks.exclusive(f"room-booking:{room.id}", timeout=1):
        task = asyncio.create_task(attendant.handle(room, body, alice))
        await asyncio.sleep(0.3)
        assert not task.done()
        calendar = next(c for c in await first.calendars.ensure_default_collections(room.id) if c.name == ROOM_CALENDAR)
        assert await first.calendars.busy(calendar.id, start, start + timedelta(hours=1)) == []
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.partstat is PartStat.ACCEPTED
    assert [b.uid for b in await first.calendars.busy(calendar.id, start, start + timedelta(hours=1))] == ["held-1"]
