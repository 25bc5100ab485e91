"""`mailserver room policy` and `mailserver room bookings`, run as an operator would."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from delivery.booking.attendant import Attendant
from storage import open_store
from storage.types import AccountKind
from tests.calendar.fixtures import day, thunderbird_request
from tests.helpers import run_cli, throwaway_config_values, write_config


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = write_config(tmp_path / "config.toml", throwaway_config_values(tmp_path))
    assert run_cli("init", config=path).returncode == 0
    assert run_cli("user", "add", "alice@example.test", "--password-stdin", config=path, stdin="pw-pw-pw-pw\n").returncode == 0
    assert run_cli("room", "add", "room@example.test", "--name", "Room", config=path).returncode == 0
    return path


def cli_json(conf: Path, *args: str) -> Any:
    r = run_cli(*args, "--json", config=conf)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_policy_defaults_change_reset_and_refusals(conf: Path) -> None:
    """Policy shows Exchange defaults, changes keys, resets them, and refuses bad values."""
    doc = cli_json(conf, "room", "policy", "room@example.test")
    assert doc["automate_processing"] == "auto_accept" and doc["booking_window_days"] == 180
    assert doc["maximum_duration_minutes"] == 1440 and doc["allow_conflicts"] is False
    assert doc["process_external_meeting_messages"] is False
    doc = cli_json(conf, "room", "policy", "room@example.test", "--allow-conflicts", "true",
                   "--booking-window-days", "30", "--resource-delegates", "Alice@Example.test")
    assert doc["allow_conflicts"] is True and doc["booking_window_days"] == 30
    assert doc["resource_delegates"] == ["alice@example.test"]
    doc = cli_json(conf, "room", "policy", "room@example.test", "--reset", "booking_window_days")
    assert doc["booking_window_days"] == 180 and doc["allow_conflicts"] is True
    bad = run_cli("room", "policy", "room@example.test", "--booking-window-days", "5000", config=conf)
    assert bad.returncode == 1 and "booking_window_days" in bad.stderr
    bad = run_cli("room", "policy", "alice@example.test", config=conf)
    assert bad.returncode == 1 and "not a room" in bad.stderr


def test_bookings_lists_attendant_bookings(conf: Path, tmp_path: Path) -> None:
    """room bookings lists what the attendant booked, in the asked range only."""
    async def book() -> None:
        store = await open_store("sqlite", path=tmp_path / "data" / "mail.sqlite3")
        try:
            room = await store.directory.get_account("room@example.test")
            alice = await store.directory.get_account("alice@example.test")
            assert room is not None and room.kind is AccountKind.ROOM and alice is not None
            start = day(3, 9)
            body = thunderbird_request("alice@example.test", "room@example.test", "cli-1", start, start + timedelta(hours=1))
            outcome = await Attendant(store, "mail.example.test").handle(room, body, alice)
            assert outcome.partstat is not None and outcome.partstat.value == "ACCEPTED"
        finally:
            await store.close()

    asyncio.run(book())
    rows = cli_json(conf, "room", "bookings", "room@example.test")
    assert [(r["uid"], r["organizer"], r["status"]) for r in rows] == [("cli-1", "alice@example.test", "accepted")]
    later = (day(10, 0)).date().isoformat()
    assert cli_json(conf, "room", "bookings", "room@example.test", "--from", later) == []


def test_policy_work_hours_capacity_and_delegate_keys(conf: Path) -> None:
    """The work hours, capacity and delegate forwarding keys have Exchange's defaults,
    are normalised when set, and bad values are refused naming the key."""
    doc = cli_json(conf, "room", "policy", "room@example.test")
    assert doc["schedule_only_during_work_hours"] is False and doc["enforce_capacity"] is False
    assert (doc["work_hours_start"], doc["work_hours_end"]) == ("08:00", "17:00")
    assert doc["work_days"] == ["mon", "tue", "wed", "thu", "fri"]
    assert doc["forward_requests_to_delegates"] is True
    doc = cli_json(conf, "room", "policy", "room@example.test", "--work-days", "Sunday,mon", "--work-hours-start", "7:30",
                   "--schedule-only-during-work-hours", "true", "--capacity", "8", "--enforce-capacity", "true")
    assert doc["work_days"] == ["mon", "sun"] and doc["work_hours_start"] == "07:30"
    assert doc["capacity"] == 8 and doc["enforce_capacity"] is True
    for args, key in ((("--work-days", "mon,funday"), "work_days"), (("--work-hours-end", "25:00"), "work_hours_end"),
                      (("--work-hours-end", "07:00"), "work_hours_start")):
        bad = run_cli("room", "policy", "room@example.test", *args, config=conf)
        assert bad.returncode == 1 and key in bad.stderr, bad.stderr
