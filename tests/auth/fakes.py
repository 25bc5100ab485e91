"""A small in-memory Directory for tests of auth logic (a fake of storage only).

It follows the storage.interfaces.Directory contract closely enough for auth tests;
the SQLite backend is the real thing and the contract suite in tests/storage pins it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from storage.errors import AlreadyExists, Conflict, NotFound, SeatsExhausted
from storage.types import Account, AccountKind, Alias, Grant, Right


class FakeDirectory:
    def __init__(self) -> None:
        self._version = 0
        self.domains: list[str] = []
        self.accounts: dict[str, Account] = {}
        self.aliases: dict[str, str] = {}
        self.grants: dict[tuple[str, str], frozenset[Right]] = {}
        self.list_members: dict[str, list[str]] = {}
        self._next_id = 1
        self.password_writes: list[tuple[str, str | None]] = []

    def _bump(self) -> None:
        self._version += 1

    async def version(self) -> int:
        return self._version

    async def add_domain(self, name: str) -> None:
        if name in self.domains:
            raise AlreadyExists(name)
        self.domains.append(name)
        self._bump()

    async def remove_domain(self, name: str) -> None:
        if name not in self.domains:
            raise NotFound(name)
        if any(a.endswith("@" + name) for a in [*self.accounts, *self.aliases]):
            raise Conflict(name)
        self.domains.remove(name)
        self._bump()

    async def list_domains(self) -> list[str]:
        return sorted(self.domains)

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
        address = address.lower()
        if address in self.accounts or address in self.aliases:
            raise AlreadyExists(address)
        if address.rpartition("@")[2] not in self.domains:
            raise NotFound(address)
        if licensed and kind is not AccountKind.USER:
            raise Conflict(address)
        if licensed and max_seats is not None and await self.count_licensed() >= max_seats:
            raise SeatsExhausted(address)
        account = Account(
            self._next_id, address, kind, display_name, True, licensed, password_hash, dict(settings or {})
        )
        self._next_id += 1
        self.accounts[address] = account
        if kind is AccountKind.LIST:
            self.list_members[address] = []
        self._bump()
        return account

    async def get_account(self, address: str) -> Account | None:
        return self.accounts.get(address.lower())

    async def get_account_by_id(self, account_id: int) -> Account | None:
        return next((a for a in self.accounts.values() if a.id == account_id), None)

    async def resolve(self, address: str) -> Account | None:
        address = address.lower()
        return self.accounts.get(self.aliases.get(address, address))

    async def list_accounts(self, kind: AccountKind | None = None) -> list[Account]:
        return [a for _, a in sorted(self.accounts.items()) if kind is None or a.kind is kind]

    async def remove_account(self, address: str) -> None:
        if address not in self.accounts:
            raise NotFound(address)
        del self.accounts[address]
        self.aliases = {k: v for k, v in self.aliases.items() if v != address}
        self.grants = {k: v for k, v in self.grants.items() if address not in k}
        self.list_members.pop(address, None)
        for members in self.list_members.values():
            if address in members:
                members.remove(address)
        self._bump()

    def _update(self, address: str, **changes: Any) -> Account:
        account = self.accounts.get(address)
        if account is None:
            raise NotFound(address)
        updated = replace(account, **changes)
        self.accounts[address] = updated
        self._bump()
        return updated

    async def set_password_hash(self, address: str, password_hash: str | None) -> None:
        account = self.accounts.get(address)
        if account is None:
            raise NotFound(address)
        if account.kind is not AccountKind.USER:
            raise Conflict(address)
        self.password_writes.append((address, password_hash))
        self._update(address, password_hash=password_hash)

    async def set_enabled(self, address: str, enabled: bool) -> None:
        self._update(address, enabled=enabled)

    async def set_licensed(self, address: str, licensed: bool, max_seats: int) -> None:
        account = self.accounts.get(address)
        if account is None:
            raise NotFound(address)
        if account.kind is not AccountKind.USER:
            raise Conflict(address)
        if licensed and not account.licensed and await self.count_licensed() >= max_seats:
            raise SeatsExhausted(address)
        self._update(address, licensed=licensed)

    async def count_licensed(self) -> int:
        return sum(1 for a in self.accounts.values() if a.licensed)

    async def update_settings(self, address: str, changes: dict[str, Any]) -> Account:
        account = self.accounts.get(address)
        if account is None:
            raise NotFound(address)
        settings = dict(account.settings)
        for key, value in changes.items():
            if value is None:
                settings.pop(key, None)
            else:
                settings[key] = value
        return self._update(address, settings=settings)

    async def set_display_name(self, address: str, display_name: str) -> None:
        self._update(address, display_name=display_name)

    async def add_alias(self, alias: str, target: str) -> None:
        if alias in self.accounts or alias in self.aliases:
            raise AlreadyExists(alias)
        if target not in self.accounts or alias.rpartition("@")[2] not in self.domains:
            raise NotFound(target)
        self.aliases[alias] = target
        self._bump()

    async def remove_alias(self, alias: str) -> None:
        if alias not in self.aliases:
            raise NotFound(alias)
        del self.aliases[alias]
        self._bump()

    async def list_aliases(self, target: str | None = None) -> list[Alias]:
        return [Alias(a, t) for a, t in sorted(self.aliases.items()) if target is None or t == target]

    def _grant_check(self, mailbox: str, user: str) -> None:
        m, u = self.accounts.get(mailbox), self.accounts.get(user)
        if m is None or u is None:
            raise NotFound(mailbox if m is None else user)
        if u.kind is not AccountKind.USER or m.kind is AccountKind.USER:
            raise Conflict(f"{mailbox} -> {user}")

    async def grant(self, mailbox: str, user: str, rights: Iterable[Right]) -> frozenset[Right]:
        self._grant_check(mailbox, user)
        held = self.grants.get((mailbox, user), frozenset()) | frozenset(rights)
        self.grants[(mailbox, user)] = held
        self._bump()
        return held

    async def revoke(self, mailbox: str, user: str, rights: Iterable[Right]) -> frozenset[Right]:
        self._grant_check(mailbox, user)
        held = self.grants.get((mailbox, user), frozenset()) - frozenset(rights)
        self.grants[(mailbox, user)] = held
        self._bump()
        return held

    async def rights(self, mailbox: str, user: str) -> frozenset[Right]:
        return self.grants.get((mailbox.lower(), user.lower()), frozenset())

    async def grants_on(self, mailbox: str) -> list[Grant]:
        return [Grant(m, u, r) for (m, u), r in sorted(self.grants.items()) if m == mailbox and r]

    async def grants_of(self, user: str) -> list[Grant]:
        return [Grant(m, u, r) for (m, u), r in sorted(self.grants.items()) if u == user and r]

    async def add_members(self, list_address: str, members: Sequence[str]) -> None:
        if list_address not in self.accounts:
            raise NotFound(list_address)
        if list_address not in self.list_members:
            raise Conflict(list_address)
        for m in members:
            if m in self.list_members[list_address]:
                raise AlreadyExists(m)
            if m == list_address:
                raise Conflict(m)
        self.list_members[list_address].extend(members)
        self._bump()

    async def remove_members(self, list_address: str, members: Sequence[str]) -> None:
        current = self.list_members.get(list_address)
        if current is None or any(m not in current for m in members):
            raise NotFound(list_address)
        for m in members:
            current.remove(m)
        self._bump()

    async def members(self, list_address: str) -> list[str]:
        if list_address not in self.list_members:
            raise NotFound(list_address)
        return list(self.list_members[list_address])

    async def lists_containing(self, address: str) -> list[str]:
        return sorted(lst for lst, members in self.list_members.items() if address in members)
