"""Delegate approval of room requests (Exchange ResourceDelegates,
ForwardRequestsToDelegates; mission-semantics §4.1, §4.3).

A request that needs approval is booked TENTATIVE; its original message is kept in the
room's :data:`PENDING_FOLDER` (private to the room and its Full Access holders) until
a delegate approves or declines it, and each delegate gets it forwarded:

* :func:`forward_message` writes that mail: a text part saying what to do, an iTIP
  REQUEST (RFC 5546 §3.2.2) whose ORGANIZER is the room and whose only ATTENDEE is the
  delegate, so that the delegate's client answers Accept/Decline with a REPLY to the
  room address, and the original calendar attached;
* :func:`delegate_answer` reads such a REPLY (RFC 5546 §3.2.3);
* :class:`PendingRequests` keeps, finds and removes the held requests.
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import icalendar

from delivery.booking import imip
from delivery.booking.imip import ImipMessage, MalformedCalendar, mailto
from delivery.booking.reply import PRODID
from storage.errors import AlreadyExists
from storage.interfaces import Store
from storage.types import Folder

#: The room's mail folder holding requests that wait for a delegate.
PENDING_FOLDER = "Pending Approval"

#: Properties of the request's VEVENTs copied into the approval request: identity,
#: ordering and the time (with its recurrence) the delegate is asked to approve.
_APPROVAL_COPIED = ("UID", "SEQUENCE", "DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE",
                    "RECURRENCE-ID", "SUMMARY", "LOCATION")


def sequence_of(event: Any) -> int:
    """SEQUENCE (RFC 5545 §3.8.7.4) of a VEVENT, 0 when absent or unreadable."""
    try:
        return int(str(event.get("SEQUENCE", 0)))
    except ValueError:
        return 0


def _attendees(event: Any) -> list[Any]:
    value = event.get("ATTENDEE")
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def approval_calendar(request: icalendar.Calendar, uid: str, room_address: str, room_name: str,
                      delegate: str, organizer: str, now: datetime) -> icalendar.Calendar:
    """METHOD:REQUEST asking ``delegate`` to approve the booking of ``uid``: the room is
    ORGANIZER (so the answer comes back to it), the delegate the one ATTENDEE with
    RSVP, TRANSP:TRANSPARENT so that accepting does not make the delegate busy."""
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    cal.add("METHOD", "REQUEST")
    for tz in request.walk("VTIMEZONE"):
        cal.add_component(tz)
    for source in request.walk("VEVENT"):
        if str(source.get("UID", "")) != uid:
            continue
        event = icalendar.Event()
        for name in _APPROVAL_COPIED:
            if source.get(name) is not None:
                event[name] = source[name]
        event.add("DTSTAMP", now)
        owner = icalendar.vCalAddress(f"mailto:{room_address}")
        if room_name:
            owner.params["CN"] = room_name
        event["ORGANIZER"] = owner
        attendee = icalendar.vCalAddress(f"mailto:{delegate}")
        attendee.params["ROLE"] = "REQ-PARTICIPANT"  # RFC 5545 §3.2.16
        attendee.params["PARTSTAT"] = "NEEDS-ACTION"
        attendee.params["RSVP"] = "TRUE"
        event.add("ATTENDEE", attendee)
        event.add("DESCRIPTION", f"Booking request for {room_name or room_address} from {organizer}. "
                                 "Accept to approve it, Decline to refuse it.")
        event.add("TRANSP", "TRANSPARENT")  # RFC 5545 §3.8.2.7: the delegate stays free
        cal.add_component(event)
    return cal


def forward_message(*, room_address: str, room_name: str, delegate: str, organizer: str,
                    request: ImipMessage, uid: str, when: str, now: datetime, hostname: str) -> bytes:
    """The mail from the room to one delegate: what to do (text), the approval REQUEST
    (text/calendar, RFC 6047 §2.4), and the original request (request.ics)."""
    subject = request.subject or str(next(iter(request.calendar.walk("VEVENT"))).get("SUMMARY", ""))
    room = room_name or room_address
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = email.utils.formataddr((room_name, room_address))
    msg["To"] = delegate
    msg["Subject"] = f"Approval needed for {room}: {subject}" if subject else f"Approval needed for {room}"
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    if request.message_id:
        msg["References"] = request.message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5.1
    text = (
        f"{organizer} asks to book {room}"
        + (f" for \"{subject}\"" if subject else "")
        + f" ({when}).\n\n"
        "The request is booked tentatively and waits for your approval.\n"
        "Accept this invitation to approve it, or decline it to refuse it "
        "(a comment you add to a decline is passed on to the organizer).\n\n"
        f"The original request is attached (request.ics). Meeting UID: {uid}\n"
    )
    body = EmailMessage(policy=email.policy.SMTP)
    body.set_content(text)
    calendar = approval_calendar(request.calendar, uid, room_address, room_name, delegate, organizer, now)
    body.add_alternative(calendar.to_ical(), maintype="text", subtype="calendar",
                         params={"method": "REQUEST", "charset": "UTF-8"})
    msg.make_mixed()
    msg.attach(body)
    msg.add_attachment(request.calendar.to_ical(), maintype="application", subtype="ics", filename="request.ics")
    msg["Content-Class"] = "urn:content-classes:calendarmessage"
    return msg.as_bytes()


@dataclass(frozen=True, slots=True)
class DelegateAnswer:
    """A delegate's iTIP REPLY to an approval request: who, for which UID and
    SEQUENCE, ACCEPTED or DECLINED, and the comment they added."""

    delegate: str
    uid: str
    sequence: int
    partstat: str
    comment: str


def delegate_answer(message: ImipMessage, delegates: tuple[str, ...]) -> DelegateAnswer | None:
    """The answer in a METHOD:REPLY whose ATTENDEE is one of ``delegates`` (RFC 5546
    §3.2.3: a REPLY names only the replying attendee), else None."""
    if message.method != "REPLY":
        return None
    event = next(iter(message.calendar.walk("VEVENT")), None)
    if event is None:
        return None
    uid = str(event.get("UID", "") or "")
    for attendee in _attendees(event):
        address = mailto(attendee)
        if address in delegates:
            partstat = str(getattr(attendee, "params", {}).get("PARTSTAT", "")).upper()
            comment = event.get("COMMENT")
            comment = comment[0] if isinstance(comment, list) and comment else comment
            return DelegateAnswer(address, uid, sequence_of(event), partstat, str(comment or "").strip())
    return None


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A request held for approval: its UID and body in :data:`PENDING_FOLDER`
    (``mail_uid``, ``blob_id``), the meeting's UID and SEQUENCE, the organizer, and the parsed message."""

    mail_uid: int
    blob_id: str
    uid: str
    sequence: int
    organizer: str
    received: datetime
    message: ImipMessage


class PendingRequests:
    """The held requests of rooms, kept as mail in each room's :data:`PENDING_FOLDER`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def _folder(self, room_id: int, *, create: bool) -> Folder | None:
        folder = await self._store.mail.get_folder(room_id, PENDING_FOLDER)
        if folder is None and create:
            try:
                folder = await self._store.mail.create_folder(room_id, PENDING_FOLDER)
            except AlreadyExists:
                folder = await self._store.mail.get_folder(room_id, PENDING_FOLDER)
        return folder

    async def list(self, room_id: int) -> list[PendingRequest]:
        """Every held request of the room, oldest first (unreadable ones left out)."""
        folder = await self._folder(room_id, create=False)
        if folder is None:
            return []
        out: list[PendingRequest] = []
        for meta in await self._store.mail.list_messages(folder.id):
            if "\\Deleted" in meta.flags:
                continue
            body = await self._store.mail.get_body(meta.blob_id)
            try:
                message = await asyncio.to_thread(imip.read, body)
            except MalformedCalendar:
                continue
            event = next(iter(message.calendar.walk("VEVENT")), None) if message is not None else None
            if message is None or event is None:
                continue
            organizer = mailto(event.get("ORGANIZER")) or message.from_address
            out.append(PendingRequest(meta.uid, meta.blob_id, str(event.get("UID", "") or ""), sequence_of(event),
                                      organizer, meta.internal_date, message))
        return out

    async def find(self, room_id: int, uid: str) -> PendingRequest | None:
        """The held request for meeting ``uid`` (the newest when several)."""
        found = [p for p in await self.list(room_id) if p.uid == uid]
        return found[-1] if found else None

    async def hold(self, room_id: int, uid: str, body: bytes) -> None:
        """Keep ``body`` as the held request for ``uid``, replacing an older one."""
        await self.release(room_id, uid)
        folder = await self._folder(room_id, create=True)
        assert folder is not None
        await self._store.mail.append(folder.id, body)

    async def release(self, room_id: int, uid: str) -> bool:
        """Remove the held request(s) for ``uid``; True when there was one."""
        folder = await self._folder(room_id, create=False)
        if folder is None:
            return False
        uids = [p.mail_uid for p in await self.list(room_id) if p.uid == uid]
        if not uids:
            return False
        await self._store.mail.store_flags(folder.id, uids, "add", ["\\Deleted"])
        await self._store.mail.expunge(folder.id, uids)
        return True
