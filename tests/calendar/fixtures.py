"""Our own meeting requests in the shapes real clients send (see ../shared/samples/imip):
Outlook/Exchange (multipart/alternative with text, HTML and a base64 text/calendar,
Windows time zone names, X-MICROSOFT-CDO-*) and Thunderbird (multipart/mixed with
text/plain, a 7bit text/calendar and an application/ics attachment, EMAIL= parameters).
Dates are relative to now so that the booking window always applies."""

from __future__ import annotations

import base64
import zoneinfo
from datetime import UTC, date, datetime, timedelta

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")

W_EUROPE_VTIMEZONE = (
    "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\n"
    "BEGIN:STANDARD\r\nDTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n"
    "RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\n"
    "BEGIN:DAYLIGHT\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n"
    "RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
)


def day(offset: int, hour: int, minute: int = 0, tz: zoneinfo.ZoneInfo | None = None) -> datetime:
    """``offset`` days from today at hour:minute (UTC unless ``tz``)."""
    base = datetime.now(tz or UTC).date() + timedelta(days=offset)
    return datetime(base.year, base.month, base.day, hour, minute, tzinfo=tz or UTC)


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _local(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%S")


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def outlook_request(organizer: str, room: str, uid: str, start: datetime, end: datetime, *,
                    summary: str = "Project sync", sequence: int = 0, rrule: str = "",
                    method: str = "REQUEST", others: tuple[str, ...] = ()) -> bytes:
    """An Outlook/Exchange meeting request; ``start``/``end`` in Europe/Berlin, written
    with the Windows zone name "W. Europe Standard Time" as Outlook does."""
    s, e = start.astimezone(BERLIN), end.astimezone(BERLIN)
    attendees = "".join(
        f"ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN={a}:mailto:{a}\r\n" for a in (room, *others)
    )
    status = "STATUS:CANCELLED\r\n" if method == "CANCEL" else "STATUS:CONFIRMED\r\n"
    ics = (
        f"BEGIN:VCALENDAR\r\nMETHOD:{method}\r\nPRODID:Microsoft Exchange Server 2010\r\nVERSION:2.0\r\n"
        + W_EUROPE_VTIMEZONE
        + "BEGIN:VEVENT\r\n"
        f"ORGANIZER;CN=Organizer:mailto:{organizer}\r\n{attendees}"
        f"DESCRIPTION;LANGUAGE=en-US:Agenda: secret numbers\\n\r\n"
        f"UID:{uid}\r\nSUMMARY;LANGUAGE=en-US:{summary}\r\n"
        f"DTSTART;TZID=W. Europe Standard Time:{_local(s)}\r\n"
        f"DTEND;TZID=W. Europe Standard Time:{_local(e)}\r\n"
        + (f"RRULE:{rrule}\r\n" if rrule else "")
        + f"CLASS:PUBLIC\r\nPRIORITY:5\r\nDTSTAMP:{_stamp()}\r\nTRANSP:OPAQUE\r\n{status}"
        f"SEQUENCE:{sequence}\r\nLOCATION;LANGUAGE=en-US:{room}\r\n"
        f"X-MICROSOFT-CDO-APPT-SEQUENCE:{sequence}\r\nX-MICROSOFT-CDO-BUSYSTATUS:TENTATIVE\r\n"
        "X-MICROSOFT-CDO-INTENDEDSTATUS:BUSY\r\nX-MICROSOFT-CDO-ALLDAYEVENT:FALSE\r\n"
        "X-MICROSOFT-CDO-INSTTYPE:0\r\nX-MICROSOFT-DISALLOW-COUNTER:FALSE\r\n"
        "BEGIN:VALARM\r\nDESCRIPTION:REMINDER\r\nTRIGGER;RELATED=START:-PT15M\r\nACTION:DISPLAY\r\nEND:VALARM\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    b64 = base64.encodebytes(ics.encode()).decode().replace("\n", "\r\n")
    boundary = "_000_OUTLOOKBOUNDARY_"
    prefix = "Canceled: " if method == "CANCEL" else ""
    return (
        f"From: Organizer <{organizer}>\r\nTo: {room}\r\nSubject: {prefix}{summary}\r\n"
        f"Thread-Topic: {summary}\r\nDate: {datetime.now(UTC).strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
        f"Message-ID: <{uid}-{sequence}-{method}@outlook.example>\r\nContent-Language: en-US\r\n"
        f"Content-Type: multipart/alternative;\r\n\tboundary=\"{boundary}\"\r\nMIME-Version: 1.0\r\n"
        "Content-class: urn:content-classes:calendarmessage\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/plain; charset=\"iso-8859-1\"\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\nAgenda: secret numbers\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/html; charset=\"iso-8859-1\"\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n<html><body><p>Agenda</p></body></html>\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/calendar; charset=\"utf-8\"; method={method}\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--{boundary}--\r\n"
    ).encode()


def thunderbird_request(organizer: str, room: str, uid: str, start: datetime | date, end: datetime | date, *,
                        summary: str = "Team lunch", sequence: int = 0, rrule: str = "",
                        method: str = "REQUEST", recurrence_id: datetime | None = None) -> bytes:
    """A Thunderbird (Lightning) request: UTC times, or VALUE=DATE for all-day events."""
    if isinstance(start, datetime):
        times = f"DTSTART:{_utc(start)}\r\nDTEND:{_utc(end)}\r\n"  # type: ignore[arg-type]
    else:
        times = f"DTSTART;VALUE=DATE:{start:%Y%m%d}\r\nDTEND;VALUE=DATE:{end:%Y%m%d}\r\n"
    rid = f"RECURRENCE-ID:{_utc(recurrence_id)}\r\n" if recurrence_id else ""
    status = "STATUS:CANCELLED\r\n" if method == "CANCEL" else ""
    ics = (
        f"BEGIN:VCALENDAR\r\nPRODID:-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN\r\nVERSION:2.0\r\n"
        f"METHOD:{method}\r\nBEGIN:VEVENT\r\nCREATED:{_stamp()}\r\nLAST-MODIFIED:{_stamp()}\r\n"
        f"DTSTAMP:{_stamp()}\r\nUID:{uid}\r\nSUMMARY:{summary}\r\n"
        f"ORGANIZER;RSVP=TRUE;CN=Organizer;PARTSTAT=ACCEPTED;ROLE=CHAIR;\r\n EMAIL={organizer}:mailto:{organizer}\r\n"
        f"ATTENDEE;RSVP=TRUE;CN={room};PARTSTAT=NEEDS-ACTION;CUTYPE=ROOM;\r\n ROLE=NON-PARTICIPANT;EMAIL={room}:mailto:{room}\r\n"
        + (f"RRULE:{rrule}\r\n" if rrule else "") + rid + times + status
        + f"SEQUENCE:{sequence}\r\nTRANSP:OPAQUE\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    return (
        f"From: Organizer <{organizer}>\r\nTo: {room}\r\nSubject: {'Cancelled' if method == 'CANCEL' else 'Invitation'}: {summary}\r\n"
        f"Message-ID: <{uid}-{sequence}-{method}@thunderbird.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"------------TBOUTER\"\r\n\r\n"
        "This is a multi-part message in MIME format.\r\n--------------TBOUTER\r\n"
        "Content-Type: multipart/alternative; boundary=\"------------TBINNER\"\r\n\r\n"
        "--------------TBINNER\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        f"{summary}\r\n\r\n--------------TBINNER\r\n"
        f"Content-Type: text/calendar; charset=UTF-8; method={method}\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        f"{ics}\r\n--------------TBINNER--\r\n\r\n--------------TBOUTER\r\n"
        "Content-Type: application/ics; name=\"invite.ics\"\r\nContent-Disposition: attachment; filename=\"invite.ics\"\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{base64.encodebytes(ics.encode()).decode()}\r\n--------------TBOUTER--\r\n"
    ).encode()


def delegate_reply(delegate: str, room: str, uid: str, partstat: str, *, sequence: int = 0,
                   comment: str = "", summary: str = "Project sync") -> bytes:
    """A Thunderbird-style iMIP REPLY (Accept/Decline on the approval request the room
    forwarded): ORGANIZER the room, the delegate the only ATTENDEE."""
    ics = (
        "BEGIN:VCALENDAR\r\nPRODID:-//Mozilla.org/NONSGML Mozilla Calendar V1.1//EN\r\nVERSION:2.0\r\n"
        f"METHOD:REPLY\r\nBEGIN:VEVENT\r\nDTSTAMP:{_stamp()}\r\nUID:{uid}\r\nSUMMARY:{summary}\r\n"
        f"ORGANIZER;CN=Room:mailto:{room}\r\n"
        f"ATTENDEE;CN={delegate};PARTSTAT={partstat};ROLE=REQ-PARTICIPANT:mailto:{delegate}\r\n"
        + (f"COMMENT:{comment}\r\n" if comment else "")
        + f"SEQUENCE:{sequence}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    word = {"ACCEPTED": "Accepted", "DECLINED": "Declined"}.get(partstat, "Tentative")
    return (
        f"From: {delegate}\r\nTo: {room}\r\nSubject: {word}: {summary}\r\n"
        f"Message-ID: <{uid}-reply-{partstat}@thunderbird.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"------------TBREPLY\"\r\n\r\n"
        "--------------TBREPLY\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
        f"{delegate} has {word.lower()} this invitation.\r\n\r\n--------------TBREPLY\r\n"
        "Content-Type: text/calendar; charset=UTF-8; method=REPLY\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        f"{ics}\r\n--------------TBREPLY--\r\n"
    ).encode()
