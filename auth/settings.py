"""Typed views of the per-account settings document (:attr:`storage.types.Account.settings`).

Each view reads its keys with defaults, so an account created before a key existed
reads as the default. Keys are written by :class:`auth.accounts.AccountService`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from storage.types import Account

# Settings keys, shared by the views and AccountService.
REQUIRE_SENDER_AUTHENTICATION = "require_sender_authentication"
ALLOWED_SENDERS = "allowed_senders"
BLOCKED_SENDERS = "blocked_senders"
COPY_SENT_AS = "copy_sent_as"
COPY_SEND_ON_BEHALF = "copy_send_on_behalf"
CAPACITY = "capacity"


@dataclass(frozen=True, slots=True)
class ListPolicy:
    """Who may send to a distribution list (Exchange RequireSenderAuthenticationEnabled,
    AcceptMessagesOnlyFrom, RejectMessagesFrom).

    ``require_sender_authentication`` (default True): only authenticated senders;
    ``allowed_senders``: when non-empty, only these addresses; ``blocked_senders``:
    never these. Addresses are in normal form.
    """

    require_sender_authentication: bool = True
    allowed_senders: tuple[str, ...] = ()
    blocked_senders: tuple[str, ...] = ()

    @classmethod
    def of(cls, account: Account) -> ListPolicy:
        s = account.settings
        return cls(
            require_sender_authentication=bool(s.get(REQUIRE_SENDER_AUTHENTICATION, True)),
            allowed_senders=_strings(s.get(ALLOWED_SENDERS)),
            blocked_senders=_strings(s.get(BLOCKED_SENDERS)),
        )


@dataclass(frozen=True, slots=True)
class SharedSettings:
    """Copy-to-Sent flags of a shared mailbox (Exchange MessageCopyForSentAsEnabled and
    MessageCopyForSendOnBehalfEnabled, both default False): when set, mail sent as / on
    behalf of the mailbox is also stored, \\Seen, in the mailbox's Sent folder."""

    copy_sent_as: bool = False
    copy_send_on_behalf: bool = False

    @classmethod
    def of(cls, account: Account) -> SharedSettings:
        s = account.settings
        return cls(
            copy_sent_as=bool(s.get(COPY_SENT_AS, False)),
            copy_send_on_behalf=bool(s.get(COPY_SEND_ON_BEHALF, False)),
        )


class AutomateProcessing(enum.StrEnum):
    """Exchange AutomateProcessing (mission-semantics §4.1)."""

    AUTO_ACCEPT = "auto_accept"  # book by policy: free = accept, busy = decline
    AUTO_UPDATE = "auto_update"  # keep requests tentative until a delegate approves
    NONE = "none"  # the attendant leaves the room's mail alone


#: Booking policy keys with Exchange's defaults (mission-semantics §4.3; Set-CalendarProcessing).
ROOM_POLICY_DEFAULTS: dict[str, Any] = {
    "automate_processing": AutomateProcessing.AUTO_ACCEPT.value,
    "allow_conflicts": False,
    "booking_window_days": 180,
    "enforce_scheduling_horizon": True,
    "maximum_duration_minutes": 1440,
    "allow_recurring_meetings": True,
    "conflict_percentage_allowed": 0,
    "maximum_conflict_instances": 0,
    "all_book_in_policy": True,
    "book_in_policy": [],
    "all_request_in_policy": False,
    "request_in_policy": [],
    "resource_delegates": [],
    "forward_requests_to_delegates": True,
    "process_external_meeting_messages": False,
    "delete_subject": True,
    "add_organizer_to_subject": True,
    "delete_comments": True,
    "delete_attachments": True,
    "remove_private_property": True,
    "enable_response_details": True,
    "organizer_info": True,
    "additional_response": "",
    "timezone": "UTC",
    "schedule_only_during_work_hours": False,
    "work_hours_start": "08:00",
    "work_hours_end": "17:00",
    "work_days": ["mon", "tue", "wed", "thu", "fri"],
    "enforce_capacity": False,
}
#: Day names of ``work_days``, Monday first (index = ``datetime.weekday()``).
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Room policy keys holding a time of day (``HH:MM``, 24-hour clock).
ROOM_POLICY_TIMES: tuple[str, ...] = ("work_hours_start", "work_hours_end")
#: Limits Exchange puts on the numeric keys (BookingWindowInDays 0-1080, percentages 0-100).
ROOM_POLICY_RANGES: dict[str, tuple[int, int]] = {
    "booking_window_days": (0, 1080),
    "maximum_duration_minutes": (0, 10 * 365 * 1440),
    "conflict_percentage_allowed": (0, 100),
    "maximum_conflict_instances": (0, 10_000),
}


@dataclass(frozen=True, slots=True)
class RoomSettings:
    """A room's capacity (None: not stated) and its booking policy, Exchange's names and
    defaults (mission-semantics §4.3). Address lists are in normal form; ``timezone`` is
    the IANA zone that floating times and all-day dates of requests are read in.
    """

    capacity: int | None = None
    automate_processing: AutomateProcessing = AutomateProcessing.AUTO_ACCEPT
    allow_conflicts: bool = False
    booking_window_days: int = 180
    enforce_scheduling_horizon: bool = True
    maximum_duration_minutes: int = 1440  # 0 = unlimited
    allow_recurring_meetings: bool = True
    conflict_percentage_allowed: int = 0
    maximum_conflict_instances: int = 0
    all_book_in_policy: bool = True
    book_in_policy: tuple[str, ...] = ()
    all_request_in_policy: bool = False
    request_in_policy: tuple[str, ...] = ()
    resource_delegates: tuple[str, ...] = ()
    forward_requests_to_delegates: bool = True
    process_external_meeting_messages: bool = False
    delete_subject: bool = True
    add_organizer_to_subject: bool = True
    delete_comments: bool = True
    delete_attachments: bool = True
    remove_private_property: bool = True
    enable_response_details: bool = True
    organizer_info: bool = True
    additional_response: str = ""
    timezone: str = "UTC"
    schedule_only_during_work_hours: bool = False
    work_hours_start: str = "08:00"  # in ``timezone``; Exchange's default work day
    work_hours_end: str = "17:00"
    work_days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    enforce_capacity: bool = False

    @classmethod
    def of(cls, account: Account) -> RoomSettings:
        s = account.settings
        value = s.get(CAPACITY)
        kw: dict[str, Any] = {}
        for key, default in ROOM_POLICY_DEFAULTS.items():
            raw = s.get(key, default)
            if isinstance(default, bool):
                kw[key] = bool(raw)
            elif isinstance(default, int):
                kw[key] = raw if isinstance(raw, int) and not isinstance(raw, bool) else default
            elif isinstance(default, list):
                kw[key] = _strings(raw)
            elif key == "automate_processing":
                try:
                    kw[key] = AutomateProcessing(str(raw))
                except ValueError:
                    kw[key] = AutomateProcessing(default)
            else:
                kw[key] = str(raw)
        return cls(capacity=value if isinstance(value, int) and not isinstance(value, bool) else None, **kw)

    def as_dict(self) -> dict[str, Any]:
        """Every key with its value (lists as lists), for display and JSON."""
        out: dict[str, Any] = {"capacity": self.capacity}
        for key in ROOM_POLICY_DEFAULTS:
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else (value.value if isinstance(value, enum.Enum) else value)
        return out


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return ()
