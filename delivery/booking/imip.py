"""Find and read the meeting request in a message (RFC 6047 iMIP).

A request is a ``text/calendar`` part (alone, or inside multipart/alternative,
multipart/mixed or multipart/related, as Outlook, Thunderbird, Apple Calendar and
Google send it); ``application/ics`` attachments are used when no text/calendar part
exists. Parsing is pure and CPU-bound: callers run it off the event loop.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.policy
import email.utils
from dataclasses import dataclass
from email.message import Message
from typing import Any

import icalendar

#: Largest calendar part read, in octets. A meeting request with a long recurrence and
#: Teams metadata is a few tens of KiB; anything beyond this is not a request we book.
MAX_CALENDAR_OCTETS = 1024 * 1024

_CALENDAR_TYPES = ("text/calendar", "application/ics", "text/x-vcalendar")


class MalformedCalendar(Exception):
    """The message has a calendar part that cannot be read; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class ImipMessage:
    """The calendar of a message with the header fields the reply needs."""

    method: str  # METHOD of the calendar (upper case), "" when absent
    calendar: icalendar.Calendar
    subject: str
    message_id: str
    from_address: str


def _parts(msg: Message) -> list[Message]:
    return [p for p in msg.walk() if not p.is_multipart()]


def _decoded(part: Message) -> str:
    payload: Any = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raise MalformedCalendar("calendar part has no content")
    if len(payload) > MAX_CALENDAR_OCTETS:
        raise MalformedCalendar("calendar part too large")
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except (LookupError, ValueError):  # unknown, not a text encoding, or a NUL in the name
        return payload.decode("utf-8", errors="replace")


def _first_address(value: str) -> str:
    addresses = email.utils.getaddresses([value]) if value else []
    return addresses[0][1].strip().lower() if addresses else ""


def read(body: bytes) -> ImipMessage | None:
    """The calendar carried by ``body``, or None when it has no calendar part.

    Raises MalformedCalendar when a calendar part exists but is not iCalendar, or
    holds a property value that cannot be read (RFC 5545 §3.3 value types).
    """
    msg = email.message_from_bytes(body, policy=email.policy.compat32)
    parts = _parts(msg)
    chosen: Message | None = None
    for wanted in _CALENDAR_TYPES:
        chosen = next((p for p in parts if p.get_content_type() == wanted), None)
        if chosen is not None:
            break
    if chosen is None:
        return None
    text = _decoded(chosen)
    # Lotus Notes writes bare CR line ends; icalendar splits on LF.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except Exception as err:  # icalendar raises ValueError, KeyError, IndexError...
        raise MalformedCalendar(f"not iCalendar: {err}") from None
    if not isinstance(calendar, icalendar.Calendar):
        raise MalformedCalendar("no VCALENDAR object")
    broken = _broken_property(calendar)
    if broken:
        raise MalformedCalendar(f"unreadable {broken} value")
    method = str(calendar.get("METHOD", "") or chosen.get_param("method") or "").strip().upper()
    return ImipMessage(
        method=method,
        calendar=calendar,
        subject=_header(msg, "Subject"),
        message_id=_header(msg, "Message-ID"),
        from_address=_first_address(_header(msg, "From")),
    )


def _broken_property(calendar: icalendar.Calendar) -> str:
    """The name of the first property whose value icalendar could not read, "" if none.

    icalendar keeps such a value as ``vBroken`` text and raises only when it is used
    (``DTSTART:garbage`` then fails at ``.dt``, deep in booking); a request is read
    whole or not at all, so the attendant never meets one half-way through."""
    for component in calendar.walk():
        for name, value in component.items():
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, icalendar.vBroken):
                    return f"{component.name} {name}"
    return ""


def _header(msg: Message, name: str) -> str:
    raw = msg.get(name)
    if raw is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(raw)))).strip()
    except (UnicodeDecodeError, LookupError, email.errors.HeaderParseError):
        return str(raw).strip()


def mailto(value: Any) -> str:
    """The address of a CAL-ADDRESS (``mailto:`` in any case stripped), lower-cased."""
    text = str(value or "").strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    return text.strip().lower()
