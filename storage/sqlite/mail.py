"""Folders, messages and local delivery on SQLite (:class:`storage.interfaces.MailStore`).

Bodies are content-addressed (``blobs.id`` = sha256 hex) and stored once; each folder
entry references one. Every change of a folder's messages assigns that folder's next
HIGHESTMODSEQ to the changed messages (RFC 7162 §3.1) and, after the commit, the
listeners are told the folder id on the event loop.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from storage.callbacks import Callbacks
from storage.errors import AlreadyExists, Conflict, NotFound, StorageError
from storage.interfaces import FlagMode
from storage.keywords import MAX_KEYWORDS_PER_FOLDER, check_message, keywords_in_texts
from storage.sqlite import keywords as registry
from storage.sqlite.directory import next_uidvalidity
from storage.sqlite.reader import Reader
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
from storage.sqlite.writer import Writer
from storage.types import (
    DeliveryResult,
    FlagChange,
    Folder,
    LocalRecipient,
    MessageMeta,
    SpecialUse,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Listener = Callable[[int], None]

_FOLDER_COLUMNS = (
    "id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use, subscribed,"
    " messages, unseen"
)
_MESSAGE_SQL = (
    "SELECT m.uid, m.flags, m.internal_date, m.modseq, b.size, m.blob_id"
    " FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.folder_id = ?"
)
# Any number of UIDs as one bound parameter (no SQLITE_MAX_VARIABLE_NUMBER limit).
_UIDS_IN = "uid IN (SELECT value FROM json_each(?))"


def _folder_from_row(row: sqlite3.Row) -> Folder:
    return Folder(
        id=row["id"],
        account_id=row["account_id"],
        name=row["name"],
        uidvalidity=row["uidvalidity"],
        uidnext=row["uidnext"],
        highestmodseq=row["highestmodseq"],
        special_use=None if row["special_use"] is None else SpecialUse(row["special_use"]),
        subscribed=bool(row["subscribed"]),
        messages=row["messages"],
        unseen=row["unseen"],
    )


def _message_from_row(row: sqlite3.Row) -> MessageMeta:
    return MessageMeta(
        uid=row["uid"],
        flags=decode_flags(row["flags"]),
        internal_date=decode_date(row["internal_date"]),
        modseq=row["modseq"],
        size=row["size"],
        blob_id=row["blob_id"],
    )


def _flag_columns(flags: frozenset[str]) -> tuple[str, int, int]:
    return encode_flags(flags), int("\\Seen" in flags), int("\\Deleted" in flags)


def _require_folder(conn: sqlite3.Connection, folder_id: int) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE id = ?", (folder_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no folder with id {folder_id}")
    return row


def _folder_by_name(conn: sqlite3.Connection, account_id: int, name: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE account_id = ? AND name = ?",
        (account_id, name),
    ).fetchone()
    return row


def _store_blob(conn: sqlite3.Connection, body: bytes, index_json: str | None = None) -> str:
    """Store ``body`` once under its sha256, with its index when given; return the id.

    A new body gets its index in the same INSERT: setting it afterwards would rewrite
    the whole row, body included (a second copy of every delivered body in the WAL).
    """
    blob_id = hashlib.sha256(body).hexdigest()
    cur = conn.execute(
        "INSERT INTO blobs (id, size, data, index_json) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        (blob_id, len(body), body, index_json),
    )
    if index_json is not None:
        if cur.rowcount == 1:
            _add_search_rows(conn, [(index_json, blob_id)])
        else:  # the body was already stored, perhaps without an index
            _set_index(conn, [(index_json, blob_id)])
    return blob_id


#: Header fields SEARCH matches in SQL (RFC 3501 §6.4.4), as keys of the index's "h"
#: member, and the blob_search columns holding them.
SEARCH_FIELDS = ("from", "to", "cc", "bcc", "subject")
_SEARCH_COLUMNS = {f: f"h_{f}" for f in SEARCH_FIELDS}
#: Bodies whose missing search row one writer job fills (about 25 ms of work), so a
#: first SEARCH of a large folder from before blob_search does not hold up deliveries.
SEARCH_FILL_BATCH = 2000


def _search_row(blob_id: str, index_json: str) -> tuple[str | None, ...] | None:
    """The blob_search row of an index: its "h" values case-folded, or None when the
    text is not a JSON object (then SEARCH checks the message itself)."""
    try:
        doc = json.loads(index_json)
    except ValueError:
        return None
    fields = doc.get("h", {}) if isinstance(doc, dict) else None
    if not isinstance(fields, dict):
        return None
    values = [fields.get(f) for f in SEARCH_FIELDS]
    return (blob_id, *(v.casefold() if isinstance(v, str) else None for v in values))


def _add_search_rows(conn: sqlite3.Connection, items: Iterable[tuple[str, str]]) -> None:
    """Fill blob_search from (index_json, blob_id) pairs (kept when already there)."""
    rows = [r for r in (_search_row(b, j) for j, b in items) if r is not None]
    if rows:
        conn.executemany(
            "INSERT INTO blob_search (blob_id, h_from, h_to, h_cc, h_bcc, h_subject)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (blob_id) DO NOTHING",
            rows,
        )


def _set_index(conn: sqlite3.Connection, pairs: Sequence[tuple[str, str]]) -> None:
    """Store (index_json, blob_id) pairs where a body has none yet, and their search row."""
    conn.executemany("UPDATE blobs SET index_json = ? WHERE id = ? AND index_json IS NULL", pairs)
    _add_search_rows(conn, pairs)


def _fill_search(conn: sqlite3.Connection, blob_ids: list[str]) -> None:
    """Add the missing blob_search rows of these bodies from their stored index."""
    rows = conn.execute(
        "SELECT index_json, id FROM blobs WHERE id IN (SELECT value FROM json_each(?))"
        " AND index_json IS NOT NULL",
        (json.dumps(blob_ids),),
    ).fetchall()
    _add_search_rows(conn, [(r[0], r[1]) for r in rows])


def _allocate(conn: sqlite3.Connection, folder_id: int, count: int) -> tuple[int, int]:
    """Reserve ``count`` UIDs and one new modseq; return (first UID, modseq).

    RFC 3501 §2.3.1.1: UIDs strictly ascend and are never reused, because uidnext
    only grows. RFC 7162 §3.1: the change gets the folder's new HIGHESTMODSEQ.
    """
    row = conn.execute(
        "UPDATE folders SET uidnext = uidnext + ?1, highestmodseq = highestmodseq + 1"
        " WHERE id = ?2 RETURNING uidnext - ?1, highestmodseq",
        (count, folder_id),
    ).fetchall()
    if not row:
        raise NotFound(f"no folder with id {folder_id}")
    return int(row[0][0]), int(row[0][1])


def _bump_modseq(conn: sqlite3.Connection, folder_id: int) -> int:
    row = conn.execute(
        "UPDATE folders SET highestmodseq = highestmodseq + 1 WHERE id = ? RETURNING highestmodseq",
        (folder_id,),
    ).fetchall()
    return int(row[0][0])


def _insert_message(
    conn: sqlite3.Connection, folder_id: int, blob_id: str, flags: frozenset[str], date: str
) -> tuple[int, int]:
    uid, modseq = _allocate(conn, folder_id, 1)
    text, seen, deleted = _flag_columns(flags)
    conn.execute(
        "INSERT INTO messages (folder_id, uid, blob_id, flags, seen, deleted, internal_date,"
        " modseq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (folder_id, uid, blob_id, text, seen, deleted, date, modseq),
    )
    return uid, modseq


def _copy(
    conn: sqlite3.Connection, src: int, uids: Sequence[int], dst: int
) -> list[tuple[int, int]]:
    _require_folder(conn, src)
    _require_folder(conn, dst)
    rows = conn.execute(
        "SELECT uid, blob_id, flags, seen, deleted, internal_date FROM messages"
        f" WHERE folder_id = ? AND {_UIDS_IN} ORDER BY uid",
        (src, json.dumps(list(uids))),
    ).fetchall()
    if not rows:
        return []
    # A copy puts its keywords on a new message in ``dst``: the same bounds as APPEND.
    added: set[str] = set()
    for row in rows:
        added |= check_message(frozenset(), decode_flags(row["flags"]))
    first, modseq = _allocate(conn, dst, len(rows))
    pairs = [(row["uid"], first + i) for i, row in enumerate(rows)]
    conn.executemany(
        "INSERT INTO messages (folder_id, uid, blob_id, flags, seen, deleted, internal_date,"
        " modseq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (dst, new_uid, row["blob_id"], row["flags"], row["seen"], row["deleted"],
             row["internal_date"], modseq)
            for (_, new_uid), row in zip(pairs, rows, strict=True)
        ],
    )
    registry.register(conn, dst, added)  # after the insert: counts what dst now holds
    return pairs


class SqliteMailStore:
    """:class:`storage.interfaces.MailStore` on SQLite."""

    def __init__(self, reader: Reader, writer: Writer) -> None:
        self._r = reader
        self._w = writer
        self._listeners: Callbacks[[int]] = Callbacks("mail store")
        self._queue_changed: Callbacks[[]] = Callbacks("outbound queue")

    # -- listeners

    def add_queue_listener(self, listener: Callable[[], None]) -> None:
        self._queue_changed.add(listener)

    def remove_queue_listener(self, listener: Callable[[], None]) -> None:
        self._queue_changed.remove(listener)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.add(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def _notify(self, outcome: tuple[Any, Collection[int]]) -> None:
        """After-commit hook on the event loop: tell listeners which folders changed."""
        for folder_id in outcome[1]:
            self._listeners(folder_id)

    async def _write(self, fn: Callable[[sqlite3.Connection], tuple[T, Collection[int]]]) -> T:
        """Run a job returning (result, changed folder ids); notify after commit."""
        result, _ = await self._w.submit(fn, after_commit=self._notify)
        return result

    # -- folders

    async def list_folders(self, account_id: int) -> list[Folder]:
        rows = await self._r.all(
            f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE account_id = ?"
            " ORDER BY name != 'INBOX', name",
            (account_id,),
        )
        return [_folder_from_row(r) for r in rows]

    async def get_folder(self, account_id: int, name: str) -> Folder | None:
        row = await self._r.one(
            f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE account_id = ? AND name = ?",
            (account_id, normalize_folder(name)),
        )
        return None if row is None else _folder_from_row(row)

    async def create_folder(self, account_id: int, name: str) -> Folder:
        folder = normalize_folder(name)
        if not folder or folder.startswith("/") or folder.endswith("/") or "//" in folder:
            raise Conflict(f"invalid folder name {name!r}")

        def job(conn: sqlite3.Connection) -> Folder:
            account = conn.execute(
                "SELECT kind FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            if account is None:
                raise NotFound(f"no account with id {account_id}")
            if account["kind"] == "list":
                raise Conflict("distribution lists have no folders")
            if _folder_by_name(conn, account_id, folder) is not None:
                raise AlreadyExists(f"folder {folder} already exists")
            cur = conn.execute(
                "INSERT INTO folders (account_id, name, uidvalidity) VALUES (?, ?, ?)",
                (account_id, folder, next_uidvalidity(conn)),
            )
            return _folder_from_row(_require_folder(conn, int(cur.lastrowid or 0)))

        return await self._w.submit(job)

    async def delete_folder(self, account_id: int, name: str) -> None:
        folder = normalize_folder(name)
        if folder == INBOX:
            raise Conflict("INBOX cannot be deleted")

        def job(conn: sqlite3.Connection) -> tuple[None, Collection[int]]:
            row = _folder_by_name(conn, account_id, folder)
            if row is None:
                raise NotFound(f"no folder {folder}")
            # Messages go by ON DELETE CASCADE; unreferenced blobs by trigger.
            conn.execute("DELETE FROM folders WHERE id = ?", (row["id"],))
            return None, (row["id"],)

        await self._write(job)

    async def rename_folder(self, account_id: int, old: str, new: str) -> None:
        src = normalize_folder(old)
        dst = normalize_folder(new)
        if not dst or dst.startswith("/") or dst.endswith("/") or "//" in dst:
            raise Conflict(f"invalid folder name {new!r}")
        if dst == INBOX:
            raise AlreadyExists("folder INBOX already exists")
        if dst.startswith(src + "/"):
            raise Conflict(f"{src} cannot be renamed into its own hierarchy")

        def job(conn: sqlite3.Connection) -> tuple[None, Collection[int]]:
            row = _folder_by_name(conn, account_id, src)
            if row is None:
                raise NotFound(f"no folder {src}")
            if _folder_by_name(conn, account_id, dst) is not None:
                raise AlreadyExists(f"folder {dst} already exists")
            if src == INBOX:
                # RFC 3501 §6.3.5: renaming INBOX moves its messages to a new folder
                # and leaves INBOX empty; INBOX's children are not renamed. The UIDs
                # move with the messages, INBOX keeps its uidnext so none is reused.
                cur = conn.execute(
                    "INSERT INTO folders (account_id, name, uidvalidity, uidnext, highestmodseq)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (account_id, dst, next_uidvalidity(conn), row["uidnext"],
                     row["highestmodseq"]),
                )
                new_id = int(cur.lastrowid or 0)
                conn.execute(
                    "UPDATE messages SET folder_id = ? WHERE folder_id = ?", (new_id, row["id"])
                )
                registry.move(conn, row["id"], new_id)
                _bump_modseq(conn, row["id"])
                return None, (row["id"], new_id)
            children = conn.execute(
                "SELECT id, name FROM folders WHERE account_id = ? AND substr(name, 1, ?) = ?",
                (account_id, len(src) + 1, src + "/"),
            ).fetchall()
            renames = [(row["id"], dst)] + [(c["id"], dst + c["name"][len(src):]) for c in children]
            for _, target in renames[1:]:
                if _folder_by_name(conn, account_id, target) is not None:
                    raise AlreadyExists(f"folder {target} already exists")
            conn.executemany(
                "UPDATE folders SET name = ? WHERE id = ?", [(n, i) for i, n in renames]
            )
            return None, [i for i, _ in renames]

        await self._write(job)

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        folder = normalize_folder(name)

        def job(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE folders SET subscribed = ? WHERE account_id = ? AND name = ?",
                (int(subscribed), account_id, folder),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no folder {folder}")

        await self._w.submit(job)

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

        def job(conn: sqlite3.Connection) -> tuple[MessageMeta, Collection[int]]:
            _require_folder(conn, folder_id)
            blob_id = _store_blob(conn, body, index_json)
            uid, modseq = _insert_message(conn, folder_id, blob_id, flagset, date)
            registry.register(conn, folder_id, added)  # after the insert, as in STORE
            meta = MessageMeta(uid, flagset, decode_date(date), modseq, len(body), blob_id)
            return meta, (folder_id,)

        return await self._write(job)

    async def list_messages(
        self, folder_id: int, *, changed_since: int | None = None
    ) -> list[MessageMeta]:
        if changed_since is None:
            rows = await self._r.all(_MESSAGE_SQL + " ORDER BY m.uid", (folder_id,))
        else:
            rows = await self._r.all(
                _MESSAGE_SQL + " AND m.modseq > ? ORDER BY m.uid", (folder_id, changed_since)
            )
        return [_message_from_row(r) for r in rows]

    async def get_body(self, blob_id: str) -> bytes:
        row = await self._r.one("SELECT data FROM blobs WHERE id = ?", (blob_id,))
        if row is None:
            raise NotFound(f"no message body {blob_id}")
        return bytes(row[0])

    async def get_folder_by_id(self, folder_id: int) -> Folder | None:
        row = await self._r.one(f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE id = ?", (folder_id,))
        return None if row is None else _folder_from_row(row)

    async def list_uids(self, folder_id: int) -> list[int]:
        rows = await self._r.all(
            "SELECT uid FROM messages WHERE folder_id = ? ORDER BY uid", (folder_id,)
        )
        return [r[0] for r in rows]

    async def first_unseen_uid(self, folder_id: int) -> int | None:
        row = await self._r.one(
            "SELECT min(uid) FROM messages WHERE folder_id = ? AND seen = 0", (folder_id,)
        )
        return None if row is None or row[0] is None else int(row[0])

    async def accepts_new_keywords(self, folder_id: int) -> bool:
        row = await self._r.one(
            "SELECT count(*) FROM folder_keywords WHERE folder_id = ?", (folder_id,)
        )
        if row is not None and row[0] < MAX_KEYWORDS_PER_FOLDER:
            return True
        # The registry may keep keywords no message carries any more: count the real ones.
        rows = await self._r.all("SELECT flags FROM messages WHERE folder_id = ?", (folder_id,))
        return len(keywords_in_texts(r[0] for r in rows)) < MAX_KEYWORDS_PER_FOLDER

    async def fetch_range(
        self, folder_id: int, first_uid: int, last_uid: int, *, with_index: bool = False
    ) -> list[tuple[MessageMeta, str | None]]:
        index = "b.index_json" if with_index else "NULL"
        rows = await self._r.all(
            "SELECT m.uid, m.flags, m.internal_date, m.modseq, b.size, m.blob_id,"
            f" {index} AS index_json FROM messages m JOIN blobs b ON b.id = m.blob_id"
            " WHERE m.folder_id = ? AND m.uid BETWEEN ? AND ? ORDER BY m.uid",
            (folder_id, first_uid, last_uid),
        )
        flag_cache: dict[str, frozenset[str]] = {}
        out: list[tuple[MessageMeta, str | None]] = []
        for r in rows:
            text = r[1]
            flags = flag_cache.get(text)
            if flags is None:
                flags = flag_cache[text] = decode_flags(text)
            meta = MessageMeta(r[0], flags, decode_date(r[2]), r[3], r[4], r[5])
            out.append((meta, r[6]))
        return out

    async def set_index(self, items: Sequence[tuple[str, str]]) -> None:
        pairs = [(index_json, blob_id) for blob_id, index_json in items]
        if not pairs:
            return

        def job(conn: sqlite3.Connection) -> None:
            _set_index(conn, pairs)

        await self._w.submit(job)

    async def search_index(self, folder_id: int, field: str, needle: str) -> tuple[list[int], list[int]]:
        column = _SEARCH_COLUMNS.get(field)
        if column is None:
            raise StorageError(f"no search index for field {field!r}")
        # blob_search holds the values case-folded, so instr() is exactly the
        # "needle.casefold() in value.casefold()" of RFC 3501 §6.4.4 as IMAP does it.
        sql = (
            f"SELECT m.uid, s.blob_id IS NULL, m.blob_id FROM messages m"
            f" LEFT JOIN blob_search s ON s.blob_id = m.blob_id WHERE m.folder_id = ?"
            f" AND (s.blob_id IS NULL OR instr(s.{column}, ?) > 0) ORDER BY m.uid"
        )
        params = (folder_id, needle.casefold())
        rows = await self._r.all(sql, params)
        missing = sorted({r[2] for r in rows if r[1]})
        if missing:  # bodies indexed before blob_search existed (or never indexed)
            for i in range(0, len(missing), SEARCH_FILL_BATCH):
                part = missing[i : i + SEARCH_FILL_BATCH]
                await self._w.submit(functools.partial(_fill_search, blob_ids=part))
            rows = await self._r.all(sql, params)
        return [r[0] for r in rows if not r[1]], [r[0] for r in rows if r[1]]

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
        uid_json = json.dumps(list(uids))

        def job(conn: sqlite3.Connection) -> tuple[tuple[list[FlagChange], list[int]], Collection[int]]:
            _require_folder(conn, folder_id)
            rows = conn.execute(
                f"SELECT uid, flags, modseq FROM messages WHERE folder_id = ? AND {_UIDS_IN}"
                " ORDER BY uid",
                (folder_id, uid_json),
            ).fetchall()
            updates, refused, added = plan_flag_changes(rows, mode, flagset, unchanged_since)
            if not updates:
                return ([], refused), ()
            # RFC 7162 §3: one STORE gets one new mod-sequence, above all earlier ones.
            modseq = _bump_modseq(conn, folder_id)
            conn.executemany(
                "UPDATE messages SET flags = ?, seen = ?, deleted = ?, modseq = ?"
                " WHERE folder_id = ? AND uid = ?",
                [(*_flag_columns(new), modseq, folder_id, uid) for uid, new in updates],
            )
            # After the update, so a full folder is counted as the STORE leaves it; a
            # KeywordLimit here rolls the whole job back.
            registry.register(conn, folder_id, added)
            changes = [FlagChange(uid, new, modseq) for uid, new in updates]
            return (changes, refused), (folder_id,)

        return await self._write(job)

    async def expunge(self, folder_id: int, uids: Sequence[int] | None = None) -> list[int]:
        uid_json = None if uids is None else json.dumps(list(uids))

        def job(conn: sqlite3.Connection) -> tuple[list[int], Collection[int]]:
            _require_folder(conn, folder_id)
            where = "folder_id = ? AND deleted = 1"
            params: tuple[Any, ...] = (folder_id,)
            if uid_json is not None:
                where += f" AND {_UIDS_IN}"
                params += (uid_json,)
            gone = [
                r[0]
                for r in conn.execute(f"SELECT uid FROM messages WHERE {where} ORDER BY uid", params)
            ]
            if not gone:
                return [], ()
            conn.execute(f"DELETE FROM messages WHERE {where}", params)
            _bump_modseq(conn, folder_id)
            return gone, (folder_id,)

        return await self._write(job)

    async def copy(
        self, src_folder_id: int, uids: Sequence[int], dst_folder_id: int
    ) -> list[tuple[int, int]]:
        def job(conn: sqlite3.Connection) -> tuple[list[tuple[int, int]], Collection[int]]:
            pairs = _copy(conn, src_folder_id, uids, dst_folder_id)
            return pairs, ((dst_folder_id,) if pairs else ())

        return await self._write(job)

    async def move(
        self, src_folder_id: int, uids: Sequence[int], dst_folder_id: int
    ) -> list[tuple[int, int]]:
        def job(conn: sqlite3.Connection) -> tuple[list[tuple[int, int]], Collection[int]]:
            # RFC 6851 §3.3: MOVE is COPY plus expunge of the sources, atomically.
            pairs = _copy(conn, src_folder_id, uids, dst_folder_id)
            if not pairs:
                return [], ()
            conn.executemany(
                "DELETE FROM messages WHERE folder_id = ? AND uid = ?",
                [(src_folder_id, src) for src, _ in pairs],
            )
            _bump_modseq(conn, src_folder_id)
            return pairs, (src_folder_id, dst_folder_id)

        return await self._write(job)

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
        targets = [(r.account_id, normalize_folder(r.folder), normalize_flags(r.flags))
                   for r in recipients]
        for _, _, flags in targets:
            check_message(frozenset(), flags)
        remote = list(dict.fromkeys(a.strip() for a in remote_recipients))
        now = now_utc()
        date = encode_date(internal_date or now.replace(microsecond=0))
        queued_at = encode_date(now)

        def job(conn: sqlite3.Connection) -> tuple[DeliveryResult, Collection[int]]:
            blob_id = _store_blob(conn, body, index_json)
            uids: dict[tuple[int, str], int] = {}
            changed: list[int] = []
            for account_id, folder, flags in targets:
                row = _folder_by_name(conn, account_id, folder)
                if row is None:  # unknown folder: the copy still arrives, in INBOX
                    row = _folder_by_name(conn, account_id, INBOX)
                    if row is None:
                        raise NotFound(f"account {account_id} has no mailbox to deliver to")
                key = (account_id, row["name"])
                if key in uids:
                    continue
                uid, _ = _insert_message(conn, row["id"], blob_id, flags, date)
                # Recorded, never refused: mail is not bounced for a folder's keywords.
                registry.register(conn, row["id"], check_message(frozenset(), flags), enforce=False)
                uids[key] = uid
                changed.append(row["id"])
            queue_id: int | None = None
            if remote:
                cur = conn.execute(
                    "INSERT INTO queue (mail_from, blob_id, created, next_attempt)"
                    " VALUES (?, ?, ?, ?)",
                    (mail_from, blob_id, queued_at, queued_at),
                )
                queue_id = cur.lastrowid
                lists = via_list or {}
                conn.executemany(
                    "INSERT INTO queue_recipients (queue_id, address, via_list) VALUES (?, ?, ?)",
                    [(queue_id, a, lists.get(a)) for a in remote],
                )
            return DeliveryResult(blob_id, uids, queue_id), changed

        result = await self._write(job)
        if result.queue_id is not None:
            self._queue_changed()
        return result
