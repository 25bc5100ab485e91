"""Factories the daemon calls for the three SMTP listeners (see mailserver.daemon)."""

from __future__ import annotations

import asyncio
import weakref

from auth.snapshot import CachedDirectory
from delivery.routing import Router
from mailserver.app import App
from mailserver.config import Listener
from mailserver.connlimit import AddressLimiter
from mailserver.outbound import list_bounce_decoder
from mailserver.smtp.handler import ListenerPolicy, SmtpHandler
from mailserver.smtp.server import Deadlines, SmtpProtocol

#: listener name -> how it behaves (issue 3 §1)
POLICIES: dict[str, ListenerPolicy] = {
    # MX role: mail for local domains without AUTH; STARTTLS offered.
    "smtp": ListenerPolicy("smtp", implicit_tls=False, starttls=True, auth_required=False),
    # RFC 6409: STARTTLS, AUTH before MAIL.
    "submission": ListenerPolicy("submission", implicit_tls=False, starttls=True, auth_required=True),
    # RFC 8314: TLS from the first byte, AUTH before MAIL.
    "submissions": ListenerPolicy("submissions", implicit_tls=True, starttls=False, auth_required=True),
}

#: one router (and its directory snapshot) per running app, shared by its SMTP listeners
_ROUTERS: weakref.WeakKeyDictionary[App, Router] = weakref.WeakKeyDictionary()
#: one connection count per running app: its SMTP listeners share the per-address limit
_LIMITERS: weakref.WeakKeyDictionary[App, AddressLimiter] = weakref.WeakKeyDictionary()


def connection_limiter(app: App) -> AddressLimiter:
    """The per-address connection count of ``app``'s SMTP listeners (one for all three)."""
    limiter = _LIMITERS.get(app)
    if limiter is None:
        limiter = _LIMITERS[app] = AddressLimiter(int(app.config["smtp.max_connections_per_address"]))
    return limiter


def _router(app: App) -> Router:
    router = _ROUTERS.get(app)
    if router is None:
        router = _ROUTERS[app] = Router(
            CachedDirectory(app.store.directory), list_bounce_sender=list_bounce_decoder(app.config),
            postmaster=app.config.postmaster,
        )
    return router


async def _start(app: App, listener: Listener) -> asyncio.Server:
    policy = POLICIES[listener.name]
    handler = SmtpHandler.for_listener(app, policy, _router(app))
    deadlines = Deadlines.from_config(app.config)
    limiter = connection_limiter(app)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SmtpProtocol(handler, deadlines=deadlines, limiter=limiter, loop=loop),
        listener.host,
        listener.port,
        ssl=app.ssl_context if policy.implicit_tls else None,
    )


async def start_smtp(app: App, listener: Listener) -> asyncio.Server:
    """Inbound SMTP (MX role)."""
    return await _start(app, listener)


async def start_submission(app: App, listener: Listener) -> asyncio.Server:
    """Submission with STARTTLS (RFC 6409)."""
    return await _start(app, listener)


async def start_submissions(app: App, listener: Listener) -> asyncio.Server:
    """Submission over implicit TLS (RFC 8314)."""
    return await _start(app, listener)
