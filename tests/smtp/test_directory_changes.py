"""Directory changes made by the operator CLI (another process) reach the running SMTP
listeners without a restart, although RCPT is answered from an in-memory snapshot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.helpers import run_cli
from tests.smtp.client import PASSWORD, RawSmtp, message


async def cli(tmp_path: Path, *args: str, stdin: str | None = None) -> None:
    """Run the CLI against the daemon's config (same store), off the event loop."""
    r = await asyncio.to_thread(run_cli, *args, config=tmp_path / "config.toml", stdin=stdin)
    assert r.returncode == 0, r.stderr


async def rcpt(mx: RawSmtp, address: str) -> str:
    """A fresh transaction with one RCPT; the RCPT reply as "code text"."""
    await mx.cmd("RSET")
    assert (await mx.cmd("MAIL FROM:<x@elsewhere.example>"))[0] == 250
    code, text = await mx.cmd(f"RCPT TO:<{address}>")
    return f"{code} {text}"


async def test_cli_changes_take_effect_without_restart(server: Any, tmp_path: Path) -> None:
    """CLI user add, alias add, unlicense and list policy change are each seen by the next transaction."""
    mx = await RawSmtp.connect(server.port("smtp"))
    await mx.ehlo()
    assert (await rcpt(mx, "zoe@example.test")).startswith("550 5.1.1")

    await cli(tmp_path, "user", "add", "zoe@example.test", "--password-stdin", stdin=PASSWORD + "\n")
    assert (await rcpt(mx, "zoe@example.test")).startswith("250")
    assert (await rcpt(mx, "z@example.test")).startswith("550 5.1.1")

    await cli(tmp_path, "alias", "add", "z@example.test", "zoe@example.test")
    assert (await rcpt(mx, "z@example.test")).startswith("250")

    await cli(tmp_path, "user", "unlicense", "zoe@example.test")
    assert await rcpt(mx, "z@example.test") == "550 5.2.1 Mailbox unavailable"

    await cli(tmp_path, "user", "license", "zoe@example.test")
    await cli(tmp_path, "list", "add", "crew@example.test")
    await cli(tmp_path, "list", "member", "add", "crew@example.test", "zoe@example.test")
    assert await rcpt(mx, "crew@example.test") == "550 5.7.133 Sender not authenticated for group"
    await cli(tmp_path, "list", "policy", "crew@example.test", "--require-sender-authentication", "false")
    assert (await rcpt(mx, "crew@example.test")).startswith("250")
    code, _ = await mx.cmd("DATA")
    assert code == 354
    await mx.send(message(frm="x@elsewhere.example", to="crew@example.test") + b".\r\n")
    assert (await mx.reply())[0] == 250
    zoe = await server.store.directory.get_account("zoe@example.test")
    folder = await server.store.mail.get_folder(zoe.id, "INBOX")
    assert len(await server.store.mail.list_messages(folder.id)) == 1
    await mx.close()
