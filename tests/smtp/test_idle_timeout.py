"""The idle timeout (one re-arming timer per connection instead of aiosmtpd's timer per command)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mailserver.smtp.handler import SmtpHandler
from mailserver.smtp.listeners import POLICIES
from mailserver.smtp.server import SmtpProtocol
from tests.smtp.client import RawSmtp

IDLE = 0.4


async def short_timeout_listener(server: Any) -> asyncio.Server:
    """Our SMTP protocol with a short idle timeout, on the running daemon's app."""
    handler = SmtpHandler.for_listener(server.app, POLICIES["smtp"])
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SmtpProtocol(handler, loop=loop, timeout=IDLE), "127.0.0.1", 0)


async def test_activity_keeps_the_connection_and_idleness_closes_it(server: Any) -> None:
    """Commands more often than the timeout keep the session open; then silence gets 421 4.4.2 and a close after about the timeout."""
    listener = await short_timeout_listener(server)
    try:
        client = await RawSmtp.connect(listener.sockets[0].getsockname()[1])
        await client.ehlo()
        for _ in range(6):  # 6 x IDLE/2 = 1.5 timeouts of activity
            await asyncio.sleep(IDLE / 2)
            assert (await client.cmd("NOOP"))[0] == 250
        start = time.monotonic()
        # RFC 5321 §3.8: a 421 first, then the server closes
        assert (await asyncio.wait_for(client.reader.read(), IDLE * 10)).startswith(b"421 4.4.2 ")
        waited = time.monotonic() - start
        assert IDLE * 0.8 <= waited <= IDLE * 5, waited
        await client.close()
    finally:
        listener.close()
