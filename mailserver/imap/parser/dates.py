"""IMAP dates (RFC 3501 §9 ``date``, ``date-time``)."""

from __future__ import annotations

import datetime as dt
import re

from .lexer import Cursor, ParseError

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {m.upper().encode(): i + 1 for i, m in enumerate(MONTHS)}

# date-text = date-day "-" date-month "-" date-year
_DATE_TEXT = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
# date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
# (a one-digit day without the leading space is accepted too: clients send it)
_DATE_TIME = re.compile(
    rb'"(?: ?)([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) '
    rb'([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)


def _date(day: bytes, month: bytes, year: bytes) -> dt.date:
    mon = _MONTH_NUMBER.get(month.upper())
    if mon is None:
        raise ParseError("Invalid month in date")
    try:
        return dt.date(int(year), mon, int(day))
    except ValueError:
        raise ParseError("Invalid date") from None


def xdate(cur: Cursor) -> dt.date:
    """date = date-text / DQUOTE date-text DQUOTE (SEARCH BEFORE/ON/SINCE...)."""
    quoted = cur.try_byte(b'"')
    m = _DATE_TEXT.match(cur.buf, cur.pos)
    if not m:
        raise ParseError("Expected date (dd-Mon-yyyy)")
    cur.pos = m.end()
    if quoted:
        cur.xbyte(b'"', "closing quote after date")
    return _date(*m.groups())


def try_date_time(cur: Cursor) -> dt.datetime | None:
    """date-time (APPEND): an aware datetime, or None if the next token is not a date-time.

    Raises:
        ParseError: if it looks like a date-time but names an impossible date.
    """
    m = _DATE_TIME.match(cur.buf, cur.pos)
    if not m:
        return None
    day, month, year, hh, mm, ss, sign, zh, zm = m.groups()
    date = _date(day, month, year)
    offset = dt.timedelta(hours=int(zh), minutes=int(zm))
    if offset >= dt.timedelta(hours=24) or int(zm) > 59:
        raise ParseError("Invalid time zone")
    try:
        tz = dt.timezone(-offset if sign == b"-" else offset)
        value = dt.datetime(date.year, date.month, date.day, int(hh), int(mm), int(ss), tzinfo=tz)
    except ValueError:
        raise ParseError("Invalid time") from None
    cur.pos = m.end()
    return value


def format_date_time(value: dt.datetime) -> str:
    """The date-time form ``dd-Mon-yyyy hh:mm:ss +zzzz`` (no quotes) of an aware datetime."""
    offset = value.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"{value.day:02d}-{MONTHS[value.month - 1]}-{value.year:04d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} "
        f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
    )
