"""Message bodies in PostgreSQL (:class:`storage.blobs.BlobStore`): table ``blob_data``.

Written inside the delivery's own transaction, so a body and the folder entries that
reference it commit together; deleted by ``ON DELETE CASCADE`` with its ``blobs``
metadata row, which the triggers remove in the transaction that dropped the last
reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storage.postgres.db import Db


class PgBlobStore:
    """Bodies as ``bytea`` rows (TOASTed and compressed by PostgreSQL)."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def put(self, tx: Any, items: Sequence[tuple[str, bytes]]) -> None:
        if items:
            await tx.executemany(
                "INSERT INTO blob_data (id, data) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                items,
            )

    async def get(self, blob_id: str) -> bytes | None:
        data = await self._db.fetchval("SELECT data FROM blob_data WHERE id = $1", blob_id)
        return None if data is None else bytes(data)
