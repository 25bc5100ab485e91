"""Outbound queue on SQLite (:class:`storage.interfaces.OutboundQueue`).

Entries are written by :meth:`SqliteMailStore.deliver` in the delivery's own commit;
the delivery worker claims, updates and removes them here, each call one transaction
run by the single writer thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from storage.errors import Conflict
from storage.sqlite.reader import Reader
from storage.sqlite.util import decode_date
from storage.sqlite.writer import Writer
from storage.types import QueuedRecipient, QueueEntry, RecipientResult

# One query per call, so an entry and its recipients are read from one snapshot.
_SQL = (
    "SELECT q.id, q.mail_from, q.blob_id, q.created, q.next_attempt, q.attempts, q.warned,"
    " r.address, r.status, r.attempts AS r_attempts, r.last_error, r.notified, r.via_list"
    " FROM queue q LEFT JOIN queue_recipients r ON r.queue_id = q.id"
)

#: An entry is worth claiming while it has a recipient still to send or a failure the
#: sender has not been told about yet.
_OPEN = (
    "EXISTS (SELECT 1 FROM queue_recipients r WHERE r.queue_id = q.id AND"
    " (r.status = 'pending' OR (r.status = 'failed' AND r.notified = 0)))"
)

_RESULT_STATUSES = frozenset({"delivered", "failed", "pending"})

#: Removes the entry ``?`` once nothing is left open, in the commit that settled its last
#: recipient: were the removal a commit of its own, a crash between the two would leave a
#: finished entry that is never claimed (not open) and so never removed.
_REMOVE_IF_FINISHED = f"DELETE FROM queue AS q WHERE q.id = ? AND NOT {_OPEN}"


def _encode(value: datetime) -> str:
    """UTC ISO 8601 text: every queue date has the same offset, so text order is time order."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _entries(rows: Sequence[sqlite3.Row]) -> list[QueueEntry]:
    heads: dict[int, sqlite3.Row] = {}
    rcpts: dict[int, list[QueuedRecipient]] = {}
    for r in rows:
        heads.setdefault(r["id"], r)
        bucket = rcpts.setdefault(r["id"], [])
        if r["address"] is not None:
            bucket.append(QueuedRecipient(
                r["address"], r["status"], r["r_attempts"], r["last_error"],
                bool(r["notified"]), r["via_list"],
            ))
    return [
        QueueEntry(
            id=e["id"],
            mail_from=e["mail_from"],
            recipients=tuple(rcpts[entry_id]),
            blob_id=e["blob_id"],
            created=decode_date(e["created"]),
            next_attempt=decode_date(e["next_attempt"]),
            attempts=e["attempts"],
            warned=bool(e["warned"]),
        )
        for entry_id, e in heads.items()
    ]


class SqliteQueue:
    """The outbound queue: reads on the shared reader, writes through the writer thread."""

    def __init__(self, reader: Reader, writer: Writer | None = None) -> None:
        self._r = reader
        self._w = writer

    def _writer(self) -> Writer:
        if self._w is None:  # pragma: no cover - SqliteStore always passes one
            raise Conflict("this queue view is read-only")
        return self._w

    async def list_queue(self) -> list[QueueEntry]:
        """Every entry, oldest first, with its recipients in address order."""
        return _entries(await self._r.all(_SQL + " ORDER BY q.id, r.address"))

    async def get_queue_entry(self, entry_id: int) -> QueueEntry | None:
        entries = _entries(await self._r.all(_SQL + " WHERE q.id = ? ORDER BY r.address", (entry_id,)))
        return entries[0] if entries else None

    async def claim_due(self, now: datetime, *, limit: int, lease: timedelta) -> list[QueueEntry]:
        due, until = _encode(now), _encode(now + lease)

        def job(conn: sqlite3.Connection) -> list[QueueEntry]:
            ids = [row[0] for row in conn.execute(
                f"SELECT q.id FROM queue q WHERE q.next_attempt <= ? AND {_OPEN}"
                " ORDER BY q.next_attempt, q.id LIMIT ?",
                (due, limit),
            )]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            conn.execute(f"UPDATE queue SET next_attempt = ? WHERE id IN ({marks})", (until, *ids))
            rows = conn.execute(
                _SQL + f" WHERE q.id IN ({marks}) ORDER BY q.next_attempt, q.id, r.address", ids
            ).fetchall()
            return _entries(rows)

        return await self._writer().submit(job)

    async def renew_claims(self, claims: Mapping[int, datetime], until: datetime) -> list[int]:
        # Dates are compared as the text _encode gives; claim_due and earlier renewals
        # stored exactly that text for the lease the caller holds.
        pairs = sorted((entry_id, _encode(lease)) for entry_id, lease in claims.items())
        new_end = _encode(until)

        def job(conn: sqlite3.Connection) -> list[int]:
            return [
                entry_id for entry_id, lease in pairs
                if conn.execute(
                    "UPDATE queue SET next_attempt = ? WHERE id = ? AND next_attempt = ?",
                    (new_end, entry_id, lease),
                ).rowcount
            ]

        if not pairs:
            return []
        return await self._writer().submit(job)

    async def record_results(self, entry_id: int, results: Sequence[RecipientResult]) -> None:
        rows = []
        for res in results:
            if res.status not in _RESULT_STATUSES:
                raise Conflict(f"unknown recipient status {res.status!r}")
            rows.append((res.status, res.error, entry_id, res.address))

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE queue_recipients SET status = ?, attempts = attempts + 1, last_error = ?"
                " WHERE queue_id = ? AND address = ? AND status = 'pending'",
                rows,
            )
            conn.execute(_REMOVE_IF_FINISHED, (entry_id,))

        await self._writer().submit(job)

    async def mark_notified(self, entry_id: int, addresses: Sequence[str]) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE queue_recipients SET notified = 1 WHERE queue_id = ? AND address = ?",
                [(entry_id, a) for a in addresses],
            )
            conn.execute(_REMOVE_IF_FINISHED, (entry_id,))

        await self._writer().submit(job)

    async def reschedule(self, entry_id: int, next_attempt: datetime, *, warned: bool | None = None) -> None:
        when = _encode(next_attempt)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE queue SET attempts = attempts + 1, next_attempt = ?,"
                " warned = COALESCE(?, warned) WHERE id = ?",
                (when, None if warned is None else int(warned), entry_id),
            )

        await self._writer().submit(job)

    async def retry_now(self, now: datetime, entry_id: int | None = None) -> int:
        when = _encode(now)
        where = "" if entry_id is None else " AND q.id = ?"
        params: tuple[object, ...] = (when,) if entry_id is None else (when, entry_id)

        def job(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                f"UPDATE queue SET next_attempt = ? WHERE id IN (SELECT q.id FROM queue q WHERE {_OPEN}{where})",
                params,
            )
            return int(cur.rowcount)

        return await self._writer().submit(job)

    async def remove_queue_entry(self, entry_id: int) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            # queue_recipients go by ON DELETE CASCADE, the blob by the queue_ad trigger.
            return conn.execute("DELETE FROM queue WHERE id = ?", (entry_id,)).rowcount > 0

        return await self._writer().submit(job)
