"""A raw SMTP client for tests: exact bytes out, parsed replies in."""

from __future__ import annotations

import asyncio
import base64
import ssl

from auth.accounts import AccountService
from storage.interfaces import Store
from storage.types import Account

PASSWORD = "correct horse battery staple"


class RawSmtp:
    """One connection; ``reply()`` returns (code, text of the last line)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.lines: list[str] = []

    @classmethod
    async def connect(cls, port: int, *, tls: ssl.SSLContext | None = None) -> RawSmtp:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=tls, server_hostname="mail.example.test" if tls else None
        )
        client = cls(reader, writer)
        code, _ = await client.reply()
        assert code == 220
        return client

    async def reply(self) -> tuple[int, str]:
        self.lines = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 10)).decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                raise ConnectionError("connection closed")
            self.lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), line[4:]

    async def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.writer.write(data)
        await self.writer.drain()

    async def cmd(self, line: str | bytes) -> tuple[int, str]:
        if isinstance(line, str):
            line = line.encode()
        await self.send(line + b"\r\n")
        return await self.reply()

    async def ehlo(self) -> list[str]:
        code, _ = await self.cmd("EHLO client.example.net")
        assert code == 250
        return [line[4:] for line in self.lines[1:]]

    async def starttls(self, ctx: ssl.SSLContext) -> None:
        code, _ = await self.cmd("STARTTLS")
        assert code == 220
        await self.writer.start_tls(ctx, server_hostname="mail.example.test")

    async def login(self, username: str, password: str = PASSWORD, authzid: str = "") -> tuple[int, str]:
        token = base64.b64encode(f"{authzid}\0{username}\0{password}".encode()).decode()
        return await self.cmd(f"AUTH PLAIN {token}")

    async def send_mail(self, mail_from: str, rcpts: list[str], message: bytes) -> tuple[int, str]:
        """MAIL, RCPT..., DATA with dot-stuffing; returns the final reply (or the first refusal)."""
        code, text = await self.cmd(f"MAIL FROM:<{mail_from}>")
        if code != 250:
            return code, text
        accepted = 0
        last = (0, "")
        for rcpt in rcpts:
            last = await self.cmd(f"RCPT TO:<{rcpt}>")
            accepted += last[0] == 250
        if not accepted:
            await self.cmd("RSET")
            return last
        code, text = await self.cmd("DATA")
        assert code == 354, text
        body = message.replace(b"\r\n.", b"\r\n..")
        if body.startswith(b"."):
            body = b"." + body
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        await self.send(body + b".\r\n")
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


def message(frm: str = "alice@example.test", to: str = "bob@example.test", subject: str = "hello",
            extra: str = "", body: str = "Hello there.\r\n") -> bytes:
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}\r\n{body}").encode()


async def inbox(store: Store, account: Account, folder: str = "INBOX") -> list[bytes]:
    """The bodies in one folder of an account, by UID."""
    f = await store.mail.get_folder(account.id, folder)
    assert f is not None
    return [await store.mail.get_body(m.blob_id) for m in await store.mail.list_messages(f.id)]


async def flags(store: Store, account: Account, folder: str) -> list[frozenset[str]]:
    f = await store.mail.get_folder(account.id, folder)
    assert f is not None
    return [m.flags for m in await store.mail.list_messages(f.id)]


async def organisation(accounts: AccountService) -> dict[str, Account]:
    """The test organisation: users, a shared mailbox, a room, lists, aliases, grants."""
    from storage.types import Right

    org: dict[str, Account] = {}
    for name in ("alice", "bob", "erin", "frank"):
        org[name] = await accounts.add_user(f"{name}@example.test", name.title(), PASSWORD)
    org["carol"] = await accounts.add_user("carol@example.test", "Carol", PASSWORD, licensed=False)
    org["dave"] = await accounts.add_user("dave@example.test", "Dave", PASSWORD)
    await accounts.disable("dave@example.test")
    org["hr"] = await accounts.add_shared("hr@example.test", "Human Resources")
    org["sales"] = await accounts.add_shared("sales@example.test", "Sales")
    org["support"] = await accounts.add_shared("support@example.test", "Support")
    org["room"] = await accounts.add_room("boardroom@example.test", "Board Room")
    await accounts.add_alias("alice.smith@example.test", "alice@example.test")
    await accounts.add_alias("jobs@example.test", "hr@example.test")
    await accounts.grant("hr@example.test", "alice@example.test", [Right.FULL_ACCESS, Right.SEND_AS])
    await accounts.grant("sales@example.test", "alice@example.test", [Right.SEND_ON_BEHALF])
    await accounts.grant("support@example.test", "alice@example.test", [Right.FULL_ACCESS])
    return org
