"""Copy an embedded SQLite store into a PostgreSQL database, keeping every identifier.

Accounts, aliases, grants, list members, folders (UIDVALIDITY, UIDNEXT,
HIGHESTMODSEQ), messages (UIDs, flags, modseqs, internal dates), bodies with their
IMAP index, the outbound queue and calendars arrive unchanged, so IMAP clients keep
their caches. Row ids are kept too (and the identity sequences moved past them).

Everything is written in one PostgreSQL transaction: a failed or interrupted copy
leaves the target as it was. Folder counters (messages, unseen) are recomputed by the
target's triggers from the copied messages rather than trusted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from storage.errors import Conflict, StorageError
from storage.postgres.db import Connection, translate
from storage.postgres.store import PgStore, redact
from storage.sqlite import SqliteStore

Progress = Callable[[str], None]

#: Rows per COPY batch; bodies are batched by size as well (BODY_BATCH_BYTES), so a
#: store of large messages never holds more than that in memory at once.
ROW_BATCH = 5000
BODY_BATCH_BYTES = 32 * 1024 * 1024


def _dt(text: str | None) -> datetime | None:
    if text is None:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _b(value: Any) -> bool:
    return bool(value)


def _same(value: Any) -> Any:
    return value


# (sqlite table, postgres table, [(column, converter)]). Every column of the SQLite
# table must be listed (checked at copy time), so a schema step added later cannot be
# silently left behind.
_TABLES: list[tuple[str, str, list[tuple[str, Callable[[Any], Any]]]]] = [
    ("domains", "domains", [("name", _same)]),
    ("accounts", "accounts", [
        ("id", _same), ("address", _same), ("domain", _same), ("kind", _same),
        ("display_name", _same), ("enabled", _b), ("licensed", _b), ("password_hash", _same),
        ("settings", _same), ("created", _dt),
    ]),
    ("aliases", "aliases", [("alias", _same), ("domain", _same), ("target_id", _same)]),
    ("grants", "grants", [
        ("mailbox_id", _same), ("user_id", _same), ("full_access", _b), ("send_as", _b),
        ("send_on_behalf", _b),
    ]),
    ("list_members", "list_members", [("seq", _same), ("list_id", _same), ("member", _same)]),
    # messages/unseen start at 0: the target's triggers count the copied messages.
    ("folders", "folders", [
        ("id", _same), ("account_id", _same), ("name", _same), ("uidvalidity", _same),
        ("uidnext", _same), ("highestmodseq", _same), ("special_use", _same),
        ("subscribed", _b), ("messages", lambda _v: 0), ("unseen", lambda _v: 0),
    ]),
    ("blobs", "blobs", [("id", _same), ("size", _same), ("index_json", _same)]),
    ("messages", "messages", [
        ("folder_id", _same), ("uid", _same), ("blob_id", _same), ("flags", _same),
        ("seen", _b), ("deleted", _b), ("internal_date", _same), ("modseq", _same),
    ]),
    # The registry of keywords defined per folder (a superset of those in use): kept as is.
    ("folder_keywords", "folder_keywords", [("folder_id", _same), ("keyword", _same)]),
    ("queue", "queue", [
        ("id", _same), ("mail_from", _same), ("blob_id", _same), ("created", _dt),
        ("next_attempt", _dt), ("attempts", _same), ("warned", _b),
    ]),
    ("queue_recipients", "queue_recipients", [
        ("queue_id", _same), ("address", _same), ("status", _same), ("attempts", _same),
        ("last_error", _same), ("notified", _b), ("via_list", _same),
    ]),
    ("calendar_collections", "calendar_collections", [
        ("id", _same), ("account_id", _same), ("name", _same), ("kind", _same),
        ("props", _same), ("modified", _dt),
    ]),
    ("calendar_items", "calendar_items", [
        ("id", _same), ("collection_id", _same), ("href", _same), ("uid", _same),
        ("text", _same), ("etag", _same), ("modified", _dt),
    ]),
    ("calendar_busy", "calendar_busy", [
        ("item_id", _same), ("collection_id", _same), ("start", _dt), ("end", _dt),
        ("tentative", _b),
    ]),
]
#: Target column names where they differ from SQLite's.
_RENAMED = {("calendar_busy", "start"): "start_at", ("calendar_busy", "end"): "end_at"}
#: Columns copied on their own (bodies go through the BlobStore's table, in batches).
_COPIED_APART = {"blobs": {"data"}}
#: Tables whose identity sequence must move past the copied ids.
_IDENTITIES = ["accounts", "folders", "queue", "calendar_collections", "calendar_items"]
#: Every table with data, children first (for --force emptying).
_ALL_TARGET_TABLES = [
    "calendar_busy", "calendar_items", "calendar_collections", "queue_recipients", "queue",
    "folder_keywords", "messages", "blob_data", "blobs", "folders", "list_members", "grants", "aliases",
    "accounts", "domains",
]
#: SQLite tables not copied: derived data PostgreSQL does without (blob_search holds
#: the case-folded SEARCH fields of blobs.index_json; PgMailStore.search_index reads
#: the index itself).
_DERIVED = {"blob_search"}


def _check_columns(src: sqlite3.Connection) -> None:
    """Refuse a SQLite store with columns this copier does not know (newer schema)."""
    for table, _, columns in _TABLES:
        have = {r[1] for r in src.execute(f"PRAGMA table_info({table})")}
        known = {c for c, _ in columns} | _COPIED_APART.get(table, set())
        unknown = have - known
        if unknown:
            raise StorageError(
                f"the SQLite table {table} has columns this copier does not know"
                f" ({', '.join(sorted(unknown))}); upgrade mailserver"
            )
        missing = known - have
        if missing:
            raise StorageError(f"the SQLite table {table} lacks {', '.join(sorted(missing))}")
    tables = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    unknown_tables = tables - {t for t, _, _ in _TABLES} - {"meta", "sqlite_sequence", "sqlite_stat1"} - _DERIVED
    if unknown_tables:
        raise StorageError(
            f"the SQLite store has tables this copier does not know ({', '.join(sorted(unknown_tables))});"
            " upgrade mailserver"
        )


def _batches(rows: Iterator[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    batch: list[Sequence[Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def target_is_empty(conn: Connection) -> bool:
    return not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM domains) OR EXISTS (SELECT 1 FROM accounts)"
        " OR EXISTS (SELECT 1 FROM blobs)"
    )


async def copy_sqlite_to_postgres(
    sqlite_path: Path, dsn: str, *, force: bool = False, progress: Progress = print
) -> dict[str, int]:
    """Copy the SQLite store at ``sqlite_path`` into the PostgreSQL database ``dsn``.

    Returns rows copied per table. Raises Conflict when the target already holds data
    (unless ``force``: then it is emptied first, in the same transaction), and
    StorageError for anything that cannot be read or written.
    """
    sqlite_path = Path(sqlite_path)
    if not sqlite_path.is_file():
        raise StorageError(f"no SQLite store at {sqlite_path}")
    # Bring the source to the current schema (the same migration the daemon runs).
    source_store = await SqliteStore.open(sqlite_path)
    await source_store.close()
    target = await PgStore.open(dsn)  # creates/migrates the target schema
    await target.close()

    src = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        _check_columns(src)
        try:
            conn = await asyncpg.connect(dsn)
        except Exception as err:  # noqa: BLE001
            raise StorageError(f"cannot connect to PostgreSQL at {redact(dsn)}: {err}") from None
        try:
            async with conn.transaction():
                # Nobody else writes while we copy (another `store copy`, a daemon).
                await conn.execute("LOCK TABLE meta IN EXCLUSIVE MODE")
                if not await target_is_empty(conn):
                    if not force:
                        raise Conflict(
                            f"the PostgreSQL database {redact(dsn)} already holds a store;"
                            " use --force to replace it"
                        )
                    progress("emptying the target (--force)")
                    await conn.execute(f"TRUNCATE {', '.join(_ALL_TARGET_TABLES)} CASCADE")
                counts = await _copy_all(src, conn, progress)
        except Exception as err:
            raise translate(err) from err
        finally:
            await conn.close()
    finally:
        src.close()
    return counts


async def _copy_all(src: sqlite3.Connection, conn: Connection, progress: Progress) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table, target, columns in _TABLES:
        total = src.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        names = [c for c, _ in columns]
        convert = [f for _, f in columns]
        select = ", ".join(f'"{c}"' for c in names)
        cur = src.execute(f"SELECT {select} FROM {table}")
        rows = (tuple(f(v) for f, v in zip(convert, row, strict=True)) for row in cur)
        target_columns = [_RENAMED.get((table, c), c) for c in names]
        done = 0
        for batch in _batches(rows, ROW_BATCH):
            await conn.copy_records_to_table(target, records=batch, columns=target_columns)
            done += len(batch)
            if total > ROW_BATCH:
                progress(f"  {table}: {done}/{total}")
        counts[table] = done
        progress(f"{table}: {done} copied")
        if table == "blobs":
            counts["blob_data"] = await _copy_bodies(src, conn, progress)
    for table in _IDENTITIES:
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
            f" GREATEST((SELECT max(id) FROM {table}), 1))"
        )
    await conn.execute(
        "SELECT setval(pg_get_serial_sequence('list_members', 'seq'),"
        " GREATEST((SELECT max(seq) FROM list_members), 1))"
    )
    meta = dict(src.execute("SELECT key, value FROM meta").fetchall())
    await conn.execute(
        "UPDATE meta SET value = GREATEST(value, $1::bigint) WHERE key = 'last_uidvalidity'",
        int(meta.get("last_uidvalidity", 0)),
    )
    # Any cache keyed on the version (other daemons already running) reloads.
    await conn.execute(
        "UPDATE meta SET value = GREATEST(value, $1::bigint) + 1 WHERE key = 'directory_version'",
        int(meta.get("directory_version", 0)),
    )
    return counts


async def _copy_bodies(src: sqlite3.Connection, conn: Connection, progress: Progress) -> int:
    total = src.execute("SELECT count(*), coalesce(sum(size), 0) FROM blobs").fetchone()
    done = size = 0
    batch: list[tuple[str, bytes]] = []
    batch_bytes = 0
    for blob_id, data in src.execute("SELECT id, data FROM blobs"):
        batch.append((blob_id, bytes(data)))
        batch_bytes += len(data)
        if batch_bytes >= BODY_BATCH_BYTES or len(batch) >= ROW_BATCH:
            await conn.copy_records_to_table("blob_data", records=batch, columns=["id", "data"])
            done += len(batch)
            size += batch_bytes
            progress(f"  bodies: {done}/{total[0]} ({size // 1048576} of {total[1] // 1048576} MiB)")
            batch, batch_bytes = [], 0
    if batch:
        await conn.copy_records_to_table("blob_data", records=batch, columns=["id", "data"])
        done += len(batch)
        size += batch_bytes
    progress(f"bodies: {done} copied ({size} octets)")
    return done
