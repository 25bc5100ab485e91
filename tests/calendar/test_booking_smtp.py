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
