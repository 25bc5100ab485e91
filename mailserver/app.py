"""What every listener gets: the running daemon's shared services.

Listeners are started by :mod:`mailserver.daemon` through ``LISTENER_FACTORIES``: each is
``async def start(app: App, listener: Listener) -> asyncio.Server``. A listener
registers its open connections with :attr:`App.connections` and wraps work that must
finish before shutdown (an SMTP transaction being committed, an IMAP command) in
``async with app.inflight.hold():``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from auth.accounts import AccountService
from auth.login import Authenticator
from auth.passwords import PasswordHasher
from mailserver.config import Config
from storage.interfaces import Store


class InFlight:
    """Counts work that shutdown waits for (bounded by server.shutdown_grace_seconds)."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            if self._count == 0:
                self._idle.set()

    @property
    def count(self) -> int:
        return self._count

    async def wait_idle(self, seconds: float) -> bool:
        """True when nothing was in flight before ``seconds`` passed."""
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
            return True
        except TimeoutError:
            return False


@dataclass(eq=False)
class App:
    config: Config
    store: Store
    hasher: PasswordHasher
    authenticator: Authenticator
    accounts: AccountService
    ssl_context: ssl.SSLContext
    log: logging.Logger
    started: float = field(default_factory=time.time)
    inflight: InFlight = field(default_factory=InFlight)
    #: open client transports, closed at the end of shutdown
    connections: set[asyncio.BaseTransport] = field(default_factory=set)
    #: listener name -> bound (host, port), filled by the daemon
    bound: dict[str, tuple[str, int]] = field(default_factory=dict)
    shutting_down: bool = False
