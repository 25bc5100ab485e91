"""Change notifications across daemons: PostgreSQL LISTEN/NOTIFY.

A write transaction that changed folders calls :meth:`Notifier.send` before it
commits; PostgreSQL delivers a NOTIFY only when (and if) its transaction commits, so
other daemons never hear of a change they cannot yet read. The payload names the
origin (this store) and the folder ids; each store keeps one dedicated connection
LISTENing, skips its own notifications (it has already told its listeners, right after
its commit) and calls the listeners for the others' on the event loop.

The listening connection is watched by a heartbeat; when it is lost, the store
reconnects with backoff and then calls the listeners for every folder, because changes
made while it was deaf were missed (IMAP sessions simply re-read their folder).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

Listener = Callable[[int], None]

CHANNEL = "mailserver_folders"
#: Seconds between checks that the listening connection is alive. A lost connection
#: is usually noticed at once (the socket closes); this bounds the silent cases.
HEARTBEAT_SECONDS = 5.0
#: Longest wait between reconnection attempts.
MAX_BACKOFF_SECONDS = 5.0
#: PostgreSQL refuses NOTIFY payloads of 8000 bytes or more: folder ids are sent in
#: chunks well below that.
MAX_IDS_PER_NOTIFY = 500


class Notifier:
    """Local listeners plus the cross-daemon LISTEN/NOTIFY channel."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self.origin = uuid.uuid4().hex[:16]
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._ready = asyncio.Event()
        self._closed = False
        self._conn: asyncpg.Connection | None = None
        #: Notifications received from other stores and reconnections (tests, metrics).
        self.received = 0
        self.reconnects = 0

    # -- listeners

    def add(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove(self, listener: Listener) -> None:
        try:
            self._listeners.remove(listener)
        except ValueError:
            pass

    def local(self, folder_ids: Iterable[int]) -> None:
        """Call every listener for each folder id (on the event loop)."""
        for folder_id in folder_ids:
            for listener in list(self._listeners):
                try:
                    listener(folder_id)
                except Exception:
                    log.exception("mail store listener failed")

    # -- the channel

    def payload(self, folder_ids: Iterable[int]) -> str | None:
        """One notification payload for these folders, or None when they need several."""
        ids = sorted(set(folder_ids))
        if len(ids) > MAX_IDS_PER_NOTIFY:
            return None
        return self.origin + ":" + ",".join(map(str, ids))

    async def send(self, conn: asyncpg.Connection, folder_ids: Iterable[int]) -> None:
        """Queue a notification in ``conn``'s open transaction (sent at its commit)."""
        ids = sorted(set(folder_ids))
        for i in range(0, len(ids), MAX_IDS_PER_NOTIFY):
            chunk = ids[i:i + MAX_IDS_PER_NOTIFY]
            payload = self.origin + ":" + ",".join(map(str, chunk))
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        origin, _, ids = payload.partition(":")
        if origin == self.origin or not ids:
            return
        self.received += 1
        try:
            folder_ids = [int(x) for x in ids.split(",")]
        except ValueError:
            log.warning("ignoring malformed notification %r", payload)
            return
        self.local(folder_ids)

    async def start(self, first: asyncpg.Connection, all_folders: Callable[[], Any]) -> None:
        """Start listening on ``first`` (an open connection the notifier now owns)."""
        self._all_folders = all_folders
        await self._listen(first)
        self._task = asyncio.create_task(self._supervise(first), name="pg-listen")

    async def _listen(self, conn: asyncpg.Connection) -> None:
        self._lost.clear()
        conn.add_termination_listener(lambda _c: self._lost.set())
        await conn.add_listener(CHANNEL, self._on_notify)
        self._conn = conn

    async def _supervise(self, conn: asyncpg.Connection | None) -> None:
        backoff = 0.1
        while not self._closed:
            try:
                if conn is None:
                    conn = await self._connect()
                    await self._listen(conn)
                    self.reconnects += 1
                    log.info("listening for changes again after a lost connection")
                    # Changes made while we were not listening were missed.
                    self.local(await self._all_folders())
                backoff = 0.1
                while not self._closed:
                    try:
                        await asyncio.wait_for(self._lost.wait(), HEARTBEAT_SECONDS)
                    except TimeoutError:
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), HEARTBEAT_SECONDS)
                        continue
                    raise ConnectionError("listening connection closed")
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - any failure means reconnect
                if self._closed:
                    break
                log.warning("change notifications interrupted (%s); reconnecting", err)
                if conn is not None:
                    conn.terminate()
                conn = None
                self._conn = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def close(self) -> None:
        self._closed = True
        self._lost.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._conn is not None:
            try:
                await asyncio.wait_for(self._conn.close(), 2.0)
            except Exception:  # noqa: BLE001 - closing a dead connection
                self._conn.terminate()
            self._conn = None
