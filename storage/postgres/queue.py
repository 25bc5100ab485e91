"""Outbound queue on PostgreSQL (:class:`storage.interfaces.OutboundQueue`).

Workers of every daemon claim from the same table: :meth:`PgQueue.claim_due` selects
due entries ``FOR UPDATE SKIP LOCKED`` and pushes their ``next_attempt`` past the lease
in the same statement, so two workers never take the same entry, and neither waits
for the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from storage.errors import Conflict
from storage.postgres.db import Connection, Db, Record
from storage.types import QueuedRecipient, QueueEntry, RecipientResult

_SQL = (
    "SELECT q.id, q.mail_from, q.blob_id, q.created, q.next_attempt, q.attempts, q.warned,"
    " r.address, r.status, r.attempts AS r_attempts, r.last_error, r.notified, r.via_list"
    " FROM queue q LEFT JOIN queue_recipients r ON r.queue_id = q.id"
)

#: An entry is worth claiming while it has a recipient still to send or a failure the
#: sender has not been told about yet.
_OPEN = (
    "EXISTS (SELECT 1 FROM queue_recipients r WHERE r.queue_id = q.id AND"
    " (r.status = 'pending' OR (r.status = 'failed' AND NOT r.notified)))"
)

_RESULT_STATUSES = frozenset({"delivered", "failed", "pending"})

#: Removes the entry $1 once nothing is left open, in the transaction that settled its
#: last recipient: were the removal a transaction of its own, a crash between the two
#: would leave a finished entry that is never claimed (not open) and so never removed.
_REMOVE_IF_FINISHED = f"DELETE FROM queue q WHERE q.id = $1 AND NOT {_OPEN}"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _entries(rows: Sequence[Record]) -> list[QueueEntry]:
    heads: dict[int, Record] = {}
    rcpts: dict[int, list[QueuedRecipient]] = {}
    for r in rows:
        heads.setdefault(r["id"], r)
        bucket = rcpts.setdefault(r["id"], [])
        if r["address"] is not None:
            bucket.append(QueuedRecipient(
                r["address"], r["status"], r["r_attempts"], r["last_error"],
                r["notified"], r["via_list"],
            ))
    return [
        QueueEntry(
            id=e["id"],
            mail_from=e["mail_from"],
            recipients=tuple(rcpts[entry_id]),
            blob_id=e["blob_id"],
            created=e["created"],
            next_attempt=e["next_attempt"],
            attempts=e["attempts"],
            warned=e["warned"],
        )
        for entry_id, e in heads.items()
    ]


def _count(status: str) -> int:
    """Rows touched, from a command tag such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])


class PgQueue:
    """The outbound queue shared by the workers of every daemon."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def list_queue(self) -> list[QueueEntry]:
        return _entries(await self._db.fetch(_SQL + " ORDER BY q.id, r.address COLLATE \"C\""))

    async def get_queue_entry(self, entry_id: int) -> QueueEntry | None:
        entries = _entries(await self._db.fetch(
            _SQL + " WHERE q.id = $1 ORDER BY r.address COLLATE \"C\"", entry_id
        ))
        return entries[0] if entries else None

    async def claim_due(self, now: datetime, *, limit: int, lease: timedelta) -> list[QueueEntry]:
        due, until = _utc(now), _utc(now) + lease

        async def tx(conn: Connection) -> list[QueueEntry]:
            # SKIP LOCKED: entries another daemon's worker is claiming right now are
            # simply not seen; each entry goes to exactly one claimer per lease.
            ids = [r[0] for r in await conn.fetch(
                f"SELECT q.id FROM queue q WHERE q.next_attempt <= $1 AND {_OPEN}"
                " ORDER BY q.next_attempt, q.id LIMIT $2 FOR UPDATE OF q SKIP LOCKED",
                due, limit,
            )]
            if not ids:
                return []
            await conn.execute(
                "UPDATE queue SET next_attempt = $1 WHERE id = ANY ($2::bigint[])", until, ids
            )
            rows = await conn.fetch(
                _SQL + " WHERE q.id = ANY ($1::bigint[])"
                " ORDER BY array_position($1::bigint[], q.id), r.address COLLATE \"C\"",
                ids,
            )
            return _entries(rows)

        return await self._db.transaction(tx)

    async def renew_claims(self, claims: Mapping[int, datetime], until: datetime) -> list[int]:
        if not claims:
            return []
        ids = list(claims)

        async def tx(conn: Connection) -> list[int]:
            # Compare-and-set per row: under READ COMMITTED a concurrent reschedule that
            # commits first makes the WHERE re-check see its next_attempt and skip the row.
            rows = await conn.fetch(
                "UPDATE queue q SET next_attempt = $1"
                " FROM unnest($2::bigint[], $3::timestamptz[]) AS c(id, lease)"
                " WHERE q.id = c.id AND q.next_attempt = c.lease RETURNING q.id",
                _utc(until), ids, [_utc(claims[i]) for i in ids],
            )
            return sorted(r[0] for r in rows)

        return await self._db.transaction(tx)

    async def record_results(self, entry_id: int, results: Sequence[RecipientResult]) -> None:
        for res in results:
            if res.status not in _RESULT_STATUSES:
                raise Conflict(f"unknown recipient status {res.status!r}")

        async def tx(conn: Connection) -> None:
            await conn.execute(
                "UPDATE queue_recipients r SET status = x.status, attempts = r.attempts + 1,"
                " last_error = x.error FROM unnest($1::text[], $2::text[], $3::text[])"
                " AS x(address, status, error)"
                " WHERE r.queue_id = $4 AND r.address = x.address AND r.status = 'pending'",
                [r.address for r in results], [r.status for r in results],
                [r.error for r in results], entry_id,
            )
            await conn.execute(_REMOVE_IF_FINISHED, entry_id)

        await self._db.transaction(tx)

    async def mark_notified(self, entry_id: int, addresses: Sequence[str]) -> None:
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "UPDATE queue_recipients SET notified = TRUE"
                " WHERE queue_id = $1 AND address = ANY ($2::text[])",
                entry_id, list(addresses),
            )
            await conn.execute(_REMOVE_IF_FINISHED, entry_id)

        await self._db.transaction(tx)

    async def reschedule(self, entry_id: int, next_attempt: datetime, *, warned: bool | None = None) -> None:
        async def tx(conn: Connection) -> None:
            await conn.execute(
                "UPDATE queue SET attempts = attempts + 1, next_attempt = $1,"
                " warned = COALESCE($2, warned) WHERE id = $3",
                _utc(next_attempt), warned, entry_id,
            )

        await self._db.transaction(tx)

    async def retry_now(self, now: datetime, entry_id: int | None = None) -> int:
        async def tx(conn: Connection) -> int:
            status = await conn.execute(
                "UPDATE queue SET next_attempt = $1 WHERE id IN"
                f" (SELECT q.id FROM queue q WHERE {_OPEN} AND ($2::bigint IS NULL OR q.id = $2))",
                _utc(now), entry_id,
            )
            return _count(status)

        return await self._db.transaction(tx)

    async def remove_queue_entry(self, entry_id: int) -> bool:
        async def tx(conn: Connection) -> bool:
            # Recipients go by ON DELETE CASCADE, the body by the queue_ad trigger.
            return await conn.fetchval("DELETE FROM queue WHERE id = $1 RETURNING 1", entry_id) is not None

        return await self._db.transaction(tx)
