"""Directory (domains, accounts, aliases, grants, list members, licences) on SQLite.

Every change is one write job on the writer thread and bumps ``directory_version`` in
the same transaction, so any process can notice it with one cheap read.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from storage.errors import AlreadyExists, Conflict, NotFound, SeatsExhausted, StorageError
from storage.sqlite.reader import Reader
from storage.sqlite.util import decode_date, domain_of, encode_date, normalize_address, now_utc
from storage.sqlite.writer import Writer
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
#: Kinds that may hold rights granted to users.
_GRANTABLE_KINDS = frozenset({AccountKind.SHARED, AccountKind.ROOM, AccountKind.LIST})
_RIGHT_COLUMNS = {
    Right.FULL_ACCESS: "full_access",
    Right.SEND_AS: "send_as",
    Right.SEND_ON_BEHALF: "send_on_behalf",
}


def account_from_row(row: sqlite3.Row) -> Account:
    return Account(
        id=row["id"],
        address=row["address"],
        kind=AccountKind(row["kind"]),
        display_name=row["display_name"],
        enabled=bool(row["enabled"]),
        licensed=bool(row["licensed"]),
        password_hash=row["password_hash"],
        settings=json.loads(row["settings"]),
        created=decode_date(row["created"]),
    )


def _rights_from_row(row: sqlite3.Row) -> frozenset[Right]:
    return frozenset(r for r, col in _RIGHT_COLUMNS.items() if row[col])


def bump_version(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'directory_version'")


def next_uidvalidity(conn: sqlite3.Connection) -> int:
    """A UIDVALIDITY never given before in this database (RFC 3501 §2.3.1.1).

    Seconds since the epoch, or the last value + 1 when that is not larger: strictly
    increasing, so a folder deleted and re-created never sees its old value again.
    """
    last = conn.execute("SELECT value FROM meta WHERE key = 'last_uidvalidity'").fetchone()[0]
    value = max(int(now_utc().timestamp()), int(last) + 1)
    if value > 0xFFFFFFFF:  # RFC 3501 nz-number is 32-bit
        raise StorageError("UIDVALIDITY space exhausted")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'last_uidvalidity'", (value,))
    return value


def _get(conn: sqlite3.Connection, address: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE address = ?", (address,)
    ).fetchone()
    return row


def _require(conn: sqlite3.Connection, address: str, what: str = "account") -> sqlite3.Row:
    row = _get(conn, address)
    if row is None:
        raise NotFound(f"no {what} {address}")
    return row


def _resolve(conn: sqlite3.Connection, address: str) -> sqlite3.Row | None:
    row = _get(conn, address)
    if row is None:
        row = conn.execute(
            f"SELECT {', '.join('a.' + c.strip() for c in _ACCOUNT_COLUMNS.split(','))} "
            "FROM aliases l JOIN accounts a ON a.id = l.target_id WHERE l.alias = ?",
            (address,),
        ).fetchone()
    return row


def _address_taken(conn: sqlite3.Connection, address: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM accounts WHERE address = ? UNION ALL SELECT 1 FROM aliases WHERE alias = ?",
            (address, address),
        ).fetchone()
        is not None
    )


def _require_domain(conn: sqlite3.Connection, address: str) -> str:
    domain = domain_of(address)
    if conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone() is None:
        raise NotFound(f"domain {domain} is not a local domain")
    return domain


def _count_licensed(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM accounts WHERE licensed = 1").fetchone()[0])


def _check_seat(conn: sqlite3.Connection, max_seats: int) -> None:
    used = _count_licensed(conn)
    if used >= max_seats:
        raise SeatsExhausted(f"all {max_seats} licence seats are in use ({used} licensed users)")


def _lists_reachable(conn: sqlite3.Connection, start: str) -> set[int]:
    """Ids of the lists reachable from ``start`` (the list it names and nested lists)."""
    seen: set[int] = set()
    todo = [start]
    while todo:
        row = _resolve(conn, todo.pop())
        if row is None or row["kind"] != AccountKind.LIST or row["id"] in seen:
            continue
        seen.add(row["id"])
        todo.extend(
            r[0]
            for r in conn.execute("SELECT member FROM list_members WHERE list_id = ?", (row["id"],))
        )
    return seen


class SqliteDirectory:
    """:class:`storage.interfaces.Directory` on SQLite."""

    def __init__(self, reader: Reader, writer: Writer) -> None:
        self._r = reader
        self._w = writer

    async def version(self) -> int:
        # A point read without a thread hop: callers check it on every transaction.
        value = await self._r.scalar_now("SELECT value FROM meta WHERE key = 'directory_version'")
        assert value is not None
        return int(value)

    # -- domains

    async def add_domain(self, name: str) -> None:
        domain = name.strip().lower()
        if not domain or "@" in domain:
            raise StorageError(f"{name!r} is not a domain name")

        def job(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone():
                raise AlreadyExists(f"domain {domain} already exists")
            conn.execute("INSERT INTO domains (name) VALUES (?)", (domain,))
            bump_version(conn)

        await self._w.submit(job)

    async def remove_domain(self, name: str) -> None:
        domain = name.strip().lower()

        def job(conn: sqlite3.Connection) -> None:
            if not conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone():
                raise NotFound(f"no domain {domain}")
            accounts = conn.execute(
                "SELECT count(*) FROM accounts WHERE domain = ?", (domain,)
            ).fetchone()[0]
            aliases = conn.execute(
                "SELECT count(*) FROM aliases WHERE domain = ?", (domain,)
            ).fetchone()[0]
            if accounts or aliases:
                raise Conflict(
                    f"domain {domain} still has {accounts} account(s) and {aliases} alias(es)"
                )
            conn.execute("DELETE FROM domains WHERE name = ?", (domain,))
            bump_version(conn)

        await self._w.submit(job)

    async def list_domains(self) -> list[str]:
        return [r[0] for r in await self._r.all("SELECT name FROM domains ORDER BY name")]

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
        created = encode_date(now_utc())

        def job(conn: sqlite3.Connection) -> Account:
            domain = _require_domain(conn, addr)
            if _address_taken(conn, addr):
                raise AlreadyExists(f"address {addr} already exists (account or alias)")
            if kind != AccountKind.USER and licensed:
                raise Conflict(f"only users take a licence; {addr} would be a {kind} account")
            if kind != AccountKind.USER and password_hash is not None:
                raise Conflict(f"only users have a password; {addr} would be a {kind} account")
            if licensed and max_seats is not None:
                _check_seat(conn, max_seats)
            cur = conn.execute(
                "INSERT INTO accounts (address, domain, kind, display_name, licensed,"
                " password_hash, settings, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (addr, domain, str(kind), display_name, int(licensed), password_hash,
                 settings_json, created),
            )
            account_id = cur.lastrowid
            if kind in MAILBOX_KINDS:
                for name, special in DEFAULT_FOLDERS:
                    conn.execute(
                        "INSERT INTO folders (account_id, name, uidvalidity, special_use,"
                        " subscribed) VALUES (?, ?, ?, ?, 1)",
                        (account_id, name, next_uidvalidity(conn),
                         None if special is None else str(special)),
                    )
            bump_version(conn)
            return account_from_row(_require(conn, addr))

        return await self._w.submit(job)

    async def get_account(self, address: str) -> Account | None:
        row = await self._r.one(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE address = ?", (address.strip().lower(),)
        )
        return None if row is None else account_from_row(row)

    async def get_account_by_id(self, account_id: int) -> Account | None:
        row = await self._r.one(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,))
        return None if row is None else account_from_row(row)

    async def resolve(self, address: str) -> Account | None:
        addr = address.strip().lower()
        row = await self._r.one(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE address = ?1 OR id ="
            " (SELECT target_id FROM aliases WHERE alias = ?1) ORDER BY address = ?1 DESC LIMIT 1",
            (addr,),
        )
        return None if row is None else account_from_row(row)

    async def list_accounts(self, kind: AccountKind | None = None) -> list[Account]:
        if kind is None:
            rows = await self._r.all(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY address")
        else:
            rows = await self._r.all(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE kind = ? ORDER BY address",
                (str(AccountKind(kind)),),
            )
        return [account_from_row(r) for r in rows]

    async def remove_account(self, address: str) -> None:
        addr = address.strip().lower()

        def job(conn: sqlite3.Connection) -> None:
            row = _require(conn, addr)
            names = [addr] + [
                r[0]
                for r in conn.execute("SELECT alias FROM aliases WHERE target_id = ?", (row["id"],))
            ]
            conn.executemany("DELETE FROM list_members WHERE member = ?", [(n,) for n in names])
            # Aliases, grants, folders (and through them messages and unreferenced
            # blobs) and the list's own members go by ON DELETE CASCADE and triggers.
            conn.execute("DELETE FROM accounts WHERE id = ?", (row["id"],))
            bump_version(conn)

        await self._w.submit(job)

    async def set_password_hash(self, address: str, password_hash: str | None) -> None:
        addr = address.strip().lower()

        def job(conn: sqlite3.Connection) -> None:
            row = _require(conn, addr)
            if row["kind"] != AccountKind.USER:
                raise Conflict(f"{addr} is a {row['kind']} account; only users have a password")
            conn.execute(
                "UPDATE accounts SET password_hash = ? WHERE id = ?", (password_hash, row["id"])
            )
            bump_version(conn)

        await self._w.submit(job)

    async def set_enabled(self, address: str, enabled: bool) -> None:
        await self._update_column(address, "enabled", int(enabled))

    async def set_display_name(self, address: str, display_name: str) -> None:
        await self._update_column(address, "display_name", display_name)

    async def _update_column(self, address: str, column: str, value: Any) -> None:
        addr = address.strip().lower()

        def job(conn: sqlite3.Connection) -> None:
            row = _require(conn, addr)
            conn.execute(f"UPDATE accounts SET {column} = ? WHERE id = ?", (value, row["id"]))
            bump_version(conn)

        await self._w.submit(job)

    async def set_licensed(self, address: str, licensed: bool, max_seats: int) -> None:
        addr = address.strip().lower()

        def job(conn: sqlite3.Connection) -> None:
            row = _require(conn, addr)
            if row["kind"] != AccountKind.USER:
                raise Conflict(f"{addr} is a {row['kind']} account; only users take a licence")
            if bool(row["licensed"]) == licensed:
                return
            if licensed:
                _check_seat(conn, max_seats)
            conn.execute("UPDATE accounts SET licensed = ? WHERE id = ?", (int(licensed), row["id"]))
            bump_version(conn)

        await self._w.submit(job)

    async def count_licensed(self) -> int:
        row = await self._r.one("SELECT count(*) FROM accounts WHERE licensed = 1")
        assert row is not None
        return int(row[0])

    async def update_settings(self, address: str, changes: dict[str, Any]) -> Account:
        addr = address.strip().lower()

        def job(conn: sqlite3.Connection) -> Account:
            row = _require(conn, addr)
            settings = json.loads(row["settings"])
            for key, value in changes.items():
                if value is None:
                    settings.pop(key, None)
                else:
                    settings[key] = value
            conn.execute(
                "UPDATE accounts SET settings = ? WHERE id = ?", (json.dumps(settings), row["id"])
            )
            bump_version(conn)
            return account_from_row(_require(conn, addr))

        return await self._w.submit(job)

    # -- aliases

    async def add_alias(self, alias: str, target: str) -> None:
        name = normalize_address(alias)
        tgt = target.strip().lower()

        def job(conn: sqlite3.Connection) -> None:
            domain = _require_domain(conn, name)
            if _address_taken(conn, name):
                raise AlreadyExists(f"{name} is already an address or alias")
            row = _resolve(conn, tgt)  # an alias of an alias points at the final account
            if row is None:
                raise NotFound(f"no account {tgt}")
            conn.execute(
                "INSERT INTO aliases (alias, domain, target_id) VALUES (?, ?, ?)",
                (name, domain, row["id"]),
            )
            bump_version(conn)

        await self._w.submit(job)

    async def remove_alias(self, alias: str) -> None:
        name = alias.strip().lower()

        def job(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM aliases WHERE alias = ?", (name,)).rowcount == 0:
                raise NotFound(f"no alias {name}")
            bump_version(conn)

        await self._w.submit(job)

    async def list_aliases(self, target: str | None = None) -> list[Alias]:
        sql = "SELECT l.alias, a.address FROM aliases l JOIN accounts a ON a.id = l.target_id"
        if target is None:
            rows = await self._r.all(sql + " ORDER BY l.alias")
        else:
            rows = await self._r.all(
                sql + " WHERE a.address = ? ORDER BY l.alias", (target.strip().lower(),)
            )
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

        def job(conn: sqlite3.Connection) -> frozenset[Right]:
            mbox = _require(conn, mbox_addr, "mailbox")
            usr = _require(conn, user_addr, "user")
            if add:
                if mbox["kind"] not in _GRANTABLE_KINDS:
                    raise Conflict(
                        f"{mbox_addr} is a {mbox['kind']} account; rights are granted on"
                        " shared mailboxes, rooms and lists"
                    )
                if usr["kind"] != AccountKind.USER:
                    raise Conflict(
                        f"{user_addr} is a {usr['kind']} account; rights go to users only"
                    )
            row = conn.execute(
                "SELECT full_access, send_as, send_on_behalf FROM grants"
                " WHERE mailbox_id = ? AND user_id = ?",
                (mbox["id"], usr["id"]),
            ).fetchone()
            current = frozenset() if row is None else _rights_from_row(row)
            new = current | rights if add else current - rights
            if new == current:
                return current
            if new:
                cols = {col: int(r in new) for r, col in _RIGHT_COLUMNS.items()}
                conn.execute(
                    "INSERT INTO grants (mailbox_id, user_id, full_access, send_as, send_on_behalf)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (mailbox_id, user_id) DO UPDATE SET"
                    " full_access = excluded.full_access, send_as = excluded.send_as,"
                    " send_on_behalf = excluded.send_on_behalf",
                    (mbox["id"], usr["id"], cols["full_access"], cols["send_as"],
                     cols["send_on_behalf"]),
                )
            else:
                conn.execute(
                    "DELETE FROM grants WHERE mailbox_id = ? AND user_id = ?", (mbox["id"], usr["id"])
                )
            bump_version(conn)
            return new

        return await self._w.submit(job)

    async def rights(self, mailbox: str, user: str) -> frozenset[Right]:
        row = await self._r.one(
            "SELECT g.full_access, g.send_as, g.send_on_behalf FROM grants g"
            " JOIN accounts m ON m.id = g.mailbox_id JOIN accounts u ON u.id = g.user_id"
            " WHERE m.address = ? AND u.address = ?",
            (mailbox.strip().lower(), user.strip().lower()),
        )
        return frozenset() if row is None else _rights_from_row(row)

    _GRANTS_SQL = (
        "SELECT m.address AS mailbox, u.address AS user, g.full_access, g.send_as,"
        " g.send_on_behalf FROM grants g JOIN accounts m ON m.id = g.mailbox_id"
        " JOIN accounts u ON u.id = g.user_id"
    )

    async def grants_on(self, mailbox: str) -> list[Grant]:
        rows = await self._r.all(
            self._GRANTS_SQL + " WHERE m.address = ? ORDER BY u.address", (mailbox.strip().lower(),)
        )
        return [Grant(r["mailbox"], r["user"], _rights_from_row(r)) for r in rows]

    async def grants_of(self, user: str) -> list[Grant]:
        rows = await self._r.all(
            self._GRANTS_SQL + " WHERE u.address = ? ORDER BY m.address", (user.strip().lower(),)
        )
        return [Grant(r["mailbox"], r["user"], _rights_from_row(r)) for r in rows]

    # -- list members

    async def add_members(self, list_address: str, members: Sequence[str]) -> None:
        list_addr = list_address.strip().lower()
        new = [normalize_address(m) for m in members]

        def job(conn: sqlite3.Connection) -> None:
            lst = _require(conn, list_addr, "list")
            if lst["kind"] != AccountKind.LIST:
                raise Conflict(f"{list_addr} is a {lst['kind']} account, not a distribution list")
            for member in new:
                target = _resolve(conn, member)
                if target is not None and target["id"] == lst["id"]:
                    raise Conflict(f"list {list_addr} cannot contain itself ({member})")
                if lst["id"] in _lists_reachable(conn, member):
                    raise Conflict(
                        f"adding {member} to {list_addr} would make a loop: {member}"
                        f" already contains {list_addr} through nested lists"
                    )
                if conn.execute(
                    "SELECT 1 FROM list_members WHERE list_id = ? AND member = ?",
                    (lst["id"], member),
                ).fetchone():
                    raise AlreadyExists(f"{member} is already a member of {list_addr}")
                conn.execute(
                    "INSERT INTO list_members (list_id, member) VALUES (?, ?)", (lst["id"], member)
                )
            bump_version(conn)

        await self._w.submit(job)

    async def remove_members(self, list_address: str, members: Sequence[str]) -> None:
        list_addr = list_address.strip().lower()
        gone = [m.strip().lower() for m in members]

        def job(conn: sqlite3.Connection) -> None:
            lst = _require(conn, list_addr, "list")
            if lst["kind"] != AccountKind.LIST:
                raise NotFound(f"no list {list_addr} ({list_addr} is a {lst['kind']} account)")
            for member in gone:
                cur = conn.execute(
                    "DELETE FROM list_members WHERE list_id = ? AND member = ?", (lst["id"], member)
                )
                if cur.rowcount == 0:
                    raise NotFound(f"{member} is not a member of {list_addr}")
            bump_version(conn)

        await self._w.submit(job)

    async def members(self, list_address: str) -> list[str]:
        rows = await self._r.all(
            "SELECT lm.member FROM list_members lm JOIN accounts a ON a.id = lm.list_id"
            " WHERE a.address = ? ORDER BY lm.seq",
            (list_address.strip().lower(),),
        )
        return [r[0] for r in rows]

    async def lists_containing(self, address: str) -> list[str]:
        rows = await self._r.all(
            "SELECT a.address FROM list_members lm JOIN accounts a ON a.id = lm.list_id"
            " WHERE lm.member = ? ORDER BY a.address",
            (address.strip().lower(),),
        )
        return [r[0] for r in rows]
