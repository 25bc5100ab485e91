"""Postmaster (RFC 5321 §4.5.1): the bare "Postmaster" recipient and postmaster@ every
local domain are accepted without authentication and reach one mailbox."""

from __future__ import annotations

from typing import Any

import pytest

from tests.smtp.client import RawSmtp, inbox, message


async def _send(server: Any, rcpts: list[str]) -> tuple[int, str]:
    client = await RawSmtp.connect(server.port("smtp"))
    try:
        await client.ehlo()
        return await client.send_mail("someone@elsewhere.example", rcpts, message(to="postmaster"))
    finally:
        await client.close()


async def test_default_postmaster_mailbox_created_and_reached(server: Any) -> None:
    """With server.postmaster empty, the daemon creates postmaster@<domain> as a shared
    mailbox; <Postmaster>, POSTMASTER@ the domain and postmaster@ another local domain
    without its own account all land in it, once per message."""
    account = await server.store.directory.get_account("postmaster@example.test")
    assert account is not None and account.kind.value == "shared"
    await server.accounts.add_domain("other.test")
    code, _ = await _send(server, ["Postmaster"])
    assert code == 250
    code, _ = await _send(server, ["POSTMASTER@Example.Test"])
    assert code == 250
    code, _ = await _send(server, ["postmaster@other.test", "postmaster@example.test"])
    assert code == 250
    assert len(await inbox(server.store, account)) == 3


async def test_bare_postmaster_with_params_and_case(server: Any) -> None:
    """RCPT TO:<pOsTmAsTeR> is the bare form too (case-insensitive, RFC 5321 §4.1.1.3)."""
    client = await RawSmtp.connect(server.port("smtp"))
    try:
        await client.ehlo()
        assert (await client.cmd("MAIL FROM:<someone@elsewhere.example>"))[0] == 250
        code, text = await client.cmd("RCPT TO:<pOsTmAsTeR>")
        assert code == 250, text
    finally:
        await client.close()


async def test_an_operators_own_postmaster_account_wins(server: Any) -> None:
    """A postmaster@ user of another domain keeps its own mail; the default mailbox gets none."""
    await server.accounts.add_domain("other.test")
    own = await server.accounts.add_user("postmaster@other.test", "PM", "pw-1234567890")
    code, _ = await _send(server, ["postmaster@other.test"])
    assert code == 250
    assert len(await inbox(server.store, own)) == 1
    default = await server.store.directory.get_account("postmaster@example.test")
    assert default is not None and await inbox(server.store, default) == []


@pytest.mark.config(server__postmaster="ops@example.test")
async def test_configured_postmaster_is_used_and_nothing_created(server: Any) -> None:
    """server.postmaster names the mailbox; no postmaster@ account is created then."""
    ops = await server.accounts.add_user("ops@example.test", "Ops", "pw-1234567890")
    assert await server.store.directory.get_account("postmaster@example.test") is None
    code, _ = await _send(server, ["Postmaster", "postmaster@example.test"])
    assert code == 250
    assert len(await inbox(server.store, ops)) == 1


async def test_postmaster_of_a_foreign_domain_is_still_relay_denied(server: Any) -> None:
    """postmaster@ another organisation's domain is not ours: 554 5.7.1 without AUTH."""
    client = await RawSmtp.connect(server.port("smtp"))
    try:
        await client.ehlo()
        await client.cmd("MAIL FROM:<someone@elsewhere.example>")
        code, text = await client.cmd("RCPT TO:<postmaster@elsewhere.example>")
        assert (code, text[:5]) == (554, "5.7.1")
    finally:
        await client.close()
