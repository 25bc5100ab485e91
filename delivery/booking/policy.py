"""What a room answers to a meeting request: Exchange's Resource Booking Attendant rules
(mission-semantics §4.1, §4.2 "Room decision"), as a pure function of the request's
facts and the room's :class:`~auth.settings.RoomSettings`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from auth.settings import WEEKDAYS, AutomateProcessing, RoomSettings
from delivery.booking.instances import Instance, zone


class PartStat(enum.StrEnum):
    """RFC 5545 §3.2.12 participation status values a room replies with."""

    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    TENTATIVE = "TENTATIVE"


@dataclass(frozen=True, slots=True)
class Conflict:
    """An instance of the request that overlaps a booking; ``holder`` names who holds
    the slot (empty when the room does not say)."""

    instance: Instance
    holder: str = ""


@dataclass(frozen=True, slots=True)
class Facts:
    """What the attendant found out about one request before deciding."""

    organizer: str
    internal: bool  # sent by an authenticated user who may act as the organizer
    recurring: bool
    instances: Sequence[Instance]  # instances ending after now and starting in the window
    beyond_window: bool  # some instance starts after the booking window
    ended: bool  # every instance ended before now
    conflicts: Sequence[Conflict] = ()
    attendees: int = 0  # people invited: distinct ATTENDEEs other than rooms and resources, plus the organizer


@dataclass(frozen=True, slots=True)
class Decision:
    """The room's answer: PARTSTAT for the request, instances declined inside an
    accepted series, the reasons (already worded for the organizer), and whether the
    event goes into (True) or out of (False) the room's calendar."""

    partstat: PartStat
    reasons: tuple[str, ...] = ()
    declined: tuple[Instance, ...] = field(default_factory=tuple)
    book: bool = True


def _decline(*reasons: str) -> Decision:
    return Decision(PartStat.DECLINED, tuple(reasons), (), book=False)


def _when(inst: Instance) -> str:
    if inst.all_day:
        return inst.start.strftime("%Y-%m-%d")
    return inst.start.strftime("%Y-%m-%d %H:%M UTC")


def window_end(settings: RoomSettings, now: datetime) -> datetime:
    """The end of the booking window: ``booking_window_days`` after now (0: today)."""
    if settings.booking_window_days == 0:
        return now.replace(hour=23, minute=59, second=59, microsecond=0)
    return now + timedelta(days=settings.booking_window_days)


def _clock(text: str) -> time:
    """A ``HH:MM`` policy value as a time; ``24:00`` is the end of the day."""
    hours, _, minutes = text.partition(":")
    if hours == "24":
        return time.max
    return time(int(hours), int(minutes or 0))


def outside_work_hours(settings: RoomSettings, instances: Sequence[Instance]) -> list[Instance]:
    """The instances that do not lie wholly inside the room's work hours
    (``work_hours_start``..``work_hours_end`` on a ``work_days`` day, in the room's
    ``timezone``; Exchange's ScheduleOnlyDuringWorkHours). All-day instances never do."""
    tz = zone(settings.timezone)
    start_of_work, end_of_work = _clock(settings.work_hours_start), _clock(settings.work_hours_end)
    days = {WEEKDAYS.index(d) for d in settings.work_days if d in WEEKDAYS}
    outside: list[Instance] = []
    for inst in instances:
        start, end = inst.start.astimezone(tz), inst.end.astimezone(tz)
        inside = (
            not inst.all_day
            and start.weekday() in days
            and start.time() >= start_of_work
            # ending at midnight after a work day that ends at 24:00 is still inside
            and (end.date() == start.date() and end.time() <= end_of_work
                 or end_of_work == time.max and end == datetime.combine(start.date() + timedelta(days=1), time(), tz))
        )
        if not inside:
            outside.append(inst)
    return outside


def _work_hours(settings: RoomSettings) -> str:
    days = [d for d in WEEKDAYS if d in settings.work_days]
    if days == list(WEEKDAYS[:5]):
        named = "Monday to Friday"
    else:
        named = ", ".join(d.capitalize() for d in days) or "no day"
    return f"{settings.work_hours_start}-{settings.work_hours_end}, {named}, {settings.timezone}"


def decide(settings: RoomSettings, facts: Facts, *, approved: bool = False) -> Decision:
    """Apply the room's policy to one request, in Exchange's order: who may book, then
    recurrence, duration, capacity, work hours and window, then conflicts (series
    limits). ``approved``: a delegate has approved the request, so a request that
    would be held for approval (TENTATIVE) is accepted instead; every other rule still
    applies, with the calendar as it is now."""
    if not facts.internal and not settings.process_external_meeting_messages:
        return _decline("This room does not accept meeting requests from outside the organization.")
    organizer = facts.organizer
    in_policy = settings.all_book_in_policy or organizer in settings.book_in_policy
    needs_approval = settings.automate_processing is AutomateProcessing.AUTO_UPDATE
    if not in_policy:
        if settings.all_request_in_policy or organizer in settings.request_in_policy:
            needs_approval = True
        else:
            return _decline("You do not have permission to book this room.")
    if facts.recurring and not settings.allow_recurring_meetings:
        return _decline("Recurring meetings are not allowed in this room.")
    if facts.ended:
        return _decline("The meeting has already ended.")
    limit = settings.maximum_duration_minutes
    if limit and any(i.end - i.start > timedelta(minutes=limit) for i in facts.instances):
        return _decline(f"The meeting is longer than the maximum of {limit} minutes allowed for this room.")
    capacity = settings.capacity
    if settings.enforce_capacity and capacity is not None and facts.attendees > capacity:
        return _decline(
            f"The meeting has {facts.attendees} attendees, more than this room's capacity of {capacity}."
        )
    if settings.schedule_only_during_work_hours:
        outside = outside_work_hours(settings, facts.instances)
        if outside:
            what = f"{len(outside)} of {len(facts.instances)} occurrences are" if facts.recurring else "The meeting is"
            return _decline(f"{what} outside this room's working hours ({_work_hours(settings)}).")
    days = settings.booking_window_days
    if not facts.instances:
        return _decline(f"The meeting is beyond the booking window of {days} days.")
    if facts.beyond_window and (not facts.recurring or settings.enforce_scheduling_horizon):
        what = "The recurring meeting extends" if facts.recurring else "The meeting is"
        return _decline(f"{what} beyond the booking window of {days} days.")
    reasons: list[str] = []
    if facts.beyond_window:
        reasons.append(f"Only the occurrences within the booking window of {days} days were booked.")
    declined: tuple[Instance, ...] = ()
    if facts.conflicts and not settings.allow_conflicts:
        holders = sorted({c.holder for c in facts.conflicts if c.holder}) if settings.organizer_info else []
        held = f" It is reserved by {', '.join(holders)}." if holders else ""
        if not facts.recurring:
            return _decline("The room is already booked for this time." + held)
        count, total = len(facts.conflicts), len(facts.instances)
        over_count = count > settings.maximum_conflict_instances
        over_share = count * 100 > settings.conflict_percentage_allowed * total
        dates = ", ".join(_when(c.instance) for c in facts.conflicts[:20])
        if over_count or over_share:
            return _decline(
                f"{count} of {total} occurrences conflict with existing bookings ({dates}).{held}"
            )
        declined = tuple(c.instance for c in facts.conflicts)
        reasons.append(f"These occurrences were declined because the room is busy: {dates}.{held}")
    if needs_approval and not approved:
        return Decision(
            PartStat.TENTATIVE, ("Your request was received and is pending approval.", *reasons), declined
        )
    return Decision(PartStat.ACCEPTED, tuple(reasons), declined)
