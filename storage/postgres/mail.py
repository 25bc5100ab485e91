"""Folders, messages and local delivery on PostgreSQL (:class:`storage.interfaces.MailStore`).

UIDs and modseqs come from the folder's row, advanced by ``UPDATE ... RETURNING`` in
the transaction that inserts or changes the messages. The row lock is held until
commit, so across every daemon a folder's changes commit one at a time in the order of
their UIDs and modseqs: a client never sees UID n+1 before UID n (RFC 3501 §2.3.1.1,
RFC 7162 §3.1). Bodies go through :class:`storage.blobs.BlobStore`. Every change of a
folder notifies the listeners of this store after the commit, and those of other
stores through :mod:`storage.postgres.notify`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from storage.blobs import BlobStore
from storage.callbacks import Callbacks
from storage.errors import AlreadyExists, Conflict, NotFound, StorageError
from storage.interfaces import FlagMode
from storage.keywords import MAX_KEYWORDS_PER_FOLDER, check_message
from storage.postgres import keywords as registry
from storage.postgres.db import Connection, Db, Record, uid_array
from storage.postgres.directory import next_uidvalidity
from storage.postgres.notify import CHANNEL, Listener, Notifier
from storage.sqlite.util import (
    INBOX,
    decode_date,
    decode_flags,
    encode_date,
    encode_flags,
    normalize_flags,
    normalize_folder,
    now_utc,
    plan_flag_changes,
)
from storage.types import (
    DeliveryResult,
    FlagChange,
    Folder,
    LocalRecipient,
    MessageMeta,
    SpecialUse,
)

T = TypeVar("T")

_FOLDER_COLUMNS = (
    "id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use, subscribed,"
    " messages, unseen"
)
_MESSAGE_SQL = (
    "SELECT m.uid, m.flags, m.internal_date, m.modseq, b.size, m.blob_id"
    " FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.folder_id = $1"
)
_INSERT_MESSAGES = (
    "INSERT INTO messages (folder_id, uid, blob_id, flags, seen, deleted, internal_date, modseq)"
    " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bool[],"
    " $6::bool[], $7::text[], $8::bigint[])"
)


def _folder_from_row(row: Record) -> Folder:
    return Folder(
        id=row["id"],
        account_id=row["account_id"],
        name=row["name"],
        uidvalidity=row["uidvalidity"],
        uidnext=row["uidnext"],
        highestmodseq=row["highestmodseq"],
        special_use=None if row["special_use"] is None else SpecialUse(row["special_use"]),
        subscribed=row["subscribed"],
        messages=row["messages"],
        unseen=row["unseen"],
    )


def _message_from_row(row: Record) -> MessageMeta:
    return MessageMeta(
        uid=row["uid"],
        flags=decode_flags(row["flags"]),
        internal_date=decode_date(row["internal_date"]),
        modseq=row["modseq"],
        size=row["size"],
        blob_id=row["blob_id"],
    )


class _Notified(tuple[int, ...]):
    """Changed folder ids whose notification the transaction already queued."""

    __slots__ = ()


#: Advance each target folder's counters and insert one message into it, in one
#: statement (one round trip however many folders); queue the notification too when a
#: payload is given (PostgreSQL folds the per-row duplicates and sends it at commit).
_ALLOCATE_AND_INSERT = """
WITH t AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bool[], $4::bool[])
        AS t(folder_id, flags, seen, deleted)
), a AS (
    UPDATE folders f SET uidnext = f.uidnext + 1, highestmodseq = f.highestmodseq + 1
    FROM t WHERE f.id = t.folder_id
    RETURNING f.id, f.uidnext - 1 AS uid, f.highestmodseq AS modseq
), ins AS (
    INSERT INTO messages (folder_id, uid, blob_id, flags, seen, deleted, internal_date, modseq)
    SELECT a.id, a.uid, $5, t.flags, t.seen, t.deleted, $6, a.modseq
    FROM a JOIN t ON t.folder_id = a.id
    RETURNING folder_id, uid, modseq
)
SELECT folder_id, uid, modseq, CASE WHEN $7::text IS NULL THEN NULL
    ELSE pg_notify($8, $7) END AS notified FROM ins
"""


class _Rows:
    """Column arrays for one multi-row INSERT INTO messages (one trigger run)."""

    def __init__(self) -> None:
        self.cols: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [])

    def add(self, folder_id: int, uid: int, blob_id: str, flags: str, date: str, modseq: int) -> None:
        values = (folder_id, uid, blob_id, flags, "\\Seen" in flags.split(),
                  "\\Deleted" in flags.split(), date, modseq)
        for col, value in zip(self.cols, values, strict=True):
            col.append(value)

    async def insert(self, conn: Connection) -> None:
        if self.cols[0]:
            await conn.execute(_INSERT_MESSAGES, *self.cols)


async def _require_folder(conn: Connection, folder_id: int) -> Record:
    row: Record | None = await conn.fetchrow(
        f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE id = $1", folder_id
    )
    if row is None:
        raise NotFound(f"no folder with id {folder_id}")
    return row


async def _folder_by_name(conn: Connection, account_id: int, name: str) -> Record | None:
    row: Record | None = await conn.fetchrow(
        f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE account_id = $1 AND name = $2",
        account_id, name,
    )
    return row


async def _allocate(conn: Connection, folder_id: int, count: int) -> tuple[int, int]:
    """Reserve ``count`` UIDs and one new modseq; return (first UID, modseq).

    RFC 3501 §2.3.1.1: UIDs strictly ascend and are never reused, because uidnext only
    grows; the row lock taken here orders concurrent allocations from every daemon.
    RFC 7162 §3.1: the change gets the folder's new HIGHESTMODSEQ.
    """
    row = await conn.fetchrow(
        "UPDATE folders SET uidnext = uidnext + $1, highestmodseq = highestmodseq + 1"
        " WHERE id = $2 RETURNING uidnext - $1 AS first, highestmodseq",
        count, folder_id,
    )
    if row is None:
        raise NotFound(f"no folder with id {folder_id}")
    return int(row[0]), int(row[1])


async def _bump_modseq(conn: Connection, folder_id: int) -> int:
    value = await conn.fetchval(
        "UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = $1 RETURNING highestmodseq",
        folder_id,
    )
    if value is None:
        raise NotFound(f"no folder with id {folder_id}")
    return int(value)


async def _copy(conn: Connection, src: int, uids: Sequence[int], dst: int) -> list[tuple[int, int]]:
    await _require_folder(conn, src)
    await _require_folder(conn, dst)
    rows = await conn.fetch(
        "SELECT uid, blob_id, flags, internal_date FROM messages"
        " WHERE folder_id = $1 AND uid = ANY ($2::bigint[]) ORDER BY uid",
        src, uid_array(uids),
    )
    if not rows:
        return []
    # A copy puts its keywords on a new message in ``dst``: the same bounds as APPEND.
    added: set[str] = set()
    for row in rows:
        added |= check_message(frozenset(), decode_flags(row["flags"]))
    first, modseq = await _allocate(conn, dst, len(rows))
    pairs = [(row["uid"], first + i) for i, row in enumerate(rows)]
    out = _Rows()
    for (_, new_uid), row in zip(pairs, rows, strict=True):
        out.add(dst, new_uid, row["blob_id"], row["flags"], row["internal_date"], modseq)
    await out.insert(conn)
    await registry.register(conn, dst, added)  # after the insert: counts what dst now holds
    return pairs


async def _allocate_and_insert(
    conn: Connection, targets: Sequence[tuple[int, frozenset[str]]], blob_id: str, date: str,
    channel: str, payload: str | None,
) -> dict[int, tuple[int, int]]:
    """Insert the body into each (folder id, flags) target; return folder id -> (UID, modseq).

    RFC 3501 §2.3.1.1 / RFC 7162 §3.1: each folder's uidnext and highestmodseq advance
    by one under its row lock, held until commit. Raises NotFound for a missing folder.
    """
    rows = await conn.fetch(
        _ALLOCATE_AND_INSERT,
        [f for f, _ in targets], [encode_flags(x) for _, x in targets],
        ["\\Seen" in x for _, x in targets], ["\\Deleted" in x for _, x in targets],
        blob_id, date, payload, channel,
    )
    got = {r["folder_id"]: (r["uid"], r["modseq"]) for r in rows}
    missing = [f for f, _ in targets if f not in got]
    if missing:
        raise NotFound(f"no folder with id {missing[0]}")
    return got


#: Header fields :meth:`PgMailStore.search_index` answers (keys of the index's "h").
_SEARCH_FIELDS = frozenset({"from", "to", "cc", "bcc", "subject"})


class PgMailStore:
    """:class:`storage.interfaces.MailStore` on PostgreSQL."""

    def __init__(self, db: Db, blobs: BlobStore, notifier: Notifier) -> None:
        self._db = db
        self._blobs = blobs
        self._notifier = notifier
        self._queue_changed: Callbacks[[]] = Callbacks("outbound queue")

    # -- listeners

    def add_queue_listener(self, listener: Callable[[], None]) -> None:
        self._queue_changed.add(listener)

    def remove_queue_listener(self, listener: Callable[[], None]) -> None:
        self._queue_changed.remove(listener)

    def add_listener(self, listener: Listener) -> None:
        self._notifier.add(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._notifier.remove(listener)

    async def _write(self, fn: Callable[[Connection], Awaitable[tuple[T, Collection[int]]]]) -> T:
        """Run ``fn`` (returning (result, changed folder ids)) in one transaction that
        also notifies other daemons; tell this store's listeners after the commit."""

        async def tx(conn: Connection) -> tuple[T, Collection[int]]:
            result, changed = await fn(conn)
            if changed and not isinstance(changed, _Notified):
                await self._notifier.send(conn, changed)
            return result, changed

        result, changed = await self._db.transaction(tx)
        self._notifier.local(changed)
        return result

    async def _store_blob(self, conn: Connection, body: bytes, index_json: str | None = None) -> str:
        """Store ``body`` once under its sha256 (metadata row, then the bytes); return the id."""
        blob_id = hashlib.sha256(body).hexdigest()
        created = await conn.fetchval(
            "INSERT INTO blobs (id, size, index_json) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO NOTHING RETURNING TRUE",
            blob_id, len(body), index_json,
        )
        if created:
            await self._blobs.put(conn, [(blob_id, body)])
        elif index_json is not None:
            await conn.execute(
                "UPDATE blobs SET index_json = $1 WHERE id = $2 AND index_json IS NULL",
                index_json, blob_id,
            )
        return blob_id

    # -- folders

    async def list_folders(self, account_id: int) -> list[Folder]:
        rows = await self._db.fetch(
            f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE account_id = $1"
            " ORDER BY name <> 'INBOX', name COLLATE \"C\"",
            account_id,
        )
        return [_folder_from_row(r) for r in rows]

    async def get_folder(self, account_id: int, name: str) -> Folder | None:
        row = await self._db.fetchrow(
            f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE account_id = $1 AND name = $2",
            account_id, normalize_folder(name),
        )
        return None if row is None else _folder_from_row(row)

    async def create_folder(self, account_id: int, name: str) -> Folder:
        folder = normalize_folder(name)
        if not folder or folder.startswith("/") or folder.endswith("/") or "//" in folder:
            raise Conflict(f"invalid folder name {name!r}")

        async def tx(conn: Connection) -> Folder:
            kind = await conn.fetchval("SELECT kind FROM accounts WHERE id = $1", account_id)
            if kind is None:
                raise NotFound(f"no account with id {account_id}")
            if kind == "list":
                raise Conflict("distribution lists have no folders")
            if await _folder_by_name(conn, account_id, folder) is not None:
                raise AlreadyExists(f"folder {folder} already exists")
            row = await conn.fetchrow(
                "INSERT INTO folders (account_id, name, uidvalidity) VALUES ($1, $2, $3)"
                f" RETURNING {_FOLDER_COLUMNS}",
                account_id, folder, await next_uidvalidity(conn),
            )
            return _folder_from_row(row)

        return await self._db.transaction(tx)

    async def delete_folder(self, account_id: int, name: str) -> None:
        folder = normalize_folder(name)
        if folder == INBOX:
            raise Conflict("INBOX cannot be deleted")

        async def tx(conn: Connection) -> tuple[None, Collection[int]]:
            row = await _folder_by_name(conn, account_id, folder)
            if row is None:
                raise NotFound(f"no folder {folder}")
            # Messages go by ON DELETE CASCADE; unreferenced bodies by trigger.
            await conn.execute("DELETE FROM folders WHERE id = $1", row["id"])
            return None, (row["id"],)

        await self._write(tx)

    async def rename_folder(self, account_id: int, old: str, new: str) -> None:
        src = normalize_folder(old)
        dst = normalize_folder(new)
        if not dst or dst.startswith("/") or dst.endswith("/") or "//" in dst:
            raise Conflict(f"invalid folder name {new!r}")
        if dst == INBOX:
            raise AlreadyExists("folder INBOX already exists")
        if dst.startswith(src + "/"):
            raise Conflict(f"{src} cannot be renamed into its own hierarchy")

        async def tx(conn: Connection) -> tuple[None, Collection[int]]:
            row = await _folder_by_name(conn, account_id, src)
            if row is None:
                raise NotFound(f"no folder {src}")
            if await _folder_by_name(conn, account_id, dst) is not None:
                raise AlreadyExists(f"folder {dst} already exists")
            if src == INBOX:
                # RFC 3501 §6.3.5: renaming INBOX moves its messages to a new folder and
                # leaves INBOX empty; its children stay. INBOX keeps its uidnext (taken
                # under its row lock) so no UID is reused.
                locked = await conn.fetchrow(
                    "SELECT uidnext, highestmodseq FROM folders WHERE id = $1 FOR UPDATE", row["id"]
                )
                new_id = await conn.fetchval(
                    "INSERT INTO folders (account_id, name, uidvalidity, uidnext, highestmodseq)"
                    " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    account_id, dst, await next_uidvalidity(conn), locked["uidnext"],
                    locked["highestmodseq"],
                )
                await conn.execute(
                    "UPDATE messages SET folder_id = $1 WHERE folder_id = $2", new_id, row["id"]
                )
                await registry.move(conn, row["id"], new_id)
                await _bump_modseq(conn, row["id"])
                return None, (row["id"], new_id)
            children = await conn.fetch(
                "SELECT id, name FROM folders WHERE account_id = $1 AND left(name, $2) = $3",
                account_id, len(src) + 1, src + "/",
            )
            renames = [(row["id"], dst)] + [(c["id"], dst + c["name"][len(src):]) for c in children]
            for _, target in renames[1:]:
                if await _folder_by_name(conn, account_id, target) is not None:
                    raise AlreadyExists(f"folder {target} already exists")
            await conn.execute(
                "UPDATE folders f SET name = r.name FROM unnest($1::bigint[], $2::text[]) AS r(id, name)"
                " WHERE f.id = r.id",
                [i for i, _ in renames], [n for _, n in renames],
            )
            return None, [i for i, _ in renames]

        await self._write(tx)

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        folder = normalize_folder(name)

        async def tx(conn: Connection) -> None:
            done = await conn.fetchval(
                "UPDATE folders SET subscribed = $1 WHERE account_id = $2 AND name = $3 RETURNING 1",
                subscribed, account_id, folder,
            )
            if done is None:
                raise NotFound(f"no folder {folder}")

        await self._db.transaction(tx)

    # -- messages

    async def append(
        self,
        folder_id: int,
        body: bytes,
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
        *,
        index_json: str | None = None,
    ) -> MessageMeta:
        flagset = normalize_flags(flags)
        added = check_message(frozenset(), flagset)
        when = internal_date or now_utc().replace(microsecond=0)
        date = encode_date(when)

        payload = self._notifier.payload([folder_id])

        async def tx(conn: Connection) -> tuple[MessageMeta, Collection[int]]:
            blob_id = await self._store_blob(conn, body, index_json)
            got = await _allocate_and_insert(
                conn, [(folder_id, flagset)], blob_id, date, CHANNEL, payload
            )
            await registry.register(conn, folder_id, added)  # after the insert, as in STORE
            uid, modseq = got[folder_id]
            meta = MessageMeta(uid, flagset, decode_date(date), modseq, len(body), blob_id)
            return meta, _Notified((folder_id,))

        return await self._write(tx)

    async def list_messages(self, folder_id: int, *, changed_since: int | None = None) -> list[MessageMeta]:
        if changed_since is None:
            rows = await self._db.fetch(_MESSAGE_SQL + " ORDER BY m.uid", folder_id)
        else:
            rows = await self._db.fetch(
                _MESSAGE_SQL + " AND m.modseq > $2 ORDER BY m.uid", folder_id, changed_since
            )
        return [_message_from_row(r) for r in rows]

    async def get_body(self, blob_id: str) -> bytes:
        data = await self._blobs.get(blob_id)
        if data is None:
            raise NotFound(f"no message body {blob_id}")
        return data

    async def get_folder_by_id(self, folder_id: int) -> Folder | None:
        row = await self._db.fetchrow(f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE id = $1", folder_id)
        return None if row is None else _folder_from_row(row)

    async def list_uids(self, folder_id: int) -> list[int]:
        rows = await self._db.fetch("SELECT uid FROM messages WHERE folder_id = $1 ORDER BY uid", folder_id)
        return [r[0] for r in rows]

    async def first_unseen_uid(self, folder_id: int) -> int | None:
        value = await self._db.fetchval(
            "SELECT min(uid) FROM messages WHERE folder_id = $1 AND NOT seen", folder_id
        )
        return None if value is None else int(value)

    async def accepts_new_keywords(self, folder_id: int) -> bool:
        count = await self._db.fetchval(
            "SELECT count(*) FROM folder_keywords WHERE folder_id = $1", folder_id
        )
        if count < MAX_KEYWORDS_PER_FOLDER:
            return True
        # The registry may keep keywords no message carries any more: count the real ones.
        used = await self._db.fetchval(
            f"SELECT count(*) FROM ({registry.IN_USE_SQL}) AS u", folder_id, registry.SYSTEM
        )
        return int(used) < MAX_KEYWORDS_PER_FOLDER

    async def fetch_range(
        self, folder_id: int, first_uid: int, last_uid: int, *, with_index: bool = False
    ) -> list[tuple[MessageMeta, str | None]]:
        index = "b.index_json" if with_index else "NULL::text"
        rows = await self._db.fetch(
            "SELECT m.uid, m.flags, m.internal_date, m.modseq, b.size, m.blob_id,"
            f" {index} AS index_json FROM messages m JOIN blobs b ON b.id = m.blob_id"
            " WHERE m.folder_id = $1 AND m.uid BETWEEN $2 AND $3 ORDER BY m.uid",
            folder_id, first_uid, last_uid,
        )
        flag_cache: dict[str, frozenset[str]] = {}
        out: list[tuple[MessageMeta, str | None]] = []
        for r in rows:
            text = r[1]
            flags = flag_cache.get(text)
            if flags is None:
                flags = flag_cache[text] = decode_flags(text)
            out.append((MessageMeta(r[0], flags, decode_date(r[2]), r[3], r[4], r[5]), r[6]))
        return out

    async def set_index(self, items: Sequence[tuple[str, str]]) -> None:
        if not items:
            return

        async def tx(conn: Connection) -> None:
            await conn.execute(
                "UPDATE blobs b SET index_json = i.index_json"
                " FROM unnest($1::text[], $2::text[]) AS i(id, index_json)"
                " WHERE b.id = i.id AND b.index_json IS NULL",
                [b for b, _ in items], [j for _, j in items],
            )

        await self._db.transaction(tx)

    async def search_index(self, folder_id: int, field: str, needle: str) -> tuple[list[int], list[int]]:
        if field not in _SEARCH_FIELDS:
            raise StorageError(f"no search index for field {field!r}")
        # The server extracts the one decoded value; Python compares with str.casefold
        # (lower() in SQL follows the database locale, not the Unicode case folding
        # IMAP SEARCH uses here).
        rows = await self._db.fetch(
            "SELECT m.uid, b.index_json IS NULL OR left(b.index_json, 1) <> '{',"
            " CASE WHEN left(b.index_json, 1) = '{' THEN b.index_json::json -> 'h' ->> $2 END"
            " FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.folder_id = $1 ORDER BY m.uid",
            folder_id, field,
        )
        folded = needle.casefold()
        hits = [r[0] for r in rows if not r[1] and r[2] is not None and folded in r[2].casefold()]
        return hits, [r[0] for r in rows if r[1]]

    async def store_flags(
        self,
        folder_id: int,
        uids: Sequence[int],
        mode: FlagMode,
        flags: Iterable[str],
        *,
        unchanged_since: int | None = None,
    ) -> tuple[list[FlagChange], list[int]]:
        if mode not in ("add", "remove", "replace"):
            raise StorageError(f"unknown flag mode {mode!r}")
        flagset = normalize_flags(flags)
        wanted = uid_array(uids)

        async def tx(conn: Connection) -> tuple[tuple[list[FlagChange], list[int]], Collection[int]]:
            # Lock the folder first: flag changes of one folder (from any daemon) then
            # commit in modseq order, and read-modify-write of the flags cannot race.
            if await conn.fetchval("SELECT 1 FROM folders WHERE id = $1 FOR UPDATE", folder_id) is None:
                raise NotFound(f"no folder with id {folder_id}")
            rows = await conn.fetch(
                "SELECT uid, flags, modseq FROM messages WHERE folder_id = $1"
                " AND uid = ANY ($2::bigint[]) ORDER BY uid",
                folder_id, wanted,
            )
            updates, refused, added = plan_flag_changes(rows, mode, flagset, unchanged_since)
            if not updates:
                return ([], refused), ()
            # RFC 7162 §3: one STORE gets one new mod-sequence, above all earlier ones.
            modseq = await _bump_modseq(conn, folder_id)
            await conn.execute(
                "UPDATE messages m SET flags = u.flags, seen = u.seen, deleted = u.deleted,"
                " modseq = $1 FROM unnest($2::bigint[], $3::text[], $4::bool[], $5::bool[])"
                " AS u(uid, flags, seen, deleted) WHERE m.folder_id = $6 AND m.uid = u.uid",
                modseq, [u for u, _ in updates], [encode_flags(f) for _, f in updates],
                ["\\Seen" in f for _, f in updates], ["\\Deleted" in f for _, f in updates],
                folder_id,
            )
            # After the update, so a full folder is counted as the STORE leaves it; a
            # KeywordLimit here rolls the whole transaction back.
            await registry.register(conn, folder_id, added)
            changes = [FlagChange(uid, new, modseq) for uid, new in updates]
            return (changes, refused), (folder_id,)

        return await self._write(tx)

    async def expunge(self, folder_id: int, uids: Sequence[int] | None = None) -> list[int]:
        subset = None if uids is None else uid_array(uids)

        async def tx(conn: Connection) -> tuple[list[int], Collection[int]]:
            if await conn.fetchval("SELECT 1 FROM folders WHERE id = $1 FOR UPDATE", folder_id) is None:
                raise NotFound(f"no folder with id {folder_id}")
            if subset is None:
                rows = await conn.fetch(
                    "DELETE FROM messages WHERE folder_id = $1 AND deleted RETURNING uid", folder_id
                )
            else:
                rows = await conn.fetch(
                    "DELETE FROM messages WHERE folder_id = $1 AND deleted"
                    " AND uid = ANY ($2::bigint[]) RETURNING uid",
                    folder_id, subset,
                )
            if not rows:
                return [], ()
            await _bump_modseq(conn, folder_id)
            return sorted(r[0] for r in rows), (folder_id,)

        return await self._write(tx)

    async def copy(self, src_folder_id: int, uids: Sequence[int], dst_folder_id: int) -> list[tuple[int, int]]:
        async def tx(conn: Connection) -> tuple[list[tuple[int, int]], Collection[int]]:
            pairs = await _copy(conn, src_folder_id, uids, dst_folder_id)
            return pairs, ((dst_folder_id,) if pairs else ())

        return await self._write(tx)

    async def move(self, src_folder_id: int, uids: Sequence[int], dst_folder_id: int) -> list[tuple[int, int]]:
        async def tx(conn: Connection) -> tuple[list[tuple[int, int]], Collection[int]]:
            # RFC 6851 §3.3: MOVE is COPY plus expunge of the sources, atomically.
            pairs = await _copy(conn, src_folder_id, uids, dst_folder_id)
            if not pairs:
                return [], ()
            await conn.execute(
                "DELETE FROM messages WHERE folder_id = $1 AND uid = ANY ($2::bigint[])",
                src_folder_id, [s for s, _ in pairs],
            )
            await _bump_modseq(conn, src_folder_id)
            return pairs, (src_folder_id, dst_folder_id)

        return await self._write(tx)

    # -- local delivery

    async def deliver(
        self,
        body: bytes,
        recipients: Sequence[LocalRecipient],
        *,
        mail_from: str = "",
        remote_recipients: Sequence[str] = (),
        internal_date: datetime | None = None,
        index_json: str | None = None,
        via_list: Mapping[str, str] | None = None,
    ) -> DeliveryResult:
        if not recipients and not remote_recipients:
            raise Conflict("a delivery needs at least one recipient")
        targets = [(r.account_id, normalize_folder(r.folder), normalize_flags(r.flags)) for r in recipients]
        for _, _, flags in targets:
            check_message(frozenset(), flags)
        remote = list(dict.fromkeys(a.strip() for a in remote_recipients))
        now = now_utc()
        date = encode_date(internal_date or now.replace(microsecond=0))

        async def tx(conn: Connection) -> tuple[DeliveryResult, Collection[int]]:
            found = {
                (r["account_id"], r["name"]): r
                for r in await conn.fetch(
                    "SELECT f.id, f.account_id, f.name FROM folders f"
                    " JOIN unnest($1::bigint[], $2::text[]) AS t(account_id, name)"
                    " ON f.account_id = t.account_id AND f.name = t.name",
                    [a for a, _, _ in targets] + [a for a, _, _ in targets],
                    [f for _, f, _ in targets] + [INBOX] * len(targets),
                )
            }
            chosen: dict[tuple[int, str], tuple[int, frozenset[str]]] = {}
            for account_id, folder, flags in targets:
                row = found.get((account_id, folder)) or found.get((account_id, INBOX))
                if row is None:  # an unknown folder still gets the copy, in INBOX
                    raise NotFound(f"account {account_id} has no mailbox to deliver to")
                chosen.setdefault((account_id, row["name"]), (row["id"], flags))
            blob_id = await self._store_blob(conn, body, index_json)
            folder_ids = [fid for fid, _ in chosen.values()]
            payload = self._notifier.payload(folder_ids)
            # Targets in folder id order, so concurrent deliveries lock rows in one order.
            got = await _allocate_and_insert(
                conn, sorted(chosen.values(), key=lambda v: v[0]), blob_id, date, CHANNEL, payload,
            ) if chosen else {}
            uids = {key: got[fid][0] for key, (fid, _) in chosen.items()}
            for fid, flags in chosen.values():
                # Recorded, never refused: mail is not bounced for a folder's keywords.
                await registry.register(conn, fid, check_message(frozenset(), flags), enforce=False)
            queue_id: int | None = None
            if remote:
                queue_id = await conn.fetchval(
                    "INSERT INTO queue (mail_from, blob_id, created, next_attempt)"
                    " VALUES ($1, $2, $3, $3) RETURNING id",
                    mail_from, blob_id, now,
                )
                lists = via_list or {}
                await conn.execute(
                    "INSERT INTO queue_recipients (queue_id, address, via_list)"
                    " SELECT $1, a, l FROM unnest($2::text[], $3::text[]) AS t(a, l)",
                    queue_id, remote, [lists.get(a) for a in remote],
                )
            result = DeliveryResult(blob_id, uids, queue_id)
            return result, (_Notified(folder_ids) if payload is not None else folder_ids)

        result = await self._write(tx)
        if result.queue_id is not None:
            self._queue_changed()
        return result
