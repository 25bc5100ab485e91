"""IMAP test fixtures: the real daemon with users alice and bob and a shared mailbox hr.

Blocking clients (imaplib, IMAPClient, imap-tools, subprocesses) run in a worker thread
through :meth:`ImapEnv.run`, because the server shares the test's event loop.
"""

from __future__ import annotations

import asyncio
import imaplib
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from storage.types import LocalRecipient, Right
from tests.conftest import RunningServer

T = TypeVar("T")

PASSWORD = "correct horse 7"
ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
HR = "hr@example.test"


def message(subject: str = "Hello", body: str = "Hello world\r\n", sender: str = "zed@remote.test",
            to: str = ALICE, extra: str = "") -> bytes:
    """A small RFC 5322 message."""
    return (
        f"From: Zed <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <{abs(hash(subject + body))}@remote.test>\r\n"
        f"{extra}\r\n{body}"
    ).encode()


class ImapEnv:
    """The running server plus helpers for IMAP tests."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.port = server.port("imap")
        self.imaps_port = server.port("imaps")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking client function in a thread."""
        return await asyncio.to_thread(fn, *args)

    def connect(self, user: str = ALICE, password: str = PASSWORD) -> imaplib.IMAP4:
        """A logged-in imaplib client over plain IMAP (loopback allows it)."""
        c = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        c.login(user, password)
        return c

    async def deliver(self, address: str, raw: bytes, folder: str = "INBOX") -> int:
        """Deliver ``raw`` to ``address`` as local delivery would; return its UID."""
        account = await self.server.store.directory.get_account(address)
        assert account is not None
        result = await self.server.store.mail.deliver(raw, [LocalRecipient(account.id, folder)])
        return result.uids[(account.id, folder)]


@pytest.fixture
async def imap(server: RunningServer) -> ImapEnv:
    """alice, bob and carol (users), hr (shared; alice and bob have Full Access)."""
    accounts = server.accounts
    for addr in (ALICE, BOB, CAROL):
        await accounts.add_user(addr, addr.split("@")[0].title(), PASSWORD)
    await accounts.add_shared(HR, "Human Resources")
    await accounts.grant(HR, ALICE, [Right.FULL_ACCESS])
    await accounts.grant(HR, BOB, [Right.FULL_ACCESS])
    return ImapEnv(server)


class Raw:
    """A line-level IMAP client for wire transcripts (blocking; use inside ImapEnv.run)."""

    def __init__(self, port: int, *, tls_context: Any = None) -> None:
        import socket

        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_hostname="mail.example.test")
        self.sock = sock
        self.buf = b""
        self.greeting = self.line()
        self._n = 0

    def line(self) -> bytes:
        """One response line without CRLF (literals stay inline as ``{n}`` + data)."""
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, text: str | bytes) -> list[bytes]:
        """Send ``tag text``; return every line up to and including the tagged one."""
        self._n += 1
        tag = b"t%d" % self._n
        data = text.encode() if isinstance(text, str) else text
        self.send(tag + b" " + data + b"\r\n")
        return self.until(tag)

    def until(self, tag: bytes) -> list[bytes]:
        out = []
        while True:
            line = self.line()
            out.append(line)
            if line.startswith(tag + b" "):
                return out

    def close(self) -> None:
        self.sock.close()
