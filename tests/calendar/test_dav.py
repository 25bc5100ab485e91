"""CalDAV/CardDAV over the HTTP listener with the `caldav` client library: own and
shared calendars and task lists, grants, room calendars, free/busy."""

from __future__ import annotations

import asyncio
import base64
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import caldav
import pytest
from caldav.lib.error import AuthorizationError, DAVError, NotFoundError

from storage.types import Account, Right
from tests.calendar.fixtures import day
from tests.smtp.client import PASSWORD

T = TypeVar("T")


@pytest.fixture
async def org(server: Any) -> dict[str, Account]:
    a = server.accounts
    org = {
        "alice": await a.add_user("alice@example.test", "Alice", PASSWORD),
        "bob": await a.add_user("bob@example.test", "Bob", PASSWORD),
        "team": await a.add_shared("team@example.test", "Team"),
        "room": await a.add_room("boardroom@example.test", "Board Room"),
    }
    await a.grant("team@example.test", "alice@example.test", [Right.FULL_ACCESS])
    return org


def client(server: Any, user: str, password: str = PASSWORD) -> caldav.DAVClient:
    return caldav.DAVClient(url=f"http://127.0.0.1:{server.port('http')}/dav/", username=user, password=password)


async def blocking(fn: Callable[[], T]) -> T:
    """Run a synchronous caldav call off the loop (the daemon runs on this loop)."""
    return await asyncio.to_thread(fn)


def event_ics(uid: str, hours_from_now_day: int = 2, summary: str = "Standup") -> str:
    start = day(hours_from_now_day, 9)
    end = start + timedelta(minutes=30)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
        f"DTEND:{end:%Y%m%dT%H%M%SZ}\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def todo_ics(uid: str) -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VTODO\r\n"
        f"UID:{uid}\r\nDTSTAMP:20240101T000000Z\r\nSUMMARY:Order paper\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
    )


async def test_user_sees_own_default_collections(server: Any, org: dict[str, Account]) -> None:
    """A user's principal has calendar, tasks and contacts, found through the principal."""
    def run() -> list[str]:
        principal = client(server, "alice@example.test").principal()
        return sorted(str(c.url).rstrip("/").rsplit("/", 1)[1] for c in principal.calendars())

    names = await blocking(run)
    assert "calendar" in names and "tasks" in names


async def test_full_access_user_manages_shared_calendar_and_tasks(server: Any, org: dict[str, Account]) -> None:
    """Full Access on a shared mailbox: list, create and delete events and tasks in its collections."""
    base = f"http://127.0.0.1:{server.port('http')}/dav/team@example.test/"

    def run() -> tuple[list[str], list[str], list[str]]:
        c = client(server, "alice@example.test")
        cal = c.calendar(url=base + "calendar/")
        tasks = c.calendar(url=base + "tasks/")
        cal.save_event(event_ics("shared-ev-1"))
        tasks.save_todo(todo_ics("shared-todo-1"))
        listed = [e.icalendar_component["UID"] for e in cal.events()]
        todos = [t.icalendar_component["UID"] for t in tasks.todos()]
        cal.event_by_uid("shared-ev-1").delete()
        after = [e.icalendar_component["UID"] for e in cal.events()]
        return listed, todos, after

    listed, todos, after = await blocking(run)
    assert listed == ["shared-ev-1"] and todos == ["shared-todo-1"] and after == []
    collection = await server.store.calendars.get_collection(org["team"].id, "tasks")
    assert [i.uid for i in await server.store.calendars.list_items(collection.id)] == ["shared-todo-1"]


async def test_user_without_grant_refused(server: Any, org: dict[str, Account]) -> None:
    """Without Full Access the shared mailbox's calendar is refused (403/404), not an empty list."""
    base = f"http://127.0.0.1:{server.port('http')}/dav/team@example.test/calendar/"

    def run() -> None:
        cal = client(server, "bob@example.test").calendar(url=base)
        cal.events()

    with pytest.raises((AuthorizationError, NotFoundError, DAVError)) as info:
        await blocking(run)
    assert "403" in str(info.value) or "404" in str(info.value) or isinstance(info.value, (AuthorizationError, NotFoundError))

    def put() -> int:
        req = urllib.request.Request(base + "x.ics", data=event_ics("intruder").encode(), method="PUT")
        req.add_header("Authorization", "Basic " + base64.b64encode(f"bob@example.test:{PASSWORD}".encode()).decode())
        req.add_header("Content-Type", "text/calendar")
        try:
            urllib.request.urlopen(req, timeout=10)
        except urllib.error.HTTPError as err:
            return err.code
        return 200

    assert await blocking(put) in (403, 404)


async def test_wrong_password_401(server: Any, org: dict[str, Account]) -> None:
    """A wrong password gets 401 with a Basic challenge."""
    def run() -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{server.port('http')}/dav/", method="PROPFIND")
        req.add_header("Authorization", "Basic " + base64.b64encode(b"alice@example.test:nope").decode())
        try:
            urllib.request.urlopen(req, timeout=10)
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("WWW-Authenticate", "")
        return 200, ""

    code, challenge = await blocking(run)
    assert code == 401 and challenge.startswith("Basic")


async def test_well_known_redirects_to_tree(server: Any, org: dict[str, Account]) -> None:
    """/.well-known/caldav and /carddav redirect (301) to /dav/ (RFC 6764 §5)."""
    for name in ("caldav", "carddav"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port("http"))
        writer.write(f"GET /.well-known/{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = (await reader.read()).decode()
        writer.close()
        assert head.startswith("HTTP/1.1 301") and "Location: /dav/" in head


async def test_caldav_free_busy_query(server: Any, org: dict[str, Account]) -> None:
    """The CalDAV free-busy-query REPORT (RFC 4791 §7.10) answers the busy time of an event."""
    base = f"http://127.0.0.1:{server.port('http')}/dav/alice@example.test/calendar/"

    def run() -> list[str]:
        cal = client(server, "alice@example.test").calendar(url=base)
        cal.save_event(event_ics("fb-1", 3))
        fb = cal.freebusy_request(day(3, 0), day(4, 0))
        component = next(iter(fb.icalendar_instance.walk("VFREEBUSY")))
        value = component.get("FREEBUSY")
        props = value if isinstance(value, list) else [value]
        return [p.to_ical().decode() for p in props if p is not None]

    periods = await blocking(run)
    start = day(3, 9)
    assert any(f"{start:%Y%m%dT%H%M%SZ}" in p for p in periods), periods


async def test_carddav_contact_round_trip(server: Any, org: dict[str, Account]) -> None:
    """A vCard PUT into the user's address book is listed and read back (CardDAV, RFC 6352)."""
    base = f"http://127.0.0.1:{server.port('http')}/dav/alice@example.test/contacts/"
    auth = "Basic " + base64.b64encode(f"alice@example.test:{PASSWORD}".encode()).decode()
    card = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:card-1\r\nFN:Carol Example\r\nEMAIL:carol@example.test\r\nEND:VCARD\r\n"

    def run() -> tuple[int, bytes, bytes]:
        put = urllib.request.Request(base + "card-1.vcf", data=card.encode(), method="PUT")
        put.add_header("Authorization", auth)
        put.add_header("Content-Type", "text/vcard")
        with urllib.request.urlopen(put, timeout=10) as resp:
            status = resp.status
        get = urllib.request.Request(base + "card-1.vcf")
        get.add_header("Authorization", auth)
        with urllib.request.urlopen(get, timeout=10) as resp:
            body = resp.read()
        find = urllib.request.Request(base, method="PROPFIND", data=b'<?xml version="1.0"?><propfind xmlns="DAV:"><prop><getetag/></prop></propfind>')
        find.add_header("Authorization", auth)
        find.add_header("Depth", "1")
        find.add_header("Content-Type", "application/xml")
        with urllib.request.urlopen(find, timeout=10) as resp:
            listing = resp.read()
        return status, body, listing

    status, body, listing = await blocking(run)
    assert status in (200, 201, 204)
    assert b"FN:Carol Example" in body
    assert b"card-1.vcf" in listing
