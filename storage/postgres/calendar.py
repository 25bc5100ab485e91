"""Calendars, task lists and address books on PostgreSQL (:class:`storage.interfaces.CalendarStore`).

Same layout as the SQLite backend; busy intervals are ``timestamptz`` (whole seconds,
as in SQLite), replaced in the same transaction as the item's text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from storage.errors import AlreadyExists, Conflict, NotFound
from storage.postgres.db import Connection, Db, Record
from storage.sqlite.util import now_utc
from storage.types import (
    DEFAULT_COLLECTIONS,
    BusyInterval,
    CalendarCollection,
    CalendarItem,
    CollectionKind,
)

_COLLECTION_COLUMNS = "id, account_id, name, kind, props, modified"
_ITEM_COLUMNS = "collection_id, href, uid, text, etag, modified"


def _utc(value: datetime) -> datetime:
    """UTC, whole seconds (the precision both backends keep)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def _collection(row: Record) -> CalendarCollection:
    return CalendarCollection(
        id=row["id"],
        account_id=row["account_id"],
        name=row["name"],
        kind=CollectionKind(row["kind"]),
        props=json.loads(row["props"]),
        modified=row["modified"],
    )


def _item(row: Record) -> CalendarItem:
    return CalendarItem(
        collection_id=row["collection_id"],
        href=row["href"],
        uid=row["uid"],
        text=row["text"],
        etag=row["etag"],
        modified=row["modified"],
    )


def etag_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PgCalendarStore:
    """:class:`storage.interfaces.CalendarStore` on PostgreSQL."""

    def __init__(self, db: Db) -> None:
        self._db = db

    # -- collections

    async def ensure_default_collections(self, account_id: int) -> list[CalendarCollection]:
        existing = await self.list_collections(account_id)
        names = {c.name for c in existing}
        if all(name in names for name, _ in DEFAULT_COLLECTIONS):
            return existing

        async def tx(conn: Connection) -> None:
            if await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1", account_id) is None:
                raise NotFound(f"no account with id {account_id}")
            await conn.execute(
                "INSERT INTO calendar_collections (account_id, name, kind, props, modified)"
                " SELECT $1, n, k, '{}', $4 FROM unnest($2::text[], $3::text[]) AS d(n, k)"
                " ON CONFLICT (account_id, name) DO NOTHING",
                account_id, [n for n, _ in DEFAULT_COLLECTIONS],
                [k.value for _, k in DEFAULT_COLLECTIONS], now_utc(),
            )

        await self._db.transaction(tx)
        return await self.list_collections(account_id)

    async def list_collections(self, account_id: int) -> list[CalendarCollection]:
        rows = await self._db.fetch(
            f"SELECT {_COLLECTION_COLUMNS} FROM calendar_collections WHERE account_id = $1"
            " ORDER BY name COLLATE \"C\"",
            account_id,
        )
        return [_collection(r) for r in rows]

    async def get_collection(self, account_id: int, name: str) -> CalendarCollection | None:
        row = await self._db.fetchrow(
            f"SELECT {_COLLECTION_COLUMNS} FROM calendar_collections WHERE account_id = $1 AND name = $2",
            account_id, name,
        )
        return None if row is None else _collection(row)

    async def create_collection(
        self, account_id: int, name: str, kind: CollectionKind, props: dict[str, str] | None = None
    ) -> CalendarCollection:
        async def tx(conn: Connection) -> CalendarCollection:
            if await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1", account_id) is None:
                raise NotFound(f"no account with id {account_id}")
            row = await conn.fetchrow(
                "INSERT INTO calendar_collections (account_id, name, kind, props, modified)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, name) DO NOTHING"
                f" RETURNING {_COLLECTION_COLUMNS}",
                account_id, name, CollectionKind(kind).value, json.dumps(props or {}), now_utc(),
            )
            if row is None:
                raise AlreadyExists(f"collection {name!r} already exists")
            return _collection(row)

        return await self._db.transaction(tx)

    async def set_collection_props(self, collection_id: int, props: dict[str, str]) -> CalendarCollection:
        async def tx(conn: Connection) -> CalendarCollection:
            row = await conn.fetchrow(
                "UPDATE calendar_collections SET props = $1, modified = $2 WHERE id = $3"
                f" RETURNING {_COLLECTION_COLUMNS}",
                json.dumps(props), now_utc(), collection_id,
            )
            if row is None:
                raise NotFound(f"no collection with id {collection_id}")
            return _collection(row)

        return await self._db.transaction(tx)

    async def delete_collection(self, collection_id: int) -> None:
        async def tx(conn: Connection) -> None:
            if await conn.fetchval(
                "DELETE FROM calendar_collections WHERE id = $1 RETURNING 1", collection_id
            ) is None:
                raise NotFound(f"no collection with id {collection_id}")

        await self._db.transaction(tx)

    # -- items

    async def list_items(self, collection_id: int) -> list[CalendarItem]:
        rows = await self._db.fetch(
            f"SELECT {_ITEM_COLUMNS} FROM calendar_items WHERE collection_id = $1 ORDER BY href COLLATE \"C\"",
            collection_id,
        )
        return [_item(r) for r in rows]

    async def get_items(self, collection_id: int, hrefs: Sequence[str]) -> list[CalendarItem]:
        rows = await self._db.fetch(
            f"SELECT {_ITEM_COLUMNS} FROM calendar_items WHERE collection_id = $1"
            " AND href = ANY ($2::text[]) ORDER BY href COLLATE \"C\"",
            collection_id, list(hrefs),
        )
        return [_item(r) for r in rows]

    async def get_item_by_uid(self, collection_id: int, uid: str) -> CalendarItem | None:
        row = await self._db.fetchrow(
            f"SELECT {_ITEM_COLUMNS} FROM calendar_items WHERE collection_id = $1 AND uid = $2",
            collection_id, uid,
        )
        return None if row is None else _item(row)

    async def put_item(
        self,
        collection_id: int,
        href: str,
        uid: str,
        text: str,
        busy: Sequence[BusyInterval] = (),
        *,
        replace_uid: bool = False,
    ) -> tuple[CalendarItem, CalendarItem | None]:
        etag = etag_of(text)
        intervals = [(_utc(b.start), _utc(b.end), b.tentative) for b in busy if b.end > b.start]

        async def tx(conn: Connection) -> tuple[CalendarItem, CalendarItem | None]:
            # The collection row lock orders concurrent writers of one collection (two
            # daemons booking the same room): the uid check below cannot race.
            if await conn.fetchval(
                "SELECT 1 FROM calendar_collections WHERE id = $1 FOR UPDATE", collection_id
            ) is None:
                raise NotFound(f"no collection with id {collection_id}")
            old_row = await conn.fetchrow(
                f"SELECT id, {_ITEM_COLUMNS} FROM calendar_items WHERE collection_id = $1 AND href = $2",
                collection_id, href,
            )
            same_uid = await conn.fetchrow(
                "SELECT id, href FROM calendar_items WHERE collection_id = $1 AND uid = $2 AND href <> $3",
                collection_id, uid, href,
            )
            if same_uid is not None:
                if not replace_uid:
                    raise Conflict(f"another item ({same_uid['href']}) has UID {uid!r}")
                await conn.execute("DELETE FROM calendar_items WHERE id = $1", same_uid["id"])
            now = now_utc()
            if old_row is None:
                row = await conn.fetchrow(
                    "INSERT INTO calendar_items (collection_id, href, uid, text, etag, modified)"
                    f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, {_ITEM_COLUMNS}",
                    collection_id, href, uid, text, etag, now,
                )
            else:
                row = await conn.fetchrow(
                    "UPDATE calendar_items SET uid = $1, text = $2, etag = $3, modified = $4"
                    f" WHERE id = $5 RETURNING id, {_ITEM_COLUMNS}",
                    uid, text, etag, now, old_row["id"],
                )
                await conn.execute("DELETE FROM calendar_busy WHERE item_id = $1", old_row["id"])
            if intervals:
                await conn.execute(
                    "INSERT INTO calendar_busy (item_id, collection_id, start_at, end_at, tentative)"
                    " SELECT $1, $2, s, e, t FROM unnest($3::timestamptz[], $4::timestamptz[],"
                    " $5::bool[]) AS b(s, e, t)",
                    row["id"], collection_id, [s for s, _, _ in intervals],
                    [e for _, e, _ in intervals], [t for _, _, t in intervals],
                )
            await conn.execute(
                "UPDATE calendar_collections SET modified = $1 WHERE id = $2", now, collection_id
            )
            return _item(row), None if old_row is None else _item(old_row)

        return await self._db.transaction(tx)

    async def delete_item(self, collection_id: int, href: str) -> CalendarItem | None:
        async def tx(conn: Connection) -> CalendarItem | None:
            row = await conn.fetchrow(
                f"DELETE FROM calendar_items WHERE collection_id = $1 AND href = $2 RETURNING {_ITEM_COLUMNS}",
                collection_id, href,
            )
            if row is None:
                return None
            await conn.execute(
                "UPDATE calendar_collections SET modified = $1 WHERE id = $2", now_utc(), collection_id
            )
            return _item(row)

        return await self._db.transaction(tx)

    async def busy(
        self, collection_id: int, start: datetime, end: datetime, *, exclude_uid: str | None = None
    ) -> list[BusyInterval]:
        rows = await self._db.fetch(
            "SELECT b.start_at, b.end_at, b.tentative, i.uid FROM calendar_busy b"
            " JOIN calendar_items i ON i.id = b.item_id"
            " WHERE b.collection_id = $1 AND b.start_at < $2 AND b.end_at > $3"
            " AND ($4::text IS NULL OR i.uid <> $4) ORDER BY b.start_at",
            collection_id, _utc(end), _utc(start), exclude_uid,
        )
        return [BusyInterval(r["start_at"], r["end_at"], r["uid"], r["tentative"]) for r in rows]
