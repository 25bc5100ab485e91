"""Block-read DATA equals aiosmtpd's own line-by-line DATA, byte for byte (issue 9 §1).

A stock aiosmtpd ``SMTP`` server (its own ``smtp_DATA``, reading one line at a time)
and our running daemon receive the same raw bytes after ``354`` over real loopback
sockets, in clear text and after STARTTLS. Bodies are random mixes of dots, CR, LF,
CRLF, 8-bit bytes and long lines (smuggling sequences included). Both must make the
same decision (accept, or refuse a line too long), and an accepted message must be
stored by our daemon exactly as aiosmtpd hands it to its handler (after our
Return-Path: and Received: fields).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from auth.passwords import PasswordHasher
from mailserver import config as cfg
from mailserver.app import App
from mailserver.daemon import Daemon
from tests.helpers import CertAuthority, throwaway_config_values, write_config

#: Our line limit for the test (the config minimum): long generated lines cross it.
MAX_LINE = 1000
END = b"\r\n.\r\n"


class Capture:
    """aiosmtpd handler keeping the last message as aiosmtpd produced it."""

    def __init__(self) -> None:
        self.last: bytes | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.last = envelope.original_content
        return "250 OK"


class StockSMTP(SMTP):
    """aiosmtpd unchanged except its line limit, set to ours: a line may hold MAX_LINE
    octets, one transparency dot and the CRLF."""

    line_length_limit = MAX_LINE + 1 + 2


@dataclass
class Servers:
    loop: asyncio.AbstractEventLoop
    app: App
    ours: int
    stock: int
    capture: Capture
    server_tls: ssl.SSLContext
    client_tls: ssl.SSLContext
    bob_id: int

    def run(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(30)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Our daemon and a stock aiosmtpd server on one event loop in a background thread
    (hypothesis drives them from synchronous test code with blocking sockets)."""
    tmp = tmp_path_factory.mktemp("equiv")
    ca = CertAuthority(tmp / "ca")
    values = throwaway_config_values(tmp)
    values["limits.max_line_length"] = MAX_LINE
    values["tls.cert_file"] = str(ca.cert_file)
    values["tls.key_file"] = str(ca.key_file)
    for name in ("submission", "submissions", "imap", "imaps", "http"):
        values[f"listeners.{name}.enabled"] = False
    config = cfg.load(write_config(tmp / "config.toml", values))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    daemon = Daemon(config, hasher=PasswordHasher(fast=True))
    app: App = run(daemon.start())
    bob = run(app.accounts.add_user("bob@example.test", "Bob", "pw"))
    capture = Capture()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(ca.cert_file, ca.key_file)

    async def start_stock() -> asyncio.base_events.Server:
        return await asyncio.get_running_loop().create_server(
            lambda: StockSMTP(capture, data_size_limit=None, enable_SMTPUTF8=True, decode_data=False,
                              tls_context=server_tls),
            "127.0.0.1", 0,
        )

    stock = run(start_stock())
    try:
        yield Servers(loop, app, app.bound["smtp"][1], stock.sockets[0].getsockname()[1], capture,
                      server_tls, ca.client_context(), bob.id)
    finally:
        stock.close()
        run(daemon.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class Client:
    """A blocking SMTP client that sends exact bytes."""

    def __init__(self, port: int) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        assert self.reply()[0] == 220

    def reply(self) -> tuple[int, bytes]:
        while True:
            nl = self.buf.find(b"\r\n")
            if nl < 0:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buf += chunk
                continue
            line, self.buf = self.buf[:nl], self.buf[nl + 2:]
            if line[3:4] != b"-":
                return int(line[:3]), line

    def cmd(self, line: bytes) -> int:
        self.sock.sendall(line + b"\r\n")
        return self.reply()[0]

    def starttls(self, ctx: ssl.SSLContext) -> None:
        assert self.cmd(b"STARTTLS") == 220
        assert not self.buf
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mail.example.test")

    def transaction(self, raw: bytes) -> int:
        """MAIL, RCPT, DATA, then ``raw`` (already ending with the end marker) as is."""
        assert self.cmd(b"MAIL FROM:<x@elsewhere.example>") == 250
        assert self.cmd(b"RCPT TO:<bob@example.test>") == 250
        assert self.cmd(b"DATA") == 354
        self.sock.sendall(raw)
        return self.reply()[0]

    def close(self) -> None:
        try:
            self.cmd(b"QUIT")
        finally:
            self.sock.close()


def session(port: int, tls: ssl.SSLContext | None) -> Client:
    c = Client(port)
    assert c.cmd(b"EHLO client.example.net") == 250
    if tls is not None:
        c.starttls(tls)
        assert c.cmd(b"EHLO client.example.net") == 250
    return c


PIECES = st.sampled_from([
    b".", b"..", b"\r\n", b"\r\n.", b"\r", b"\n", b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r",
    b"\r.\r\n", b"\r\n.\r\r\n", b"a", b"Subject: x", b" ", b"\t", b"\xc3\xa9", b"\xff", b"\x00",
])
LONG = st.integers(min_value=MAX_LINE - 4, max_value=MAX_LINE + 6).map(lambda n: b"y" * n)


def _body(pieces: list[bytes], longs: list[tuple[int, bytes]]) -> bytes:
    """Short pieces with up to two long runs inserted (at most two, so that most
    bodies are accepted and the long-line refusals still get their share)."""
    for at, run in longs:
        pieces.insert(min(at, len(pieces)), run)
    return b"".join(pieces)


BODY = st.builds(
    _body,
    st.lists(PIECES, max_size=40),
    st.lists(st.tuples(st.integers(min_value=0, max_value=40), LONG), max_size=2),
)


def data_section(body: bytes) -> bytes | None:
    """``body`` plus the end marker, or None when the marker would appear earlier
    (the rest would be read as commands, which is not what this test compares)."""
    raw = body + END
    return raw if (b"\r\n" + raw).find(END) == len(raw) + 2 - len(END) else None


RECEIVED_PREFIX = re.compile(
    rb"Return-Path: <x@elsewhere\.example>\r\nReceived: from client\.example\.net \(\[127\.0\.0\.1\]\)"
    rb"(?:\r\n\t[^\r\n]*)+\r\n\Z"
)


def check_same(servers: Servers, body: bytes, tls: bool) -> str:
    """Send ``body`` to both servers and compare; return "accepted" or "refused"."""
    raw = data_section(body)
    assert raw is not None
    servers.capture.last = None
    stock = session(servers.stock, servers.client_tls if tls else None)
    ours = session(servers.ours, servers.client_tls if tls else None)
    try:
        stock_code = stock.transaction(raw)
        before = servers.run(_count(servers))
        our_code = ours.transaction(raw)
    finally:
        stock.close()
        ours.close()
    assert (our_code, stock_code) in ((250, 250), (500, 500)), (our_code, stock_code)
    if stock_code != 250:
        assert servers.run(_count(servers)) == before  # nothing stored
        return "refused"
    expected = servers.capture.last
    assert expected is not None
    stored = servers.run(_last_body(servers))
    assert stored.endswith(expected)
    assert RECEIVED_PREFIX.match(stored[: len(stored) - len(expected)]), stored[:300]
    return "accepted"


async def _count(servers: Servers) -> int:
    folder = await servers.app.store.mail.get_folder(servers.bob_id, "INBOX")
    assert folder is not None
    return len(await servers.app.store.mail.list_uids(folder.id))


async def _last_body(servers: Servers) -> bytes:
    folder = await servers.app.store.mail.get_folder(servers.bob_id, "INBOX")
    assert folder is not None
    last = (await servers.app.store.mail.list_messages(folder.id))[-1]
    return await servers.app.store.mail.get_body(last.blob_id)


EXAMPLES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@EXAMPLES
@given(body=BODY)
def test_same_message_as_aiosmtpd_in_clear_text(servers: Servers, body: bytes) -> None:
    """Plain-text session: same decision and byte-identical message as aiosmtpd's line reader."""
    assume(data_section(body) is not None)
    event(check_same(servers, body, tls=False))


@EXAMPLES
@given(body=BODY)
def test_same_message_as_aiosmtpd_after_starttls(servers: Servers, body: bytes) -> None:
    """After STARTTLS: same decision and byte-identical message as aiosmtpd's line reader."""
    assume(data_section(body) is not None)
    event(check_same(servers, body, tls=True))


@pytest.mark.parametrize("body", [
    b"a\n.\nb\r\n.\nc\r.\r\nd",  # smuggling sequences stay content
    b"x\r\n..\r\n...x\r\n.y",  # stuffed and unstuffed dots
    b"y" * (MAX_LINE + 1),  # longest line with room for a transparency dot
    b"y" * (MAX_LINE + 2),  # one octet too long
    b"Subject: big\r\n\r\n" + b"\r\n".join([b"z" * 70] * 3000),  # 210 KiB: many blocks
], ids=["smuggling", "dots", "longest-line", "line-too-long", "multi-block"])
def test_edge_cases_match_aiosmtpd(servers: Servers, body: bytes) -> None:
    """Hand-picked edges (smuggling, dots, the line limit, multi-block bodies) agree with aiosmtpd."""
    assert data_section(body) is not None
    check_same(servers, body, tls=False)

