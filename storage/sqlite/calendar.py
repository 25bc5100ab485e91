"""Calendars, task lists and address books on SQLite (:class:`storage.interfaces.CalendarStore`).

Items keep their iCalendar/vCard text as given; event items also keep their busy
intervals in ``calendar_busy`` (UTC text in one fixed format, so text order is time
order), written in the same transaction as the text.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

from storage.errors import AlreadyExists, Conflict, NotFound
from storage.sqlite.reader import Reader
from storage.sqlite.util import decode_date, encode_date, now_utc
from storage.sqlite.writer import Writer
from storage.types import (
    DEFAULT_COLLECTIONS,
    BusyInterval,
    CalendarCollection,
    CalendarItem,
    CollectionKind,
)

_COLLECTION_COLUMNS = "id, account_id, name, kind, props, modified"
_ITEM_COLUMNS = "collection_id, href, uid, text, etag, modified"


def _utc(value: datetime) -> str:
    """Fixed-width UTC text (``2024-05-01T09:00:00Z``): text order equals time order."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _collection(row: sqlite3.Row) -> CalendarCollection:
    return CalendarCollection(
        id=row["id"],
        account_id=row["account_id"],
        name=row["name"],
        kind=CollectionKind(row["kind"]),
        props=json.loads(row["props"]),
        modified=decode_date(row["modified"]),
    )


def _item(row: sqlite3.Row) -> CalendarItem:
    return CalendarItem(
        collection_id=row["collection_id"],
        href=row["href"],
        uid=row["uid"],
        text=row["text"],
        etag=row["etag"],
        modified=decode_date(row["modified"]),
    )


def etag_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SqliteCalendarStore:
    """Reads on the shared reader, writes through the writer thread."""

    def __init__(self, reader: Reader, writer: Writer) -> None:
        self._r = reader
        self._w = writer

    # -- collections

    async def ensure_default_collections(self, account_id: int) -> list[CalendarCollection]:
        def job(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
                raise NotFound(f"no account with id {account_id}")
            now = encode_date(now_utc())
            for name, kind in DEFAULT_COLLECTIONS:
                conn.execute(
                    "INSERT OR IGNORE INTO calendar_collections (account_id, name, kind, props, modified)"
                    " VALUES (?, ?, ?, '{}', ?)",
                    (account_id, name, kind.value, now),
                )

        existing = await self.list_collections(account_id)
        names = {c.name for c in existing}
        if all(name in names for name, _ in DEFAULT_COLLECTIONS):
            return existing
        await self._w.submit(job)
        return await self.list_collections(account_id)

    async def list_collections(self, account_id: int) -> list[CalendarCollection]:
        rows = await self._r.all(
            f"SELECT {_COLLECTION_COLUMNS} FROM calendar_collections WHERE account_id = ? ORDER BY name",
            (account_id,),
        )
        return [_collection(r) for r in rows]

    async def get_collection(self, account_id: int, name: str) -> CalendarCollection | None:
        row = await self._r.one(
            f"SELECT {_COLLECTION_COLUMNS} FROM calendar_collections WHERE account_id = ? AND name = ?",
            (account_id, name),
        )
        return None if row is None else _collection(row)

    async def create_collection(
        self, account_id: int, name: str, kind: CollectionKind, props: dict[str, str] | None = None
    ) -> CalendarCollection:
        def job(conn: sqlite3.Connection) -> CalendarCollection:
            if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
                raise NotFound(f"no account with id {account_id}")
            try:
                cur = conn.execute(
                    "INSERT INTO calendar_collections (account_id, name, kind, props, modified)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (account_id, name, kind.value, json.dumps(props or {}), encode_date(now_utc())),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"collection {name!r} already exists") from None
            row = conn.execute(
                f"SELECT {_COLLECTION_COLUMNS} FROM calendar_collections WHERE id = ?", (cur.lastrowid,)
            ).fetchone()
            return _collection(row)

        return await self._w.submit(job)

    async def set_collection_props(self, collection_id: int, props: dict[str, str]) -> CalendarCollection:
        def job(conn: sqlite3.Connection) -> CalendarCollection:
            cur = conn.execute(
                "UPDATE calendar_collections SET props = ?, modified = ? WHERE id = ?",
                (json.dumps(props), encode_date(now_utc()), collection_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no collection with id {collection_id}")
            row = conn.execute(
                f"SELECT {_COLLECTION_COLUMNS} FROM calendar_collections WHERE id = ?", (collection_id,)
            ).fetchone()
            return _collection(row)

        return await self._w.submit(job)

    async def delete_collection(self, collection_id: int) -> None:
        def job(conn: sqlite3.Connection) -> None:
            cur = conn.execute("DELETE FROM calendar_collections WHERE id = ?", (collection_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no collection with id {collection_id}")

        await self._w.submit(job)

    # -- items

    async def list_items(self, collection_id: int) -> list[CalendarItem]:
        rows = await self._r.all(
            f"SELECT {_ITEM_COLUMNS} FROM calendar_items WHERE collection_id = ? ORDER BY href",
            (collection_id,),
        )
        return [_item(r) for r in rows]

    async def get_items(self, collection_id: int, hrefs: Sequence[str]) -> list[CalendarItem]:
        rows = await self._r.all(
            f"SELECT {_ITEM_COLUMNS} FROM calendar_items WHERE collection_id = ?"
            " AND href IN (SELECT value FROM json_each(?)) ORDER BY href",
            (collection_id, json.dumps(list(hrefs))),
        )
        return [_item(r) for r in rows]

    async def get_item_by_uid(self, collection_id: int, uid: str) -> CalendarItem | None:
        row = await self._r.one(
            f"SELECT {_ITEM_COLUMNS} FROM calendar_items WHERE collection_id = ? AND uid = ?",
            (collection_id, uid),
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
        intervals = [(_utc(b.start), _utc(b.end), int(b.tentative)) for b in busy if b.end > b.start]

        def job(conn: sqlite3.Connection) -> tuple[CalendarItem, CalendarItem | None]:
            if conn.execute("SELECT 1 FROM calendar_collections WHERE id = ?", (collection_id,)).fetchone() is None:
                raise NotFound(f"no collection with id {collection_id}")
            old_row = conn.execute(
                f"SELECT id, {_ITEM_COLUMNS} FROM calendar_items WHERE collection_id = ? AND href = ?",
                (collection_id, href),
            ).fetchone()
            same_uid = conn.execute(
                "SELECT id, href FROM calendar_items WHERE collection_id = ? AND uid = ? AND href != ?",
                (collection_id, uid, href),
            ).fetchone()
            if same_uid is not None:
                if not replace_uid:
                    raise Conflict(f"another item ({same_uid['href']}) has UID {uid!r}")
                conn.execute("DELETE FROM calendar_items WHERE id = ?", (same_uid["id"],))
            now = encode_date(now_utc())
            if old_row is None:
                cur = conn.execute(
                    "INSERT INTO calendar_items (collection_id, href, uid, text, etag, modified)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (collection_id, href, uid, text, etag, now),
                )
                item_id = cur.lastrowid
            else:
                item_id = old_row["id"]
                conn.execute(
                    "UPDATE calendar_items SET uid = ?, text = ?, etag = ?, modified = ? WHERE id = ?",
                    (uid, text, etag, now, item_id),
                )
                conn.execute("DELETE FROM calendar_busy WHERE item_id = ?", (item_id,))
            conn.executemany(
                "INSERT INTO calendar_busy (item_id, collection_id, start, end, tentative)"
                " VALUES (?, ?, ?, ?, ?)",
                [(item_id, collection_id, s, e, t) for s, e, t in intervals],
            )
            conn.execute("UPDATE calendar_collections SET modified = ? WHERE id = ?", (now, collection_id))
            row = conn.execute(f"SELECT {_ITEM_COLUMNS} FROM calendar_items WHERE id = ?", (item_id,)).fetchone()
            return _item(row), None if old_row is None else _item(old_row)

        return await self._w.submit(job)

    async def delete_item(self, collection_id: int, href: str) -> CalendarItem | None:
        def job(conn: sqlite3.Connection) -> CalendarItem | None:
            row = conn.execute(
                f"SELECT id, {_ITEM_COLUMNS} FROM calendar_items WHERE collection_id = ? AND href = ?",
                (collection_id, href),
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM calendar_items WHERE id = ?", (row["id"],))
            conn.execute(
                "UPDATE calendar_collections SET modified = ? WHERE id = ?",
                (encode_date(now_utc()), collection_id),
            )
            return _item(row)

        return await self._w.submit(job)

    async def busy(
        self, collection_id: int, start: datetime, end: datetime, *, exclude_uid: str | None = None
    ) -> list[BusyInterval]:
        rows = await self._r.all(
            "SELECT b.start, b.end, b.tentative, i.uid FROM calendar_busy b"
            " JOIN calendar_items i ON i.id = b.item_id"
            " WHERE b.collection_id = ? AND b.start < ? AND b.end > ? AND (? IS NULL OR i.uid != ?)"
            " ORDER BY b.start",
            (collection_id, _utc(end), _utc(start), exclude_uid, exclude_uid),
        )
        return [
            BusyInterval(_from_utc(r["start"]), _from_utc(r["end"]), r["uid"], bool(r["tentative"]))
            for r in rows
        ]
