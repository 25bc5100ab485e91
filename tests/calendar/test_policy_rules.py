"""The pure policy rules added for work hours and capacity (delivery.booking.policy)."""

from __future__ import annotations

from datetime import UTC, datetime

from auth.settings import AutomateProcessing, RoomSettings
from delivery.booking.instances import Instance
from delivery.booking.policy import Facts, PartStat, decide, outside_work_hours


def inst(start: datetime, end: datetime, all_day: bool = False) -> Instance:
    return Instance(start.astimezone(UTC), end.astimezone(UTC), None, all_day)


def test_work_hours_follow_the_room_zone_across_dst() -> None:
    """08:00-17:00 Berlin is 06:00-15:00 UTC in summer and 07:00-16:00 UTC in winter."""
    s = RoomSettings(schedule_only_during_work_hours=True, timezone="Europe/Berlin")
    summer_ok = inst(datetime(2030, 7, 2, 6, 0, tzinfo=UTC), datetime(2030, 7, 2, 15, 0, tzinfo=UTC))  # Tue 08-17
    summer_late = inst(datetime(2030, 7, 2, 14, 0, tzinfo=UTC), datetime(2030, 7, 2, 15, 30, tzinfo=UTC))  # to 17:30
    winter_ok = inst(datetime(2030, 1, 8, 7, 0, tzinfo=UTC), datetime(2030, 1, 8, 16, 0, tzinfo=UTC))  # Tue 08-17
    winter_early = inst(datetime(2030, 1, 8, 6, 30, tzinfo=UTC), datetime(2030, 1, 8, 8, 0, tzinfo=UTC))  # 07:30
    assert outside_work_hours(s, [summer_ok, summer_late, winter_ok, winter_early]) == [summer_late, winter_early]


def test_work_hours_days_all_day_and_end_of_day() -> None:
    """Only work_days count, all-day events are outside, and 24:00 admits a meeting ending at midnight."""
    s = RoomSettings(work_days=("sat",), work_hours_start="20:00", work_hours_end="24:00")
    saturday = inst(datetime(2030, 1, 5, 22, 0, tzinfo=UTC), datetime(2030, 1, 6, 0, 0, tzinfo=UTC))
    sunday = inst(datetime(2030, 1, 6, 21, 0, tzinfo=UTC), datetime(2030, 1, 6, 22, 0, tzinfo=UTC))
    all_day = inst(datetime(2030, 1, 5, 0, 0, tzinfo=UTC), datetime(2030, 1, 6, 0, 0, tzinfo=UTC), all_day=True)
    assert outside_work_hours(s, [saturday, sunday, all_day]) == [sunday, all_day]


def test_capacity_only_when_enforced_and_approval_lifts_hold() -> None:
    """Capacity declines only with enforce_capacity; approved=True turns a held request into ACCEPTED."""
    one = inst(datetime(2030, 1, 8, 9, 0, tzinfo=UTC), datetime(2030, 1, 8, 10, 0, tzinfo=UTC))
    facts = Facts("a@x.test", True, False, [one], False, False, attendees=5)
    assert decide(RoomSettings(capacity=4), facts).partstat is PartStat.ACCEPTED
    assert decide(RoomSettings(capacity=4, enforce_capacity=True), facts).partstat is PartStat.DECLINED
    assert decide(RoomSettings(enforce_capacity=True), facts).partstat is PartStat.ACCEPTED  # no capacity stated
    held = RoomSettings(automate_processing=AutomateProcessing.AUTO_UPDATE)
    assert decide(held, facts).partstat is PartStat.TENTATIVE
    assert decide(held, facts, approved=True).partstat is PartStat.ACCEPTED
