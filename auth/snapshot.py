"""An in-memory snapshot of the directory, for the hot paths (SMTP RCPT, sender policy).

:class:`DirectorySnapshot` holds domains, accounts (with their settings), aliases,
distribution list members and grants as they were at one :meth:`Directory.version`.
:class:`CachedDirectory` is a :class:`storage.interfaces.Directory` whose reads are
answered from the current snapshot (no database round trip) and whose writes go to the
store. :meth:`CachedDirectory.refresh` asks the store for its version (one cheap call)
and reloads the snapshot only when it changed, so changes made by the CLI or another
daemon on the same store are seen at the next refresh, without restart.

Freshness rule: reads see the directory as of the last :meth:`~CachedDirectory.refresh`
(or of the last write made through this object). Callers refresh once per unit of work
(an SMTP transaction refreshes at MAIL FROM), so a unit of work sees one consistent
directory and a change committed before it started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storage.interfaces import Directory
from storage.types import Account, AccountKind, Alias, Grant, Right

log = logging.getLogger(__name__)

#: How many times a reload is retried when the directory changed while it was being
#: read (each read is its own query). After that the mixed snapshot is kept under the
#: version read first, so the next refresh loads again: a busy directory never blocks.
RELOAD_ATTEMPTS = 3


def _key(address: str) -> str:
    """The lookup key of an address: the store compares addresses case-insensitively."""
    return address.strip().lower()


@dataclass(frozen=True, slots=True)
class DirectorySnapshot:
    """The directory at ``version``. Lookups are synchronous and never touch the store."""

    version: int
    domains: frozenset[str]
    accounts: Mapping[str, Account]  # by address
    by_id: Mapping[int, Account]
    aliases: Mapping[str, str]  # alias -> target address
    members: Mapping[str, tuple[str, ...]]  # list address -> direct members, as added
    grants: Mapping[tuple[str, str], frozenset[Right]]  # (mailbox, user) -> rights

    def get_account(self, address: str) -> Account | None:
        """The account with exactly this address (aliases not followed)."""
        return self.accounts.get(_key(address))

    def resolve(self, address: str) -> Account | None:
        """The account an address reaches: itself, or the target of an alias."""
        key = _key(address)
        account = self.accounts.get(key)
        if account is not None:
            return account
        target = self.aliases.get(key)
        return None if target is None else self.accounts.get(target)

    def rights(self, mailbox: str, user: str) -> frozenset[Right]:
        return self.grants.get((_key(mailbox), _key(user)), frozenset())

    def list_members(self, list_address: str) -> tuple[str, ...]:
        return self.members.get(_key(list_address), ())


async def load_snapshot(directory: Directory) -> DirectorySnapshot:
    """Read the whole directory into a snapshot.

    The snapshot's version is the one read before loading: if a change lands while
    loading (and keeps landing for :data:`RELOAD_ATTEMPTS` tries), the next version
    check differs and the snapshot is loaded again.
    """
    for _ in range(RELOAD_ATTEMPTS):
        before = await directory.version()
        snapshot = await _load(directory, before)
        if await directory.version() == before:
            return snapshot
    log.info("directory kept changing while loading; using the snapshot of version %d", before)
    return snapshot


async def _load(directory: Directory, version: int) -> DirectorySnapshot:
    domains = frozenset(_key(d) for d in await directory.list_domains())
    accounts = {a.address: a for a in await directory.list_accounts()}
    aliases = {_key(a.alias): _key(a.target) for a in await directory.list_aliases()}
    members: dict[str, tuple[str, ...]] = {}
    grants: dict[tuple[str, str], frozenset[Right]] = {}
    for account in accounts.values():
        if account.kind is AccountKind.LIST:
            members[account.address] = tuple(await directory.members(account.address))
        if account.kind is not AccountKind.USER:  # grants are on shared, room and list accounts
            for g in await directory.grants_on(account.address):
                grants[(_key(g.mailbox), _key(g.user))] = g.rights
    return DirectorySnapshot(
        version=version,
        domains=domains,
        accounts=accounts,
        by_id={a.id: a for a in accounts.values()},
        aliases=aliases,
        members=members,
        grants=grants,
    )


@dataclass(slots=True)
class CacheStats:
    """Counters for tests and benchmarks."""

    checks: int = 0  # version checks
    loads: int = 0  # full snapshot loads


class CachedDirectory:
    """A :class:`storage.interfaces.Directory` reading from an in-memory snapshot.

    Reads come from the snapshot of the last :meth:`refresh`; the first read loads it.
    Writes go to ``directory`` and mark the snapshot stale, so the next read through
    this object reloads. ``version()`` always asks the store.
    """

    def __init__(self, directory: Directory) -> None:
        self.store_directory = directory
        self._snapshot: DirectorySnapshot | None = None
        self._stale = True
        self._reload_lock = asyncio.Lock()
        self.stats = CacheStats()

    async def refresh(self) -> DirectorySnapshot:
        """Check the store's version (one cheap call) and reload when it changed.

        Concurrent callers that find it changed share one reload (50 SMTP sessions
        starting a transaction right after a CLI change load the directory once).
        """
        self.stats.checks += 1
        version = await self.store_directory.version()
        current = self._snapshot
        if current is not None and not self._stale and current.version == version:
            return current
        async with self._reload_lock:
            current = self._snapshot
            # Versions only grow: a snapshot loaded meanwhile by another caller is as new.
            if current is None or self._stale or current.version < version:
                self._stale = False
                current = self._snapshot = await load_snapshot(self.store_directory)
                self.stats.loads += 1
        return current

    async def snapshot(self) -> DirectorySnapshot:
        """The current snapshot, loaded when there is none or after a write through this object."""
        current = self._snapshot
        if current is None or self._stale:
            current = await self.refresh()
        return current

    def _changed(self) -> None:
        self._stale = True

    # -- reads, from the snapshot

    async def version(self) -> int:
        return await self.store_directory.version()

    async def list_domains(self) -> list[str]:
        return sorted((await self.snapshot()).domains)

    async def get_account(self, address: str) -> Account | None:
        return (await self.snapshot()).get_account(address)

    async def get_account_by_id(self, account_id: int) -> Account | None:
        return (await self.snapshot()).by_id.get(account_id)

    async def resolve(self, address: str) -> Account | None:
        return (await self.snapshot()).resolve(address)

    async def list_accounts(self, kind: AccountKind | None = None) -> list[Account]:
        snap = await self.snapshot()
        return [a for _, a in sorted(snap.accounts.items()) if kind is None or a.kind is AccountKind(kind)]

    async def count_licensed(self) -> int:
        return sum(1 for a in (await self.snapshot()).accounts.values() if a.licensed)

    async def list_aliases(self, target: str | None = None) -> list[Alias]:
        snap = await self.snapshot()
        want = None if target is None else _key(target)
        return [Alias(alias, t) for alias, t in sorted(snap.aliases.items()) if want is None or t == want]

    async def rights(self, mailbox: str, user: str) -> frozenset[Right]:
        return (await self.snapshot()).rights(mailbox, user)

    async def grants_on(self, mailbox: str) -> list[Grant]:
        key = _key(mailbox)
        snap = await self.snapshot()
        return [Grant(m, u, r) for (m, u), r in sorted(snap.grants.items()) if m == key and r]

    async def grants_of(self, user: str) -> list[Grant]:
        key = _key(user)
        snap = await self.snapshot()
        return sorted(
            (Grant(m, u, r) for (m, u), r in snap.grants.items() if u == key and r),
            key=lambda g: g.mailbox,
        )

    async def members(self, list_address: str) -> list[str]:
        return list((await self.snapshot()).list_members(list_address))

    async def lists_containing(self, address: str) -> list[str]:
        key = _key(address)
        snap = await self.snapshot()
        return sorted(lst for lst, members in snap.members.items() if key in members)

    # -- writes, to the store

    async def add_domain(self, name: str) -> None:
        try:
            await self.store_directory.add_domain(name)
        finally:
            self._changed()

    async def remove_domain(self, name: str) -> None:
        try:
            await self.store_directory.remove_domain(name)
        finally:
            self._changed()

    async def create_account(
        self,
        address: str,
        kind: AccountKind,
        display_name: str = "",
        *,
        password_hash: str | None = None,
        licensed: bool = False,
        settings: dict[str, Any] | None = None,
        max_seats: int | None = None,
    ) -> Account:
        try:
            return await self.store_directory.create_account(
                address, kind, display_name, password_hash=password_hash, licensed=licensed,
                settings=settings, max_seats=max_seats,
            )
        finally:
            self._changed()

    async def remove_account(self, address: str) -> None:
        try:
            await self.store_directory.remove_account(address)
        finally:
            self._changed()

    async def set_password_hash(self, address: str, password_hash: str | None) -> None:
        try:
            await self.store_directory.set_password_hash(address, password_hash)
        finally:
            self._changed()

    async def set_enabled(self, address: str, enabled: bool) -> None:
        try:
            await self.store_directory.set_enabled(address, enabled)
        finally:
            self._changed()

    async def set_licensed(self, address: str, licensed: bool, max_seats: int) -> None:
        try:
            await self.store_directory.set_licensed(address, licensed, max_seats)
        finally:
            self._changed()

    async def update_settings(self, address: str, changes: dict[str, Any]) -> Account:
        try:
            return await self.store_directory.update_settings(address, changes)
        finally:
            self._changed()

    async def set_display_name(self, address: str, display_name: str) -> None:
        try:
            await self.store_directory.set_display_name(address, display_name)
        finally:
            self._changed()

    async def add_alias(self, alias: str, target: str) -> None:
        try:
            await self.store_directory.add_alias(alias, target)
        finally:
            self._changed()

    async def remove_alias(self, alias: str) -> None:
        try:
            await self.store_directory.remove_alias(alias)
        finally:
            self._changed()

    async def grant(self, mailbox: str, user: str, rights: Iterable[Right]) -> frozenset[Right]:
        try:
            return await self.store_directory.grant(mailbox, user, rights)
        finally:
            self._changed()

    async def revoke(self, mailbox: str, user: str, rights: Iterable[Right]) -> frozenset[Right]:
        try:
            return await self.store_directory.revoke(mailbox, user, rights)
        finally:
            self._changed()

    async def add_members(self, list_address: str, members: Sequence[str]) -> None:
        try:
            await self.store_directory.add_members(list_address, members)
        finally:
            self._changed()

    async def remove_members(self, list_address: str, members: Sequence[str]) -> None:
        try:
            await self.store_directory.remove_members(list_address, members)
        finally:
            self._changed()
