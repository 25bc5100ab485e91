"""Sender authorization on submission (mission-semantics §1.5).

Checked twice: on MAIL FROM (the envelope) and after DATA on From: and Sender:.

* From: the user's own address or alias: accepted;
* From: a mailbox the user holds Send As on: accepted, a Sender: naming the user removed;
* From: a mailbox the user holds Send on Behalf on: accepted, Sender: set to the user;
* otherwise (Full Access alone, no grant, unknown or external): 550 5.7.60.
"""

from __future__ import annotations

import email.header
import email.parser
import email.policy
import email.utils
import re
from dataclasses import dataclass
from email.headerregistry import Address

from auth.addresses import InvalidAddress, normalize_address
from auth.permissions import SendPermission, send_decision, send_permission
from auth.settings import SharedSettings
from delivery import message
from delivery import replies as R
from delivery.replies import ReplyError
from storage.interfaces import Directory
from storage.types import Account, AccountKind

_PARSER = email.parser.BytesHeaderParser(policy=email.policy.default)


async def check_envelope_sender(directory: Directory, user: Account, mail_from: str) -> None:
    """Raise ReplyError unless ``user`` may use ``mail_from`` as envelope sender.

    The null sender ``<>`` is allowed for authenticated users (delivery reports).
    """
    if mail_from == "":
        return
    if not (await send_permission(directory, user, mail_from)).allowed:
        raise ReplyError(R.R550_5_7_60_SEND_AS_DENIED)


@dataclass(frozen=True, slots=True)
class Authorized:
    """The outcome of a header check: the header section to store, and the shared
    mailbox whose Sent folder also gets a copy (None: no copy)."""

    header: bytes
    permission: SendPermission
    sent_copy: Account | None


def _single_address(values: list[str] | None, missing: R.Reply | None, several: R.Reply, bad: R.Reply) -> Address | None:
    """The one mailbox in a From:/Sender: field, or ReplyError. None when absent and allowed."""
    if not values:
        if missing is not None:
            raise ReplyError(missing)
        return None
    if len(values) > 1:
        raise ReplyError(several)
    header = values[0]
    if getattr(header, "defects", None):
        raise ReplyError(bad)
    try:
        addresses = header.addresses  # type: ignore[attr-defined]
    except (AttributeError, ValueError, IndexError) as err:
        raise ReplyError(bad) from err
    if len(addresses) != 1:
        raise ReplyError(several if len(addresses) > 1 else bad)
    address: Address = addresses[0]
    if not address.username or not address.domain:
        raise ReplyError(bad)
    return address


async def authorize_headers(directory: Directory, user: Account, header: bytes) -> Authorized:
    """Check From: and Sender: of a submitted message against ``user``'s rights and
    return the header section to store.

    Raises ReplyError: no From: / several From: addresses / unparsable From: (554 5.6.0),
    a From: or Sender: the user may not use (550 5.7.60).
    """
    try:
        parsed = _PARSER.parsebytes(header + message.CRLF)
        froms = parsed.get_all("From")
        senders = parsed.get_all("Sender")
    except Exception as err:  # noqa: BLE001 - the email package on hostile input raises
        # ValueError, IndexError, TypeError, and AttributeError for a group followed by a
        # folded line ("From: undisclosed-recipients:;" CRLF " x"): all of them mean an
        # unparsable header, never a temporary failure.
        raise ReplyError(R.R554_5_6_0_BAD_FROM) from err
    author = _single_address(froms, R.R554_5_6_0_NO_FROM, R.R554_5_6_0_SEVERAL_FROM, R.R554_5_6_0_BAD_FROM)
    assert author is not None
    decision = await send_decision(directory, user, author.addr_spec)
    if not decision.permission.allowed:
        raise ReplyError(R.R550_5_7_60_SEND_AS_DENIED)
    sender = _single_address(senders, None, R.R554_5_6_0_BAD_SENDER, R.R554_5_6_0_BAD_SENDER)
    names_user = sender is not None and _normal(sender.addr_spec) == user.address
    owner = decision.owner
    if decision.permission is SendPermission.SEND_AS:
        # Send As leaves no trace of the delegate (MS-OXCMAIL 2.1.3.1.4).
        if names_user:
            header = message.remove_fields(header, "sender")
        elif sender is not None and not (await send_permission(directory, user, sender.addr_spec)).allowed:
            raise ReplyError(R.R550_5_7_60_SEND_AS_DENIED)
        copy = owner if owner is not None and _copies(owner, sent_as=True) else None
        return Authorized(header, decision.permission, copy)
    if decision.permission is SendPermission.SEND_ON_BEHALF:
        # RFC 5322 §3.6.2: Sender: is the agent responsible for the transmission. It goes
        # first, where every reader sees it (see Delivery.commit).
        header = sender_field(user) + message.remove_fields(header, "sender")
        copy = owner if owner is not None and _copies(owner, sent_as=False) else None
        return Authorized(header, decision.permission, copy)
    # OWN: a Sender:, if any, must also be an address the user may use.
    if sender is not None and not names_user and not (await send_permission(directory, user, sender.addr_spec)).allowed:
        raise ReplyError(R.R550_5_7_60_SEND_AS_DENIED)
    return Authorized(header, decision.permission, None)


#: Longest display name written into a Sender: field, in characters: an account's name
#: is set by the operator, and a field must stay within RFC 5322 §2.1.1's 998 octets.
MAX_SENDER_NAME = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sender_field(user: Account) -> bytes:
    """``Sender: Display Name <address>`` for ``user``: control characters in the name
    (a CR LF would start a field of its own) become spaces, the name is cut to
    MAX_SENDER_NAME, quoted when it holds specials and RFC 2047-encoded (in words of at
    most 75 octets, folded) when it is not ASCII."""
    name = " ".join(_CONTROL.sub(" ", user.display_name).split())[:MAX_SENDER_NAME]
    if name.isascii() and "=?" in name:  # quoted, so no reader decodes it (RFC 2047 §5)
        value = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + f'" <{user.address}>'
    elif name.isascii():
        value = email.utils.formataddr((name, user.address))
    else:
        encoded = email.header.Header(name, "utf-8", header_name="Sender").encode(linesep="\r\n")
        value = f"{encoded} <{user.address}>"
    return message.field("Sender", value)


def _copies(owner: Account, *, sent_as: bool) -> bool:
    """True when the mailbox keeps a copy of mail sent as (or on behalf of) it."""
    if owner.kind not in (AccountKind.SHARED, AccountKind.ROOM, AccountKind.USER):
        return False  # lists have no Sent folder
    settings = SharedSettings.of(owner)
    return settings.copy_sent_as if sent_as else settings.copy_send_on_behalf


def _normal(address: str) -> str:
    try:
        return normalize_address(address)
    except InvalidAddress:
        return address.lower()
