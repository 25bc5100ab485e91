"""The iTIP REPLY message a room sends (RFC 5546 §3.2.3 over RFC 6047 iMIP) and the
room's own copy of a booked event.

The reply names only the replying attendee (the room); an accepted series with declined
occurrences carries one extra VEVENT per declined occurrence with its RECURRENCE-ID
(CalendarServer's form, mission-semantics §4.2).
"""

from __future__ import annotations

import email.policy
import email.utils
from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import Any

import icalendar

from auth.settings import RoomSettings
from delivery.booking.imip import mailto
from delivery.booking.instances import Instance
from delivery.booking.policy import Decision, PartStat

PRODID = "-//mailserver//room booking attendant//EN"

#: Outlook's subject prefixes for responses (mission-semantics §4.1).
_SUBJECT = {
    PartStat.ACCEPTED: "Accepted",
    PartStat.DECLINED: "Declined",
    PartStat.TENTATIVE: "Tentative",
}
_SENTENCE = {
    PartStat.ACCEPTED: "Your request was accepted.",
    PartStat.DECLINED: "Your request was declined.",
    PartStat.TENTATIVE: "Your request was received and is pending approval.",
}

#: Properties copied from the request's VEVENT into the reply: identity, ordering and
#: enough of the time for a client to show which meeting the answer is about.
_COPIED = ("UID", "SEQUENCE", "ORGANIZER", "DTSTART", "DTEND", "DURATION", "SUMMARY", "LOCATION",
           "RECURRENCE-ID", "X-MICROSOFT-CDO-OWNERAPPTID")


def _rid_value(inst: Instance) -> date | datetime:
    """The RECURRENCE-ID of an instance: its original value when known, else UTC start."""
    value = inst.recurrence_id
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    if value is not None:
        return value
    return inst.start


def room_attendee(room_address: str, room_name: str, partstat: PartStat) -> icalendar.vCalAddress:
    attendee = icalendar.vCalAddress(f"mailto:{room_address}")
    if room_name:
        attendee.params["CN"] = room_name
    attendee.params["CUTYPE"] = "ROOM"  # RFC 5545 §3.2.3
    attendee.params["ROLE"] = "NON-PARTICIPANT"
    attendee.params["PARTSTAT"] = partstat.value
    return attendee


def reply_calendar(request: icalendar.Calendar, uid: str, room_address: str, room_name: str,
                   decision: Decision, now: datetime, comment: str) -> icalendar.Calendar:
    """METHOD:REPLY for every VEVENT of ``uid`` in the request, plus declined instances."""
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    cal.add("METHOD", "REPLY")
    for tz in request.walk("VTIMEZONE"):
        cal.add_component(tz)
    events = [e for e in request.walk("VEVENT") if str(e.get("UID", "")) == uid]
    for source in events:
        cal.add_component(_reply_event(source, room_address, room_name, decision.partstat, now, comment))
    master = next((e for e in events if e.get("RECURRENCE-ID") is None), events[0] if events else None)
    for inst in decision.declined:
        event = icalendar.Event()
        event.add("UID", uid)
        if master is not None and master.get("SEQUENCE") is not None:
            event.add("SEQUENCE", int(master.get("SEQUENCE")))
        event.add("DTSTAMP", now)
        if master is not None and master.get("ORGANIZER") is not None:
            event["ORGANIZER"] = master["ORGANIZER"]
        event.add("RECURRENCE-ID", _rid_value(inst))
        event.add("DTSTART", inst.start if not inst.all_day else inst.start.date())
        event.add("DTEND", inst.end if not inst.all_day else inst.end.date())
        event.add("ATTENDEE", room_attendee(room_address, room_name, PartStat.DECLINED))
        event.add("REQUEST-STATUS", icalendar.prop.vInline("2.0;Success"))
        event.add("COMMENT", "The room is busy at this time.")
        cal.add_component(event)
    return cal


def _reply_event(source: Any, room_address: str, room_name: str, partstat: PartStat,
                 now: datetime, comment: str) -> icalendar.Event:
    event = icalendar.Event()
    for name in _COPIED:
        if source.get(name) is not None:
            event[name] = source[name]
    event.add("DTSTAMP", now)
    event.add("ATTENDEE", room_attendee(room_address, room_name, partstat))
    event.add("REQUEST-STATUS", icalendar.prop.vInline("2.0;Success"))  # RFC 5546 §3.6
    if comment:
        event.add("COMMENT", comment)
    return event


def reply_message(*, room_address: str, room_name: str, organizer: str, subject: str,
                  in_reply_to: str, text: str, calendar: icalendar.Calendar, partstat: PartStat,
                  now: datetime, hostname: str) -> bytes:
    """The MIME reply: multipart/alternative of a sentence and the REPLY calendar, with
    ``Auto-Submitted: auto-replied`` (RFC 3834 §5) and threading to the request."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = email.utils.formataddr((room_name, room_address))
    msg["To"] = organizer
    msg["Subject"] = f"{_SUBJECT[partstat]}: {subject}" if subject else _SUBJECT[partstat]
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5.1
    msg.set_content(text)
    # RFC 6047 §2.4: the method parameter equals the METHOD property.
    msg.add_alternative(
        calendar.to_ical(), maintype="text", subtype="calendar", params={"method": "REPLY", "charset": "UTF-8"}
    )
    msg["Content-Class"] = "urn:content-classes:calendarmessage"  # as Outlook marks iMIP mail
    return msg.as_bytes()


def reply_text(decision: Decision, settings: RoomSettings) -> str:
    """The human sentence of the reply, with the reasons when the room gives them."""
    lines = [_SENTENCE[decision.partstat]]
    if settings.enable_response_details:
        lines += [r for r in decision.reasons if r != lines[0]]
    if settings.additional_response:
        lines.append(settings.additional_response)
    return "\n\n".join(lines) + "\n"


# -- the room's copy


_PRIVATE_FIELDS = ("DESCRIPTION", "X-ALT-DESC", "COMMENT")


def room_copy(request: icalendar.Calendar, uid: str, room_address: str, room_name: str,
              decision: Decision, settings: RoomSettings, existing: icalendar.Calendar | None,
              organizer_name: str) -> icalendar.Calendar:
    """The event as stored in the room's calendar: the request's components of ``uid``
    (an instance-only update merged into the stored series), the room's PARTSTAT,
    declined instances excluded (EXDATE), and Exchange's privacy scrubbing."""
    events = [e for e in request.walk("VEVENT") if str(e.get("UID", "")) == uid]
    if existing is not None and all(e.get("RECURRENCE-ID") is not None for e in events):
        # An update of single occurrences: keep the stored series, replace those overrides.
        replaced = {e["RECURRENCE-ID"].to_ical() for e in events}
        kept = [e for e in existing.walk("VEVENT")
                if e.get("RECURRENCE-ID") is None or e["RECURRENCE-ID"].to_ical() not in replaced]
        events = kept + events
        timezones = {str(t.get("TZID")): t for t in [*existing.walk("VTIMEZONE"), *request.walk("VTIMEZONE")]}
    else:
        timezones = {str(t.get("TZID")): t for t in request.walk("VTIMEZONE")}
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    for tz in timezones.values():
        cal.add_component(tz)
    declined_rids = {_rid_value(i) for i in decision.declined}
    partstat = decision.partstat
    for source in events:
        event = icalendar.Event()
        for name, value in source.property_items(recursive=False):
            if name in ("BEGIN", "END", "ATTENDEE", "METHOD"):
                continue
            if settings.delete_comments and name in _PRIVATE_FIELDS:
                continue
            if settings.delete_attachments and name == "ATTACH":
                continue
            if settings.remove_private_property and name == "CLASS":
                continue
            if settings.delete_subject and name == "SUMMARY":
                continue
            event.add(name, value, encode=False)
        rid = source.get("RECURRENCE-ID")
        if rid is not None and _normal_rid(rid.dt) in {_normal_rid(r) for r in declined_rids}:
            continue
        if settings.delete_subject and settings.add_organizer_to_subject:
            event.add("SUMMARY", organizer_name)
        elif not settings.delete_subject and source.get("SUMMARY") is not None and settings.add_organizer_to_subject:
            event["SUMMARY"] = f"{organizer_name}: {source.get('SUMMARY')}"
        for attendee in source.get("ATTENDEE", []) if isinstance(source.get("ATTENDEE"), list) else (
            [source["ATTENDEE"]] if source.get("ATTENDEE") is not None else []
        ):
            if mailto(attendee) == room_address:
                continue
            event.add("ATTENDEE", attendee, encode=False)
        event.add("ATTENDEE", room_attendee(room_address, room_name, partstat))
        if rid is None and decision.declined:
            for inst in decision.declined:
                event.add("EXDATE", _rid_value(inst))
        if partstat is PartStat.TENTATIVE:
            event["STATUS"] = "TENTATIVE"
        event["TRANSP"] = "OPAQUE"
        cal.add_component(event)
    return cal


def _normal_rid(value: date | datetime) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value
    return value


def organizer_display(event: Any) -> str:
    """The organizer's CN, else address (for the room copy's subject)."""
    organizer = event.get("ORGANIZER")
    if organizer is None:
        return ""
    cn = getattr(organizer, "params", {}).get("CN")
    return str(cn) if cn else mailto(organizer)
