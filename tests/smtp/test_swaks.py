"""swaks (the SMTP Swiss army knife) against the running daemon."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest

from tests.helpers import unavailable
from tests.smtp.client import PASSWORD, inbox, organisation

SWAKS = shutil.which("swaks")


@pytest.fixture(autouse=True)
def _swaks_installed() -> None:
    if SWAKS is None:
        unavailable("swaks is not installed (apt-get install swaks)")


async def swaks(*args: str) -> tuple[int, str]:
    assert SWAKS is not None
    proc = await asyncio.create_subprocess_exec(
        SWAKS, "--server", "127.0.0.1", "--helo", "swaks.example.net", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode("utf-8", "replace")


async def test_swaks_inbound(server: Any) -> None:
    """swaks delivers to a local user on the inbound port and sees 250 after DATA."""
    org = await organisation(server.accounts)
    rc, out = await swaks("--port", str(server.port("smtp")), "--from", "x@elsewhere.example", "--to", "bob@example.test")
    assert rc == 0, out
    assert "<-  250 2.0.0 OK: message" in out
    assert len(await inbox(server.store, org["bob"])) == 1


async def test_swaks_submission_starttls_auth_login(server: Any) -> None:
    """swaks with STARTTLS and AUTH LOGIN on submission sends as the user."""
    org = await organisation(server.accounts)
    rc, out = await swaks("--port", str(server.port("submission")), "--tls", "--auth", "LOGIN",
                          "--auth-user", "alice@example.test", "--auth-password", PASSWORD,
                          "--from", "alice@example.test", "--to", "bob@example.test")
    assert rc == 0, out
    assert "235 2.7.0 Authentication successful" in out
    assert len(await inbox(server.store, org["bob"])) == 1


async def test_swaks_implicit_tls_auth_plain_delegate_send_on_behalf(server: Any) -> None:
    """swaks over implicit TLS, AUTH PLAIN, From: a mailbox with Send on Behalf: the stored mail has Sender: alice."""
    org = await organisation(server.accounts)
    rc, out = await swaks("--port", str(server.port("submissions")), "--tlsc", "--auth", "PLAIN",
                          "--auth-user", "alice@example.test", "--auth-password", PASSWORD,
                          "--from", "alice@example.test", "--to", "bob@example.test",
                          "--header", "From: sales@example.test")
    assert rc == 0, out
    [stored] = await inbox(server.store, org["bob"])
    assert b"\r\nSender: Alice <alice@example.test>\r\n" in stored


async def test_swaks_refused_send_as(server: Any) -> None:
    """swaks sees 550 5.7.60 when From: is a mailbox alice only has Full Access on."""
    await organisation(server.accounts)
    rc, out = await swaks("--port", str(server.port("submissions")), "--tlsc", "--auth", "PLAIN",
                          "--auth-user", "alice@example.test", "--auth-password", PASSWORD,
                          "--from", "alice@example.test", "--to", "bob@example.test",
                          "--header", "From: support@example.test")
    assert rc != 0
    assert "550 5.7.60 SMTP; Client does not have permissions to send as this sender" in out
