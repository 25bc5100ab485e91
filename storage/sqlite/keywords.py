"""The per-folder keyword registry of the SQLite store (table ``folder_keywords``).

Invariant: every keyword a message of a folder carries has a row for that folder.
Only the paths that put keywords on messages (append, deliver, copy/move, STORE and
the rename of INBOX) touch it; removals leave rows behind, so the registry is a
superset of the keywords in use, exact again whenever a folder needs room: then
:func:`register` rebuilds it from the messages (one scan of the folder's flags, only
when a change brings a new keyword into a folder whose registry is full).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection

from storage.keywords import MAX_KEYWORDS_PER_FOLDER, folder_limit, keywords_in_texts


def in_use(conn: sqlite3.Connection, folder_id: int) -> set[str]:
    """The distinct keywords the folder's messages carry now (a scan of their flags)."""
    rows = conn.execute("SELECT flags FROM messages WHERE folder_id = ?", (folder_id,))
    return keywords_in_texts(r[0] for r in rows)


def register(
    conn: sqlite3.Connection, folder_id: int, keywords: Collection[str], *, enforce: bool = True
) -> None:
    """Record ``keywords``, which messages of the folder now carry (call it after the
    change, in the same transaction).

    With ``enforce``, raises KeywordLimit ("folder") when one of them is new to the
    folder and the folder then holds more than MAX_KEYWORDS_PER_FOLDER distinct
    keywords; the caller's transaction is rolled back, so nothing is changed. Without
    it (local delivery, which is never refused for its flags) they are only recorded.
    """
    if not keywords:
        return
    new = [
        r[0]
        for r in conn.execute(
            "SELECT value FROM json_each(?) WHERE value NOT IN"
            " (SELECT keyword FROM folder_keywords WHERE folder_id = ?)",
            (json.dumps(sorted(keywords)), folder_id),
        )
    ]
    if not new:
        return
    conn.executemany(
        "INSERT INTO folder_keywords (folder_id, keyword) VALUES (?, ?)",
        [(folder_id, k) for k in new],
    )
    if not enforce:
        return
    (count,) = conn.execute(
        "SELECT count(*) FROM folder_keywords WHERE folder_id = ?", (folder_id,)
    ).fetchone()
    if count <= MAX_KEYWORDS_PER_FOLDER:
        return
    # Full: forget the keywords no message carries any more, then count again.
    used = in_use(conn, folder_id)
    conn.execute(
        "DELETE FROM folder_keywords WHERE folder_id = ?"
        " AND keyword NOT IN (SELECT value FROM json_each(?))",
        (folder_id, json.dumps(sorted(used))),
    )
    if len(used) > MAX_KEYWORDS_PER_FOLDER:
        raise folder_limit()


def move(conn: sqlite3.Connection, src_folder_id: int, dst_folder_id: int) -> None:
    """Hand the source folder's registry to the folder its messages moved to (RENAME
    of INBOX moves all of them)."""
    conn.execute(
        "UPDATE folder_keywords SET folder_id = ? WHERE folder_id = ?",
        (dst_folder_id, src_folder_id),
    )
