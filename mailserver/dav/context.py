"""What a DAV request knows while Radicale runs it in a worker thread.

The HTTP handler builds a :class:`DavContext` on the event loop (who the user is, which
mailboxes they may reach and how) and sets it in :data:`CURRENT`;
``asyncio.to_thread`` copies context variables into the thread, where the Radicale
plugins read it. Store calls from the thread go back to the loop through :meth:`DavContext.call`.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from auth.settings import RoomSettings
from storage.interfaces import Store
from storage.types import Account, AccountKind, Right

T = TypeVar("T")

#: Seconds a worker thread waits for one store call on the event loop; a store call
#: is one query or one transaction, so this is only reached when the loop is stuck.
STORE_CALL_TIMEOUT = 30.0


class Access(enum.Enum):
    """How the user may use one mailbox's collections."""

    OWNER = "owner"  # own mailbox, or Full Access on a shared mailbox: read-write
    WRITE = "write"  # room delegate or Full Access on a room: read-write on its collections
    READ = "read"  # any internal user on a room calendar: read only
    # Any internal user on another user's or a shared mailbox's calendars: free/busy
    # only (the CalDAV free-busy-query REPORT), as the /freebusy/<address>.vfb URL gives
    # it: Exchange's default AvailabilityOnly for everyone (mission-semantics §6).
    FREEBUSY = "freebusy"


#: Kinds of mailbox whose free/busy every internal user may read (rooms are readable
#: in full; lists have no calendar).
FREEBUSY_KINDS = frozenset({AccountKind.USER, AccountKind.SHARED})


@dataclass(frozen=True, slots=True)
class Mailbox:
    account: Account
    access: Access
    timezone: str  # zone for floating times and dates (rooms: their policy; else UTC)


@dataclass(eq=False)
class DavContext:
    user: Account
    mailboxes: dict[str, Mailbox]  # address -> what the user may do with it
    store: Store
    loop: asyncio.AbstractEventLoop
    _freebusy: dict[str, Mailbox | None] = field(default_factory=dict)

    def mailbox(self, address: str) -> Mailbox | None:
        """How the user may use ``address``'s collections: as :func:`build` found, or
        free/busy only (:attr:`Access.FREEBUSY`) for any other enabled user or shared
        mailbox; None for anything else. Called from the worker thread."""
        key = address.lower()
        box = self.mailboxes.get(key)
        if box is not None:
            return box
        if key not in self._freebusy:
            account = self.call(self.store.directory.get_account(key))
            self._freebusy[key] = (
                Mailbox(account, Access.FREEBUSY, "UTC")
                if account is not None and account.enabled and account.kind in FREEBUSY_KINDS
                else None
            )
        return self._freebusy[key]

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a store coroutine on the event loop from a worker thread; wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(STORE_CALL_TIMEOUT)


CURRENT: contextvars.ContextVar[DavContext | None] = contextvars.ContextVar("dav_context", default=None)


async def build(store: Store, user: Account) -> DavContext:
    """The mailboxes ``user`` may reach over DAV: their own (owner), shared mailboxes
    with Full Access (owner), rooms (write for Full Access holders and resource
    delegates, read for everyone else). Other users' and shared mailboxes are reached
    for free/busy only, through :meth:`DavContext.mailbox`."""
    boxes: dict[str, Mailbox] = {user.address: Mailbox(user, Access.OWNER, "UTC")}
    for grant in await store.directory.grants_of(user.address):
        if Right.FULL_ACCESS not in grant.rights:
            continue
        account = await store.directory.get_account(grant.mailbox)
        if account is not None and account.kind is AccountKind.SHARED:
            boxes[account.address] = Mailbox(account, Access.OWNER, "UTC")
    full = {g.mailbox for g in await store.directory.grants_of(user.address) if Right.FULL_ACCESS in g.rights}
    for room in await store.directory.list_accounts(AccountKind.ROOM):
        settings = RoomSettings.of(room)
        writer = room.address in full or user.address in settings.resource_delegates
        boxes[room.address] = Mailbox(room, Access.WRITE if writer else Access.READ, settings.timezone)
    return DavContext(user, boxes, store, asyncio.get_running_loop())


def current() -> DavContext | None:
    return CURRENT.get()
