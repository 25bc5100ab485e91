"""Who may open which mailbox, and send as which address.

The one module that SMTP, IMAP and calendars ask. The rules follow Exchange
(mission-semantics §1.1):

* a user opens their own mailbox, and a shared mailbox or room on which they hold
  Full Access; Full Access never authorises sending;
* a user sends from their own address or any alias of it; from an address of a shared
  mailbox, room or list (or an alias of one) with Send As or Send on Behalf; when both
  are held, Send As is used.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from auth.addresses import InvalidAddress, normalize_address
from storage.interfaces import Directory
from storage.types import MAILBOX_KINDS, Account, AccountKind, Right


class SendPermission(enum.Enum):
    """How a user may put an address in From: (and MAIL FROM)."""

    OWN = "own"  # the user's own address or one of its aliases
    SEND_AS = "send_as"  # From: the mailbox, no Sender: header
    SEND_ON_BEHALF = "send_on_behalf"  # From: the mailbox, Sender: the user (RFC 5322 §3.6.2)
    DENIED = "denied"  # 550 5.7.60 at the SMTP layer

    @property
    def allowed(self) -> bool:
        return self is not SendPermission.DENIED


@dataclass(frozen=True, slots=True)
class SendDecision:
    """A :class:`SendPermission` with the account the address belongs to.

    ``owner`` is None when the address is not local (or not an address at all); the
    SMTP layer uses it for display names and the shared mailbox's copy-to-Sent settings.
    """

    permission: SendPermission
    owner: Account | None


async def can_open(directory: Directory, user: Account, mailbox: Account) -> bool:
    """True when ``user`` may open ``mailbox`` (read, change, delete its mail).

    Own mailbox: yes (if it is a user). Another user's mailbox: never. A shared mailbox
    or room: when ``user`` holds Full Access. A list has no mailbox: never.
    """
    if user.kind is not AccountKind.USER:
        return False
    if user.id == mailbox.id:
        return True
    if mailbox.kind not in MAILBOX_KINDS or mailbox.kind is AccountKind.USER:
        return False
    return Right.FULL_ACCESS in await directory.rights(mailbox.address, user.address)


async def send_decision(directory: Directory, user: Account, from_address: str) -> SendDecision:
    """Decide whether ``user`` may send with ``from_address`` as author, and how.

    Aliases resolve to the account they reach, so an alias of a shared mailbox counts as
    that mailbox. Send As wins over Send on Behalf; Full Access alone gives DENIED, as
    does an unknown, external or malformed address.
    """
    try:
        address = normalize_address(from_address)
    except InvalidAddress:
        return SendDecision(SendPermission.DENIED, None)
    owner = await directory.resolve(address)
    if owner is None:
        return SendDecision(SendPermission.DENIED, None)
    if user.kind is not AccountKind.USER:
        return SendDecision(SendPermission.DENIED, owner)
    if owner.id == user.id:
        return SendDecision(SendPermission.OWN, owner)
    if owner.kind is AccountKind.USER:
        return SendDecision(SendPermission.DENIED, owner)
    rights = await directory.rights(owner.address, user.address)
    if Right.SEND_AS in rights:
        return SendDecision(SendPermission.SEND_AS, owner)
    if Right.SEND_ON_BEHALF in rights:
        return SendDecision(SendPermission.SEND_ON_BEHALF, owner)
    return SendDecision(SendPermission.DENIED, owner)


async def send_permission(directory: Directory, user: Account, from_address: str) -> SendPermission:
    """The :class:`SendPermission` of :func:`send_decision` alone."""
    return (await send_decision(directory, user, from_address)).permission
