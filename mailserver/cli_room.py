"""CLI commands for room booking: `room policy ROOM [--key value ...]`,
`room bookings ROOM [--from DATE] [--to DATE] [--json]`, and the delegate approval
step for requests held for approval: `room approve ROOM UID` and
`room decline ROOM UID [--reason TEXT]`.

Registered on the `room` command by :func:`add_commands`. Policy keys and defaults are
Exchange's (``auth.settings.ROOM_POLICY_DEFAULTS``, mission-semantics §4.3); they take
effect for the next meeting request, also in a running daemon.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar

from auth.accounts import AccountService
from auth.settings import ROOM_POLICY_DEFAULTS, ROOM_POLICY_TIMES, WEEKDAYS
from delivery.booking.approval import PendingRequests
from delivery.booking.attendant import Attendant
from storage.interfaces import Store
from storage.types import AccountKind

#: Default span of `room bookings` without --to: the next four weeks.
DEFAULT_BOOKINGS_DAYS = 28


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _addresses(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def _date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date (YYYY-MM-DD) or date and time, not {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_commands(room_actions: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """Add `policy` and `bookings` to the `room` command's actions."""
    p = cmd(room_actions, "policy", "show or change a room's booking policy (Exchange names and defaults)",
            cmd_room_policy, json_out=True)
    p.add_argument("address")
    p.add_argument("--capacity", type=int, help="number of seats")
    for key, default in ROOM_POLICY_DEFAULTS.items():
        if isinstance(default, bool):
            p.add_argument(_option(key), dest=key, type=_bool, metavar="true|false", help=f"default {str(default).lower()}")
        elif isinstance(default, int):
            p.add_argument(_option(key), dest=key, type=int, metavar="N", help=f"default {default}")
        elif key == "work_days":
            p.add_argument(_option(key), dest=key, type=_addresses, metavar="DAY,...",
                           help=f"comma-separated days ({','.join(WEEKDAYS)}); default {','.join(default)}")
        elif key in ROOM_POLICY_TIMES:
            p.add_argument(_option(key), dest=key, metavar="HH:MM", help=f"default {default}")
        elif isinstance(default, list):
            p.add_argument(_option(key), dest=key, type=_addresses, metavar="ADDR,...",
                           help="comma-separated addresses (empty clears)")
        else:
            p.add_argument(_option(key), dest=key, metavar="VALUE", help=f"default {default!r}")
    p.add_argument("--reset", action="append", default=[], metavar="KEY", help="restore a key's default (repeatable)")
    b = cmd(room_actions, "bookings", "list a room's bookings", cmd_room_bookings, json_out=True)
    b.add_argument("address")
    b.add_argument("--from", dest="start", type=_date, help="start (default: now)")
    b.add_argument("--to", dest="end", type=_date, help=f"end (default: {DEFAULT_BOOKINGS_DAYS} days after the start)")
    a = cmd(room_actions, "approve", "approve a request held for a delegate's approval (books it, answers ACCEPTED)",
            cmd_room_approve, json_out=True)
    a.add_argument("address")
    a.add_argument("uid", help="the meeting's UID (see `room bookings`)")
    d = cmd(room_actions, "decline", "decline a request held for a delegate's approval (answers DECLINED)",
            cmd_room_approve, json_out=True)
    d.add_argument("address")
    d.add_argument("uid", help="the meeting's UID (see `room bookings`)")
    d.add_argument("--reason", default="", help="told to the organizer")


async def cmd_room_policy(args: argparse.Namespace) -> int:
    from mailserver.cli import CliError, _out, _with_store

    async def run(store: Store, accounts: AccountService) -> int:
        changes: dict[str, Any] = {}
        for key in ("capacity", *ROOM_POLICY_DEFAULTS):
            value = getattr(args, key, None)
            if value is not None:
                changes[key] = value
        for key in args.reset:
            name = key.replace("-", "_")
            if name != "capacity" and name not in ROOM_POLICY_DEFAULTS:
                raise CliError(f"unknown room policy key {key!r}")
            changes[name] = None
        settings = await accounts.set_room_policy(args.address, changes)
        doc = settings.as_dict()
        lines = [f"{k:36} {', '.join(v) if isinstance(v, list) else v}" for k, v in doc.items()]
        _out(args, doc, lines)
        return 0

    return await _with_store(args, run)


async def cmd_room_bookings(args: argparse.Namespace) -> int:
    from mailserver.cli import CliError, _out, _with_store

    async def run(store: Store, accounts: AccountService) -> int:
        room = await accounts.get(args.address)
        if room.kind is not AccountKind.ROOM:
            raise CliError(f"{room.address} is not a room")
        start = args.start or datetime.now(UTC)
        end = args.end or start + timedelta(days=DEFAULT_BOOKINGS_DAYS)
        collection = await store.calendars.get_collection(room.id, "calendar")
        rows: list[dict[str, Any]] = []
        held = {p.uid for p in await PendingRequests(store).list(room.id)}
        if collection is not None:
            details: dict[str, tuple[str, str]] = {}
            for busy in await store.calendars.busy(collection.id, start, end):
                if busy.uid not in details:
                    details[busy.uid] = _details(await store.calendars.get_item_by_uid(collection.id, busy.uid))
                organizer, summary = details[busy.uid]
                rows.append({
                    "start": busy.start.isoformat(), "end": busy.end.isoformat(), "uid": busy.uid,
                    "organizer": organizer, "summary": summary,
                    "status": "pending" if busy.uid in held else ("tentative" if busy.tentative else "accepted"),
                })
        lines = [f"{r['start']}  {r['end']}  {r['status']:9}  {r['organizer']}  {r['summary']}  [{r['uid']}]" for r in rows]
        _out(args, rows, lines or [f"no bookings for {room.address} between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC"])
        return 0

    return await _with_store(args, run)


async def cmd_room_approve(args: argparse.Namespace) -> int:
    from mailserver.cli import CliError, _load, _out, _with_store

    hostname = _load(args).hostname

    async def run(store: Store, accounts: AccountService) -> int:
        room = await accounts.get(args.address)
        if room.kind is not AccountKind.ROOM:
            raise CliError(f"{room.address} is not a room")
        attendant = Attendant(store, hostname)
        if args.action == "approve":
            outcome = await attendant.approve(room, args.uid, "the operator")
        else:
            outcome = await attendant.decline(room, args.uid, "the operator", args.reason)
        if outcome.action != "answered" or outcome.partstat is None:
            raise CliError(f"no request {args.uid!r} is waiting for approval in {room.address}")
        doc = {"uid": args.uid, "partstat": outcome.partstat.value, "organizer": outcome.reply_to,
               "reasons": list(outcome.reasons)}
        line = f"{args.uid}: {outcome.partstat.value.lower()}, answered to {outcome.reply_to}"
        _out(args, doc, [line, *outcome.reasons])
        return 0

    return await _with_store(args, run)


def _details(item: Any) -> tuple[str, str]:
    """(organizer address, summary) of a stored event."""
    if item is None:
        return "", ""
    try:
        cal = icalendar.Calendar.from_ical(item.text)
        event = next(iter(cal.walk("VEVENT")))
    except Exception:
        return "", ""
    organizer = str(event.get("ORGANIZER", "") or "")
    if organizer.lower().startswith("mailto:"):
        organizer = organizer[7:]
    return organizer.lower(), str(event.get("SUMMARY", "") or "")



