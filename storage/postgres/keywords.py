"""The per-folder keyword registry of the PostgreSQL store (table ``folder_keywords``).

Same invariant as :mod:`storage.sqlite.keywords`: every keyword a message of a folder
carries has a row; rows of keywords no longer carried stay until the folder needs
room. Every caller holds the folder's row lock (taken by the UID/modseq allocation or
STORE's ``FOR UPDATE``) until commit, so two daemons never both take the last room.
"""

from __future__ import annotations

from collections.abc import Collection

from storage.keywords import MAX_KEYWORDS_PER_FOLDER, SYSTEM_FLAGS, folder_limit
from storage.postgres.db import Connection

#: The distinct keywords a folder's messages carry (system flags are no keywords).
IN_USE_SQL = (
    "SELECT DISTINCT k FROM messages m, unnest(string_to_array(m.flags, ' ')) AS k"
    " WHERE m.folder_id = $1 AND m.flags <> '' AND k <> '' AND k <> ALL ($2::text[])"
)
#: The second parameter of IN_USE_SQL.
SYSTEM = sorted(SYSTEM_FLAGS)


async def in_use(conn: Connection, folder_id: int) -> list[str]:
    """The distinct keywords the folder's messages carry now."""
    return [r[0] for r in await conn.fetch(IN_USE_SQL, folder_id, SYSTEM)]


async def register(
    conn: Connection, folder_id: int, keywords: Collection[str], *, enforce: bool = True
) -> None:
    """Record ``keywords``, which messages of the folder now carry (call it after the
    change, in the same transaction, holding the folder's row lock).

    With ``enforce``, raises KeywordLimit ("folder") when one of them is new to the
    folder and the folder then holds more than MAX_KEYWORDS_PER_FOLDER distinct
    keywords; the transaction is rolled back, so nothing is changed. Without it (local
    delivery) they are only recorded.
    """
    if not keywords:
        return
    added = await conn.fetchval(
        "WITH ins AS (INSERT INTO folder_keywords (folder_id, keyword)"
        " SELECT $1, k FROM unnest($2::text[]) AS k ON CONFLICT DO NOTHING RETURNING 1)"
        " SELECT count(*) FROM ins",
        folder_id, sorted(keywords),
    )
    if not added or not enforce:
        return
    count = await conn.fetchval("SELECT count(*) FROM folder_keywords WHERE folder_id = $1", folder_id)
    if count <= MAX_KEYWORDS_PER_FOLDER:
        return
    # Full: forget the keywords no message carries any more, then count again.
    used = await in_use(conn, folder_id)
    await conn.execute(
        "DELETE FROM folder_keywords WHERE folder_id = $1 AND keyword <> ALL ($2::text[])",
        folder_id, used,
    )
    if len(used) > MAX_KEYWORDS_PER_FOLDER:
        raise folder_limit()


async def move(conn: Connection, src_folder_id: int, dst_folder_id: int) -> None:
    """Hand the source folder's registry to the folder its messages moved to (RENAME
    of INBOX moves all of them)."""
    await conn.execute(
        "UPDATE folder_keywords SET folder_id = $1 WHERE folder_id = $2", dst_folder_id, src_folder_id
    )
