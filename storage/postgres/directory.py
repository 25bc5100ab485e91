"""Directory (domains, accounts, aliases, grants, list members, licences) on PostgreSQL.

Every change is one transaction that first bumps ``directory_version``. That UPDATE
takes the counter row's lock, so directory changes from every daemon and CLI run one
at a time: seat counts, "address already taken" and list-cycle checks cannot race
(directory changes are rare; mail traffic never takes this lock). Readers compare
:meth:`version` to know when to reload, so a change made anywhere is seen everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from storage.errors import AlreadyExists, Conflict, NotFound, SeatsExhausted, StorageError
from storage.postgres.db import Connection, Db, Record
from storage.sqlite.util import domain_of, normalize_address, now_utc
from storage.types import (
    DEFAULT_FOLDERS,
    MAILBOX_KINDS,
    Account,
    AccountKind,
    Alias,
    Grant,
    Right,
)

_ACCOUNT_COLUMNS = (
    "id, address, kind, display_name, enabled, licensed, password_hash, settings, created"
)
_GRANTABLE_KINDS = frozenset({AccountKind.SHARED, AccountKind.ROOM, AccountKind.LIST})
_RIGHT_COLUMNS = {
    Right.FULL_ACCESS: "full_access",
    Right.SEND_AS: "send_as",
    Right.SEND_ON_BEHALF: "send_on_behalf",
}


def account_from_row(row: Record) -> Account:
    return Account(
        id=row["id"],
        address=row["address"],
        kind=AccountKind(row["kind"]),
        display_name=row["display_name"],
        enabled=row["enabled"],
        licensed=row["licensed"],
        password_hash=row["password_hash"],
        settings=json.loads(row["settings"]),
        created=row["created"],
    )


def _rights_from_row(row: Record) -> frozenset[Right]:
    return frozenset(r for r, col in _RIGHT_COLUMNS.items() if row[col])


async def bump_version(conn: Connection) -> None:
    """Advance the directory version; holds its row lock until commit (see module doc)."""
    await conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'directory_version'")


async def next_uidvalidity(conn: Connection) -> int:
    """A UIDVALIDITY never given before in this database (RFC 3501 §2.3.1.1).

    Seconds since the epoch, or the last value + 1 when that is not larger: strictly
    increasing across every daemon (the counter row is updated in place).
    """
    value = await conn.fetchval(
        "UPDATE meta SET value = GREATEST($1::bigint, value + 1)"
        " WHERE key = 'last_uidvalidity' RETURNING value",
        int(now_utc().timestamp()),
    )
    if value > 0xFFFFFFFF:  # RFC 3501 nz-number is 32-bit
        raise StorageError("UIDVALIDITY space exhausted")
    return int(value)


async def _get(conn: Connection, address: str) -> Record | None:
    row: Record | None = await conn.fetchrow(
        f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE address = $1", address
    )
    return row


async def _require(conn: Connection, address: str, what: str = "account") -> Record:
    row = await _get(conn, address)
    if row is None:
        raise NotFound(f"no {what} {address}")
    return row


_RESOLVE_SQL = (
    f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE address = $1 OR id ="
    " (SELECT target_id FROM aliases WHERE alias = $1) ORDER BY address = $1 DESC LIMIT 1"
)


async def _resolve(conn: Connection, address: str) -> Record | None:
    row: Record | None = await conn.fetchrow(_RESOLVE_SQL, address)
    return row


async def _address_taken(conn: Connection, address: str) -> bool:
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE address = $1)"
        " OR EXISTS (SELECT 1 FROM aliases WHERE alias = $1)",
        address,
    ))


async def _require_domain(conn: Connection, address: str) -> str:
    domain = domain_of(address)
    if await conn.fetchval("SELECT 1 FROM domains WHERE name = $1", domain) is None:
        raise NotFound(f"domain {domain} is not a local domain")
    return domain


async def _check_seat(conn: Connection, max_seats: int) -> None:
    used = int(await conn.fetchval("SELECT count(*) FROM accounts WHERE licensed"))
    if used >= max_seats:
        raise SeatsExhausted(f"all {max_seats} licence seats are in use ({used} licensed users)")


async def _lists_reachable(conn: Connection, start: str) -> set[int]:
    """Ids of the lists reachable from ``start`` (the list it names and nested lists)."""
    seen: set[int] = set()
    todo = [start]
    while todo:
        row = await _resolve(conn, todo.pop())
        if row is None or row["kind"] != AccountKind.LIST or row["id"] in seen:
            continue
        seen.add(row["id"])
        todo.extend(
            r[0] for r in await conn.fetch("SELECT member FROM list_members WHERE list_id = $1", row["id"])
        )
    return seen


class PgDirectory:
    """:class:`storage.interfaces.Directory` on PostgreSQL."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def version(self) -> int:
        return int(await self._db.fetchval("SELECT value FROM meta WHERE key = 'directory_version'"))

    # -- domains

    async def add_domain(self, name: str) -> None:
        domain = name.strip().lower()
        if not domain or "@" in domain:
            raise StorageError(f"{name!r} is not a domain name")

        async def tx(conn: Connection) -> None:
            await bump_version(conn)
            if await conn.fetchval("SELECT 1 FROM domains WHERE name = $1", domain):
                raise AlreadyExists(f"domain {domain} already exists")
            await conn.execute("INSERT INTO domains (name) VALUES ($1)", domain)

        await self._db.transaction(tx)

    async def remove_domain(self, name: str) -> None:
        domain = name.strip().lower()

        async def tx(conn: Connection) -> None:
            await bump_version(conn)
            if not await conn.fetchval("SELECT 1 FROM domains WHERE name = $1", domain):
                raise NotFound(f"no domain {domain}")
            accounts = await conn.fetchval("SELECT count(*) FROM accounts WHERE domain = $1", domain)
            aliases = await conn.fetchval("SELECT count(*) FROM aliases WHERE domain = $1", domain)
            if accounts or aliases:
                raise Conflict(
                    f"domain {domain} still has {accounts} account(s) and {aliases} alias(es)"
                )
            await conn.execute("DELETE FROM domains WHERE name = $1", domain)

        await self._db.transaction(tx)

    async def list_domains(self) -> list[str]:
        return [r[0] for r in await self._db.fetch("SELECT name FROM domains ORDER BY name")]

    # -- accounts

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
        addr = normalize_address(address)
        kind = AccountKind(kind)
        settings_json = json.dumps(settings or {})

        async def tx(conn: Connection) -> Account:
            await bump_version(conn)
            domain = await _require_domain(conn, addr)
            if await _address_taken(conn, addr):
                raise AlreadyExists(f"address {addr} already exists (account or alias)")
            if kind != AccountKind.USER and licensed:
                raise Conflict(f"only users take a licence; {addr} would be a {kind} account")
            if kind != AccountKind.USER and password_hash is not None:
                raise Conflict(f"only users have a password; {addr} would be a {kind} account")
            if licensed and max_seats is not None:
                await _check_seat(conn, max_seats)
            row = await conn.fetchrow(
                "INSERT INTO accounts (address, domain, kind, display_name, licensed,"
                " password_hash, settings, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                f" RETURNING {_ACCOUNT_COLUMNS}",
                addr, domain, str(kind), display_name, licensed, password_hash, settings_json,
                now_utc(),
            )
            if kind in MAILBOX_KINDS:
                for name, special in DEFAULT_FOLDERS:
                    await conn.execute(
                        "INSERT INTO folders (account_id, name, uidvalidity, special_use,"
                        " subscribed) VALUES ($1, $2, $3, $4, TRUE)",
                        row["id"], name, await next_uidvalidity(conn),
                        None if special is None else str(special),
                    )
            return account_from_row(row)

        return await self._db.transaction(tx)

    async def get_account(self, address: str) -> Account | None:
        row = await self._db.fetchrow(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE address = $1", address.strip().lower()
        )
        return None if row is None else account_from_row(row)

    async def get_account_by_id(self, account_id: int) -> Account | None:
        row = await self._db.fetchrow(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = $1", account_id)
        return None if row is None else account_from_row(row)

    async def resolve(self, address: str) -> Account | None:
        row = await self._db.fetchrow(_RESOLVE_SQL, address.strip().lower())
        return None if row is None else account_from_row(row)

    async def list_accounts(self, kind: AccountKind | None = None) -> list[Account]:
        if kind is None:
            rows = await self._db.fetch(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY address")
        else:
            rows = await self._db.fetch(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE kind = $1 ORDER BY address",
                str(AccountKind(kind)),
            )
        return [account_from_row(r) for r in rows]

    async def remove_account(self, address: str) -> None:
        addr = address.strip().lower()

        async def tx(conn: Connection) -> None:
            await bump_version(conn)
            row = await _require(conn, addr)
            names = [addr] + [
                r[0] for r in await conn.fetch("SELECT alias FROM aliases WHERE target_id = $1", row["id"])
            ]
            await conn.execute("DELETE FROM list_members WHERE member = ANY ($1::text[])", names)
            # Aliases, grants, folders (and through them messages and unreferenced
            # bodies) and the list's own members go by ON DELETE CASCADE and triggers.
            await conn.execute("DELETE FROM accounts WHERE id = $1", row["id"])

        await self._db.transaction(tx)

    async def set_password_hash(self, address: str, password_hash: str | None) -> None:
        addr = address.strip().lower()

        async def tx(conn: Connection) -> None:
            await bump_version(conn)
            row = await _require(conn, addr)
            if row["kind"] != AccountKind.USER:
                raise Conflict(f"{addr} is a {row['kind']} account; only users have a password")
            await conn.execute("UPDATE accounts SET password_hash = $1 WHERE id = $2", password_hash, row["id"])

        await self._db.transaction(tx)

    async def set_enabled(self, address: str, enabled: bool) -> None:
        await self._update_column(address, "enabled", bool(enabled))

    async def set_display_name(self, address: str, display_name: str) -> None:
        await self._update_column(address, "display_name", display_name)

    async def _update_column(self, address: str, column: str, value: Any) -> None:
        addr = address.strip().lower()

        async def tx(conn: Connection) -> None:
            await bump_version(conn)
            row = await _require(conn, addr)
            await conn.execute(f"UPDATE accounts SET {column} = $1 WHERE id = $2", value, row["id"])

        await self._db.transaction(tx)

    async def set_licensed(self, address: str, licensed: bool, max_seats: int) -> None:
        addr = address.strip().lower()

        async def tx(conn: Connection) -> None:
            await bump_version(conn)
            row = await _require(conn, addr)
            if row["kind"] != AccountKind.USER:
                raise Conflict(f"{addr} is a {row['kind']} account; only users take a licence")
            if row["licensed"] == licensed:
                return
            if licensed:
                await _check_seat(conn, max_seats)
            await conn.execute("UPDATE accounts SET licensed = $1 WHERE id = $2", licensed, row["id"])

        await self._db.transaction(tx)

    async def count_licensed(self) -> int:
        return int(await self._db.fetchval("SELECT count(*) FROM accounts WHERE licensed"))

    async def update_settings(self, address: str, changes: dict[str, Any]) -> Account:
        addr = address.strip().lower()

        async def tx(conn: Connection) -> Account:
            await bump_version(conn)
            row = await _require(conn, addr)
            settings = json.loads(row["settings"])
            for key, value in changes.items():
                if value is None:
                    settings.pop(key, None)
                else:
                    settings[key] = value
            new = await conn.fetchrow(
                f"UPDATE accounts SET settings = $1 WHERE id = $2 RETURNING {_ACCOUNT_COLUMNS}",
                json.dumps(settings), row["id"],
            )
            return account_from_row(new)

        return await self._db.transaction(tx)

    # -- aliases

    async def add_alias(self, alias: str, target: str) -> None:
        name = normalize_address(alias)
        tgt = target.strip().lower()

        async def tx(conn: Connection) -> None:
            await bump_version(conn)
            domain = await _require_domain(conn, name)
            if await _address_taken(conn, name):
                raise AlreadyExists(f"{name} is already an address or alias")
            row = await _resolve(conn, tgt)  # an alias of an alias points at the final account
            if row is None:
                raise NotFound(f"no account {tgt}")
            await conn.execute(
                "INSERT INTO aliases (alias, domain, target_id) VALUES ($1, $2, $3)",
                name, domain, row["id"],
            )

        await self._db.transaction(tx)

    async def remove_alias(self, alias: str) -> None:
        name = alias.strip().lower()

        async def tx(conn: Connection) -> None:
            await bump_version(conn)
            if await conn.fetchval("DELETE FROM aliases WHERE alias = $1 RETURNING 1", name) is None:
                raise NotFound(f"no alias {name}")

        await self._db.transaction(tx)

    async def list_aliases(self, target: str | None = None) -> list[Alias]:
        sql = "SELECT l.alias, a.address FROM aliases l JOIN accounts a ON a.id = l.target_id"
        if target is None:
            rows = await self._db.fetch(sql + " ORDER BY l.alias")
        else:
            rows = await self._db.fetch(sql + " WHERE a.address = $1 ORDER BY l.alias", target.strip().lower())
        return [Alias(alias=r[0], target=r[1]) for r in rows]

    # -- grants

    async def grant(self, mailbox: str, user: str, rights: Iterable[Right]) -> frozenset[Right]:
        return await self._change_rights(mailbox, user, frozenset(Right(r) for r in rights), add=True)

    async def revoke(self, mailbox: str, user: str, rights: Iterable[Right]) -> frozenset[Right]:
        return await self._change_rights(mailbox, user, frozenset(Right(r) for r in rights), add=False)

    async def _change_rights(
        self, mailbox: str, user: str, rights: frozenset[Right], *, add: bool
    ) -> frozenset[Right]:
        mbox_addr = mailbox.strip().lower()
        user_addr = user.strip().lower()

        async def tx(conn: Connection) -> frozenset[Right]:
            await bump_version(conn)
            mbox = await _require(conn, mbox_addr, "mailbox")
            usr = await _require(conn, user_addr, "user")
            if add:
                if mbox["kind"] not in _GRANTABLE_KINDS:
                    raise Conflict(
                        f"{mbox_addr} is a {mbox['kind']} account; rights are granted on"
                        " shared mailboxes, rooms and lists"
                    )
                if usr["kind"] != AccountKind.USER:
                    raise Conflict(f"{user_addr} is a {usr['kind']} account; rights go to users only")
            row = await conn.fetchrow(
                "SELECT full_access, send_as, send_on_behalf FROM grants"
                " WHERE mailbox_id = $1 AND user_id = $2",
                mbox["id"], usr["id"],
            )
            current: frozenset[Right] = frozenset() if row is None else _rights_from_row(row)
            new = current | rights if add else current - rights
            if new == current:
                return current
            if new:
                await conn.execute(
                    "INSERT INTO grants (mailbox_id, user_id, full_access, send_as, send_on_behalf)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (mailbox_id, user_id) DO UPDATE SET"
                    " full_access = excluded.full_access, send_as = excluded.send_as,"
                    " send_on_behalf = excluded.send_on_behalf",
                    mbox["id"], usr["id"], Right.FULL_ACCESS in new, Right.SEND_AS in new,
                    Right.SEND_ON_BEHALF in new,
                )
            else:
                await conn.execute(
                    "DELETE FROM grants WHERE mailbox_id = $1 AND user_id = $2", mbox["id"], usr["id"]
                )
            return new

        return await self._db.transaction(tx)

    async def rights(self, mailbox: str, user: str) -> frozenset[Right]:
        row = await self._db.fetchrow(
            "SELECT g.full_access, g.send_as, g.send_on_behalf FROM grants g"
            " JOIN accounts m ON m.id = g.mailbox_id JOIN accounts u ON u.id = g.user_id"
            " WHERE m.address = $1 AND u.address = $2",
            mailbox.strip().lower(), user.strip().lower(),
        )
        return frozenset() if row is None else _rights_from_row(row)

    _GRANTS_SQL = (
        "SELECT m.address AS mailbox, u.address AS user, g.full_access, g.send_as,"
        " g.send_on_behalf FROM grants g JOIN accounts m ON m.id = g.mailbox_id"
        " JOIN accounts u ON u.id = g.user_id"
    )

    async def grants_on(self, mailbox: str) -> list[Grant]:
        rows = await self._db.fetch(
            self._GRANTS_SQL + " WHERE m.address = $1 ORDER BY u.address", mailbox.strip().lower()
        )
        return [Grant(r["mailbox"], r["user"], _rights_from_row(r)) for r in rows]

    async def grants_of(self, user: str) -> list[Grant]:
        rows = await self._db.fetch(
            self._GRANTS_SQL + " WHERE u.address = $1 ORDER BY m.address", user.strip().lower()
        )
        return [Grant(r["mailbox"], r["user"], _rights_from_row(r)) for r in rows]

    # -- list members

    async def add_members(self, list_address: str, members: Sequence[str]) -> None:
        list_addr = list_address.strip().lower()
        new = [normalize_address(m) for m in members]

        async def tx(conn: Connection) -> None:
            await bump_version(conn)
            lst = await _require(conn, list_addr, "list")
            if lst["kind"] != AccountKind.LIST:
                raise Conflict(f"{list_addr} is a {lst['kind']} account, not a distribution list")
            for member in new:
                target = await _resolve(conn, member)
                if target is not None and target["id"] == lst["id"]:
                    raise Conflict(f"list {list_addr} cannot contain itself ({member})")
                if lst["id"] in await _lists_reachable(conn, member):
                    raise Conflict(
                        f"adding {member} to {list_addr} would make a loop: {member}"
                        f" already contains {list_addr} through nested lists"
                    )
                if await conn.fetchval(
                    "SELECT 1 FROM list_members WHERE list_id = $1 AND member = $2", lst["id"], member
                ):
                    raise AlreadyExists(f"{member} is already a member of {list_addr}")
                await conn.execute(
                    "INSERT INTO list_members (list_id, member) VALUES ($1, $2)", lst["id"], member
                )

        await self._db.transaction(tx)

    async def remove_members(self, list_address: str, members: Sequence[str]) -> None:
        list_addr = list_address.strip().lower()
        gone = [m.strip().lower() for m in members]

        async def tx(conn: Connection) -> None:
            await bump_version(conn)
            lst = await _require(conn, list_addr, "list")
            if lst["kind"] != AccountKind.LIST:
                raise NotFound(f"no list {list_addr} ({list_addr} is a {lst['kind']} account)")
            for member in gone:
                done = await conn.fetchval(
                    "DELETE FROM list_members WHERE list_id = $1 AND member = $2 RETURNING 1",
                    lst["id"], member,
                )
                if done is None:
                    raise NotFound(f"{member} is not a member of {list_addr}")

        await self._db.transaction(tx)

    async def members(self, list_address: str) -> list[str]:
        rows = await self._db.fetch(
            "SELECT lm.member FROM list_members lm JOIN accounts a ON a.id = lm.list_id"
            " WHERE a.address = $1 ORDER BY lm.seq",
            list_address.strip().lower(),
        )
        return [r[0] for r in rows]

    async def lists_containing(self, address: str) -> list[str]:
        rows = await self._db.fetch(
            "SELECT a.address FROM list_members lm JOIN accounts a ON a.id = lm.list_id"
            " WHERE lm.member = $1 ORDER BY a.address",
            address.strip().lower(),
        )
        return [r[0] for r in rows]
