"""Outbound queue reads on SQLite (:class:`storage.interfaces.OutboundQueue`).

Entries are written by :meth:`SqliteMailStore.deliver` in the delivery's own commit.
"""

from __future__ import annotations

import sqlite3

from storage.sqlite.reader import Reader
from storage.sqlite.util import decode_date
from storage.types import QueuedRecipient, QueueEntry

# One query per call, so an entry and its recipients are read from one snapshot.
_SQL = (
    "SELECT q.id, q.mail_from, q.blob_id, q.created, q.next_attempt,"
    " r.address, r.status, r.attempts, r.last_error"
    " FROM queue q LEFT JOIN queue_recipients r ON r.queue_id = q.id"
)


def _entries(rows: list[sqlite3.Row]) -> list[QueueEntry]:
    heads: dict[int, sqlite3.Row] = {}
    rcpts: dict[int, list[QueuedRecipient]] = {}
    for r in rows:
        heads.setdefault(r["id"], r)
        bucket = rcpts.setdefault(r["id"], [])
        if r["address"] is not None:
            bucket.append(QueuedRecipient(r["address"], r["status"], r["attempts"], r["last_error"]))
    return [
        QueueEntry(
            id=e["id"],
            mail_from=e["mail_from"],
            recipients=tuple(rcpts[entry_id]),
            blob_id=e["blob_id"],
            created=decode_date(e["created"]),
            next_attempt=decode_date(e["next_attempt"]),
        )
        for entry_id, e in heads.items()
    ]


class SqliteQueue:
    """Read side of the outbound queue."""

    def __init__(self, reader: Reader) -> None:
        self._r = reader

    async def list_queue(self) -> list[QueueEntry]:
        """Every entry, oldest first, with its recipients in address order."""
        return _entries(await self._r.all(_SQL + " ORDER BY q.id, r.address"))

    async def get_queue_entry(self, entry_id: int) -> QueueEntry | None:
        entries = _entries(await self._r.all(_SQL + " WHERE q.id = ? ORDER BY r.address", (entry_id,)))
        return entries[0] if entries else None
