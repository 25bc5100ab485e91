"""Versioned schema of the SQLite store.

``PRAGMA user_version`` holds the number of migration steps applied. :data:`MIGRATIONS`
is the ordered list of steps; step ``n`` (1-based) brings the schema from version
``n - 1`` to ``n``. Steps are only ever appended, never edited once released.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from storage.errors import StorageError

# Version 1: directory, folders, content-addressed messages, outbound queue.
_V1 = [
    # Counters: directory_version (bumped with every directory change, RFC-free
    # change detection for caches in any process) and last_uidvalidity.
    """CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID""",
    """INSERT INTO meta (key, value) VALUES ('directory_version', 1), ('last_uidvalidity', 0)""",
    """CREATE TABLE domains (name TEXT PRIMARY KEY) WITHOUT ROWID""",
    """CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        address TEXT NOT NULL UNIQUE,
        domain TEXT NOT NULL REFERENCES domains (name),
        kind TEXT NOT NULL CHECK (kind IN ('user', 'shared', 'room', 'list')),
        display_name TEXT NOT NULL DEFAULT '',
        enabled INTEGER NOT NULL DEFAULT 1,
        licensed INTEGER NOT NULL DEFAULT 0 CHECK (licensed = 0 OR kind = 'user'),
        password_hash TEXT CHECK (password_hash IS NULL OR kind = 'user'),
        settings TEXT NOT NULL DEFAULT '{}',
        created TEXT NOT NULL
    )""",
    "CREATE INDEX accounts_domain ON accounts (domain)",
    "CREATE INDEX accounts_kind ON accounts (kind, address)",
    "CREATE INDEX accounts_licensed ON accounts (licensed) WHERE licensed = 1",
    """CREATE TABLE aliases (
        alias TEXT PRIMARY KEY,
        domain TEXT NOT NULL REFERENCES domains (name),
        target_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE
    ) WITHOUT ROWID""",
    "CREATE INDEX aliases_target ON aliases (target_id)",
    "CREATE INDEX aliases_domain ON aliases (domain)",
    """CREATE TABLE grants (
        mailbox_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        full_access INTEGER NOT NULL DEFAULT 0,
        send_as INTEGER NOT NULL DEFAULT 0,
        send_on_behalf INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (mailbox_id, user_id),
        CHECK (full_access + send_as + send_on_behalf > 0)
    ) WITHOUT ROWID""",
    "CREATE INDEX grants_user ON grants (user_id)",
    """CREATE TABLE list_members (
        seq INTEGER PRIMARY KEY,
        list_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        member TEXT NOT NULL,
        UNIQUE (list_id, member)
    )""",
    "CREATE INDEX list_members_member ON list_members (member)",
    """CREATE TABLE folders (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uidnext INTEGER NOT NULL DEFAULT 1,
        highestmodseq INTEGER NOT NULL DEFAULT 1,
        special_use TEXT,
        subscribed INTEGER NOT NULL DEFAULT 0,
        messages INTEGER NOT NULL DEFAULT 0,
        unseen INTEGER NOT NULL DEFAULT 0,
        UNIQUE (account_id, name)
    )""",
    # Content-addressed bodies: id is the sha256 hex of data. index_json is reserved
    # for a parsed IMAP index (ENVELOPE/BODYSTRUCTURE) added later.
    """CREATE TABLE blobs (
        id TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        data BLOB NOT NULL,
        index_json TEXT
    )""",
    # seen/deleted mirror the flags text so unseen counts and EXPUNGE are index-cheap.
    """CREATE TABLE messages (
        folder_id INTEGER NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
        uid INTEGER NOT NULL,
        blob_id TEXT NOT NULL REFERENCES blobs (id),
        flags TEXT NOT NULL DEFAULT '',
        seen INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0,
        internal_date TEXT NOT NULL,
        modseq INTEGER NOT NULL,
        PRIMARY KEY (folder_id, uid)
    ) WITHOUT ROWID""",
    "CREATE INDEX messages_blob ON messages (blob_id)",
    "CREATE INDEX messages_modseq ON messages (folder_id, modseq)",
    """CREATE TABLE queue (
        id INTEGER PRIMARY KEY,
        mail_from TEXT NOT NULL,
        blob_id TEXT NOT NULL REFERENCES blobs (id),
        created TEXT NOT NULL,
        next_attempt TEXT NOT NULL
    )""",
    "CREATE INDEX queue_blob ON queue (blob_id)",
    "CREATE INDEX queue_next ON queue (next_attempt)",
    """CREATE TABLE queue_recipients (
        queue_id INTEGER NOT NULL REFERENCES queue (id) ON DELETE CASCADE,
        address TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        PRIMARY KEY (queue_id, address)
    ) WITHOUT ROWID""",
    # Folder counters kept in step with the messages table.
    """CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
        UPDATE folders SET messages = messages + 1, unseen = unseen + 1 - NEW.seen
            WHERE id = NEW.folder_id;
    END""",
    """CREATE TRIGGER messages_au AFTER UPDATE OF folder_id, seen ON messages BEGIN
        UPDATE folders SET messages = messages - 1, unseen = unseen - 1 + OLD.seen
            WHERE id = OLD.folder_id;
        UPDATE folders SET messages = messages + 1, unseen = unseen + 1 - NEW.seen
            WHERE id = NEW.folder_id;
    END""",
    # A blob lives exactly as long as something references it; it goes in the same
    # transaction that removed its last reference (also through ON DELETE CASCADE).
    """CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
        UPDATE folders SET messages = messages - 1, unseen = unseen - 1 + OLD.seen
            WHERE id = OLD.folder_id;
        DELETE FROM blobs WHERE id = OLD.blob_id
            AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = OLD.blob_id)
            AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = OLD.blob_id);
    END""",
    """CREATE TRIGGER queue_ad AFTER DELETE ON queue BEGIN
        DELETE FROM blobs WHERE id = OLD.blob_id
            AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = OLD.blob_id)
            AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = OLD.blob_id);
    END""",
]

# Version 2: outbound queue state for the delivery worker (issue 6): runs per entry
# (the retry schedule index), the delay-warning mark, per-recipient DSN mark, and the
# distribution list an external member was reached through (envelope rewriting).
_V2_OUTBOUND_QUEUE = [
    "ALTER TABLE queue ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE queue ADD COLUMN warned INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE queue_recipients ADD COLUMN notified INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE queue_recipients ADD COLUMN via_list TEXT",
]

# Calendars (issue 5): per-account collections (calendar VEVENT, tasks VTODO, contacts
# vCard), their items (one iCalendar object or vCard per UID), and the busy intervals
# of event items (UTC text, fixed width) for room conflict checks and free/busy.
_CALENDARS = [
    """CREATE TABLE calendar_collections (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('calendar', 'tasks', 'contacts')),
        props TEXT NOT NULL DEFAULT '{}',
        modified TEXT NOT NULL,
        UNIQUE (account_id, name)
    )""",
    """CREATE TABLE calendar_items (
        id INTEGER PRIMARY KEY,
        collection_id INTEGER NOT NULL REFERENCES calendar_collections (id) ON DELETE CASCADE,
        href TEXT NOT NULL,
        uid TEXT NOT NULL,
        text TEXT NOT NULL,
        etag TEXT NOT NULL,
        modified TEXT NOT NULL,
        UNIQUE (collection_id, href)
    )""",
    "CREATE INDEX calendar_items_uid ON calendar_items (collection_id, uid)",
    """CREATE TABLE calendar_busy (
        item_id INTEGER NOT NULL REFERENCES calendar_items (id) ON DELETE CASCADE,
        collection_id INTEGER NOT NULL,
        start TEXT NOT NULL,
        end TEXT NOT NULL,
        tentative INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX calendar_busy_start ON calendar_busy (collection_id, start)",
    "CREATE INDEX calendar_busy_item ON calendar_busy (item_id)",
]

# IMAP SEARCH FROM/TO/CC/BCC/SUBJECT (issue 4 §7): the decoded values of those fields
# (the "h" member of blobs.index_json), case-folded with str.casefold, in one narrow
# row per body, so SEARCH matches them in SQL without reading each body's whole index.
# Filled with the index; rows missing (bodies indexed before this step) are filled by
# the first SEARCH that needs them.
_BLOB_SEARCH = [
    """CREATE TABLE blob_search (
        blob_id TEXT PRIMARY KEY REFERENCES blobs (id) ON DELETE CASCADE,
        h_from TEXT,
        h_to TEXT,
        h_cc TEXT,
        h_bcc TEXT,
        h_subject TEXT
    ) WITHOUT ROWID""",
]

# Keyword bounds (storage/keywords.py): the keywords defined in each folder, so a change
# can tell in a few index lookups whether it brings a new keyword into the folder and
# how many the folder holds (MAX_KEYWORDS_PER_FOLDER). Invariant: every keyword a message
# of the folder carries has a row; rows of keywords no message carries any more stay
# until the folder needs room (storage/sqlite/keywords.py). Filled here from the
# messages' flags; the system flags are no keywords.
_FOLDER_KEYWORDS = [
    """CREATE TABLE folder_keywords (
        folder_id INTEGER NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
        keyword TEXT NOT NULL,
        PRIMARY KEY (folder_id, keyword)
    ) WITHOUT ROWID""",
    """WITH RECURSIVE split (folder_id, word, rest) AS (
        SELECT folder_id, '', flags || ' ' FROM messages WHERE flags <> ''
        UNION ALL
        SELECT folder_id, substr(rest, 1, instr(rest, ' ') - 1), substr(rest, instr(rest, ' ') + 1)
        FROM split WHERE rest <> ''
    )
    INSERT OR IGNORE INTO folder_keywords (folder_id, keyword)
    SELECT DISTINCT folder_id, word FROM split
    WHERE word <> '' AND word NOT IN ('\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft')""",
]

#: Ordered migration steps; the schema version is len(MIGRATIONS) when all are applied.
MIGRATIONS: list[list[str]] = [_V1, _V2_OUTBOUND_QUEUE, _CALENDARS, _BLOB_SEARCH, _FOLDER_KEYWORDS]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Apply the missing migration steps, each in its own IMMEDIATE transaction.

    Safe when several processes open the same file at once: the version is re-read
    under the write lock. Returns the schema version. Raises StorageError when the
    database was written by a newer program.
    """
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"database {path} has schema version {version}, newer than this "
                    f"program knows ({SCHEMA_VERSION}); upgrade mailserver"
                )
            if version == SCHEMA_VERSION:
                conn.execute("COMMIT")
                return version
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            # PRAGMA cannot take a bound parameter; version is our own integer.
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
