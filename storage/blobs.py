"""Where message bodies live: a small interface a backend's body storage implements.

Bodies are content-addressed (``blob_id`` = sha256 hex of the bytes) and immutable, so
storing one is idempotent and a reader never sees a half-written body. The metadata
(size, IMAP index, who references the body) stays in the database with the folders;
only the bytes go through a :class:`BlobStore`.

PostgreSQL keeps them in its own table (:class:`storage.postgres.blobs.PgBlobStore`),
written inside the delivery's transaction. An S3-compatible object store fits the same
shape (see the README, "Message bodies"): ``put`` uploads before the metadata commit
(harmless if that commit never happens: the object is unreferenced), ``get`` is a GET
by key, and deletion follows the metadata row with a sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class BlobStore(Protocol):
    """Message bodies by content address.

    Invariants: ``get(blob_id)`` returns exactly the bytes whose sha256 hex is
    ``blob_id``, or None; a body is readable from the moment the transaction that
    referenced it commits until its last reference is gone.
    """

    async def put(self, tx: Any, items: Sequence[tuple[str, bytes]]) -> None:
        """Store each (blob_id, data) pair so it is readable once ``tx`` (the backend's
        open metadata transaction) commits. Idempotent: an id stored before is skipped.
        A store outside the database may write at once, before the commit."""

    async def get(self, blob_id: str) -> bytes | None:
        """The body stored under ``blob_id``, or None when there is none."""
