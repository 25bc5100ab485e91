"""Operator actions on domains, accounts, licences, grants, lists and aliases.

:class:`AccountService` is what the CLI and the demo seeding call. Every refusal is an
:class:`~auth.errors.AccountError` whose text is one line an operator can act on; storage
errors are translated into it, never passed through.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from auth.addresses import InvalidAddress, domain_of, normalize_address, normalize_domain
from auth.errors import AccountError
from auth.passwords import PasswordHasher
from auth.settings import (
    ALLOWED_SENDERS,
    BLOCKED_SENDERS,
    CAPACITY,
    COPY_SEND_ON_BEHALF,
    COPY_SENT_AS,
    REQUIRE_SENDER_AUTHENTICATION,
    ROOM_POLICY_DEFAULTS,
    ROOM_POLICY_RANGES,
    ROOM_POLICY_TIMES,
    WEEKDAYS,
    AutomateProcessing,
    ListPolicy,
    RoomSettings,
    SharedSettings,
)
from storage.errors import (
    AlreadyExists,
    Conflict,
    NotFound,
    SeatsExhausted,
    StorageError,
    Unavailable,
)
from storage.interfaces import Directory
from storage.types import Account, AccountKind, Alias, Grant, Right

__all__ = [
    "AccountDetails",
    "AccountService",
    "LicenceStatus",
    "ListPolicy",
    "RoomSettings",
    "SharedSettings",
]

#: Largest room capacity accepted: a sanity bound against typos (an extra zero or two),
#: well above any real meeting room or auditorium.
MAX_ROOM_CAPACITY = 100_000

#: Deepest list nesting followed when checking that a list would not contain itself;
#: matches the expansion depth limit of delivery (mission-semantics §3: depth 10) with room.
MAX_LIST_DEPTH = 32

_KIND_NAMES = {
    AccountKind.USER: "a user",
    AccountKind.SHARED: "a shared mailbox",
    AccountKind.ROOM: "a room",
    AccountKind.LIST: "a distribution list",
}


class LicenceStatus(NamedTuple):
    """Seats of the licence pool: configured, assigned, still free."""

    total: int
    used: int
    free: int


@dataclass(frozen=True, slots=True)
class AccountDetails:
    """Everything ``show`` prints about one account."""

    account: Account
    aliases: list[str]
    grants_on: list[Grant]  # rights others hold on this mailbox/room/list
    grants_of: list[Grant]  # rights this user holds on others
    members: list[str]  # direct members (lists only)
    member_of: list[str]  # lists that contain this address directly


def describe_kind(kind: AccountKind) -> str:
    """``"a shared mailbox"`` and so on, for messages."""
    return _KIND_NAMES[kind]


@contextmanager
def _storage_errors(
    *,
    not_found: str | None = None,
    exists: str | None = None,
    conflict: str | None = None,
) -> Iterator[None]:
    """Turn storage errors raised inside the block into AccountError with these texts."""
    try:
        yield
    except NotFound as err:
        raise AccountError(not_found or str(err)) from err
    except AlreadyExists as err:
        raise AccountError(exists or str(err)) from err
    except Conflict as err:
        raise AccountError(conflict or str(err)) from err
    except Unavailable as err:
        raise AccountError(f"the mail store is unavailable: {err}") from err
    except StorageError as err:
        raise AccountError(str(err)) from err


def _address(text: str) -> str:
    try:
        return normalize_address(text)
    except InvalidAddress as err:
        raise AccountError(f"invalid address: {err}") from None


class AccountService:
    """Operator actions, each one directory transaction (or a read then one transaction).

    ``seats`` is the licence pool size (config ``licences.seats``).
    """

    def __init__(self, directory: Directory, hasher: PasswordHasher, seats: int) -> None:
        self.directory = directory
        self.hasher = hasher
        self.seats = seats

    # ------------------------------------------------------------------ domains

    async def add_domain(self, name: str) -> str:
        """Add a local domain; return it in normal form."""
        try:
            domain = normalize_domain(name)
        except InvalidAddress as err:
            raise AccountError(f"invalid domain: {err}") from None
        with _storage_errors(exists=f"domain {domain} already exists"):
            await self.directory.add_domain(domain)
        return domain

    async def remove_domain(self, name: str) -> None:
        """Remove a local domain that has no accounts or aliases left."""
        try:
            domain = normalize_domain(name)
        except InvalidAddress as err:
            raise AccountError(f"invalid domain: {err}") from None
        if domain not in await self._domains():
            raise AccountError(f"no domain {domain}")
        used = [a.address for a in await self.directory.list_accounts() if domain_of(a.address) == domain]
        if used:
            raise AccountError(
                f"domain {domain} still has {len(used)} account(s) (e.g. {used[0]}): remove them first"
            )
        with _storage_errors(
            not_found=f"no domain {domain}",
            conflict=f"domain {domain} is still in use (accounts or aliases): remove them first",
        ):
            await self.directory.remove_domain(domain)

    async def list_domains(self) -> list[str]:
        with _storage_errors():
            return await self.directory.list_domains()

    # ------------------------------------------------------------------ accounts

    async def get(self, address: str) -> Account:
        """The account with this address. Raises AccountError when there is none (an
        alias is reported as such)."""
        return await self._lookup(_address(address))

    async def list_accounts(self, kind: AccountKind | None = None) -> list[Account]:
        with _storage_errors():
            return await self.directory.list_accounts(kind)

    async def describe(self, address: str) -> AccountDetails:
        """The account with its aliases, grants, members and memberships."""
        account = await self.get(address)
        d = self.directory
        with _storage_errors():
            aliases = [a.alias for a in await d.list_aliases(account.address)]
            grants_on = await d.grants_on(account.address) if account.kind is not AccountKind.USER else []
            grants_of = await d.grants_of(account.address) if account.kind is AccountKind.USER else []
            members = await d.members(account.address) if account.kind is AccountKind.LIST else []
            member_of = await d.lists_containing(account.address)
        return AccountDetails(account, aliases, grants_on, grants_of, members, member_of)

    async def add_user(
        self,
        address: str,
        name: str = "",
        password: str | None = None,
        licensed: bool = True,
    ) -> Account:
        """Create a user (with default folders), licensed unless ``licensed=False``.

        Without a password the user cannot log in until :meth:`set_password`. Refused
        when the domain is not local, the address is taken, or no seat is free.
        """
        addr = _address(address)
        name = display_name(name)
        await self._require_local(addr)
        await self._require_free(addr)
        if licensed:
            await self._require_seat()
        password_hash = await self._hash(password) if password is not None else None
        try:
            with _storage_errors(
                not_found=f"{domain_of(addr)} is not a local domain",
                exists=f"address {addr} is already taken",
            ):
                return await self.directory.create_account(
                    addr,
                    AccountKind.USER,
                    name,
                    password_hash=password_hash,
                    licensed=licensed,
                    max_seats=self.seats if licensed else None,
                )
        except AccountError as err:
            if isinstance(err.__cause__, SeatsExhausted):
                raise AccountError(await self._no_seat_message()) from err.__cause__
            raise

    async def add_shared(self, address: str, name: str = "") -> Account:
        """Create a shared mailbox (no password, no licence; opened through Full Access)."""
        return await self._create(address, AccountKind.SHARED, name)

    async def add_list(self, address: str, name: str = "") -> Account:
        """Create a distribution list (default policy: authenticated senders only)."""
        return await self._create(address, AccountKind.LIST, name)

    async def add_room(self, address: str, name: str = "", capacity: int | None = None) -> Account:
        """Create a room mailbox; ``capacity`` (people) is optional, 1..MAX_ROOM_CAPACITY."""
        settings: dict[str, Any] = {}
        if capacity is not None:
            if isinstance(capacity, bool) or not 1 <= capacity <= MAX_ROOM_CAPACITY:
                raise AccountError(f"room capacity must be between 1 and {MAX_ROOM_CAPACITY}, not {capacity}")
            settings[CAPACITY] = capacity
        return await self._create(address, AccountKind.ROOM, name, settings)

    async def remove(self, address: str) -> Account:
        """Delete an account with its mail, aliases, grants and memberships; return it.

        A user's licence seat is freed.
        """
        account = await self.get(address)
        with _storage_errors(not_found=f"no account {account.address}"):
            await self.directory.remove_account(account.address)
        return account

    async def set_display_name(self, address: str, name: str) -> None:
        name = display_name(name)
        account = await self.get(address)
        with _storage_errors(not_found=f"no account {account.address}"):
            await self.directory.set_display_name(account.address, name)

    async def set_password(self, address: str, password: str) -> None:
        """Set a user's password (hashed with the current policy)."""
        account = await self._user(address, "only users have a password")
        password_hash = await self._hash(password)
        with _storage_errors(not_found=f"no account {account.address}"):
            await self.directory.set_password_hash(account.address, password_hash)

    async def enable(self, address: str) -> None:
        """Allow a user to log in again (if licensed)."""
        account = await self._user(address, "only users can be enabled or disabled")
        with _storage_errors(not_found=f"no account {account.address}"):
            await self.directory.set_enabled(account.address, True)

    async def disable(self, address: str) -> None:
        """Block a user's logins at once; stored mail is kept, new mail is refused
        (SMTP 550 5.2.1, as for an unlicensed user)."""
        account = await self._user(address, "only users can be enabled or disabled")
        with _storage_errors(not_found=f"no account {account.address}"):
            await self.directory.set_enabled(account.address, False)

    # ------------------------------------------------------------------ licences

    async def license(self, address: str) -> Account:
        """Assign a licence seat to a user (no change if it has one).

        Raises AccountError "no licence seat free: N of M in use" when the pool is full.
        """
        account = await self._user(address, "only users take a licence")
        if account.licensed:
            return account
        try:
            with _storage_errors(not_found=f"no account {account.address}"):
                await self.directory.set_licensed(account.address, True, self.seats)
        except AccountError as err:
            if isinstance(err.__cause__, SeatsExhausted):
                raise AccountError(await self._no_seat_message()) from err.__cause__
            raise
        return await self._lookup(account.address)

    async def unlicense(self, address: str) -> Account:
        """Remove a user's licence: logins are refused at once; the mail is kept."""
        account = await self._user(address, "only users take a licence")
        if not account.licensed:
            return account
        with _storage_errors(not_found=f"no account {account.address}"):
            await self.directory.set_licensed(account.address, False, self.seats)
        return await self._lookup(account.address)

    async def licence_status(self) -> LicenceStatus:
        """(total, used, free) seats; free is never negative (the pool may have shrunk)."""
        with _storage_errors():
            used = await self.directory.count_licensed()
        return LicenceStatus(self.seats, used, max(0, self.seats - used))

    # ------------------------------------------------------------------ grants

    async def grant(self, mailbox: str, user: str, rights: Iterable[Right]) -> frozenset[Right]:
        """Give ``user`` rights on a shared mailbox, room or list; return all it now holds.

        Refused: no rights named, the mailbox is a user's, the grantee is not a user,
        Full Access on a list (a list has no mailbox).
        """
        wanted = frozenset(rights)
        if not wanted:
            raise AccountError("name at least one right to grant (Full Access, Send As, Send on Behalf)")
        target, grantee = await self._grant_parties(mailbox, user, "grant")
        if target.kind is AccountKind.LIST and Right.FULL_ACCESS in wanted:
            raise AccountError(
                f"Full Access cannot be granted on {target.address}: a distribution list has no mailbox"
            )
        with _storage_errors():
            return await self.directory.grant(target.address, grantee.address, wanted)

    async def revoke(self, mailbox: str, user: str, rights: Iterable[Right]) -> frozenset[Right]:
        """Take rights back; return what ``user`` still holds. Revoking a right not held
        is not an error."""
        unwanted = frozenset(rights)
        if not unwanted:
            raise AccountError("name at least one right to revoke (Full Access, Send As, Send on Behalf)")
        target, grantee = await self._grant_parties(mailbox, user, "revoke")
        with _storage_errors():
            return await self.directory.revoke(target.address, grantee.address, unwanted)

    async def _grant_parties(self, mailbox: str, user: str, verb: str) -> tuple[Account, Account]:
        target = await self._resolve(_address(mailbox))
        if target is None:
            raise AccountError(f"no shared mailbox, room or list {_address(mailbox)}")
        if target.kind is AccountKind.USER:
            raise AccountError(
                f"cannot {verb} rights on {target.address}: it is a user's own mailbox "
                "(rights are granted on shared mailboxes, rooms and lists)"
            )
        grantee = await self._resolve(_address(user))
        if grantee is None:
            raise AccountError(f"cannot {verb} rights to {_address(user)}: there is no such user")
        if grantee.kind is not AccountKind.USER:
            raise AccountError(
                f"cannot {verb} rights to {grantee.address}: it is {describe_kind(grantee.kind)}, "
                "and only users hold rights"
            )
        return target, grantee

    # ------------------------------------------------------------------ lists

    async def add_members(self, list_address: str, members: Sequence[str]) -> list[str]:
        """Add members (local accounts, aliases or external addresses); return them normalised.

        Refused: not a list; a member that is the list itself or a list containing it
        (directly or through nested lists); an unknown address in a local domain; an
        address already a member.
        """
        lst = await self._list(list_address)
        current = set(await self._members(lst.address))
        domains = set(await self._domains())
        added: list[str] = []
        for text in members:
            member = _address(text)
            if member in added:
                continue
            if member in current:
                raise AccountError(f"{member} is already a member of {lst.address}")
            target = await self._resolve(member)
            if target is not None and target.id == lst.id:
                raise AccountError(f"a list cannot contain itself: {member} is {lst.address}")
            if target is None and domain_of(member) in domains:
                raise AccountError(
                    f"no account or alias {member} in the local domain {domain_of(member)}"
                )
            if target is not None and target.kind is AccountKind.LIST:
                if await self._contains(target, lst):
                    raise AccountError(
                        f"adding {member} to {lst.address} would make {lst.address} contain itself "
                        f"({member} already contains it)"
                    )
            added.append(member)
        if not added:
            raise AccountError("name at least one member")
        with _storage_errors(
            conflict=f"{lst.address} would contain itself",
            exists=f"one of the addresses is already a member of {lst.address}",
        ):
            await self.directory.add_members(lst.address, added)
        return added

    async def remove_members(self, list_address: str, members: Sequence[str]) -> list[str]:
        """Remove direct members; refused when one is not a member (nothing is removed)."""
        lst = await self._list(list_address)
        current = set(await self._members(lst.address))
        removing: list[str] = []
        for text in members:
            member = _address(text)
            if member not in current:
                raise AccountError(f"{member} is not a member of {lst.address}")
            if member not in removing:
                removing.append(member)
        if not removing:
            raise AccountError("name at least one member")
        with _storage_errors(not_found=f"one of the addresses is not a member of {lst.address}"):
            await self.directory.remove_members(lst.address, removing)
        return removing

    async def members(self, list_address: str) -> list[str]:
        lst = await self._list(list_address)
        return await self._members(lst.address)

    async def list_policy(self, list_address: str) -> ListPolicy:
        return ListPolicy.of(await self._list(list_address))

    async def set_list_policy(
        self,
        list_address: str,
        *,
        require_sender_authentication: bool | None = None,
        allowed_senders: Sequence[str] | None = None,
        blocked_senders: Sequence[str] | None = None,
    ) -> ListPolicy:
        """Change the given parts of a list's sender policy (sender lists are replaced
        whole; an empty sequence clears one). Returns the new policy."""
        lst = await self._list(list_address)
        changes: dict[str, Any] = {}
        if require_sender_authentication is not None:
            changes[REQUIRE_SENDER_AUTHENTICATION] = bool(require_sender_authentication)
        if allowed_senders is not None:
            changes[ALLOWED_SENDERS] = _unique(_address(a) for a in allowed_senders)
        if blocked_senders is not None:
            changes[BLOCKED_SENDERS] = _unique(_address(a) for a in blocked_senders)
        if not changes:
            return ListPolicy.of(lst)
        with _storage_errors(not_found=f"no list {lst.address}"):
            updated = await self.directory.update_settings(lst.address, changes)
        return ListPolicy.of(updated)

    # ------------------------------------------------------------------ shared mailboxes

    async def shared_settings(self, address: str) -> SharedSettings:
        return SharedSettings.of(await self._shared(address))

    async def set_shared_settings(
        self,
        address: str,
        *,
        copy_sent_as: bool | None = None,
        copy_send_on_behalf: bool | None = None,
    ) -> SharedSettings:
        """Change the copy-to-Sent flags given; return the new settings."""
        shared = await self._shared(address)
        changes: dict[str, Any] = {}
        if copy_sent_as is not None:
            changes[COPY_SENT_AS] = bool(copy_sent_as)
        if copy_send_on_behalf is not None:
            changes[COPY_SEND_ON_BEHALF] = bool(copy_send_on_behalf)
        if not changes:
            return SharedSettings.of(shared)
        with _storage_errors(not_found=f"no shared mailbox {shared.address}"):
            updated = await self.directory.update_settings(shared.address, changes)
        return SharedSettings.of(updated)

    async def room_settings(self, address: str) -> RoomSettings:
        room = await self.get(address)
        if room.kind is not AccountKind.ROOM:
            raise AccountError(f"{room.address} is {describe_kind(room.kind)}, not a room")
        return RoomSettings.of(room)

    async def set_room_policy(self, address: str, changes: dict[str, Any]) -> RoomSettings:
        """Change booking policy keys of a room (names and defaults in
        :data:`auth.settings.ROOM_POLICY_DEFAULTS`, plus ``capacity``); a value of None
        restores the default. Values are checked and normalised (address lists in normal
        form, numbers in Exchange's ranges). Raises AccountError naming the bad key.
        """
        room = await self.get(address)
        if room.kind is not AccountKind.ROOM:
            raise AccountError(f"{room.address} is {describe_kind(room.kind)}, not a room")
        clean: dict[str, Any] = {}
        for key, value in changes.items():
            clean[key] = None if value is None else _room_policy_value(key, value)
        if not clean:
            return RoomSettings.of(room)
        if any(key in clean for key in ROOM_POLICY_TIMES):
            start, end = (
                clean.get(k) or (room.settings.get(k) if k not in clean else None) or ROOM_POLICY_DEFAULTS[k]
                for k in ROOM_POLICY_TIMES
            )
            if str(start) >= str(end):  # HH:MM strings order as times
                raise AccountError(f"work_hours_start ({start}) must be before work_hours_end ({end})")
        with _storage_errors(not_found=f"no room {room.address}"):
            updated = await self.directory.update_settings(room.address, clean)
        return RoomSettings.of(updated)

    # ------------------------------------------------------------------ aliases

    async def add_alias(self, alias: str, target: str) -> Alias:
        """Make ``alias`` (in a local domain, not taken) reach ``target``'s account.

        An alias of an alias is stored as an alias of the final account.
        """
        name = _address(alias)
        await self._require_local(name)
        await self._require_free(name)
        account = await self._resolve(_address(target))
        if account is None:
            raise AccountError(f"cannot add alias {name}: no account {_address(target)}")
        with _storage_errors(
            exists=f"address {name} is already taken",
            not_found=f"cannot add alias {name}: no account {account.address} or domain {domain_of(name)}",
        ):
            await self.directory.add_alias(name, account.address)
        return Alias(name, account.address)

    async def remove_alias(self, alias: str) -> None:
        name = _address(alias)
        if await self.directory.get_account(name) is not None:
            raise AccountError(f"{name} is an account, not an alias")
        with _storage_errors(not_found=f"no alias {name}"):
            await self.directory.remove_alias(name)

    # ------------------------------------------------------------------ helpers

    async def _create(
        self, address: str, kind: AccountKind, name: str, settings: dict[str, Any] | None = None
    ) -> Account:
        addr = _address(address)
        name = display_name(name)
        await self._require_local(addr)
        await self._require_free(addr)
        with _storage_errors(
            not_found=f"{domain_of(addr)} is not a local domain",
            exists=f"address {addr} is already taken",
        ):
            return await self.directory.create_account(addr, kind, name, settings=settings)

    async def _hash(self, password: str) -> str:
        try:
            return await self.hasher.hash(password)
        except ValueError as err:
            raise AccountError(f"password refused: {err}") from None

    async def _domains(self) -> list[str]:
        with _storage_errors():
            return await self.directory.list_domains()

    async def _members(self, list_address: str) -> list[str]:
        with _storage_errors(not_found=f"no list {list_address}"):
            return await self.directory.members(list_address)

    async def _resolve(self, address: str) -> Account | None:
        with _storage_errors():
            return await self.directory.resolve(address)

    async def _require_local(self, address: str) -> None:
        domain = domain_of(address)
        if domain not in await self._domains():
            raise AccountError(f"{domain} is not a local domain (add it first) - refusing {address}")

    async def _require_free(self, address: str) -> None:
        holder = await self._resolve(address)
        if holder is None:
            return
        if holder.address == address:
            raise AccountError(f"address {address} is already taken by {describe_kind(holder.kind)}")
        raise AccountError(f"address {address} is already taken: it is an alias of {holder.address}")

    async def _require_seat(self) -> None:
        status = await self.licence_status()
        if status.free == 0:
            raise AccountError(await self._no_seat_message())

    async def _no_seat_message(self) -> str:
        status = await self.licence_status()
        return f"no licence seat free: {status.used} of {status.total} in use"

    async def _lookup(self, address: str) -> Account:
        with _storage_errors():
            account = await self.directory.get_account(address)
        if account is not None:
            return account
        target = await self._resolve(address)
        if target is not None:
            raise AccountError(f"{address} is an alias of {target.address}, not an account")
        raise AccountError(f"no account {address}")

    async def _user(self, address: str, why: str) -> Account:
        account = await self.get(address)
        if account.kind is not AccountKind.USER:
            raise AccountError(f"{account.address} is {describe_kind(account.kind)}: {why}")
        return account

    async def _list(self, address: str) -> Account:
        account = await self.get(address)
        if account.kind is not AccountKind.LIST:
            raise AccountError(f"{account.address} is {describe_kind(account.kind)}, not a distribution list")
        return account

    async def _shared(self, address: str) -> Account:
        account = await self.get(address)
        if account.kind is not AccountKind.SHARED:
            raise AccountError(f"{account.address} is {describe_kind(account.kind)}, not a shared mailbox")
        return account

    async def _contains(self, outer: Account, inner: Account) -> bool:
        """True when list ``outer`` reaches list ``inner`` through nested members."""
        seen: set[int] = set()
        frontier = [outer]
        for _ in range(MAX_LIST_DEPTH):
            next_frontier: list[Account] = []
            for lst in frontier:
                if lst.id in seen:
                    continue
                seen.add(lst.id)
                for member in await self._members(lst.address):
                    account = await self._resolve(member)
                    if account is None or account.kind is not AccountKind.LIST:
                        continue
                    if account.id == inner.id:
                        return True
                    next_frontier.append(account)
            if not next_frontier:
                return False
            frontier = next_frontier
        return False


def _unique(addresses: Iterable[str]) -> list[str]:
    out: list[str] = []
    for a in addresses:
        if a not in out:
            out.append(a)
    return out


#: Longest display name: it goes into From:, Sender: and iMIP replies, whose header lines
#: should stay under RFC 5322's 78 characters after folding; 200 is ample for a name.
MAX_DISPLAY_NAME = 200


def display_name(name: str) -> str:
    """``name`` stripped, or AccountError: no control characters (CR and LF in a name
    would inject header fields wherever it is written, RFC 5322 §2.2) and at most
    :data:`MAX_DISPLAY_NAME` characters."""
    name = name.strip()
    if any(ord(c) < 32 or ord(c) == 127 or 0x80 <= ord(c) < 0xA0 for c in name):
        raise AccountError("a display name may not contain control characters (line breaks, tabs, ...)")
    if len(name) > MAX_DISPLAY_NAME:
        raise AccountError(f"a display name is at most {MAX_DISPLAY_NAME} characters, not {len(name)}")
    return name


def _time_of_day(key: str, value: Any) -> str:
    """``HH:MM`` (24-hour clock; 24:00 allowed as the end of the day). Raises AccountError."""
    text = str(value).strip()
    hours, sep, minutes = text.partition(":")
    if sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2:
        h, m = int(hours), int(minutes)
        if (0 <= h <= 23 and 0 <= m <= 59) or (h, m) == (24, 0):
            return f"{h:02d}:{m:02d}"
    raise AccountError(f"{key} must be a time of day as HH:MM, not {value!r}")


def _room_policy_value(key: str, value: Any) -> Any:
    """The stored form of one room policy value. Raises AccountError."""
    if key == CAPACITY:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ROOM_CAPACITY:
            raise AccountError(f"room capacity must be between 1 and {MAX_ROOM_CAPACITY}, not {value!r}")
        return value
    if key not in ROOM_POLICY_DEFAULTS:
        raise AccountError(f"unknown room policy key {key!r}")
    default = ROOM_POLICY_DEFAULTS[key]
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise AccountError(f"{key} must be true or false, not {value!r}")
        return value
    if isinstance(default, int):
        low, high = ROOM_POLICY_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise AccountError(f"{key} must be a whole number from {low} to {high}, not {value!r}")
        return value
    if key == "work_days":
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise AccountError("work_days must be a list of day names")
        days = [str(v).strip().lower()[:3] for v in value]
        bad = [str(v) for v, d in zip(value, days, strict=True) if d not in WEEKDAYS]
        if bad:
            raise AccountError(f"work_days must name days ({', '.join(WEEKDAYS)}), not {', '.join(bad)}")
        return [d for d in WEEKDAYS if d in days]
    if key in ROOM_POLICY_TIMES:
        return _time_of_day(key, value)
    if isinstance(default, list):
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise AccountError(f"{key} must be a list of addresses")
        return _unique(_address(str(v)) for v in value)
    if key == "automate_processing":
        try:
            return AutomateProcessing(str(value)).value
        except ValueError:
            choices = ", ".join(m.value for m in AutomateProcessing)
            raise AccountError(f"automate_processing must be one of {choices}, not {value!r}") from None
    if key == "timezone":
        try:
            zoneinfo.ZoneInfo(str(value))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise AccountError(f"timezone {value!r} is not a known IANA time zone") from None
    return str(value)
