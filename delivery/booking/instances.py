"""Recurrence expansion (RFC 5545 §3.8.5) into instances and busy intervals.

Uses recurring-ical-events, which applies RRULE, RDATE, EXDATE and RECURRENCE-ID
overrides. Floating times and all-day dates are read in the calendar owner's time zone.
Pure and CPU-bound: callers run it off the event loop.
"""

from __future__ import annotations

import itertools
import sys
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from types import FrameType
from typing import Any, TypeVar

import icalendar
import recurring_ical_events

from storage.types import BusyInterval

#: Most instances expanded for one event. A daily meeting across the longest booking
#: window Exchange allows (1080 days) fits; the cap bounds the CPU and memory one
#: request (or one CalDAV PUT of an endless series) can cost.
MAX_INSTANCES = 1500

#: CPU seconds (of the calling thread) one expansion may take. The library walks every
#: period from DTSTART, and up to the year 9999 for a rule that never matches:
#: FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30 took 8 s, FREQ=MINUTELY from a DTSTART a few years
#: back 30 s, FREQ=SECONDLY hours, each holding a worker thread (and the room's booking
#: lock). A real meeting expands in milliseconds (1,500 daily instances: 0.2 s).
EXPANSION_BUDGET_SECONDS = 1.0

T = TypeVar("T")

#: How far back busy intervals are kept for a stored event: free/busy of the last
#: weeks is still asked for; older instances only cost rows.
BUSY_PAST_DAYS = 31
#: How far ahead busy intervals are stored: the longest booking window (1080 days) plus
#: a margin, so every conflict check a room can make sees them.
BUSY_FUTURE_DAYS = 1100


@dataclass(frozen=True, slots=True)
class Instance:
    """One occurrence: UTC start and end, and its RECURRENCE-ID value as in the
    calendar (None for a non-recurring event)."""

    start: datetime
    end: datetime
    recurrence_id: date | datetime | None
    all_day: bool
    tentative: bool = False
    busy: bool = True  # opaque and not cancelled


def zone(name: str) -> tzinfo:
    """The IANA zone ``name``; UTC when unknown."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC


def to_utc(value: date | datetime, tz: tzinfo) -> datetime:
    """A DATE or DATE-TIME as an aware UTC datetime; floating values and dates are
    read in ``tz`` (RFC 5545 §3.3.5 form 1, §3.3.4)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=tz).astimezone(UTC)


def _instance(event: Any, tz: tzinfo) -> Instance | None:
    start_prop = event.get("DTSTART")
    if start_prop is None:
        return None
    start_value = start_prop.dt
    end_prop = event.get("DTEND")
    if end_prop is not None:
        end_value = end_prop.dt
    elif event.get("DURATION") is not None:
        end_value = start_value + event.get("DURATION").dt
    elif isinstance(start_value, datetime):
        end_value = start_value  # RFC 5545 §3.6.1: a DATE-TIME start alone takes no time
    else:
        end_value = start_value + timedelta(days=1)  # ... a DATE start alone is one day
    rid = event.get("RECURRENCE-ID")
    status = str(event.get("STATUS", "")).upper()
    return Instance(
        start=to_utc(start_value, tz),
        end=to_utc(end_value, tz),
        recurrence_id=rid.dt if rid is not None else None,
        all_day=not isinstance(start_value, datetime),
        tentative=status == "TENTATIVE",
        busy=status != "CANCELLED" and str(event.get("TRANSP", "OPAQUE")).upper() != "TRANSPARENT",
    )


class ExpansionTooCostly(Exception):
    """An expansion used up :data:`EXPANSION_BUDGET_SECONDS`."""


def _within_budget(work: Callable[[], T], seconds: float) -> T:
    """``work()``, stopped with ExpansionTooCostly once this thread has spent
    ``seconds`` of CPU in it. The check runs on every Python function call (the
    library's loops call helpers each period), through the thread's trace hook; a hook
    already set (a debugger, coverage) is kept and still called."""
    deadline = time.thread_time() + seconds
    previous = sys.gettrace()

    def check(frame: FrameType, event: Any, arg: Any) -> Any:
        if time.thread_time() > deadline:
            raise ExpansionTooCostly(f"more than {seconds:g} s of CPU")
        return previous(frame, event, arg) if previous is not None else None

    sys.settrace(check)
    try:
        return work()
    finally:
        sys.settrace(previous)


def expand(calendar: icalendar.Calendar, tz: tzinfo, start: datetime, end: datetime,
           *, limit: int = MAX_INSTANCES) -> list[Instance]:
    """Instances of the calendar's VEVENTs overlapping ``[start, end)``, by start, at
    most ``limit``. Raises ValueError for a recurrence the library cannot expand, or
    not within :data:`EXPANSION_BUDGET_SECONDS`."""

    def work() -> list[Instance]:
        query = recurring_ical_events.of(calendar, components=["VEVENT"])
        found: list[Instance] = []
        for event in itertools.islice(query.between(start, end), limit):
            inst = _instance(event, tz)
            if inst is not None:
                found.append(inst)
        return found

    try:
        found = _within_budget(work, EXPANSION_BUDGET_SECONDS)
    except Exception as err:  # the library raises its own errors and ValueError
        raise ValueError(f"cannot expand the recurrence: {err}") from None
    found.sort(key=lambda i: i.start)
    return found


def has_instance_after(calendar: icalendar.Calendar, moment: datetime) -> bool:
    """True when some VEVENT instance starts after ``moment``. Raises ValueError like
    :func:`expand`."""

    def work() -> bool:
        query = recurring_ical_events.of(calendar, components=["VEVENT"])
        return next(iter(query.after(moment)), None) is not None

    try:
        return _within_budget(work, EXPANSION_BUDGET_SECONDS)
    except Exception as err:
        raise ValueError(f"cannot expand the recurrence: {err}") from None


def busy_intervals(calendar: icalendar.Calendar, tz: tzinfo, now: datetime) -> list[BusyInterval]:
    """The busy time of an event object from :data:`BUSY_PAST_DAYS` ago to
    :data:`BUSY_FUTURE_DAYS` ahead: its non-empty instances that are opaque and not
    cancelled (RFC 5545 §3.8.2.7 TRANSP, §3.8.1.11 STATUS). An object that cannot be
    expanded has no busy time."""
    events = list(calendar.walk("VEVENT"))
    if not events:
        return []
    uid = str(events[0].get("UID", ""))
    try:
        found = expand(calendar, tz, now - timedelta(days=BUSY_PAST_DAYS), now + timedelta(days=BUSY_FUTURE_DAYS))
    except ValueError:
        return []
    return [BusyInterval(i.start, i.end, uid, i.tentative) for i in found if i.busy and i.end > i.start]
