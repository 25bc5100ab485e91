"""Thin asyncio server for IMAP (STARTTLS, port 143 role) and IMAPS (implicit TLS,
RFC 8314), plus the per-daemon :class:`Registry` of sessions: connection limits per
client address and per user, and store change notifications fanned out to the
sessions that have the changed folder selected (so IDLE sees new mail at once).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict

from mailserver import metrics
from mailserver.app import App
from mailserver.config import Listener
from mailserver.connlimit import AddressLimiter
from mailserver.imap.session import Session

log = logging.getLogger("mailserver.imap")


class Registry:
    """Open sessions of one daemon: who is connected, who watches which folder."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.addresses = AddressLimiter(int(app.config["imap.max_connections_per_address"]))
        self.per_user: dict[int, int] = defaultdict(int)
        self._counted_user: dict[Session, int] = {}
        self._watchers: dict[int, set[Session]] = defaultdict(set)
        app.store.mail.add_listener(self._changed)

    def _changed(self, folder_id: int) -> None:
        """Store listener (after commit, on the loop): wake the sessions on that folder."""
        for session in self._watchers.get(folder_id, ()):
            session.dirty.set()

    def watch(self, session: Session, folder_id: int) -> None:
        self._watchers[folder_id].add(session)

    def unwatch(self, session: Session, folder_id: int) -> None:
        watchers = self._watchers.get(folder_id)
        if watchers is not None:
            watchers.discard(session)
            if not watchers:
                del self._watchers[folder_id]

    def admit(self, ip: str) -> bool:
        """Count a new connection from ``ip``; False (not counted) over the limit."""
        return self.addresses.admit(ip)

    def release_ip(self, ip: str) -> None:
        self.addresses.release(ip)

    def add_user(self, session: Session, user_id: int) -> bool:
        """Count a logged-in session of ``user_id``; False over the limit."""
        if self.per_user[user_id] >= int(self.app.config["imap.max_connections_per_user"]):
            return False
        self.per_user[user_id] += 1
        self._counted_user[session] = user_id
        return True

    def leave(self, session: Session) -> None:
        user_id = self._counted_user.pop(session, None)
        if user_id is not None:
            self.per_user[user_id] -= 1
            if self.per_user[user_id] <= 0:
                del self.per_user[user_id]


_REGISTRIES: weakref.WeakKeyDictionary[App, Registry] = weakref.WeakKeyDictionary()


def registry(app: App) -> Registry:
    """The registry of ``app`` (one for both listeners)."""
    reg = _REGISTRIES.get(app)
    if reg is None:
        reg = _REGISTRIES[app] = Registry(app)
    return reg


def _handler(app: App, implicit_tls: bool):  # type: ignore[no-untyped-def]
    reg = registry(app)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        app.connections.add(transport)
        listener = "imaps" if implicit_tls else "imap"
        metrics.connection_opened(listener)
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if peer else "unknown"
        try:
            if app.shutting_down:
                writer.write(b"* BYE Server shutting down\r\n")
                return
            if not reg.admit(ip):
                writer.write(b"* BYE [LIMIT] Too many connections from your address\r\n")
                return
            try:
                session = Session(app, reg, reader, writer, tls=implicit_tls, starttls_offered=not implicit_tls)
                await session.run()
            finally:
                reg.release_ip(ip)
        except Exception:
            log.exception("imap connection from %s failed", ip)
        finally:
            metrics.connection_closed(listener)
            app.connections.discard(transport)
            app.connections.discard(writer.transport)
            try:
                writer.close()
            except (ConnectionError, RuntimeError):
                pass

    return handle


async def start_imap(app: App, listener: Listener) -> asyncio.Server:
    """IMAP with STARTTLS (RFC 3501 §6.2.1)."""
    return await asyncio.start_server(_handler(app, False), listener.host, listener.port)


async def start_imaps(app: App, listener: Listener) -> asyncio.Server:
    """IMAP over implicit TLS (RFC 8314 §3.2)."""
    return await asyncio.start_server(
        _handler(app, True), listener.host, listener.port, ssl=app.ssl_context
    )
