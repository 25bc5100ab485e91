"""Inbound SMTP (MX role) against the running daemon: routing replies and storage."""

from __future__ import annotations

from typing import Any

import pytest

from tests.smtp.client import RawSmtp, inbox, message, organisation


@pytest.fixture
async def org(server: Any) -> dict[str, Any]:
    return await organisation(server.accounts)


@pytest.fixture
async def mx(server: Any) -> Any:
    client = await RawSmtp.connect(server.port("smtp"))
    await client.ehlo()
    yield client
    await client.close()


async def test_ehlo_advertises_extensions(server: Any, mx: RawSmtp) -> None:
    """EHLO on the inbound listener lists SIZE, 8BITMIME, SMTPUTF8, PIPELINING, ENHANCEDSTATUSCODES, STARTTLS."""
    lines = await mx.ehlo()
    for ext in ("8BITMIME", "SMTPUTF8", "PIPELINING", "ENHANCEDSTATUSCODES", "STARTTLS"):
        assert ext in lines
    assert f"SIZE {server.config['limits.message_size']}" in lines


async def test_local_delivery_byte_exact_with_trace(server: Any, org: dict[str, Any], mx: RawSmtp) -> None:
    """Mail for a local user is stored once: Return-Path and Received added, the rest byte for byte."""
    msg = message(frm="someone@elsewhere.example", body="line one\r\n.dot line\r\n\r\nend\r\n")
    code, text = await mx.send_mail("someone@elsewhere.example", ["bob@example.test"], msg)
    assert (code, text[:5]) == (250, "2.0.0")
    [stored] = await inbox(server.store, org["bob"])
    assert stored.startswith(b"Return-Path: <someone@elsewhere.example>\r\nReceived: from client.example.net ([127.0.0.1])")
    assert b"for <bob@example.test>" in stored
    assert stored.endswith(msg)


async def test_null_sender_accepted(server: Any, org: dict[str, Any], mx: RawSmtp) -> None:
    """MAIL FROM:<> (delivery reports, RFC 5321 §4.5.5) is accepted inbound."""
    code, _ = await mx.send_mail("", ["bob@example.test"], message(frm="mailer-daemon@elsewhere.example"))
    assert code == 250
    [stored] = await inbox(server.store, org["bob"])
    assert stored.startswith(b"Return-Path: <>\r\n")


async def test_alias_shared_and_room_delivered(server: Any, org: dict[str, Any], mx: RawSmtp) -> None:
    """An alias reaches its target; shared mailboxes and rooms get mail in their INBOX."""
    code, _ = await mx.send_mail(
        "x@elsewhere.example",
        ["alice.smith@example.test", "jobs@example.test", "boardroom@example.test", "ALICE@EXAMPLE.TEST"],
        message(),
    )
    assert code == 250
    assert len(await inbox(server.store, org["alice"])) == 1  # alias + direct: one copy
    assert len(await inbox(server.store, org["hr"])) == 1
    assert len(await inbox(server.store, org["room"])) == 1


@pytest.mark.parametrize(
    ("rcpt", "expected"),
    [
        ("nobody@example.test", "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown"),
        ("carol@example.test", "550 5.2.1 Mailbox unavailable"),
        ("dave@example.test", "550 5.2.1 Mailbox unavailable"),
        ("someone@elsewhere.example", "554 5.7.1 Relay access denied"),
    ],
)
async def test_rcpt_refusals(server: Any, org: dict[str, Any], mx: RawSmtp, rcpt: str, expected: str) -> None:
    """Unknown, unlicensed, disabled and relay recipients get their exact reply."""
    assert (await mx.cmd("MAIL FROM:<x@elsewhere.example>"))[0] == 250
    code, text = await mx.cmd(f"RCPT TO:<{rcpt}>")
    assert f"{code} {text}" == expected


@pytest.mark.config(limits__max_recipients=3)
async def test_too_many_recipients(server: Any, org: dict[str, Any], mx: RawSmtp) -> None:
    """The RCPT after max_recipients gets 452 4.5.3 Too many recipients, earlier ones still deliver."""
    assert (await mx.cmd("MAIL FROM:<x@elsewhere.example>"))[0] == 250
    for _ in range(3):
        assert (await mx.cmd("RCPT TO:<bob@example.test>"))[0] == 250
    code, text = await mx.cmd("RCPT TO:<bob@example.test>")
    assert f"{code} {text}" == "452 4.5.3 Too many recipients"


async def test_mail_before_auth_not_needed_inbound(server: Any, org: dict[str, Any], mx: RawSmtp) -> None:
    """The inbound listener takes MAIL without AUTH, and refuses AUTH-only sequencing errors with 503."""
    code, text = await mx.cmd("RCPT TO:<bob@example.test>")
    assert (code, text[:5]) == (503, "5.5.1")
    code, _ = await mx.cmd("MAIL FROM:<x@elsewhere.example>")
    assert code == 250
    code, text = await mx.cmd("MAIL FROM:<x@elsewhere.example>")
    assert (code, text[:5]) == (503, "5.5.1")
    code, text = await mx.cmd("DATA")
    assert (code, text) == (503, "5.5.1 Need RCPT command")


@pytest.mark.parametrize(
    "line",
    [b"FOO bar", b"MAIL FROM:bob", b"MAIL FROM:<a@b> XYZ=1", b"RCPT", b"\xff\xfe", b"MAIL TO:<a@b.c>", b"HELO", b""],
)
async def test_malformed_commands_get_5xx_and_session_survives(server: Any, org: dict[str, Any], mx: RawSmtp, line: bytes) -> None:
    """A malformed command gets a 5xx with an enhanced code; the session then still delivers."""
    code, text = await mx.cmd(line)
    assert 500 <= code < 600
    assert text[:2] == "5."
    await mx.cmd("RSET")
    code, _ = await mx.send_mail("x@elsewhere.example", ["bob@example.test"], message())
    assert code == 250


@pytest.mark.config(limits__message_size=2048)
async def test_size_limit(server: Any, org: dict[str, Any], mx: RawSmtp) -> None:
    """SIZE= above the limit is refused at MAIL, and a too-big DATA gets 552 5.3.4; the session survives."""
    code, text = await mx.cmd("MAIL FROM:<x@elsewhere.example> SIZE=4096")
    assert (code, text[:5]) == (552, "5.3.4")
    big = message(body="x" * 70 + "\r\n") * 40
    code, text = await mx.send_mail("x@elsewhere.example", ["bob@example.test"], big)
    assert (code, text[:5]) == (552, "5.3.4")
    assert await inbox(server.store, org["bob"]) == []
    code, _ = await mx.send_mail("x@elsewhere.example", ["bob@example.test"], message())
    assert code == 250


async def test_line_length_limit(server: Any, org: dict[str, Any], mx: RawSmtp) -> None:
    """A data line longer than limits.max_line_length is refused with 500 5.5.6."""
    long_line = "y" * (server.config["limits.max_line_length"] + 10)
    code, text = await mx.send_mail("x@elsewhere.example", ["bob@example.test"], message(body=long_line + "\r\n"))
    assert (code, text[:5]) == (500, "5.5.6")


@pytest.mark.config(limits__max_header_size=1024)
async def test_header_size_limit(server: Any, org: dict[str, Any], mx: RawSmtp) -> None:
    """A header section over limits.max_header_size gets 552 5.3.4."""
    extra = "".join(f"X-Filler-{i}: {'z' * 60}\r\n" for i in range(20))
    code, text = await mx.send_mail("x@elsewhere.example", ["bob@example.test"], message(extra=extra))
    assert f"{code} {text}" == "552 5.3.4 Message header section exceeds the size limit"


@pytest.mark.config(limits__max_hops=5)
async def test_routing_loop(server: Any, org: dict[str, Any], mx: RawSmtp) -> None:
    """More Received: fields than max_hops: 554 5.4.6 Routing loop detected."""
    extra = "".join(f"Received: from hop{i}.example by x; Mon, 1 Jan 2024 00:00:00 +0000\r\n" for i in range(6))
    code, text = await mx.send_mail("x@elsewhere.example", ["bob@example.test"], message(extra=extra))
    assert f"{code} {text}" == "554 5.4.6 Routing loop detected"
    extra5 = "".join(f"Received: from hop{i}.example by x; Mon, 1 Jan 2024 00:00:00 +0000\r\n" for i in range(5))
    code, _ = await mx.send_mail("x@elsewhere.example", ["bob@example.test"], message(extra=extra5))
    assert code == 250


SMUGGLING = [b"\n.\n", b"\r.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r", b"\n.\r"]


@pytest.mark.parametrize("seq", SMUGGLING, ids=[repr(s) for s in SMUGGLING])
async def test_smuggling_sequences_do_not_end_data(server: Any, org: dict[str, Any], mx: RawSmtp, seq: bytes) -> None:
    """A smuggling sequence followed by a second MAIL/RCPT/DATA stays inside one message."""
    smuggled = b"MAIL FROM:<evil@example.test>\r\nRCPT TO:<erin@example.test>\r\nDATA\r\nFrom: evil\r\n\r\nsmuggled\r\n"
    assert (await mx.cmd("MAIL FROM:<x@elsewhere.example>"))[0] == 250
    assert (await mx.cmd("RCPT TO:<bob@example.test>"))[0] == 250
    assert (await mx.cmd("DATA"))[0] == 354
    await mx.send(b"From: x@elsewhere.example\r\n\r\nbefore" + seq + smuggled + b".\r\n")
    code, _ = await mx.reply()
    assert code == 250
    [stored] = await inbox(server.store, org["bob"])
    assert (b"before" + seq + smuggled).replace(b"\r\n.", b"\r\n") in stored  # RFC 5321 §4.5.2
    assert await inbox(server.store, org["erin"]) == []
    assert (await mx.cmd("NOOP"))[0] == 250


async def test_pipelining(server: Any, org: dict[str, Any], mx: RawSmtp) -> None:
    """A whole pipelined transaction (RFC 2920) including the next command after the dot gets every reply in order."""
    await mx.send(
        b"MAIL FROM:<x@elsewhere.example>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n"
    )
    assert [(await mx.reply())[0] for _ in range(4)] == [250, 250, 550, 354]
    await mx.send(b"Subject: p\r\n\r\nbody\r\n.\r\nMAIL FROM:<y@elsewhere.example>\r\nRCPT TO:<erin@example.test>\r\nDATA\r\n")
    assert [(await mx.reply())[0] for _ in range(4)] == [250, 250, 250, 354]
    await mx.send(b"Subject: q\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert [(await mx.reply())[0] for _ in range(2)] == [250, 221]
    assert len(await inbox(server.store, org["bob"])) == 1
    assert len(await inbox(server.store, org["erin"])) == 1


async def test_eight_bit_and_smtputf8(server: Any, org: dict[str, Any], mx: RawSmtp) -> None:
    """8BITMIME and SMTPUTF8 bodies and UTF-8 envelope senders are stored intact."""
    msg = "From: Jürgen <jürgen@bücher.example>\r\nSubject: Grüße\r\n\r\nÄÖÜ \xff\r\n".encode()
    assert (await mx.cmd("MAIL FROM:<jürgen@bücher.example> BODY=8BITMIME SMTPUTF8".encode()))[0] == 250
    assert (await mx.cmd("RCPT TO:<bob@example.test>"))[0] == 250
    assert (await mx.cmd("DATA"))[0] == 354
    await mx.send(msg + b".\r\n")
    assert (await mx.reply())[0] == 250
    [stored] = await inbox(server.store, org["bob"])
    assert stored.endswith(msg)
    assert b"with UTF8SMTP" in stored


async def test_helo_then_plain_smtp_delivery(server: Any, org: dict[str, Any]) -> None:
    """HELO (no ESMTP) gets '250 <hostname>' without an enhanced code, and mail still flows (WITH SMTP)."""
    c = await RawSmtp.connect(server.port("smtp"))
    assert await c.cmd("HELO old.example.net") == (250, "mail.example.test")
    assert (await c.send_mail("x@elsewhere.example", ["bob@example.test"], message()))[0] == 250
    [stored] = await inbox(server.store, org["bob"])
    assert b"with SMTP id" in stored
    await c.close()


async def test_new_transaction_during_shutdown_gets_421_and_close(server: Any, org: dict[str, Any], mx: RawSmtp) -> None:
    """Once shutdown began, MAIL gets 421 4.3.2 and the server closes the connection (RFC 5321 §3.8)."""
    await mx.ehlo()
    server.app.shutting_down = True  # what Daemon.stop() sets before it waits for in-flight work
    code, text = await mx.cmd("MAIL FROM:<x@elsewhere.example>")
    assert code == 421 and text.startswith("4.3.2")
    assert await mx.reader.read() == b""  # closed by the server


async def test_unexpected_internal_error_is_a_short_451(server: Any, org: dict[str, Any], mx: RawSmtp) -> None:
    """A non-storage failure inside a command (fault injected into the directory) answers
    451 4.3.0 without internals, and the session stays usable."""
    await mx.ehlo()
    directory = server.app.store.directory
    real_version = directory.version

    async def broken() -> int:
        raise RuntimeError("secret internal detail")

    directory.version = broken  # the SMTP snapshot checks it at MAIL FROM
    try:
        code, text = await mx.cmd("MAIL FROM:<x@elsewhere.example>")
    finally:
        directory.version = real_version
    assert code == 451 and text.startswith("4.3.0") and "secret" not in text and "RuntimeError" not in text
    assert (await mx.cmd("RSET"))[0] == 250
    assert (await mx.cmd("MAIL FROM:<x@elsewhere.example>"))[0] == 250
