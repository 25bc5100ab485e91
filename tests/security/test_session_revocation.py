"""Disabling, unlicensing or removing a user ends what its OPEN sessions may do, not
only its next login: IMAP answers the next command (or the next IDLE keepalive) with
BYE, SMTP refuses the next MAIL with 530 5.7.0 and forgets the login."""

from __future__ import annotations

import asyncio
import imaplib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.smtp.client import PASSWORD, RawSmtp, message

ACTIONS: dict[str, Callable[[Any, str], Awaitable[Any]]] = {
    "disabled": lambda s, a: s.accounts.disable(a),
    "unlicensed": lambda s, a: s.accounts.unlicense(a),
    "removed": lambda s, a: s.accounts.remove(a),
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
async def test_imap_session_ends_at_the_next_command(server: Any, action: str) -> None:
    """A logged-in, selected IMAP session gets BYE on its next command once the user is <action>."""
    await server.accounts.add_user("alice@example.test", "Alice", PASSWORD)

    def session() -> tuple[str, list[bytes]]:
        imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
        imap.login("alice@example.test", PASSWORD)
        assert imap.select("INBOX")[0] == "OK"
        asyncio.run_coroutine_threadsafe(ACTIONS[action](server, "alice@example.test"), loop).result(10)
        try:
            typ, data = imap.noop()
        except imaplib.IMAP4.abort as err:
            return "abort", [str(err).encode()]
        return typ, data

    loop = asyncio.get_running_loop()
    typ, data = await asyncio.to_thread(session)
    assert typ == "abort" and b"This login is no longer valid" in data[0], (typ, data)


async def test_smtp_session_refused_at_next_mail_and_must_reauthenticate(server: Any) -> None:
    """After disabling, MAIL gets 530 5.7.0; a fresh AUTH with the right password gets 535 like a wrong one."""
    await server.accounts.add_user("alice@example.test", "Alice", PASSWORD)
    await server.accounts.add_user("bob@example.test", "Bob", PASSWORD)
    client = await RawSmtp.connect(server.port("submission"))
    try:
        await client.ehlo()
        assert (await client.login("alice@example.test"))[0] == 235
        assert (await client.send_mail("alice@example.test", ["bob@example.test"], message()))[0] == 250
        await server.accounts.disable("alice@example.test")
        code, text = await client.cmd("MAIL FROM:<alice@example.test>")
        assert (code, text[:5]) == (530, "5.7.0"), text
        assert (await client.cmd("RCPT TO:<bob@example.test>"))[0] == 503  # no transaction was opened
        assert (await client.login("alice@example.test"))[0] == 535
        await server.accounts.enable("alice@example.test")
        assert (await client.login("alice@example.test"))[0] == 235  # the client may AUTH again
        assert (await client.send_mail("alice@example.test", ["bob@example.test"], message()))[0] == 250
    finally:
        await client.close()


@pytest.mark.config(imap__idle_timeout_seconds=5.0)
async def test_idle_session_ends_at_the_keepalive(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An IDLE session of a user unlicensed meanwhile gets BYE at the next keepalive instead of '* OK Still here'."""
    from mailserver.imap import session as imap_session

    monkeypatch.setattr(imap_session, "IDLE_KEEPALIVE_SECONDS", 0.3)
    await server.accounts.add_user("alice@example.test", "Alice", PASSWORD)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port("imap"))
    try:
        await reader.readline()
        writer.write(f'a LOGIN alice@example.test "{PASSWORD}"\r\nb SELECT INBOX\r\nc IDLE\r\n'.encode())
        while not (line := await asyncio.wait_for(reader.readline(), 10)).startswith(b"+"):
            pass
        await server.accounts.unlicense("alice@example.test")
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line.startswith(b"* BYE This login is no longer valid"), line
    finally:
        writer.close()
