"""Room booking end to end: meeting requests submitted over SMTP to the running daemon,
replies read from the organizer's mailbox (store), bookings from the room calendar."""

from __future__ import annotations

import asyncio
import email
import email.policy
from datetime import timedelta
from typing import Any

import icalendar
import pytest

from mailserver.booking import booking_for
from storage.types import Account
from tests.calendar.fixtures import BERLIN, day, outlook_request, thunderbird_request
from tests.smtp.client import PASSWORD, RawSmtp

ROOM = "boardroom@example.test"


@pytest.fixture
async def org(server: Any) -> dict[str, Account]:
    a = server.accounts
    return {
        "alice": await a.add_user("alice@example.test", "Alice", PASSWORD),
        "bob": await a.add_user("bob@example.test", "Bob", PASSWORD),
        "room": await a.add_room(ROOM, "Board Room"),
    }


async def submit(server: Any, user: str, rcpts: list[str], body: bytes) -> None:
    client = await RawSmtp.connect(server.port("submission"))
    await client.ehlo()
    await client.starttls(server.client_ssl_context())
    await client.ehlo()
    assert (await client.login(user))[0] == 235
    code, text = await client.send_mail(user, rcpts, body)
    assert code == 250, text
    await client.close()
    await booking_for(server.app).wait()


async def inbound(server: Any, mail_from: str, rcpts: list[str], body: bytes) -> None:
    client = await RawSmtp.connect(server.port("smtp"))
    await client.ehlo()
    code, text = await client.send_mail(mail_from, rcpts, body)
    assert code == 250, text
    await client.close()
    await booking_for(server.app).wait()


async def replies(server: Any, account: Account) -> list[email.message.EmailMessage]:
    folder = await server.store.mail.get_folder(account.id, "INBOX")
    out = []
    for meta in await server.store.mail.list_messages(folder.id):
        msg = email.message_from_bytes(await server.store.mail.get_body(meta.blob_id), policy=email.policy.default)
        if msg.get("Auto-Submitted") == "auto-replied":
            out.append(msg)
    return out


def reply_calendar(msg: email.message.EmailMessage) -> icalendar.Calendar:
    part = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    assert part.get_param("method") == "REPLY"
    return icalendar.Calendar.from_ical(part.get_payload(decode=True))


def room_partstat(cal: icalendar.Calendar) -> list[tuple[str, bool]]:
    """(PARTSTAT, is an instance) for each VEVENT of a reply."""
    out = []
    for ev in cal.walk("VEVENT"):
        att = ev.get("ATTENDEE")
        assert str(att).lower() == f"mailto:{ROOM}"
        out.append((att.params["PARTSTAT"], ev.get("RECURRENCE-ID") is not None))
    return out


async def test_outlook_single_request_accepted(server: Any, org: dict[str, Account]) -> None:
    """An Outlook request from an internal user is accepted with a REPLY in her INBOX."""
    start = day(5, 10, tz=BERLIN)
    await submit(server, "alice@example.test", [ROOM], outlook_request("alice@example.test", ROOM, "OL-1", start, start + timedelta(hours=1)))
    [msg] = await replies(server, org["alice"])
    assert msg["Subject"] == "Accepted: Project sync"
    assert room_partstat(reply_calendar(msg)) == [("ACCEPTED", False)]


async def room_events(server: Any, user: str = "bob@example.test") -> list[icalendar.Event]:
    """The room calendar's VEVENTs as a CalDAV client (any internal user) sees them."""
    import caldav

    url = f"http://127.0.0.1:{server.port('http')}/dav/{ROOM}/calendar/"

    def run() -> list[icalendar.Event]:
        cal = caldav.DAVClient(url=url, username=user, password=PASSWORD).calendar(url=url)
        out = []
        for obj in cal.objects():
            obj.load()
            out += list(icalendar.Calendar.from_ical(obj.data).walk("VEVENT"))
        return out

    return await asyncio.to_thread(run)


async def test_booking_visible_over_caldav_scrubbed(server: Any, org: dict[str, Account]) -> None:
    """The accepted Outlook booking is in the room's CalDAV calendar at the right UTC time,
    without the agenda, with the organizer as subject (Exchange privacy defaults)."""
    start = day(6, 14, tz=BERLIN)
    await submit(server, "alice@example.test", [ROOM], outlook_request("alice@example.test", ROOM, "OL-2", start, start + timedelta(hours=1)))
    [ev] = await room_events(server)
    assert str(ev["UID"]) == "OL-2"
    assert ev.decoded("DTSTART").astimezone(BERLIN) == start
    assert "DESCRIPTION" not in ev and str(ev["SUMMARY"]) == "Organizer"
    attendees = ev.get("ATTENDEE")
    attendees = attendees if isinstance(attendees, list) else [attendees]
    rooms = [a for a in attendees if str(a).lower() == f"mailto:{ROOM}"]
    assert rooms[0].params["PARTSTAT"] == "ACCEPTED"


async def test_conflict_declined_naming_holder(server: Any, org: dict[str, Account]) -> None:
    """A Thunderbird request overlapping a booking is declined, the reason naming the holder."""
    start = day(7, 9)
    await submit(server, "alice@example.test", [ROOM], thunderbird_request("alice@example.test", ROOM, "TB-1", start, start + timedelta(hours=2)))
    await submit(server, "bob@example.test", [ROOM], thunderbird_request("bob@example.test", ROOM, "TB-2", start + timedelta(hours=1), start + timedelta(hours=3)))
    [msg] = await replies(server, org["bob"])
    assert msg["Subject"].startswith("Declined: ")
    assert room_partstat(reply_calendar(msg)) == [("DECLINED", False)]
    text = msg.get_body(("plain",)).get_content()
    assert "already booked" in text and "alice@example.test" in text
    assert [str(e["UID"]) for e in await room_events(server)] == ["TB-1"]


async def series_with_one_conflict(server: Any) -> None:
    blocker = day(12, 9)
    await submit(server, "alice@example.test", [ROOM], thunderbird_request("alice@example.test", ROOM, "BLOCK", blocker, blocker + timedelta(hours=1)))
    first = day(10, 9)
    await submit(server, "bob@example.test", [ROOM], thunderbird_request(
        "bob@example.test", ROOM, "SERIES", first, first + timedelta(hours=1), rrule="FREQ=DAILY;COUNT=5"))


async def test_series_with_conflict_over_limit_declined(server: Any, org: dict[str, Account]) -> None:
    """With the default limits (0 conflicts) a series with one busy occurrence is declined whole."""
    await series_with_one_conflict(server)
    [msg] = await replies(server, org["bob"])
    assert room_partstat(reply_calendar(msg)) == [("DECLINED", False)]
    assert "1 of 5 occurrences" in msg.get_body(("plain",)).get_content()
    assert sorted(str(e["UID"]) for e in await room_events(server)) == ["BLOCK"]


async def test_series_with_conflict_under_limit_accepted_instance_declined(server: Any, org: dict[str, Account]) -> None:
    """Within maximum_conflict_instances/conflict_percentage_allowed the series is accepted
    and the busy occurrence declined in the same REPLY (RECURRENCE-ID)."""
    await server.accounts.set_room_policy(ROOM, {"maximum_conflict_instances": 1, "conflict_percentage_allowed": 25})
    await series_with_one_conflict(server)
    [msg] = await replies(server, org["bob"])
    cal = reply_calendar(msg)
    assert room_partstat(cal) == [("ACCEPTED", False), ("DECLINED", True)]
    declined = [e for e in cal.walk("VEVENT") if e.get("RECURRENCE-ID") is not None][0]
    assert declined.decoded("RECURRENCE-ID") == day(12, 9)
    room = await server.store.calendars.get_collection(org["room"].id, "calendar")
    busy = await server.store.calendars.busy(room.id, day(10, 0), day(15, 0))
    assert [(b.uid, b.start.day) for b in busy if b.uid == "SERIES"] == [
        ("SERIES", day(n, 9).day) for n in (10, 11, 13, 14)
    ]


async def test_all_day_event_accepted(server: Any, org: dict[str, Account]) -> None:
    """A Thunderbird all-day (VALUE=DATE) request is accepted and blocks that day."""
    d = day(9, 0).date()
    await submit(server, "alice@example.test", [ROOM], thunderbird_request("alice@example.test", ROOM, "ALLDAY", d, d + timedelta(days=1)))
    [msg] = await replies(server, org["alice"])
    assert room_partstat(reply_calendar(msg)) == [("ACCEPTED", False)]
    room = await server.store.calendars.get_collection(org["room"].id, "calendar")
    [b] = await server.store.calendars.busy(room.id, day(9, 12), day(9, 13))
    assert b.uid == "ALLDAY" and b.end - b.start == timedelta(days=1)


async def test_update_moves_booking_and_stale_ignored(server: Any, org: dict[str, Account]) -> None:
    """A higher SEQUENCE re-evaluates and moves the booking; an older one gets no reply."""
    start, moved = day(8, 9), day(8, 15)
    await submit(server, "alice@example.test", [ROOM], outlook_request("alice@example.test", ROOM, "UPD", start, start + timedelta(hours=1)))
    await submit(server, "alice@example.test", [ROOM], outlook_request("alice@example.test", ROOM, "UPD", moved, moved + timedelta(hours=1), sequence=1))
    await submit(server, "alice@example.test", [ROOM], outlook_request("alice@example.test", ROOM, "UPD", start, start + timedelta(hours=1), sequence=0))
    assert [m["Subject"] for m in await replies(server, org["alice"])] == ["Accepted: Project sync"] * 2
    room = await server.store.calendars.get_collection(org["room"].id, "calendar")
    assert [b.start for b in await server.store.calendars.busy(room.id, day(8, 0), day(9, 0))] == [moved]


async def test_cancel_frees_slot_without_reply(server: Any, org: dict[str, Account]) -> None:
    """CANCEL removes the booking and sends no reply; the slot can be booked again."""
    start = day(11, 10)
    await submit(server, "alice@example.test", [ROOM], thunderbird_request("alice@example.test", ROOM, "CXL", start, start + timedelta(hours=1)))
    await submit(server, "alice@example.test", [ROOM], thunderbird_request("alice@example.test", ROOM, "CXL", start, start + timedelta(hours=1), sequence=1, method="CANCEL"))
    assert len(await replies(server, org["alice"])) == 1
    assert await room_events(server) == []
    await submit(server, "bob@example.test", [ROOM], thunderbird_request("bob@example.test", ROOM, "AGAIN", start, start + timedelta(hours=1)))
    [msg] = await replies(server, org["bob"])
    assert room_partstat(reply_calendar(msg)) == [("ACCEPTED", False)]


async def test_outside_organizer_declined_through_outbound_queue(server: Any, org: dict[str, Account]) -> None:
    """A request from outside the organization is declined; the reply is queued outbound."""
    start = day(5, 9)
    body = outlook_request("ext@partner.example", ROOM, "EXT", start, start + timedelta(hours=1))
    await inbound(server, "ext@partner.example", [ROOM], body)
    [entry] = await server.store.queue.list_queue()
    assert [r.address for r in entry.recipients] == ["ext@partner.example"] and entry.mail_from == ""
    reply = email.message_from_bytes(await server.store.mail.get_body(entry.blob_id), policy=email.policy.default)
    assert reply["Auto-Submitted"] == "auto-replied"
    assert room_partstat(reply_calendar(reply)) == [("DECLINED", False)]
    assert "outside the organization" in reply.get_body(("plain",)).get_content()
    assert await room_events(server) == []


async def test_oversize_duration_declined(server: Any, org: dict[str, Account]) -> None:
    """A meeting longer than maximum_duration_minutes (1440) is declined."""
    start = day(5, 9)
    await submit(server, "alice@example.test", [ROOM], thunderbird_request("alice@example.test", ROOM, "LONG", start, start + timedelta(hours=25)))
    [msg] = await replies(server, org["alice"])
    assert room_partstat(reply_calendar(msg)) == [("DECLINED", False)]
    assert "1440 minutes" in msg.get_body(("plain",)).get_content()


async def test_beyond_booking_window_declined(server: Any, org: dict[str, Account]) -> None:
    """A meeting after booking_window_days (180) is declined."""
    start = day(200, 9)
    await submit(server, "alice@example.test", [ROOM], thunderbird_request("alice@example.test", ROOM, "FAR", start, start + timedelta(hours=1)))
    [msg] = await replies(server, org["alice"])
    assert room_partstat(reply_calendar(msg)) == [("DECLINED", False)]
    assert "booking window of 180 days" in msg.get_body(("plain",)).get_content()


async def test_malformed_calendar_stays_in_room_inbox(server: Any, org: dict[str, Account]) -> None:
    """Unreadable iCalendar: no crash, no reply, the message stays in the room's INBOX."""
    body = (b"From: alice@example.test\r\nTo: " + ROOM.encode() + b"\r\nSubject: broken\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:garbage\r\n")
    await submit(server, "alice@example.test", [ROOM], body)
    assert await replies(server, org["alice"]) == []
    folder = await server.store.mail.get_folder(org["room"].id, "INBOX")
    assert folder.messages == 1
    start = day(5, 9)  # and the attendant still works afterwards
    await submit(server, "alice@example.test", [ROOM], thunderbird_request("alice@example.test", ROOM, "AFTER", start, start + timedelta(hours=1)))
    assert len(await replies(server, org["alice"])) == 1


async def test_delegate_caldav_event_counts_for_conflicts(server: Any, org: dict[str, Account]) -> None:
    """An event a room delegate writes over CalDAV blocks the slot for the attendant,
    and free/busy shows it; a non-delegate cannot write the room calendar."""
    import base64
    import urllib.error
    import urllib.request

    import caldav

    await server.accounts.set_room_policy(ROOM, {"resource_delegates": ["alice@example.test"]})
    start = day(4, 13)
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:maint-1\r\n"
        f"DTSTAMP:20240101T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDTEND:{start + timedelta(hours=2):%Y%m%dT%H%M%SZ}\r\n"
        "SUMMARY:Maintenance\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    url = f"http://127.0.0.1:{server.port('http')}/dav/{ROOM}/calendar/"

    def write(user: str) -> None:
        caldav.DAVClient(url=url, username=user, password=PASSWORD).calendar(url=url).save_event(ics)

    await asyncio.to_thread(write, "alice@example.test")
    with pytest.raises(Exception, match="403|Forbidden|Authoriz"):
        await asyncio.to_thread(write, "bob@example.test")
    await submit(server, "bob@example.test", [ROOM], thunderbird_request("bob@example.test", ROOM, "CLASH", start, start + timedelta(hours=1)))
    [msg] = await replies(server, org["bob"])
    assert room_partstat(reply_calendar(msg)) == [("DECLINED", False)]

    def freebusy() -> bytes:
        req = urllib.request.Request(f"http://127.0.0.1:{server.port('http')}/freebusy/{ROOM}.vfb")
        req.add_header("Authorization", "Basic " + base64.b64encode(f"bob@example.test:{PASSWORD}".encode()).decode())
        return urllib.request.urlopen(req, timeout=10).read()

    [fb] = icalendar.Calendar.from_ical(await asyncio.to_thread(freebusy)).walk("VFREEBUSY")
    periods = fb.get("FREEBUSY")
    periods = periods if isinstance(periods, list) else [periods]
    assert [(p.dt[0], p.dt[1]) for p in periods] == [(start, start + timedelta(hours=2))]
