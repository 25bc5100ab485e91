"""Typed views of the per-account settings document (:attr:`storage.types.Account.settings`).

Each view reads its keys with defaults, so an account created before a key existed
reads as the default. Keys are written by :class:`auth.accounts.AccountService`.
"""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class RoomSettings:
    """A room's capacity in people (None: not stated)."""

    capacity: int | None = None

    @classmethod
    def of(cls, account: Account) -> RoomSettings:
        value = account.settings.get(CAPACITY)
        return cls(capacity=value if isinstance(value, int) and not isinstance(value, bool) else None)


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return ()
