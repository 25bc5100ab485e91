"""Issue 10 §2, SMTP half: protocol abuse against the running daemon over real TCP/TLS.

* STARTTLS command and response injection (RFC 3207 §4.2; CVE-2011-0411 in Postfix,
  CVE-2024-34083 in aiosmtpd < 1.4.6);
* the published SMTP smuggling end-of-data variants (table below);
* slow clients: command-line and DATA deadlines (``smtp.*`` timeouts), open lines
  longer than any command, memory under many slow clients (figures: bench/abuse);
* the per-address connection limit (``smtp.max_connections_per_address``);
* authentication throttling that survives reconnecting (SMTP AUTH and IMAP LOGIN).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from mailserver.connlimit import AddressLimiter, address_key
from tests.smtp.client import PASSWORD, RawSmtp, inbox, organisation
from tests.smtp.test_inbound import SMUGGLING as SMUGGLING_IN_INBOUND_TESTS


@pytest.fixture
async def org(server: Any) -> dict[str, Any]:
    return await organisation(server.accounts)


async def connect(port: int, *, source: str = "127.0.0.1", tls: ssl.SSLContext | None = None,
                  greeting: bool = True) -> RawSmtp:
    """A raw SMTP connection from ``source`` (any 127.0.0.0/8 address is local on Linux)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, local_addr=(source, 0), ssl=tls,
        server_hostname="mail.example.test" if tls else None,
    )
    client = RawSmtp(reader, writer)
    if greeting:
        code, text = await client.reply()
        assert code == 220, text
    return client


async def nothing_more(client: RawSmtp, wait: float = 0.3) -> bool:
    """True when the server sends nothing more within ``wait`` seconds (and has not closed)."""
    try:
        await asyncio.wait_for(client.reader.read(1), wait)
    except TimeoutError:
        return True
    return False  # a byte, or the end of the connection


async def closed_after(client: RawSmtp, within: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(client.reader.read(), within)


# --------------------------------------------------------------------------- STARTTLS

async def test_starttls_pipelined_commands_are_discarded(server: Any, org: dict[str, Any]) -> None:
    """Commands sent in clear text in the STARTTLS packet are dropped: after TLS no reply to them, no state from them, EHLO needed again."""
    client = await connect(server.port("smtp"))
    await client.ehlo()
    assert (await client.cmd("MAIL FROM:<before@elsewhere.example>"))[0] == 250  # state to be dropped
    await client.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<injected@elsewhere.example>\r\nRCPT TO:<bob@example.test>\r\n")
    code, _ = await client.reply()
    assert code == 220
    # Response injection: nothing but the 220 in clear text (a stray reply here would
    # be read by the client as if it came over TLS).
    assert await nothing_more(client)
    assert client.reader._buffer == b""  # type: ignore[attr-defined]
    await client.writer.start_tls(server.client_ssl_context(), server_hostname="mail.example.test")
    # The first reply over TLS answers our first TLS command, not RSET/MAIL/RCPT above.
    assert (await client.cmd("VRFY bob@example.test"))[0] == 252
    code, text = await client.cmd("RCPT TO:<bob@example.test>")
    assert (code, text) == (503, "5.5.1 Send EHLO or HELO first")  # a fresh session (RFC 3207 §4.2)
    lines = await client.ehlo()
    assert "STARTTLS" not in lines
    code, text = await client.cmd("RCPT TO:<bob@example.test>")
    assert (code, text) == (503, "5.5.1 Need MAIL command")  # neither MAIL survived
    assert await nothing_more(client)
    await client.close()


async def test_starttls_injected_auth_does_not_authenticate(server: Any, org: dict[str, Any]) -> None:
    """AUTH pipelined in clear text after STARTTLS on submission neither logs in nor gets a reply; MAIL after TLS needs AUTH."""
    client = await connect(server.port("submission"))
    await client.ehlo()
    token = base64.b64encode(f"\0alice@example.test\0{PASSWORD}".encode()).decode()
    await client.send(f"STARTTLS\r\nAUTH PLAIN {token}\r\nMAIL FROM:<alice@example.test>\r\n".encode())
    assert (await client.reply())[0] == 220
    assert await nothing_more(client)
    await client.writer.start_tls(server.client_ssl_context(), server_hostname="mail.example.test")
    lines = await client.ehlo()
    assert "AUTH PLAIN LOGIN" in lines  # offered again: nobody is logged in
    code, text = await client.cmd("MAIL FROM:<alice@example.test>")
    assert (code, text[:5]) == (530, "5.7.0")
    await client.close()


async def test_starttls_followed_by_more_than_the_stream_buffer_is_not_executed(server: Any, org: dict[str, Any]) -> None:
    """240 KB of RSETs pipelined after STARTTLS (beyond the 64 KiB stream buffer): what was not dropped is read as TLS and fails the handshake; no RSET is answered."""
    client = await connect(server.port("smtp"))
    await client.ehlo()
    await client.send(b"STARTTLS\r\n" + b"RSET\r\n" * 40_000)
    assert (await client.reply())[0] == 220
    try:
        await asyncio.wait_for(
            client.writer.start_tls(server.client_ssl_context(), server_hostname="mail.example.test"), 10
        )
    except (ssl.SSLError, ConnectionError):
        pass  # expected: the server saw clear text where TLS records belong
    else:  # had the handshake worked, the session would still have to be fresh
        assert (await client.cmd("VRFY bob@example.test"))[0] == 252
    await client.close()


async def test_replies_before_starttls_stay_in_clear_text(server: Any, org: dict[str, Any]) -> None:
    """Pipelined NOOP then STARTTLS: the NOOP reply and the 220 come in clear text, in order, and nothing else before TLS."""
    client = await connect(server.port("smtp"))
    await client.ehlo()
    await client.send(b"NOOP\r\nSTARTTLS\r\n")
    assert (await client.reply())[0] == 250
    assert (await client.reply())[0] == 220
    assert await nothing_more(client)
    await client.writer.start_tls(server.client_ssl_context(), server_hostname="mail.example.test")
    assert (await client.cmd("NOOP"))[0] == 250
    await client.close()


# --------------------------------------------------------------------------- smuggling

#: Every non-standard end-of-data sequence published for SMTP smuggling, with where it
#: was published. Only ``CRLF . CRLF`` ends DATA here (RFC 5321 §4.1.1.4); every one of
#: these must stay message content.
#:   [SEC]  SEC Consult (Timo Longin), "SMTP Smuggling", Dec 2023, and its scanner
#:          (github.com/The-Login/SMTP-Smuggling-Tools, inbound and outbound lists);
#:   [SMUG] github.com/hannob/smtpsmug test list;
#:   CVE-2023-51764 (Postfix), -51765 (Sendmail), -51766 (Exim): <LF>.<LF> and
#:   <LF>.<CR><LF> accepted as end of data (postfix.org/smtp-smuggling.html).
PUBLISHED_VARIANTS: dict[bytes, str] = {
    b"\n.\n": "[SEC] [SMUG]; CVE-2023-51764/51765/51766",
    b"\n.\r\n": "[SEC] [SMUG]; CVE-2023-51764/51765/51766",
    b"\r\n.\n": "[SEC] (early list) [SMUG]",
    b"\r\n.\r": "[SEC] (early list: Cisco Secure Email) [SMUG]",
    b"\r.\r": "[SEC] [SMUG]",
    b"\r.\n": "[SEC] [SMUG]",
    b"\n.\r": "[SEC] [SMUG]",
    b"\r.\r\n": "[SEC] [SMUG]",
    b"\r\n\x00.\r\n": "[SEC] [SMUG] (NUL before the dot: servers that drop NUL)",
    b"\r\n.\x00\r\n": "[SMUG] 'nullafter' (its list repeats nullbefore; the intended form)",
    b"\r\n.\r\r\n": "[SEC] outbound list",
    b"\r\r\n.\r\r\n": "[SEC] outbound list",
}

#: The second transaction an attacker hides behind the fake end of data: if it were
#: executed, bob would get a second message.
SMUGGLED = (
    b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
    b"From: ceo@example.test\r\nSubject: smuggled\r\n\r\nSMUGGLED BODY\r\n"
)


async def _smuggle(client: RawSmtp, seq: bytes, *, split: bool) -> tuple[int, bytes]:
    """One transaction with ``seq`` and SMUGGLED inside; the expected stored text."""
    assert (await client.cmd("MAIL FROM:<x@elsewhere.example>"))[0] == 250
    assert (await client.cmd("RCPT TO:<bob@example.test>"))[0] == 250
    assert (await client.cmd("DATA"))[0] == 354
    head = b"From: x@elsewhere.example\r\nSubject: carrier\r\n\r\nbefore" + seq
    if split:  # the smuggled commands in their own TCP segment, after a pause
        await client.send(head)
        await asyncio.sleep(0.05)
        await client.send(SMUGGLED + b".\r\n")
    else:
        await client.send(head + SMUGGLED + b".\r\n")
    code, _ = await client.reply()
    return code, (b"before" + seq + SMUGGLED).replace(b"\r\n.", b"\r\n")  # RFC 5321 §4.5.2


async def test_published_smuggling_variants_stay_in_one_message(server: Any, org: dict[str, Any]) -> None:
    """Every published smuggling variant, in one packet and split before the smuggled commands: one 250, one stored message holding the smuggled text verbatim, replies in sync."""
    # One packet, variants not already run by tests/smtp/test_inbound.py (same check there).
    runs = [(seq, False) for seq in PUBLISHED_VARIANTS if seq not in SMUGGLING_IN_INBOUND_TESTS]
    runs += [(seq, True) for seq in PUBLISHED_VARIANTS]  # every variant, split
    client = await connect(server.port("smtp"))
    await client.ehlo()
    failures = []
    for n, (seq, split) in enumerate(runs, 1):
        code, expected = await _smuggle(client, seq, split=split)
        stored = await inbox(server.store, org["bob"])
        noop = await client.cmd("NOOP")
        if code != 250 or len(stored) != n or expected not in stored[-1] or noop != (250, "2.0.0 OK"):
            failures.append((seq, split, code, len(stored), noop))
    assert await nothing_more(client)  # no reply to any smuggled command is pending
    await client.close()
    assert not failures
    assert len(await inbox(server.store, org["bob"])) == len(runs)


def test_variant_table_covers_the_inbound_tests() -> None:
    """The table lists every sequence tests/smtp/test_inbound.py tries (one list of published variants)."""
    assert set(SMUGGLING_IN_INBOUND_TESTS) <= set(PUBLISHED_VARIANTS)


# --------------------------------------------------------------------------- slow clients

async def _trickle(client: RawSmtp, data: bytes, every: float) -> float:
    """Send ``data`` one byte at a time until the server closes; seconds until then."""
    start = time.monotonic()
    for i in range(len(data)):
        try:
            client.writer.write(data[i:i + 1])
            await client.writer.drain()
        except (ConnectionError, RuntimeError):
            break
        if client.reader.at_eof() or client.reader._buffer:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(every)
    return time.monotonic() - start


@pytest.mark.config(smtp__command_timeout_seconds=0.5, smtp__idle_timeout_seconds=30.0)
async def test_byte_at_a_time_command_line_is_cut(server: Any) -> None:
    """A command line trickled one byte every 50 ms gets 421 4.4.2 and a close about command_timeout after its first byte, though every byte is 'activity'."""
    client = await connect(server.port("smtp"))
    start = time.monotonic()
    trickled = asyncio.create_task(_trickle(client, b"EHLO " + b"x" * 400 + b"\r\n", 0.05))
    rest = await closed_after(client)
    took = time.monotonic() - start
    await trickled
    assert rest.startswith(b"421 4.4.2 ")
    assert 0.4 <= took <= 5.0, took  # 400 bytes at 20/s would take 20 s
    await client.close()


@pytest.mark.config(smtp__command_timeout_seconds=0.3, smtp__idle_timeout_seconds=30.0)
async def test_pauses_between_whole_commands_are_not_cut(server: Any) -> None:
    """The line clock stops at each complete line: pauses between commands longer than command_timeout (but under idle) are fine."""
    client = await connect(server.port("smtp"))
    await asyncio.sleep(0.6)
    await client.ehlo()
    await asyncio.sleep(0.6)
    assert (await client.cmd("NOOP"))[0] == 250
    await client.send(b"NO")  # a line split across segments, completed in time
    await asyncio.sleep(0.1)
    assert (await client.cmd("OP"))[0] == 250
    await client.close()


@pytest.mark.config(smtp__data_timeout_seconds=0.5, smtp__min_data_rate=100, smtp__idle_timeout_seconds=30.0)
async def test_byte_at_a_time_data_is_cut(server: Any, org: dict[str, Any]) -> None:
    """Message data at 20 octets/s (under min_data_rate 100) gets 421 4.4.2 after about data_timeout / (1 - 20/100) s; nothing is stored."""
    client = await connect(server.port("smtp"))
    await client.ehlo()
    assert (await client.cmd("MAIL FROM:<x@elsewhere.example>"))[0] == 250
    assert (await client.cmd("RCPT TO:<bob@example.test>"))[0] == 250
    assert (await client.cmd("DATA"))[0] == 354
    start = time.monotonic()
    trickled = asyncio.create_task(_trickle(client, b"Subject: slow\r\n\r\n" + b"y" * 400 + b"\r\n.\r\n", 0.05))
    rest = await closed_after(client)
    took = time.monotonic() - start
    await trickled
    assert rest.startswith(b"421 4.4.2 ")
    assert 0.5 <= took <= 5.0, took  # ideal 0.625 s
    assert await inbox(server.store, org["bob"]) == []
    await client.close()


@pytest.mark.config(smtp__data_timeout_seconds=0.5, smtp__min_data_rate=500, smtp__idle_timeout_seconds=30.0)
async def test_slow_data_above_min_rate_passes(server: Any, org: dict[str, Any]) -> None:
    """Data at ~2,000 octets/s for 1.5 s (3x data_timeout) is accepted: the deadline grows with the data received."""
    client = await connect(server.port("smtp"))
    await client.ehlo()
    assert (await client.cmd("MAIL FROM:<x@elsewhere.example>"))[0] == 250
    assert (await client.cmd("RCPT TO:<bob@example.test>"))[0] == 250
    assert (await client.cmd("DATA"))[0] == 354
    await client.send(b"Subject: steady\r\n\r\n")
    for _ in range(30):
        await client.send(b"z" * 98 + b"\r\n")
        await asyncio.sleep(0.05)
    await client.send(b".\r\n")
    assert (await client.reply())[0] == 250
    assert len(await inbox(server.store, org["bob"])) == 1
    await client.close()


@pytest.mark.config(smtp__idle_timeout_seconds=0.5, smtp__data_timeout_seconds=30.0)
async def test_silence_inside_data_is_cut_by_idle_timeout(server: Any, org: dict[str, Any]) -> None:
    """A client that stops sending in the middle of DATA is cut after idle_timeout even while the rate deadline is far away."""
    client = await connect(server.port("smtp"))
    await client.ehlo()
    assert (await client.cmd("MAIL FROM:<x@elsewhere.example>"))[0] == 250
    assert (await client.cmd("RCPT TO:<bob@example.test>"))[0] == 250
    assert (await client.cmd("DATA"))[0] == 354
    await client.send(b"Subject: stalled\r\n\r\n" + b"w" * 10_000)
    start = time.monotonic()
    assert (await closed_after(client)).startswith(b"421 4.4.2 ")
    assert time.monotonic() - start <= 5.0
    await client.close()


@pytest.mark.config(smtp__session_timeout_seconds=1.0, smtp__idle_timeout_seconds=30.0)
async def test_busy_client_is_cut_at_session_timeout(server: Any) -> None:
    """Complete but pointless commands (NOOP every 0.1 s) keep no connection past session_timeout: 421 4.4.2, then close."""
    client = await connect(server.port("smtp"))
    start = time.monotonic()
    replies = []
    with pytest.raises(ConnectionError):
        for _ in range(100):  # 10 s of NOOPs if never cut
            replies.append(await client.cmd("NOOP"))
            await asyncio.sleep(0.1)
    took = time.monotonic() - start
    assert replies[-1] == (421, "4.4.2 Timeout exceeded, closing connection"), replies[-3:]
    assert 0.9 <= took <= 5.0, took
    await client.close()


async def test_open_line_longer_than_any_command_is_cut(server: Any) -> None:
    """64 KB without CRLF gets 421 4.7.0 and a close once the open line passes the longest command (AUTH, 12,288 octets), instead of being buffered."""
    client = await connect(server.port("smtp"))
    await client.ehlo()
    try:
        await client.send(b"AUTH PLAIN " + b"A" * 64_000)
    except ConnectionError:
        pass
    assert (await closed_after(client)).startswith(b"421 4.7.0 Line too long")
    await client.close()


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


#: Slow clients in the memory check, and the RSS growth allowed for all of them
#: (server and client side share this process): ~160 KiB each, where a stream that
#: kept its 64 KiB limit twice over per connection would need more.
SLOW_CLIENTS = 200
RSS_GROWTH_LIMIT_KIB = 32 * 1024


@pytest.mark.config(smtp__command_timeout_seconds=1.0, smtp__max_connections_per_address=1000)
async def test_many_slow_clients_are_all_cut_with_bounded_memory(server: Any) -> None:
    """200 clients each holding a 12 KB open line then trickling are all cut (421) and RSS grows by less than 32 MiB."""
    port = server.port("smtp")
    before = _rss_kib()
    clients = await asyncio.gather(*(connect(port) for _ in range(SLOW_CLIENTS)))
    for c in clients:
        c.writer.write(b"EHLO " + b"h" * 12_000)  # just under the open-line limit
    await asyncio.sleep(0.2)
    peak = _rss_kib()
    trickles = [asyncio.create_task(_trickle(c, b"h" * 100, 0.1)) for c in clients]
    replies = await asyncio.gather(*(closed_after(c, 15.0) for c in clients))
    await asyncio.gather(*trickles)
    peak = max(peak, _rss_kib())
    for c in clients:
        await c.close()
    assert all(r.startswith(b"421 4.4.2 ") for r in replies), {r[:20] for r in replies}
    assert peak - before < RSS_GROWTH_LIMIT_KIB, (before, peak)


# --------------------------------------------------------------------------- connection limit

def test_address_key_groups_ipv6_by_64_and_mapped_ipv4() -> None:
    """IPv4 counts per address, IPv6 per /64, an IPv4-mapped IPv6 address as its IPv4 address."""
    assert address_key("192.0.2.1") == "192.0.2.1"
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("unknown") == "unknown"
    limiter = AddressLimiter(2)
    assert limiter.admit("2001:db8::1") and limiter.admit("2001:db8::2")
    assert not limiter.admit("2001:db8::3")
    assert limiter.admit("192.0.2.1")
    limiter.release("2001:db8::1")
    assert limiter.admit("2001:db8::4")
    for ip in ("2001:db8::2", "2001:db8::4", "192.0.2.1"):
        limiter.release(ip)
    assert len(limiter) == 0


@pytest.mark.config(smtp__max_connections_per_address=3)
async def test_connections_per_address_limited_across_smtp_listeners(server: Any) -> None:
    """The 4th connection from one address (counting smtp, submission and submissions together) gets 421 4.7.0 and a close; other addresses and, after a close, the same address get in."""
    held = [await connect(server.port("smtp")), await connect(server.port("smtp")),
            await connect(server.port("submissions"), tls=server.client_ssl_context())]
    for port, tls in ((server.port("smtp"), None), (server.port("submission"), None),
                      (server.port("submissions"), server.client_ssl_context())):
        refused = await connect(port, tls=tls, greeting=False)
        assert await closed_after(refused) == b"421 4.7.0 Too many connections from your address\r\n"
        await refused.close()
    other = await connect(server.port("smtp"), source="127.0.0.2")  # another address: own count
    await other.ehlo()
    await other.close()
    await held[0].cmd("QUIT")
    await held[0].close()
    for _ in range(50):  # the slot is freed when the server sees the close
        again = await connect(server.port("submission"), greeting=False)
        code, _ = await again.reply()
        await again.close()
        if code == 220:
            break
        await asyncio.sleep(0.05)
    assert code == 220
    for c in held[1:]:
        await c.close()


# --------------------------------------------------------------------------- auth throttling

async def _smtp_auth(server: Any, source: str, user: str, password: str) -> str:
    """AUTH PLAIN on a new submission connection from ``source``; the reply line."""
    client = await connect(server.port("submission"), source=source)
    await client.ehlo()
    code, text = await client.login(user, password)
    await client.close()
    return f"{code} {text}"


@pytest.mark.config(auth__max_failures=3, auth__failure_delay_seconds=0.0)
async def test_smtp_auth_throttle_survives_reconnects(server: Any, org: dict[str, Any]) -> None:
    """max_failures wrong AUTHs, each on a new connection, lock the address (for any account) and the account (from any address): the right password is then refused like a wrong one."""
    ok = "235 2.7.0 Authentication successful"
    # Per address: three different unknown names from 127.0.0.5, one new connection each.
    for i in range(3):
        assert (await _smtp_auth(server, "127.0.0.5", f"nobody{i}@example.test", "x")).startswith("535 ")
    locked = await _smtp_auth(server, "127.0.0.5", "alice@example.test", PASSWORD)
    assert locked != ok
    assert locked == await _smtp_auth(server, "127.0.0.5", "alice@example.test", "wrong")
    assert await _smtp_auth(server, "127.0.0.6", "alice@example.test", PASSWORD) == ok
    # Per account: three wrong passwords for bob, each from a new address and connection.
    for i in range(3):
        assert (await _smtp_auth(server, f"127.0.0.{11 + i}", "bob@example.test", "wrong")).startswith("535 ")
    locked = await _smtp_auth(server, "127.0.0.20", "bob@example.test", PASSWORD)
    assert locked != ok
    assert locked == await _smtp_auth(server, "127.0.0.21", "bob@example.test", "wrong")
    assert await _smtp_auth(server, "127.0.0.20", "erin@example.test", PASSWORD) == ok


async def _imap_login(server: Any, source: str, user: str, password: str) -> str:
    """LOGIN on a new IMAP connection from ``source``; the tagged reply without its tag."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port("imap"), local_addr=(source, 0))
    try:
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"* OK")
        writer.write(f'a1 LOGIN "{user}" "{password}"\r\n'.encode())
        while True:
            line = (await asyncio.wait_for(reader.readline(), 10)).decode().rstrip("\r\n")
            if line.startswith("a1 "):
                return line[3:]
            assert line.startswith("* "), line
    finally:
        writer.close()


@pytest.mark.config(auth__max_failures=3, auth__failure_delay_seconds=0.0)
async def test_imap_login_throttle_survives_reconnects(server: Any, org: dict[str, Any]) -> None:
    """IMAP LOGIN: the same per-address and per-account locks across new connections; locked answers equal wrong-password answers."""
    failed = "NO [AUTHENTICATIONFAILED] "
    for i in range(3):
        assert (await _imap_login(server, "127.0.0.7", f"nobody{i}@example.test", "x")).startswith(failed)
    locked = await _imap_login(server, "127.0.0.7", "alice@example.test", PASSWORD)
    assert locked.startswith(failed)
    assert locked == await _imap_login(server, "127.0.0.7", "alice@example.test", "wrong")
    assert (await _imap_login(server, "127.0.0.8", "alice@example.test", PASSWORD)).startswith("OK ")
    for i in range(3):
        assert (await _imap_login(server, f"127.0.0.{31 + i}", "bob@example.test", "wrong")).startswith(failed)
    assert (await _imap_login(server, "127.0.0.40", "bob@example.test", PASSWORD)).startswith(failed)
    assert (await _imap_login(server, "127.0.0.40", "erin@example.test", PASSWORD)).startswith("OK ")
