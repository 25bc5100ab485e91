"""Issue 10 §3: fuzzing the room attendant's iCalendar intake (iMIP, RFC 6047).

Requests start from the shapes real clients send (tests/calendar/fixtures.py: Outlook's
base64 text/calendar with a Windows zone name, Thunderbird's 7bit part with UTC or
all-day times) and are then mutated on the iCalendar content lines: DTSTART, DTEND,
DURATION, RRULE (every FREQ, huge COUNT and INTERVAL, impossible BYxxx, UNTIL before
DTSTART), TZID (unknown, Windows, missing VTIMEZONE), SEQUENCE, METHOD, UID, ORGANIZER,
RECURRENCE-ID, EXDATE and RDATE floods, properties dropped or duplicated, garbage and
8-bit lines, nested and unbalanced components, bare LF or CR line ends; and on the MIME
envelope (charset, transfer encoding). Each goes through :meth:`Attendant.handle` with a
real SQLite store, as delivery hands it over, for one of three rooms (defaults; Berlin
time with work hours, conflicts and external requests allowed; approval by a delegate).

Properties: the attendant never raises; it ends in a defined outcome (ignored,
malformed, stale, answered, cancelled) in bounded time; an answer is an iMIP REPLY
(parseable, METHOD:REPLY, the room's PARTSTAT) delivered to the organizer; every item
it leaves in the room's calendar is valid iCalendar.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from auth.accounts import AccountService
from auth.passwords import PasswordHasher
from delivery.booking import imip
from delivery.booking.attendant import ROOM_CALENDAR, Attendant, Outcome
from delivery.booking.policy import PartStat
from storage.sqlite import SqliteStore
from storage.types import Account, LocalRecipient
from tests.calendar.fixtures import outlook_request, thunderbird_request

#: Examples per run; FUZZ_EXAMPLES raises it for a longer hunt.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
#: Seconds before a request counts as hung (a guard, not a performance figure).
HANG_GUARD = 60.0
DOMAIN = "example.test"
ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
ROOMS = (f"room@{DOMAIN}", f"berlin@{DOMAIN}", f"approval@{DOMAIN}")
OUTCOMES = {"ignored", "malformed", "stale", "answered", "cancelled"}


@dataclass
class World:
    store: SqliteStore
    attendant: Attendant
    accounts: dict[str, Account]


async def make_world(folder: Path) -> World:
    """A store with alice and bob (users) and three rooms with different policies."""
    store = await SqliteStore.open(folder / "mail.sqlite3")
    service = AccountService(store.directory, PasswordHasher(fast=True), seats=100)
    await service.add_domain(DOMAIN)
    people = {a: await service.add_user(a, a.split("@")[0].title(), "pw") for a in (ALICE, BOB)}
    for room in ROOMS:
        await service.add_room(room, room.split("@")[0].title(), capacity=5)
    await service.set_room_policy(ROOMS[1], {
        "timezone": "Europe/Berlin", "schedule_only_during_work_hours": True, "allow_conflicts": True,
        "booking_window_days": 1080, "process_external_meeting_messages": True, "enforce_capacity": True,
    })
    await service.set_room_policy(ROOMS[2], {
        "resource_delegates": [BOB], "all_book_in_policy": False, "all_request_in_policy": True,
    })
    accounts = {**people, **{r: await service.get(r) for r in ROOMS}}
    return World(store, Attendant(store, "mail.example.test"), accounts)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """One store for a test."""
    w = await make_world(tmp_path)
    try:
        yield w
    finally:
        await w.store.close()


_worlds = itertools.count()


# -- requests -------------------------------------------------------------------------

def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


_now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
_offset_days = st.one_of(st.integers(1, 60), st.sampled_from([-400, -1, 0, 179, 181, 400, 1079, 1200, 4000]))
_hour = st.integers(0, 23)
_when = st.builds(lambda d, h: _now.replace(hour=h) + timedelta(days=d), _offset_days, _hour)
_time_value = st.one_of(
    _when.map(lambda w: ":" + _stamp(w)),
    _when.map(lambda w: ":" + w.strftime("%Y%m%dT%H%M%S")),  # floating
    _when.map(lambda w: ";VALUE=DATE:" + w.strftime("%Y%m%d")),
    st.tuples(st.sampled_from(["Europe/Berlin", "W. Europe Standard Time", "Nowhere/Zone", "", "UTC",
                               "America/New_York", "\u00e9"]), _when).map(
        lambda t: f";TZID={t[0]}:" + t[1].strftime("%Y%m%dT%H%M%S")),
    st.sampled_from([":", ":garbage", ":99991231T235959Z", ":00010101T000000Z", ":20301301T250000Z",
                     ":2030", ";VALUE=PERIOD:20300101T100000Z/PT1H", ";VALUE=DATE:20300230", ":-20300101",
                     ":16010101T000000"]),
)
#: Sub-daily rules mostly run into the expansion budget (1 s each): rarer here, and
#: pinned by test_costly_recurrences_are_declined_quickly.
_freq = st.sampled_from(["SECONDLY", "MINUTELY", "HOURLY", "BOGUS", ""] + ["DAILY", "WEEKLY", "MONTHLY", "YEARLY"] * 3)
_rrule_part = st.one_of(
    st.sampled_from(["COUNT=1", "COUNT=5", "COUNT=1000", "COUNT=1000000000", "COUNT=" + "9" * 30, "COUNT=0",
                     "COUNT=-1", "INTERVAL=0", "INTERVAL=2", "INTERVAL=7", "INTERVAL=-1", "INTERVAL=1000000000",
                     "UNTIL=19000101T000000Z", "UNTIL=20991231", "UNTIL=garbage", "BYMONTH=2", "BYMONTHDAY=30",
                     "BYMONTHDAY=31", "BYMONTHDAY=-1", "BYDAY=MO,TU", "BYDAY=XX", "BYDAY=5FR", "BYDAY=-1SU",
                     "BYSETPOS=400", "BYSETPOS=-1", "BYHOUR=25", "BYMINUTE=0,30", "BYSECOND=61", "BYYEARDAY=366",
                     "BYWEEKNO=60", "BYWEEKNO=53", "WKST=SU", "X-NAME=1", "=", "FREQ=DAILY"]),
)
_rrule_value = st.one_of(
    st.tuples(_freq, st.lists(_rrule_part, max_size=4)).map(lambda t: ";".join([f"FREQ={t[0]}", *t[1]])),
    st.sampled_from(["FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "FREQ=SECONDLY", "FREQ=MINUTELY;COUNT=100000",
                     "FREQ=DAILY;INTERVAL=7;BYDAY=SU", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", ""]),
    st.tuples(_freq, st.lists(_rrule_part, max_size=4)).map(lambda t: ";".join([f"FREQ={t[0]}", *t[1]])),
)
_calendar_dates = st.builds(
    lambda start, n, step: ",".join(_stamp(start + timedelta(days=i * step)) for i in range(n)),
    _when, st.sampled_from([1, 50, 2000, 8000]), st.sampled_from([1, 7]))

PROPERTY_VALUES: dict[str, st.SearchStrategy[str]] = {
    "DTSTART": _time_value,
    "DTEND": _time_value,
    "DURATION": st.sampled_from([":PT1H", ":P1D", ":-PT1H", ":PT0S", ":P9999999W", ":garbage", ":P"]),
    "RRULE": _rrule_value.map(lambda v: ":" + v),
    "EXDATE": _calendar_dates.map(lambda v: ":" + v),
    "RDATE": _calendar_dates.map(lambda v: ":" + v),
    "RECURRENCE-ID": _time_value,
    "SEQUENCE": st.sampled_from([":0", ":1", ":-1", ":" + "9" * 40, ":abc", ":", ":2147483648"]),
    "UID": st.sampled_from([":", ":x", ":" + "u" * 5000, ":../../etc/passwd", ":\u00e9\u00e9", ":a b/c"]),
    "ORGANIZER": st.sampled_from([f":mailto:{ALICE}", f":MAILTO:{ALICE.upper()}", ":mailto:x@elsewhere.example",
                                  f":mailto:{ROOMS[0]}", ":mailto:", ":garbage", ";CN=\"a,b\":mailto:bob@example.test",
                                  ":urn:uuid:1"]),
    "ATTENDEE": st.sampled_from([f";CUTYPE=ROOM:mailto:{ROOMS[0]}", ":mailto:x@elsewhere.example", ":",
                                 ";PARTSTAT=BOGUS:mailto:bob@example.test", ";CUTYPE=GROUP:mailto:list@example.test"]),
    "DTSTAMP": _time_value,
    "STATUS": st.sampled_from([":CANCELLED", ":TENTATIVE", ":CONFIRMED", ":bogus"]),
    "TRANSP": st.sampled_from([":TRANSPARENT", ":OPAQUE", ":x"]),
    "METHOD": st.sampled_from([":REQUEST", ":CANCEL", ":REPLY", ":PUBLISH", ":COUNTER", ":", ":request", ":X"]),
    "SUMMARY": st.sampled_from([":", ":\u00e9t\u00e9 \U0001f600", ":" + "s" * 20000, ":a\\nb\\,c;d"]),
}

GARBAGE_LINES = [
    "BEGIN:VEVENT", "END:VEVENT", "END:VCALENDAR", "BEGIN:VCALENDAR", "BEGIN:VTODO", "END:VTODO", "BEGIN:X-FOO",
    "END:X-FOO", "BEGIN:VALARM", "garbage without colon", ":", ";;;", "X-\u00e9:\u00e9", " folded continuation",
    "BEGIN:VTIMEZONE\r\nTZID:Bad\r\nEND:VTIMEZONE", "BEGIN:STANDARD\r\nDTSTART:garbage\r\nEND:STANDARD",
    "BEGIN:VEVENT\r\nUID:inner\r\nDTSTART:20300101T100000Z\r\nBEGIN:VEVENT\r\nEND:VEVENT\r\nEND:VEVENT",
]


def _unfold(ics: str) -> list[str]:
    """RFC 5545 §3.1 content lines."""
    return ics.replace("\r\n ", "").replace("\r\n\t", "").split("\r\n")


@st.composite
def _mutated_lines(draw: st.DrawFn, lines: list[str]) -> list[str]:
    lines = list(lines)
    first = next((i for i, x in enumerate(lines) if x == "BEGIN:VEVENT"), 1)
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3, 4]))):
        op = draw(st.sampled_from(["set", "set", "set", "set", "drop", "duplicate", "garbage", "bytes", "override"]))
        if op == "set":
            name = draw(st.sampled_from(sorted(PROPERTY_VALUES)))
            value = name + draw(PROPERTY_VALUES[name])
            where = next((i for i, x in enumerate(lines) if re.match(re.escape(name) + "[;:]", x) and i > first
                          or name == "METHOD" and x.startswith("METHOD")), None)
            if where is None or draw(st.integers(0, 4)) == 0:
                lines.insert(first + 1, value)  # added (or a second copy)
            else:
                lines[where] = value
        elif op == "drop" and len(lines) > 2:
            del lines[draw(st.integers(0, len(lines) - 1))]
        elif op == "duplicate" and lines:
            at = draw(st.integers(0, len(lines) - 1))
            lines.insert(at, lines[at])
        elif op == "garbage":
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(GARBAGE_LINES)))
        elif op == "bytes" and lines:
            at = draw(st.integers(0, len(lines) - 1))
            junk = draw(st.text(max_size=8))
            cut = draw(st.integers(0, len(lines[at])))
            lines[at] = lines[at][:cut] + junk + lines[at][cut:]
        elif op == "override":  # more VEVENTs of the same UID (RFC 5545 §3.8.4.4 overrides)
            uid = next((x[4:] for x in lines if x.startswith("UID:")), "x")
            rid = "RECURRENCE-ID" + draw(_time_value)
            block = ["BEGIN:VEVENT", f"UID:{uid}", rid, "DTSTART" + draw(_time_value), "SEQUENCE:0", "END:VEVENT"]
            end = max((i for i, x in enumerate(lines) if x == "END:VCALENDAR"), default=len(lines))
            for _ in range(draw(st.sampled_from([1, 1, 50]))):
                lines[end:end] = block
    return lines


@dataclass
class Request:
    """A generated message and who sent it (None: from outside)."""

    room: str
    body: bytes
    sender: str | None
    organizer: str


def _outlook_parts(body: bytes) -> tuple[bytes, bytes, bytes]:
    """(before, base64 text, after) of an Outlook request's calendar part."""
    marker = b"Content-Transfer-Encoding: base64\r\n\r\n"
    start = body.rindex(marker) + len(marker)
    end = body.index(b"\r\n--_000_OUTLOOKBOUNDARY_--")
    return body[:start], body[start:end], body[end:]


@st.composite
def imip_requests(draw: st.DrawFn) -> Request:
    room = draw(st.sampled_from(ROOMS))
    organizer = draw(st.sampled_from([ALICE, ALICE, ALICE, "x@elsewhere.example", BOB]))
    sender = draw(st.sampled_from([organizer, organizer, None, BOB]))
    if sender not in (ALICE, BOB):
        sender = None
    start = draw(_when)
    end = start + draw(st.sampled_from([timedelta(hours=1), timedelta(minutes=30), timedelta(days=1), timedelta(0),
                                        -timedelta(hours=1)]))
    uid = draw(st.sampled_from(["m-1", "m-2", "m-3"])) + "-" + draw(st.sampled_from(["a", "b"]))
    rrule = draw(st.sampled_from(["", "", "FREQ=WEEKLY;COUNT=10", "FREQ=DAILY;COUNT=400", "FREQ=MONTHLY"]))
    method = draw(st.sampled_from(["REQUEST", "REQUEST", "REQUEST", "CANCEL"]))
    sequence = draw(st.integers(0, 3))
    shape = draw(st.sampled_from(["outlook", "thunderbird", "thunderbird-allday"]))
    if shape == "outlook":
        body = outlook_request(organizer, room, uid, start, end, rrule=rrule, method=method, sequence=sequence)
        before, b64, after = _outlook_parts(body)
        ics = base64.b64decode(b64).decode()
    else:
        when = (start.date(), start.date() + timedelta(days=1)) if shape == "thunderbird-allday" else (start, end)
        body = thunderbird_request(organizer, room, uid, when[0], when[1], rrule=rrule, method=method,
                                   sequence=sequence)
        ics_start = body.index(b"BEGIN:VCALENDAR")
        ics_end = body.index(b"END:VCALENDAR\r\n", ics_start) + len(b"END:VCALENDAR\r\n")
        before, ics, after = body[:ics_start], body[ics_start:ics_end].decode(), body[ics_end:]
    lines = draw(_mutated_lines(_unfold(ics)))
    eol = draw(st.sampled_from(["\r\n"] * 8 + ["\n", "\r"]))
    data = eol.join(lines).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 14)) == 0:  # 8-bit garbage in the calendar octets
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if shape == "outlook":
        body = before + base64.encodebytes(data).replace(b"\n", b"\r\n") + after
    else:
        body = before + data + after
    envelope = draw(st.sampled_from(["none"] * 8 + ["charset", "encoding", "type"]))
    if envelope == "charset":
        name = draw(st.sampled_from([b"x-no-such-charset", b"zlib", b"utf\x00-8", b"utf-16"]))
        body = re.sub(rb'charset="?(utf-8|UTF-8)"?', b'charset="' + name + b'"', body, count=3)
    elif envelope == "encoding":
        body = body.replace(b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: x-uuencode")
        body = body.replace(b"Content-Transfer-Encoding: 7bit", b"Content-Transfer-Encoding: base64")
    elif envelope == "type":
        body = body.replace(b"text/calendar", b"text/calendar; method=\"\"; charset=\"", 1)
    return Request(room, body, sender, organizer)


# -- the property -----------------------------------------------------------------------

async def _count(store: SqliteStore, account: Account) -> int:
    folder = await store.mail.get_folder(account.id, "INBOX")
    assert folder is not None
    return len(await store.mail.list_uids(folder.id))


async def check_request(world: World, request: Request) -> tuple[Outcome, float]:
    """Run one request through the attendant and check the properties; return its
    outcome and the seconds it took."""
    store = world.store
    room = world.accounts[request.room]
    sender = world.accounts[request.sender] if request.sender else None
    # Delivery has already put the request in the room's INBOX when the attendant runs.
    await store.mail.deliver(request.body, [LocalRecipient(room.id)], mail_from=request.organizer)
    local = world.accounts.get(request.organizer)
    before = await _count(store, local) if local is not None else 0
    started = time.monotonic()
    outcome = await asyncio.wait_for(world.attendant.handle(room, request.body, sender), HANG_GUARD)
    elapsed = time.monotonic() - started
    assert outcome.action in OUTCOMES, outcome
    if outcome.action == "answered":
        assert outcome.reply is not None and outcome.partstat is not None
        answer = imip.read(outcome.reply)
        assert answer is not None and answer.method == "REPLY", outcome.reply[:500]
        partstats: set[str] = set()
        for reply_event in answer.calendar.walk("VEVENT"):
            attendees: Any = reply_event.get("ATTENDEE")
            for attendee in attendees if isinstance(attendees, list) else [attendees]:
                partstats.add(str(getattr(attendee, "params", {}).get("PARTSTAT")))
        assert outcome.partstat.value in partstats, (outcome.partstat, partstats)
        if local is not None and outcome.reply_to == request.organizer:
            # (+1 more when the organizer is also the delegate a held request is forwarded to)
            assert await _count(store, local) >= before + 1, "the REPLY was not delivered to the organizer"
    collections = [c for c in await store.calendars.list_collections(room.id) if c.name == ROOM_CALENDAR]
    for item in [i for c in collections for i in await store.calendars.list_items(c.id)]:
        stored = icalendar.Calendar.from_ical(item.text)  # what CalDAV clients will read
        assert isinstance(stored, icalendar.Calendar) and list(stored.walk("VEVENT")), item.text[:500]
    return outcome, elapsed


EXPLICIT = [
    # Recurrences whose expansion used to take seconds to hours of CPU per request:
    # dateutil walks every period from DTSTART, and up to year 9999 for a rule that
    # never matches.
    "FREQ=SECONDLY", "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "FREQ=DAILY;INTERVAL=7;BYDAY=SU",
]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow,
                                                                       HealthCheck.data_too_large])
@given(requests=st.lists(imip_requests(), min_size=1, max_size=2))
async def test_attendant_ends_every_request_in_a_defined_outcome(tmp_path: Path, requests: list[Request]) -> None:
    """Mutated iMIP requests: no exception, a defined outcome in bounded time, a
    well-formed REPLY delivered, only valid iCalendar left in the room's calendar."""
    folder = tmp_path / f"w{next(_worlds)}"  # a fresh store per example: each one replays alike
    folder.mkdir()
    world = await make_world(folder)
    try:
        for request in requests:
            outcome, elapsed = await check_request(world, request)
            event(outcome.action + (f" {outcome.partstat.value}" if outcome.partstat else ""))
            event(f"took {'<1' if elapsed < 1 else '1-5' if elapsed < 5 else '>=5'} s")
    finally:
        await world.store.close()


@pytest.mark.parametrize("rrule", EXPLICIT)
async def test_costly_recurrences_are_declined_quickly(world: World, rrule: str) -> None:
    """Regression (found by the fuzzer): a recurrence the expander cannot finish within
    EXPANSION_BUDGET_SECONDS is declined as unreadable, instead of holding a worker
    thread and the room's lock for seconds (impossible rules) to hours (SECONDLY)."""
    start = _now - timedelta(days=365)
    start -= timedelta(days=start.weekday())  # a Monday: INTERVAL=7;BYDAY=SU never matches
    body = thunderbird_request(ALICE, ROOMS[0], "costly", start, start + timedelta(hours=1), rrule=rrule)
    outcome, _ = await check_request(world, Request(ROOMS[0], body, ALICE, ALICE))
    assert outcome.partstat is PartStat.DECLINED
    assert any("cannot expand the recurrence" in r for r in outcome.reasons), outcome.reasons


@pytest.mark.parametrize("charset", [b"zlib", b"utf\x00-8", b"rot13"])
async def test_calendar_charset_that_is_no_text_encoding(world: World, charset: bytes) -> None:
    """Regression (found by bench/fuzz/atheris_imap.py in the shared charset code): a
    calendar part whose charset names no text encoding (or holds a NUL) is read as UTF-8
    instead of raising out of the attendant."""
    start = _now + timedelta(days=3)
    body = thunderbird_request(ALICE, ROOMS[0], "charset", start, start + timedelta(hours=1))
    body = body.replace(b"text/calendar; charset=UTF-8", b"text/calendar; charset=" + charset)
    outcome, _ = await check_request(world, Request(ROOMS[0], body, ALICE, ALICE))
    assert outcome.action == "answered" and outcome.partstat is PartStat.ACCEPTED, outcome


@pytest.mark.parametrize("line", ["RECURRENCE-ID:", "DTSTART:garbage", "DTEND;TZID=Europe/Berlin:2030",
                                  "EXDATE:20300101T100000Z,xx", "DURATION:garbage", "DTSTAMP:-20300101"])
async def test_unreadable_values_leave_the_request_as_malformed(world: World, line: str) -> None:
    """Regression (found by the fuzzer): icalendar keeps an unreadable value (an empty
    RECURRENCE-ID) and raises only on use, so the attendant crashed half-way (no reply,
    ERROR log); such a request is now malformed as a whole and stays in the INBOX."""
    start = _now + timedelta(days=3)
    body = thunderbird_request(ALICE, ROOMS[0], "broken", start, start + timedelta(hours=1))
    body = body.replace(b"SEQUENCE:0\r\n", b"SEQUENCE:0\r\n" + line.encode() + b"\r\n", 1)
    outcome, _ = await check_request(world, Request(ROOMS[0], body, ALICE, ALICE))
    assert outcome.action == "malformed", outcome
