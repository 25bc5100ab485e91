"""SQLite backend of the mail store.

Design (why it looks like this):

* **Writes** go through one writer thread (:mod:`storage.sqlite.writer`) that owns a
  plain :mod:`sqlite3` connection. Callers submit a job (a sync function taking the
  connection); the thread runs every ready job in one ``BEGIN IMMEDIATE`` transaction,
  each in its own SAVEPOINT, commits once and settles the futures with one
  ``call_soon_threadsafe``: one thread hop and one fsync per *batch* (group commit),
  which is what concurrent SMTP deliveries need.
* **Reads** go through aiosqlite (:mod:`storage.sqlite.reader`) on a separate,
  query-only connection: one thread hop per statement, off the event loop. Reads are
  single statements, so that is the right cost there.
* WAL mode with ``synchronous=FULL`` (a commit is fsynced before the caller hears of
  it), ``busy_timeout`` so a CLI process and the daemon share the file, foreign keys on.
* The schema is versioned with ``PRAGMA user_version`` and migrated at open
  (:mod:`storage.sqlite.schema`); a newer schema is refused.
"""

from storage.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
