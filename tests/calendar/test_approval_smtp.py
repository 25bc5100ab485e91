"""Delegate approval, work hours and capacity, end to end: requests and delegate
answers submitted over SMTP to the running daemon, the operator's `room approve` /
`room decline` run as a separate process, replies read from mailboxes, bookings over
CalDAV."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest

from storage.types import Account
from tests.calendar.fixtures import (
    BERLIN,
    day,
    delegate_reply,
    outlook_request,
    thunderbird_request,
)
from tests.calendar.test_booking_smtp import (
    ROOM,
    inbound,
    replies,
    reply_calendar,
    room_events,
    room_partstat,
    submit,
)
from tests.helpers import run_cli
from tests.smtp.client import PASSWORD

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
PENDING_TEXT = "Your request was received and is pending approval."


@pytest.fixture
async def org(server: Any) -> dict[str, Account]:
    """Alice books, Carol is the room's delegate, the room holds requests for approval."""
    a = server.accounts
    org = {
        "alice": await a.add_user(ALICE, "Alice", PASSWORD),
        "bob": await a.add_user(BOB, "Bob", PASSWORD),
        "carol": await a.add_user(CAROL, "Carol", PASSWORD),
        "room": await a.add_room(ROOM, "Board Room"),
    }
    await a.set_room_policy(ROOM, {"automate_processing": "auto_update", "resource_delegates": [CAROL]})
    return org


async def inbox(server: Any, account: Account) -> list[email.message.EmailMessage]:
    folder = await server.store.mail.get_folder(account.id, "INBOX")
    out = []
    for meta in await server.store.mail.list_messages(folder.id):
        body = await server.store.mail.get_body(meta.blob_id)
        out.append(email.message_from_bytes(body, policy=email.policy.default))
    return out


def text_of(msg: email.message.EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()


def room_attendee_partstat(event: icalendar.Event) -> str:
    attendees = event.get("ATTENDEE")
    attendees = attendees if isinstance(attendees, list) else [attendees]
    return str(next(a for a in attendees if str(a).lower() == f"mailto:{ROOM}").params["PARTSTAT"])


async def request_held(server: Any, org: dict[str, Account], uid: str = "APPROVE-1") -> datetime:
    """Alice asks for the room; it answers TENTATIVE. Returns the start."""
    start = day(6, 10, tz=BERLIN)
    await submit(server, ALICE, [ROOM], outlook_request(ALICE, ROOM, uid, start, start + timedelta(hours=1)))
    [msg] = await replies(server, org["alice"])
    assert msg["Subject"] == "Tentative: Project sync"
    assert room_partstat(reply_calendar(msg)) == [("TENTATIVE", False)]
    assert text_of(msg).startswith(PENDING_TEXT)
    return start


async def test_request_forwarded_to_delegate(server: Any, org: dict[str, Account]) -> None:
    """A request needing approval is booked TENTATIVE and forwarded to the delegate: an
    approval REQUEST (room as ORGANIZER, delegate as ATTENDEE), a text part, the original attached."""
    start = await request_held(server, org)
    [fwd] = await inbox(server, org["carol"])
    assert fwd["From"].addresses[0].addr_spec == ROOM and fwd["Auto-Submitted"] == "auto-generated"
    assert fwd["Subject"] == "Approval needed for Board Room: Project sync"
    assert ALICE in text_of(fwd) and "Accept" in text_of(fwd)
    part = next(p for p in fwd.walk() if p.get_content_type() == "text/calendar")
    assert part.get_param("method") == "REQUEST"
    [ev] = icalendar.Calendar.from_ical(part.get_payload(decode=True)).walk("VEVENT")
    assert str(ev["UID"]) == "APPROVE-1" and str(ev["ORGANIZER"]).lower() == f"mailto:{ROOM}"
    assert str(ev["ATTENDEE"]).lower() == f"mailto:{CAROL}" and ev["ATTENDEE"].params["RSVP"] == "TRUE"
    assert ev.decoded("DTSTART").astimezone(BERLIN) == start
    [original] = [p for p in fwd.iter_attachments() if p.get_filename() == "request.ics"]
    [orig_ev] = icalendar.Calendar.from_ical(original.get_payload(decode=True)).walk("VEVENT")
    assert str(orig_ev["ORGANIZER"]).lower() == f"mailto:{ALICE}"
    [booked] = await room_events(server)
    assert room_attendee_partstat(booked) == "TENTATIVE" and str(booked["STATUS"]) == "TENTATIVE"


async def test_no_forward_when_forwarding_off(server: Any, org: dict[str, Account]) -> None:
    """forward_requests_to_delegates=false: the request is still held, the delegate gets nothing."""
    await server.accounts.set_room_policy(ROOM, {"forward_requests_to_delegates": False})
    await request_held(server, org)
    assert await inbox(server, org["carol"]) == []


async def test_delegate_accepts_by_imip_reply(server: Any, org: dict[str, Account]) -> None:
    """The delegate's Accept (iMIP REPLY to the room) books the request: the organizer gets
    ACCEPTED and the room calendar over CalDAV shows the room ACCEPTED."""
    await request_held(server, org)
    await submit(server, CAROL, [ROOM], delegate_reply(CAROL, ROOM, "APPROVE-1", "ACCEPTED"))
    tentative, accepted = await replies(server, org["alice"])
    assert accepted["Subject"] == "Accepted: Project sync"
    assert room_partstat(reply_calendar(accepted)) == [("ACCEPTED", False)]
    [booked] = await room_events(server)
    assert room_attendee_partstat(booked) == "ACCEPTED" and str(booked.get("STATUS", "")) != "TENTATIVE"
    await submit(server, CAROL, [ROOM], delegate_reply(CAROL, ROOM, "APPROVE-1", "ACCEPTED"))
    assert len(await replies(server, org["alice"])) == 2  # nothing pending any more: no second answer


async def test_delegate_declines_by_imip_reply_with_reason(server: Any, org: dict[str, Account]) -> None:
    """The delegate's Decline removes the tentative booking; the organizer gets DECLINED with the comment."""
    await request_held(server, org)
    await submit(server, CAROL, [ROOM], delegate_reply(CAROL, ROOM, "APPROVE-1", "DECLINED", comment="Room is being painted"))
    _, declined = await replies(server, org["alice"])
    assert declined["Subject"] == "Declined: Project sync"
    assert room_partstat(reply_calendar(declined)) == [("DECLINED", False)]
    assert "delegate declined" in text_of(declined) and "Room is being painted" in text_of(declined)
    assert await room_events(server) == []


async def test_non_delegate_reply_ignored(server: Any, org: dict[str, Account]) -> None:
    """A REPLY from someone who is not a delegate, or naming the delegate but sent by
    another user or from outside, neither approves nor declines: the booking stays TENTATIVE."""
    await request_held(server, org)
    await submit(server, BOB, [ROOM], delegate_reply(BOB, ROOM, "APPROVE-1", "ACCEPTED"))
    forged = delegate_reply(CAROL, ROOM, "APPROVE-1", "DECLINED").replace(f"From: {CAROL}".encode(), f"From: {BOB}".encode())
    await submit(server, BOB, [ROOM], forged)
    await inbound(server, "someone@partner.example", [ROOM], delegate_reply(CAROL, ROOM, "APPROVE-1", "DECLINED"))
    assert len(await replies(server, org["alice"])) == 1
    [booked] = await room_events(server)
    assert room_attendee_partstat(booked) == "TENTATIVE"


async def test_approval_rechecks_conflicts(server: Any, org: dict[str, Account]) -> None:
    """Approval checks the calendar again: a slot the delegate filled over CalDAV since
    the request makes the approval a DECLINED answer."""
    import caldav

    start = await request_held(server, org)
    url = f"http://127.0.0.1:{server.port('http')}/dav/{ROOM}/calendar/"
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:repair-1\r\n"
        f"DTSTAMP:20240101T000000Z\r\nDTSTART:{start.astimezone(UTC):%Y%m%dT%H%M%SZ}\r\n"
        f"DTEND:{(start + timedelta(hours=3)).astimezone(UTC):%Y%m%dT%H%M%SZ}\r\n"
        "SUMMARY:Repair\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    await asyncio.to_thread(
        lambda: caldav.DAVClient(url=url, username=CAROL, password=PASSWORD).calendar(url=url).save_event(ics))
    await submit(server, CAROL, [ROOM], delegate_reply(CAROL, ROOM, "APPROVE-1", "ACCEPTED"))
    _, answer = await replies(server, org["alice"])
    assert room_partstat(reply_calendar(answer)) == [("DECLINED", False)]
    assert "already booked" in text_of(answer)
    assert [str(e["UID"]) for e in await room_events(server)] == ["repair-1"]


async def test_request_in_policy_user_held_and_forwarded(server: Any, org: dict[str, Account]) -> None:
    """An auto_accept room with all_book_in_policy=false holds a request_in_policy user's
    request for approval and forwards it; a user in neither list is declined."""
    await server.accounts.set_room_policy(ROOM, {"automate_processing": "auto_accept", "all_book_in_policy": False,
                                                 "request_in_policy": [ALICE]})
    await request_held(server, org)
    assert len(await inbox(server, org["carol"])) == 1
    start = day(9, 9)
    await submit(server, BOB, [ROOM], thunderbird_request(BOB, ROOM, "BOB-1", start, start + timedelta(hours=1)))
    [msg] = await replies(server, org["bob"])
    assert room_partstat(reply_calendar(msg)) == [("DECLINED", False)]
    assert "permission" in text_of(msg)


def cli(tmp_path: Path, *args: str) -> Any:
    """Run the operator CLI on the daemon's config (a separate process, same store)."""
    r = run_cli(*args, "--json", config=tmp_path / "config.toml")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


async def test_operator_approves_by_cli(server: Any, org: dict[str, Account], tmp_path: Path) -> None:
    """`room bookings` shows the held request as pending; `room approve` books it: the
    organizer gets ACCEPTED and CalDAV shows the room ACCEPTED."""
    await request_held(server, org)
    rows = await asyncio.to_thread(cli, tmp_path, "room", "bookings", ROOM)
    assert [(r["uid"], r["status"]) for r in rows] == [("APPROVE-1", "pending")]
    doc = await asyncio.to_thread(cli, tmp_path, "room", "approve", ROOM, "APPROVE-1")
    assert doc["partstat"] == "ACCEPTED" and doc["organizer"] == ALICE
    _, accepted = await replies(server, org["alice"])
    assert room_partstat(reply_calendar(accepted)) == [("ACCEPTED", False)]
    [booked] = await room_events(server)
    assert room_attendee_partstat(booked) == "ACCEPTED"
    rows = await asyncio.to_thread(cli, tmp_path, "room", "bookings", ROOM)
    assert [(r["uid"], r["status"]) for r in rows] == [("APPROVE-1", "accepted")]
    again = await asyncio.to_thread(run_cli, "room", "approve", ROOM, "APPROVE-1", config=tmp_path / "config.toml")
    assert again.returncode == 1 and "no request" in again.stderr


async def test_operator_declines_by_cli(server: Any, org: dict[str, Account], tmp_path: Path) -> None:
    """`room decline --reason` removes the tentative booking and tells the organizer why."""
    await request_held(server, org)
    doc = await asyncio.to_thread(cli, tmp_path, "room", "decline", ROOM, "APPROVE-1", "--reason", "VIP visit")
    assert doc["partstat"] == "DECLINED"
    _, declined = await replies(server, org["alice"])
    assert room_partstat(reply_calendar(declined)) == [("DECLINED", False)]
    assert "VIP visit" in text_of(declined)
    assert await room_events(server) == []


def next_weekday(offset: int, weekday: int) -> int:
    """The first day offset >= ``offset`` from today (Berlin) falling on ``weekday`` (0 = Monday)."""
    today = datetime.now(BERLIN).date()
    while (today + timedelta(days=offset)).weekday() != weekday:
        offset += 1
    return offset


async def test_work_hours(server: Any, org: dict[str, Account]) -> None:
    """schedule_only_during_work_hours: 08:00-17:00 Mon-Fri in the room's zone; a meeting
    ending after 17:00 Berlin or on a Saturday is declined, one inside is accepted."""
    await server.accounts.set_room_policy(ROOM, {"automate_processing": "auto_accept", "timezone": "Europe/Berlin",
                                                 "schedule_only_during_work_hours": True})
    tuesday, saturday = next_weekday(3, 1), next_weekday(3, 5)
    late = day(tuesday, 16, 30, tz=BERLIN)
    await submit(server, ALICE, [ROOM], outlook_request(ALICE, ROOM, "LATE", late, late + timedelta(hours=1)))
    weekend = day(saturday, 10, tz=BERLIN)
    await submit(server, ALICE, [ROOM], thunderbird_request(ALICE, ROOM, "SAT", weekend, weekend + timedelta(hours=1)))
    inside = day(tuesday, 8, tz=BERLIN)
    await submit(server, ALICE, [ROOM], thunderbird_request(ALICE, ROOM, "IN", inside, inside + timedelta(hours=9)))
    late_reply, sat_reply, in_reply = await replies(server, org["alice"])
    for msg in (late_reply, sat_reply):
        assert room_partstat(reply_calendar(msg)) == [("DECLINED", False)]
        assert "outside this room's working hours (08:00-17:00, Monday to Friday, Europe/Berlin)" in text_of(msg)
    assert room_partstat(reply_calendar(in_reply)) == [("ACCEPTED", False)]
    assert [str(e["UID"]) for e in await room_events(server)] == ["IN"]


async def test_capacity(server: Any, org: dict[str, Account]) -> None:
    """enforce_capacity: more attendees (organizer included, the room left out) than the
    room's capacity are declined; without enforce_capacity the same request is accepted."""
    await server.accounts.set_room_policy(ROOM, {"automate_processing": "auto_accept", "capacity": 3})
    others = ("p1@example.test", "p2@example.test", "p3@example.test")
    start = day(5, 9, tz=BERLIN)
    await submit(server, ALICE, [ROOM], outlook_request(ALICE, ROOM, "BIG-1", start, start + timedelta(hours=1),
                                                        others=others))
    await server.accounts.set_room_policy(ROOM, {"enforce_capacity": True})
    later = start + timedelta(hours=2)
    await submit(server, ALICE, [ROOM], outlook_request(ALICE, ROOM, "BIG-2", later, later + timedelta(hours=1),
                                                        others=others))
    small = start + timedelta(hours=4)
    await submit(server, ALICE, [ROOM], outlook_request(ALICE, ROOM, "SMALL", small, small + timedelta(hours=1),
                                                        others=others[:2]))
    free, full, fits = await replies(server, org["alice"])
    assert room_partstat(reply_calendar(free)) == [("ACCEPTED", False)]
    assert room_partstat(reply_calendar(full)) == [("DECLINED", False)]
    assert "4 attendees, more than this room's capacity of 3" in text_of(full)
    assert room_partstat(reply_calendar(fits)) == [("ACCEPTED", False)]


async def test_update_while_pending_and_cancel(server: Any, org: dict[str, Account], tmp_path: Path) -> None:
    """An update while held is held again and forwarded again; the delegate's answer to the
    older version is stale; a CANCEL drops the held request (nothing left to approve)."""
    start = await request_held(server, org)
    moved = start + timedelta(hours=2)
    await submit(server, ALICE, [ROOM], outlook_request(ALICE, ROOM, "APPROVE-1", moved, moved + timedelta(hours=1),
                                                        sequence=1))
    assert len(await inbox(server, org["carol"])) == 2
    await submit(server, CAROL, [ROOM], delegate_reply(CAROL, ROOM, "APPROVE-1", "ACCEPTED", sequence=0))
    assert [m["Subject"] for m in await replies(server, org["alice"])] == ["Tentative: Project sync"] * 2
    [booked] = await room_events(server)
    assert room_attendee_partstat(booked) == "TENTATIVE" and booked.decoded("DTSTART").astimezone(BERLIN) == moved
    await submit(server, ALICE, [ROOM], outlook_request(ALICE, ROOM, "APPROVE-1", moved, moved + timedelta(hours=1),
                                                        sequence=2, method="CANCEL"))
    assert await room_events(server) == []
    late = await asyncio.to_thread(run_cli, "room", "approve", ROOM, "APPROVE-1", config=tmp_path / "config.toml")
    assert late.returncode == 1 and "no request" in late.stderr
