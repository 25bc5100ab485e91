"""The Resource Booking Attendant: one meeting request to one room, end to end.

:meth:`Attendant.handle` reads the request (off the event loop), decides with
:func:`delivery.booking.policy.decide`, writes or removes the booking in the room's
``calendar`` collection, and delivers the REPLY (local organizer: into their INBOX;
external: the outbound queue). It never raises for a bad message: the request stays in
the room's INBOX, where delivery already put it.

:class:`RoomBooking` runs the attendant after the delivery commit, in background tasks,
so the SMTP reply never waits for it (see :meth:`RoomBooking.submit`).
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import hashlib
import logging
import re
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import icalendar

from auth.permissions import send_decision
from auth.settings import AutomateProcessing, RoomSettings
from delivery.booking import imip
from delivery.booking.approval import (
    PendingRequest,
    PendingRequests,
    delegate_answer,
    forward_message,
)
from delivery.booking.imip import ImipMessage, MalformedCalendar, mailto
from delivery.booking.instances import (
    Instance,
    busy_intervals,
    expand,
    has_instance_after,
    zone,
)
from delivery.booking.policy import Conflict, Decision, Facts, PartStat, decide, window_end
from delivery.booking.reply import (
    organizer_display,
    reply_calendar,
    reply_message,
    reply_text,
    room_copy,
)
from storage.errors import StorageError
from storage.interfaces import Store
from storage.types import (
    MAILBOX_KINDS,
    Account,
    AccountKind,
    BusyInterval,
    CalendarCollection,
    CalendarItem,
    LocalRecipient,
)

log = logging.getLogger("mailserver.booking")

#: The room collection bookings are written to (one of DEFAULT_COLLECTIONS).
ROOM_CALENDAR = "calendar"
#: Most distinct bookings named as holders of a conflicting slot in one reply.
MAX_HOLDERS = 5
#: Seconds a request waits for the room's booking lock before failing (it then stays
#: in the room's INBOX, see RoomBooking). One decision takes milliseconds to a few
#: seconds (a long recurrence); a burst of requests to one room queues behind it, so
#: this is generous, but bounded so that a stuck holder is reported, not waited on.
ROOM_LOCK_TIMEOUT_SECONDS = 60.0
_SAFE_HREF = re.compile(r"^[A-Za-z0-9@._-]{1,120}$")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the attendant did with one message for one room.

    ``action``: "ignored" (not a request for this attendant), "malformed" (calendar
    unreadable, message left in the INBOX), "stale" (older than the stored booking),
    "answered" (a reply was sent with ``partstat``), "cancelled" (booking removed).
    ``forwarded``: the delegates a request held for approval was forwarded to.
    """

    action: str
    partstat: PartStat | None = None
    reasons: tuple[str, ...] = ()
    reply: bytes | None = None
    reply_to: str = ""
    forwarded: tuple[str, ...] = ()


def href_for(uid: str) -> str:
    """The href of a new booking: the UID when it is a safe file name, else its hash."""
    if _SAFE_HREF.match(uid):
        return f"{uid}.ics"
    return hashlib.sha256(uid.encode("utf-8")).hexdigest()[:40] + ".ics"


def _sequence(event: Any) -> int:
    """SEQUENCE (RFC 5545 §3.8.7.4), else Outlook's old X-MICROSOFT-CDO-APPT-SEQUENCE."""
    for name in ("SEQUENCE", "X-MICROSOFT-CDO-APPT-SEQUENCE"):
        value = event.get(name)
        if value is not None:
            try:
                return int(str(value))
            except ValueError:
                continue
    return 0


def _dtstamp(event: Any) -> datetime:
    value = event.get("DTSTAMP")
    dt = getattr(value, "dt", None)
    if isinstance(dt, datetime):
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return datetime.min.replace(tzinfo=UTC)


def _order(events: Sequence[Any]) -> tuple[int, datetime]:
    """RFC 5546 §2.1.5: higher SEQUENCE is newer; equal SEQUENCE, later DTSTAMP."""
    return max((_sequence(e), _dtstamp(e)) for e in events)


def _parse_stored(item: CalendarItem | None) -> icalendar.Calendar | None:
    if item is None:
        return None
    try:
        cal = icalendar.Calendar.from_ical(item.text)
    except Exception:
        return None
    return cal if isinstance(cal, icalendar.Calendar) else None


def _conflicts(instances: Sequence[Instance], busy: Sequence[BusyInterval]) -> list[tuple[Instance, BusyInterval]]:
    """Each instance with one busy interval it overlaps (half-open intervals)."""
    ordered = sorted(busy, key=lambda b: b.start)
    starts = [b.start for b in ordered]
    found: list[tuple[Instance, BusyInterval]] = []
    for inst in instances:
        if inst.end <= inst.start:
            continue
        idx = bisect.bisect_left(starts, inst.end)
        for b in reversed(ordered[:idx]):
            if b.end > inst.start:
                found.append((inst, b))
                break
    return found


_GROUP_CUTYPES = ("ROOM", "RESOURCE")


def _attendee_count(event: Any, room_address: str, organizer: str) -> int:
    """People invited to a meeting (EnforceCapacity): distinct ATTENDEE addresses that
    are not rooms or resources (RFC 5545 §3.2.3 CUTYPE) nor this room, plus the organizer."""
    value = event.get("ATTENDEE")
    attendees = value if isinstance(value, list) else ([value] if value is not None else [])
    people = {organizer}
    for attendee in attendees:
        address = mailto(attendee)
        cutype = str(getattr(attendee, "params", {}).get("CUTYPE", "")).upper()
        if address and address != room_address and cutype not in _GROUP_CUTYPES:
            people.add(address)
    return len(people)


def _when(instances: Sequence[Instance], tz_name: str) -> str:
    """The first instance in the room's zone, for the delegate's text."""
    if not instances:
        return "no occurrence in the booking window"
    tz = zone(tz_name)
    first = instances[0]
    if first.all_day:
        text = f"{first.start.astimezone(tz):%Y-%m-%d}, all day"
    else:
        start, end = first.start.astimezone(tz), first.end.astimezone(tz)
        text = f"{start:%Y-%m-%d %H:%M}-{end:%H:%M} {tz_name}"
    if len(instances) > 1:
        text += f", first of {len(instances)} occurrences"
    return text


@dataclass(frozen=True, slots=True)
class _Evaluation:
    recurring: bool
    instances: list[Instance]
    beyond: bool
    ended: bool


def _evaluate(candidate: icalendar.Calendar, tz_name: str, now: datetime, horizon: datetime) -> _Evaluation:
    """Expand the would-be booking (CPU-bound: runs in a thread)."""
    tz = zone(tz_name)
    events = list(candidate.walk("VEVENT"))
    recurring = len(events) > 1 or any(e.get("RRULE") is not None or e.get("RDATE") is not None for e in events)
    instances = [i for i in expand(candidate, tz, now, horizon) if i.busy]
    beyond = has_instance_after(candidate, horizon)
    ended = not instances and not beyond and not has_instance_after(candidate, now)
    return _Evaluation(recurring, instances, beyond, ended)


class Attendant:
    """Processes meeting requests for rooms against one store."""

    def __init__(self, store: Store, hostname: str, clock: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self._hostname = hostname
        self._clock = clock or (lambda: datetime.now(UTC))
        self.pending = PendingRequests(store)

    async def handle(self, room: Account, body: bytes, sender: Account | None) -> Outcome:
        """Process ``body`` (already in the room's INBOX) for ``room``; ``sender`` is the
        authenticated submitter (None for mail from outside). Raises StorageError only."""
        async with self._room_lock(room):
            return await self._handle(room, body, sender)

    def _room_lock(self, room: Account) -> AbstractAsyncContextManager[None]:
        """The room's booking lock: one request, approval or decline per room at a time
        in every process on this store (daemons sharing PostgreSQL, ``room approve`` in
        the CLI beside the daemon), so two decisions never book the same slot. Raises
        Unavailable (a StorageError) after ROOM_LOCK_TIMEOUT_SECONDS."""
        return self._store.locks.exclusive(f"room-booking:{room.id}", timeout=ROOM_LOCK_TIMEOUT_SECONDS)

    async def _handle(self, room: Account, body: bytes, sender: Account | None) -> Outcome:
        current = await self._store.directory.get_account(room.address)
        if current is None or current.kind is not AccountKind.ROOM:
            return Outcome("ignored")
        settings = RoomSettings.of(current)
        if settings.automate_processing is AutomateProcessing.NONE:
            return Outcome("ignored")
        try:
            message = await asyncio.to_thread(imip.read, body)
        except MalformedCalendar as err:
            log.warning("room %s: unreadable calendar left in INBOX: %s", room.address, err)
            return Outcome("malformed", reasons=(str(err),))
        if message is None or message.method not in ("REQUEST", "CANCEL", "REPLY"):
            return Outcome("ignored")
        events = list(message.calendar.walk("VEVENT"))
        if not events:
            return Outcome("ignored")
        if message.method == "REPLY":
            return await self._delegate_reply(current, settings, message, sender)
        uid = str(events[0].get("UID", "") or "")
        organizer = mailto(events[0].get("ORGANIZER")) or message.from_address
        if not organizer or "@" not in organizer or organizer == current.address:
            return Outcome("ignored")  # a room is never the organizer (mission-semantics §4.1)
        events = [e for e in events if str(e.get("UID", "") or "") == uid]
        internal = await self._internal(sender, organizer)
        collection = await self._room_calendar(current)
        existing_item = await self._store.calendars.get_item_by_uid(collection.id, uid) if uid else None
        existing = _parse_stored(existing_item)
        if message.method == "CANCEL":
            return await self._cancel(current, settings, collection, existing_item, existing, events, organizer,
                                      internal)
        if existing is not None and _order(events) <= _order(list(existing.walk("VEVENT"))):
            log.info("room %s: stale request for %s ignored", current.address, uid)
            return Outcome("stale")
        if not uid or any(e.get("DTSTART") is None for e in events):
            decision = Decision(PartStat.DECLINED, ("The meeting request could not be read.",), book=False)
            return await self._answer(current, settings, message, uid, organizer, decision)
        return await self._request(current, settings, collection, message, uid, organizer, internal,
                                   existing_item, existing, body)

    async def _request(self, room: Account, settings: RoomSettings, collection: CalendarCollection,
                       message: ImipMessage, uid: str, organizer: str, internal: bool,
                       existing_item: CalendarItem | None, existing: icalendar.Calendar | None,
                       body: bytes, *, approved: bool = False) -> Outcome:
        """Decide on a request and book it; a request held for approval (TENTATIVE) is
        kept in the pending folder and forwarded to the delegates. ``approved``: a
        delegate approved it, decide again without holding it."""
        now = self._clock()
        horizon = window_end(settings, now)
        name = room.display_name
        master = next(iter(message.calendar.walk("VEVENT")))
        organizer_name = organizer_display(master) or organizer
        provisional = Decision(PartStat.ACCEPTED)
        candidate = room_copy(message.calendar, uid, room.address, name, provisional, settings, existing, organizer_name)
        try:
            evaluation = await asyncio.to_thread(_evaluate, candidate, settings.timezone, now, horizon)
        except ValueError as err:
            decision = Decision(PartStat.DECLINED, (f"The meeting request could not be read ({err}).",), book=False)
            return await self._answer(room, settings, message, uid, organizer, decision, existing_item)
        conflicts: list[Conflict] = []
        if evaluation.instances:
            busy = await self._store.calendars.busy(
                collection.id, evaluation.instances[0].start,
                max(i.end for i in evaluation.instances), exclude_uid=uid,
            )
            pairs = _conflicts(evaluation.instances, busy)
            holders = await self._holders(collection, [b.uid for _, b in pairs]) if settings.organizer_info else {}
            conflicts = [Conflict(inst, holders.get(b.uid, "")) for inst, b in pairs]
        facts = Facts(
            organizer=organizer, internal=internal, recurring=evaluation.recurring,
            instances=evaluation.instances, beyond_window=evaluation.beyond, ended=evaluation.ended,
            conflicts=conflicts, attendees=_attendee_count(master, room.address, organizer),
        )
        decision = decide(settings, facts, approved=approved)
        if decision.book:
            copy = room_copy(message.calendar, uid, room.address, name, decision, settings, existing, organizer_name)
            busy_now = await asyncio.to_thread(busy_intervals, copy, zone(settings.timezone), now)
            href = existing_item.href if existing_item is not None else href_for(uid)
            await self._store.calendars.put_item(
                collection.id, href, uid, copy.to_ical().decode("utf-8"), busy_now, replace_uid=True
            )
            existing_item = None  # kept (replaced), not removed
        held = decision.partstat is PartStat.TENTATIVE
        if held:
            await self.pending.hold(room.id, uid, body)
        else:
            await self.pending.release(room.id, uid)
        outcome = await self._answer(room, settings, message, uid, organizer, decision, existing_item)
        if held and settings.forward_requests_to_delegates:
            forwarded = await self._forward(room, settings, message, uid, organizer, evaluation.instances)
            outcome = dataclasses.replace(outcome, forwarded=forwarded)
        return outcome

    async def _forward(self, room: Account, settings: RoomSettings, message: ImipMessage, uid: str,
                       organizer: str, instances: Sequence[Instance]) -> tuple[str, ...]:
        """Send each delegate the request to approve (ForwardRequestsToDelegates)."""
        now = self._clock()
        when = _when(instances, settings.timezone)
        sent: list[str] = []
        for delegate in settings.resource_delegates:
            if delegate == room.address:
                continue
            body = forward_message(
                room_address=room.address, room_name=room.display_name, delegate=delegate, organizer=organizer,
                request=message, uid=uid, when=when, now=now, hostname=self._hostname,
            )
            await self._send(room, delegate, body)
            sent.append(delegate)
        log.info("room %s: %s held for approval, forwarded to %s", room.address, uid, ", ".join(sent) or "nobody")
        return tuple(sent)

    # -- delegate approval

    async def approve(self, room: Account, uid: str, by: str) -> Outcome:
        """A delegate (or the operator, ``by``) approves the held request ``uid``: the
        request is decided again with the calendar as it is now (a slot taken since is
        a conflict), booked ACCEPTED and answered; or declined with the reason.
        Returns Outcome("ignored") when no request ``uid`` is held. Raises StorageError."""
        async with self._room_lock(room):
            held = await self.pending.find(room.id, uid)
            if held is None:
                return Outcome("ignored")
            return await self._approve(room, held, by)

    async def decline(self, room: Account, uid: str, by: str, reason: str = "") -> Outcome:
        """A delegate (or the operator, ``by``) declines the held request ``uid``: the
        tentative booking is removed and the organizer gets DECLINED with ``reason``.
        Returns Outcome("ignored") when no request ``uid`` is held. Raises StorageError."""
        async with self._room_lock(room):
            held = await self.pending.find(room.id, uid)
            if held is None:
                return Outcome("ignored")
            return await self._decline(room, held, by, reason)

    async def _approve(self, room: Account, held: PendingRequest, by: str) -> Outcome:
        current = await self._store.directory.get_account(room.address) or room
        settings = RoomSettings.of(current)
        collection = await self._room_calendar(current)
        item = await self._store.calendars.get_item_by_uid(collection.id, held.uid)
        body = await self._store.mail.get_body(held.blob_id)
        outcome = await self._request(current, settings, collection, held.message, held.uid, held.organizer, True,
                                      item, _parse_stored(item), body, approved=True)
        log.info("room %s: %s approved by %s: %s", room.address, held.uid, by,
                 outcome.partstat.value if outcome.partstat else outcome.action)
        return outcome

    async def _decline(self, room: Account, held: PendingRequest, by: str, reason: str) -> Outcome:
        current = await self._store.directory.get_account(room.address) or room
        settings = RoomSettings.of(current)
        collection = await self._room_calendar(current)
        item = await self._store.calendars.get_item_by_uid(collection.id, held.uid)
        reasons = ("The room's delegate declined the request.", *((f"Reason: {reason}",) if reason else ()))
        decision = Decision(PartStat.DECLINED, reasons, book=False)
        outcome = await self._answer(current, settings, held.message, held.uid, held.organizer, decision, item)
        await self.pending.release(current.id, held.uid)
        log.info("room %s: %s declined by %s", room.address, held.uid, by)
        return outcome

    async def _delegate_reply(self, room: Account, settings: RoomSettings, message: ImipMessage,
                              sender: Account | None) -> Outcome:
        """RFC 5546 §3.2.3 REPLY from a delegate to an approval request: ACCEPTED
        approves, DECLINED declines (its COMMENT is the reason). Only an authenticated
        sender who may act as that delegate counts; anything else is ignored."""
        answer = delegate_answer(message, settings.resource_delegates)
        if answer is None or not answer.uid:
            log.info("room %s: REPLY from a non-delegate ignored", room.address)
            return Outcome("ignored")
        if sender is None or not await self._internal(sender, answer.delegate):
            log.warning("room %s: REPLY naming delegate %s not sent by them ignored", room.address, answer.delegate)
            return Outcome("ignored")
        held = await self.pending.find(room.id, answer.uid)
        if held is None:
            log.info("room %s: REPLY from %s for %s: nothing pending", room.address, answer.delegate, answer.uid)
            return Outcome("ignored")
        if answer.sequence < held.sequence:
            log.info("room %s: REPLY from %s answers an older version of %s", room.address, answer.delegate,
                     answer.uid)
            return Outcome("stale")
        if answer.partstat == PartStat.ACCEPTED:
            return await self._approve(room, held, answer.delegate)
        if answer.partstat == PartStat.DECLINED:
            return await self._decline(room, held, answer.delegate, answer.comment)
        return Outcome("ignored")

    async def _answer(self, room: Account, settings: RoomSettings, message: ImipMessage, uid: str,
                      organizer: str, decision: Decision, remove: CalendarItem | None = None) -> Outcome:
        """Remove a booking the decision does not keep, then send the reply."""
        if not decision.book and remove is not None:
            await self._store.calendars.delete_item(remove.collection_id, remove.href)
        now = self._clock()
        text = reply_text(decision, settings)
        comment = " ".join(decision.reasons) if settings.enable_response_details else ""
        calendar = reply_calendar(message.calendar, uid, room.address, room.display_name, decision, now, comment)
        subject = message.subject or str(next(iter(message.calendar.walk("VEVENT"))).get("SUMMARY", ""))
        body = reply_message(
            room_address=room.address, room_name=room.display_name, organizer=organizer,
            subject=subject, in_reply_to=message.message_id, text=text, calendar=calendar,
            partstat=decision.partstat, now=now, hostname=self._hostname,
        )
        await self._send(room, organizer, body)
        log.info("room %s: %s %s from %s (%s)", room.address, decision.partstat.value, uid, organizer,
                 "; ".join(decision.reasons) or "-")
        return Outcome("answered", decision.partstat, decision.reasons, body, organizer)

    async def _cancel(self, room: Account, settings: RoomSettings, collection: CalendarCollection,
                      item: CalendarItem | None, existing: icalendar.Calendar | None, events: list[Any],
                      organizer: str, internal: bool) -> Outcome:
        """RFC 5546 §3.2.5: free the slot (whole event, or the instances named by
        RECURRENCE-ID); no reply is sent."""
        if item is None or existing is None:
            return Outcome("ignored")
        stored = list(existing.walk("VEVENT"))
        if not stored or mailto(stored[0].get("ORGANIZER")) != organizer:
            log.info("room %s: CANCEL for %s from a non-organizer ignored", room.address, item.uid)
            return Outcome("ignored")
        if not internal and not settings.process_external_meeting_messages:
            return Outcome("ignored")
        if _order(events) < _order(stored):
            return Outcome("stale")
        await self.pending.release(room.id, item.uid)
        rids = [e["RECURRENCE-ID"] for e in events if e.get("RECURRENCE-ID") is not None]
        master = next((e for e in stored if e.get("RECURRENCE-ID") is None), None)
        if rids and len(rids) == len(events) and master is not None:
            gone = {r.to_ical() for r in rids}
            for r in rids:
                master.add("EXDATE", r.dt)
            kept = icalendar.Calendar()
            for name, value in existing.property_items(recursive=False):
                if name not in ("BEGIN", "END"):
                    kept.add(name, value, encode=False)
            for comp in existing.subcomponents:
                rid = comp.get("RECURRENCE-ID")
                if comp.name == "VEVENT" and rid is not None and rid.to_ical() in gone:
                    continue
                kept.add_component(comp)
            busy = await asyncio.to_thread(busy_intervals, kept, zone(settings.timezone), self._clock())
            await self._store.calendars.put_item(collection.id, item.href, item.uid, kept.to_ical().decode("utf-8"), busy)
        else:
            await self._store.calendars.delete_item(collection.id, item.href)
        log.info("room %s: %s cancelled by %s", room.address, item.uid, organizer)
        return Outcome("cancelled")

    async def _internal(self, sender: Account | None, organizer: str) -> bool:
        """True when the authenticated submitter may act as the organizer (own address,
        alias, Send As or Send on Behalf): only then is the request from inside."""
        if sender is None:
            return False
        if sender.address == organizer:
            return True
        return (await send_decision(self._store.directory, sender, organizer)).permission.allowed

    async def _room_calendar(self, room: Account) -> CalendarCollection:
        for collection in await self._store.calendars.ensure_default_collections(room.id):
            if collection.name == ROOM_CALENDAR:
                return collection
        raise StorageError(f"room {room.address} has no {ROOM_CALENDAR} collection")

    async def _holders(self, collection: CalendarCollection, uids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for uid in list(dict.fromkeys(uids))[:MAX_HOLDERS]:
            cal = _parse_stored(await self._store.calendars.get_item_by_uid(collection.id, uid))
            event = next(iter(cal.walk("VEVENT")), None) if cal is not None else None
            if event is not None:
                out[uid] = mailto(event.get("ORGANIZER")) or ""
        return out

    async def _send(self, room: Account, organizer: str, body: bytes) -> None:
        """Deliver the reply: into a local mailbox's INBOX, else the outbound queue.
        Null envelope sender (RFC 3834 §3.3) so that it never causes a bounce loop."""
        account = await self._store.directory.resolve(organizer)
        if account is not None:
            if account.kind in MAILBOX_KINDS:
                await self._store.mail.deliver(body, [LocalRecipient(account.id)], mail_from="")
            else:
                log.info("room %s: no reply to %s (%s)", room.address, organizer, account.kind.value)
            return
        domain = organizer.rpartition("@")[2]
        if domain in {d.lower() for d in await self._store.directory.list_domains()}:
            log.info("room %s: no reply to unknown local address %s", room.address, organizer)
            return
        await self._store.mail.deliver(body, [], mail_from="", remote_recipients=[organizer])


Hold = Callable[[], AbstractAsyncContextManager[None]]


class RoomBooking:
    """Runs the attendant for rooms that received a message, after the delivery commit.

    Processing happens in background tasks, each inside ``hold()`` (the daemon passes
    ``app.inflight.hold`` so that shutdown waits for them): the SMTP reply never waits
    for calendar parsing, recurrence expansion or the reply's own delivery. If the
    process dies between the commit and the end of processing, the request stays in the
    room's INBOX unprocessed (no reply is sent); nothing is lost.
    """

    def __init__(self, attendant: Attendant, hold: Hold | None = None) -> None:
        self.attendant = attendant
        self._tasks: set[asyncio.Task[None]] = set()
        self._hold = hold

    async def _held(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._hold is None:
            await coro
            return
        async with self._hold():
            await coro

    def submit(self, rooms: Sequence[Account], body: bytes, sender: Account | None) -> None:
        """Schedule processing of ``body`` for each room; returns at once."""
        if rooms:
            task = asyncio.get_running_loop().create_task(self._held(self._process(list(rooms), body, sender)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _process(self, rooms: list[Account], body: bytes, sender: Account | None) -> None:
        for room in rooms:
            try:
                await self.attendant.handle(room, body, sender)
            except Exception:  # never lose the message: it is already in the room's INBOX
                log.exception("room %s: booking failed; the request stays in the INBOX", room.address)

    async def wait(self) -> None:
        """Wait until every task submitted so far has finished."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))

