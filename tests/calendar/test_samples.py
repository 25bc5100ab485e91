"""The iMIP reader on real client messages from ../shared/samples/imip (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from delivery.booking import imip
from delivery.booking.instances import expand, zone
from tests.helpers import ROOT, unavailable

SAMPLES = ROOT.parent / "shared" / "samples" / "imip"


@pytest.fixture(autouse=True)
def _samples_present() -> None:
    if not SAMPLES.is_dir():
        unavailable("shared iMIP samples not present")

EXPECTED = {
    "outlook-exchange2010-request-base64-calendar-fle-standard-time.eml": ("REQUEST", "marge@example.org"),
    "outlook-teams-meeting-request-qp-iso8859-1-base64-calendar.eml": ("REQUEST", None),
    "google-calendar-request-meet-qp-calendar-plus-application-ics-attachment.eml": ("REQUEST", "example@gmail.com"),
    "thunderbird-test-request-daily-recurring-count3.eml": ("REQUEST", "sender@example.com"),
    "thunderbird-test-request-recurrence-id-exception-moved.eml": ("REQUEST", "sender@example.com"),
    "thunderbird-test-cancel-recurring-series.eml": ("CANCEL", "sender@example.com"),
    "thunderbird-test-cancel-single-event-qp-outer-boundary-unclosed.eml": ("CANCEL", None),
    "thunderbird-test-request-file-uri-attach-dtend-and-duration-outer-boundary-unclosed.eml": ("REQUEST", None),
    "apple-ical3-reply-accepted-qp-calendar-in-nested-multipart.eml": ("REPLY", None),
    "single-part-text-calendar-request.eml": ("REQUEST", None),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_method_and_organizer(name: str) -> None:
    """Each client's message yields its calendar, METHOD and organizer."""
    method, organizer = EXPECTED[name]
    found = imip.read((SAMPLES / name).read_bytes())
    assert found is not None and found.method == method
    events = list(found.calendar.walk("VEVENT"))
    assert events and events[0].get("UID")
    if organizer is not None:
        assert imip.mailto(events[0].get("ORGANIZER")) == organizer


def test_outlook_windows_zone_expands_to_utc() -> None:
    """Outlook's "FLE Standard Time" VTIMEZONE is honoured: 09:00 local is 07:00 UTC in November."""
    found = imip.read((SAMPLES / "outlook-exchange2010-request-base64-calendar-fle-standard-time.eml").read_bytes())
    assert found is not None
    from datetime import UTC, datetime

    [inst] = expand(found.calendar, zone("UTC"), datetime(2021, 11, 1, tzinfo=UTC), datetime(2021, 12, 1, tzinfo=UTC))
    assert inst.start == datetime(2021, 11, 27, 7, 0, tzinfo=UTC)


def test_thunderbird_daily_count_expands_three() -> None:
    """RRULE COUNT=3 gives three instances."""
    from datetime import UTC, datetime

    found = imip.read((SAMPLES / "thunderbird-test-request-daily-recurring-count3.eml").read_bytes())
    assert found is not None
    insts = expand(found.calendar, zone("UTC"), datetime(2022, 3, 1, tzinfo=UTC), datetime(2022, 4, 1, tzinfo=UTC))
    assert [i.start.day for i in insts] == [16, 17, 18]


def test_plain_message_has_no_calendar(tmp_path: Path) -> None:
    """A message without a calendar part reads as None (left alone)."""
    assert imip.read(b"From: a@example.test\r\nSubject: hi\r\n\r\nhello\r\n") is None


def test_garbage_calendar_is_malformed() -> None:
    """A text/calendar part that is not iCalendar raises MalformedCalendar."""
    with pytest.raises(imip.MalformedCalendar):
        imip.read(b"Content-Type: text/calendar; method=REQUEST\r\n\r\nthis is not a calendar\r\n")
