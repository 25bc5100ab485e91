"""PostgreSQL backend of the mail store, for several daemons sharing one database.

Design (why it looks like this):

* **asyncpg pool** (:mod:`storage.postgres.db`): each interface call is one
  transaction on a pooled connection; driver errors become :mod:`storage.errors`
  (a lost server is ``Unavailable``: SMTP answers 451, IMAP ``NO [UNAVAILABLE]``),
  and the pool reconnects by itself on the next call.
* **Race-free counters across daemons**: UIDs, modseqs, UIDVALIDITY and the directory
  version are counter rows advanced with ``UPDATE ... RETURNING`` inside the
  transaction that uses them; the row lock orders concurrent writers.
* **Notifications** (:mod:`storage.postgres.notify`): ``pg_notify`` inside the write
  transaction (delivered only at commit) and one LISTEN connection per store, so IMAP
  IDLE on one daemon sees mail delivered through another.
* **Outbound queue** claims with ``FOR UPDATE SKIP LOCKED``.
* **Bodies** behind :class:`storage.blobs.BlobStore` (here: a ``bytea`` table).
* **Group commit**: left to PostgreSQL, which flushes the WAL once for every commit
  waiting at that moment (see the README's PostgreSQL figures).
* The schema is versioned (:mod:`storage.postgres.schema`) and migrated at open.
"""

from storage.postgres.store import PgStore

__all__ = ["PgStore"]
