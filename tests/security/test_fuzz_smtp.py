"""Issue 10 §3: SMTP command fuzzing over a real socket to the running daemon.

tests/smtp/test_data_equivalence.py already fuzzes how DATA is framed (dots, CR, LF,
long lines) against aiosmtpd; this file fuzzes the command dialogue around it. Sessions
are built from real scripts (an inbound delivery, an authenticated submission, a random
walk over every verb) whose lines are then mutated: random and 8-bit bytes, NUL, bare CR
or LF, case, extra blanks, huge numbers, over-long lines, truncation, unknown verbs and
parameters, odd addresses (source routes, percent hacks, quoted and UTF-8 local parts,
IP literals), SASL exchanges answered with garbage. A DATA that gets 354 is sent a small
message, properly dot-stuffed, whose header section is one of the shapes the submission
checks look at (no From:, two From:, Sender:, encoded words, 8-bit).

Properties:
* every reply line matches ``^[2-5][0-9]{2}[ -]``, a multi-line reply keeps one code and
  ends with ``code SP``;
* every 2xx/4xx/5xx reply carries an RFC 3463 enhanced status code of the same class
  (RFC 2034 §3), except the greeting and the replies to EHLO/HELO;
* the server closes the connection only after QUIT (221) or a 421;
* nothing is logged at ERROR (no command ended in an unexpected exception), and after
  all of it the daemon still answers a new connection.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import ssl
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from mailserver.smtp.data import DataReader
from tests.conftest import RunningServer
from tests.smtp.client import PASSWORD, RawSmtp

#: Examples per run (each a session of up to ~12 commands); FUZZ_EXAMPLES raises it.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "250"))
USER = "bob@example.test"

_REPLY_LINE = re.compile(r"\A([2-5][0-9]{2})([ -])(.*)\Z", re.DOTALL)
#: RFC 3463 §2: class.subject.detail, class 2, 4 or 5, subject and detail 0-999.
_ENHANCED = re.compile(r"\A([245])\.[0-9]{1,3}\.[0-9]{1,3}(?: |\Z)")


@dataclass
class Step:
    """One command line (without its line end), how it ends, and what follows it: a
    message for a 354, SASL responses for 334 challenges."""

    line: bytes
    ending: bytes = b"\r\n"
    body: bytes = b""
    sasl: list[bytes] = field(default_factory=list)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


CREDENTIALS = _b64(b"\x00" + USER.encode() + b"\x00" + PASSWORD.encode())
ADDRESSES = [b"bob@example.test", b"alice@example.test", b"nobody@example.test", b"x@elsewhere.example",
             b"", b"bob%elsewhere.example@example.test", b"@example.test:bob@elsewhere.example",
             b"elsewhere.example!bob@example.test", b'"bob@elsewhere.example"@example.test', b"bob@[127.0.0.1]",
             b"bob@[IPv6:::1]", b"Bob@EXAMPLE.TEST.", b"jos\xc3\xa9@example.test", b"bob", b"@", b"bob@",
             b"a" * 70 + b"@example.test", b"bob@" + b"d" * 260 + b".test", b"<bob@example.test>", b"b\x00b@x.y",
             b'"" @example.test', b"bob@example.test bob@example.test"]
PARAMS = [b"", b" SIZE=100", b" SIZE=99999999999999999999", b" SIZE=", b" BODY=8BITMIME", b" BODY=BINARYMIME",
          b" SMTPUTF8", b" SMTPUTF8=yes", b" RET=HDRS", b" ENVID=x", b" NOTIFY=NEVER", b" X=Y", b" =", b" SIZE=-1",
          b" AUTH=<>", b"\tSIZE=1"]
VERBS = [b"EHLO", b"HELO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"NOOP", b"VRFY", b"EXPN", b"HELP", b"QUIT",
         b"STARTTLS", b"AUTH", b"BDAT", b"ETRN", b"TURN", b"XCLIENT", b"GET", b"POST"]

BODIES = [
    b"From: bob@example.test\r\nTo: x@elsewhere.example\r\nSubject: hi\r\n\r\nHello\r\n",
    b"To: x@elsewhere.example\r\nSubject: no from\r\n\r\nbody\r\n",
    b"From: a@example.test\r\nFrom: b@example.test\r\n\r\nbody\r\n",
    b"From: bob@example.test, alice@example.test\r\n\r\nbody\r\n",
    b"From: =?utf-8?q?B=C3=B6b?= <bob@example.test>\r\nSender: alice@example.test\r\n\r\nbody\r\n",
    b"From: <>\r\nSender: \r\n\r\n",
    b"From: bob@example.test\r\nSubject: \xc3\xa9\xff\r\n X-folded\r\n\r\n\xff\xfe 8-bit\r\n",
    b"From: (comment) bob@example.test (\r\n\r\n",
    b"\r\nno header at all\r\n",
    b"",
    b"From: bob@example.test\n\nbare LF header\n",
    b"Received: x\r\n" * 120 + b"From: bob@example.test\r\n\r\nloop\r\n",
]


def _stuffed(body: bytes) -> bytes:
    """The DATA section for ``body``: dot-stuffed and ended (RFC 5321 §4.5.2)."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    lines = body.split(b"\r\n")
    return b"\r\n".join(b"." + x if x.startswith(b".") else x for x in lines) + b".\r\n"


def _cmd(verb: bytes, *args: bytes) -> bytes:
    return b" ".join((verb, *args))


_host = st.sampled_from([b"client.example.net", b"[127.0.0.1]", b"", b"x" * 300, b"\xc3\xa9.example", b"-", b"a b"])
_addr = st.sampled_from(ADDRESSES)
_param = st.sampled_from(PARAMS)
_sasl = st.lists(st.one_of(st.sampled_from([b"*", b"=", b"!!!", CREDENTIALS, _b64(b"bob@example.test"),
                                            _b64(PASSWORD.encode()), _b64(b"\x00\x00"), _b64(b"\xff")]),
                           st.binary(max_size=10)), max_size=3)

COMMAND: st.SearchStrategy[Step] = st.one_of(
    st.builds(lambda v, h: Step(_cmd(v, h)), st.sampled_from([b"EHLO", b"HELO", b"ehlo"]), _host),
    st.builds(lambda a, p: Step(b"MAIL FROM:<" + a + b">" + p), _addr, _param),
    st.builds(lambda a, p: Step(b"RCPT TO:<" + a + b">" + p), _addr, _param),
    st.builds(lambda a: Step(b"MAIL FROM:" + a), _addr),
    st.builds(lambda a: Step(b"RCPT TO: " + a), _addr),
    st.builds(lambda b: Step(b"DATA", body=b), st.sampled_from(BODIES)),
    st.sampled_from([Step(b"RSET"), Step(b"NOOP"), Step(b"NOOP x"), Step(b"HELP"), Step(b"HELP MAIL"),
                     Step(b"VRFY bob"), Step(b"EXPN list"), Step(b"DATA x"), Step(b"QUIT"), Step(b"STARTTLS"),
                     Step(b"STARTTLS x"), Step(b"BDAT 10 LAST"), Step(b"ETRN example.test"), Step(b"")]),
    st.builds(lambda m, ir, s: Step(_cmd(b"AUTH", m, *ir), sasl=s),
              st.sampled_from([b"PLAIN", b"LOGIN", b"plain", b"CRAM-MD5", b"XOAUTH2", b""]),
              st.one_of(st.just([]), st.sampled_from([CREDENTIALS, b"=", b"!!", _b64(b"x"), b"a b"]).map(lambda v: [v])),
              _sasl),
    st.builds(lambda v, a: Step(_cmd(v, a.replace(b"\n", b""))), st.sampled_from(VERBS), st.binary(max_size=20)),
)

SCRIPTS: st.SearchStrategy[list[Step]] = st.one_of(
    st.builds(lambda body: [Step(b"EHLO client.example.net"), Step(b"MAIL FROM:<x@elsewhere.example>"),
                            Step(b"RCPT TO:<bob@example.test>"), Step(b"RCPT TO:<alice@example.test>"),
                            Step(b"DATA", body=body), Step(b"QUIT")], st.sampled_from(BODIES)),
    st.builds(lambda body: [Step(b"EHLO client.example.net"), Step(b"AUTH PLAIN " + CREDENTIALS),
                            Step(b"MAIL FROM:<bob@example.test>"), Step(b"RCPT TO:<x@elsewhere.example>"),
                            Step(b"DATA", body=body), Step(b"QUIT")], st.sampled_from(BODIES)),
    st.lists(COMMAND, min_size=1, max_size=10),
)

_huge_line = st.sampled_from([600, 1100, 4000, 12_000, 13_000, 70_000]).map(lambda n: b"X" * n)


@st.composite
def _mutate(draw: st.DrawFn, step: Step) -> Step:
    """One step, mutated (or not)."""
    line = step.line
    op = draw(st.sampled_from(["none"] * 5 + ["bytes", "insert", "case", "blanks", "number", "long", "truncate",
                                               "ending"]))
    if op == "bytes" and line:
        at = draw(st.integers(0, len(line) - 1))
        line = line[:at] + draw(st.binary(min_size=1, max_size=4)) + line[at + 1:]
    elif op == "insert":
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(st.sampled_from([b"\x00", b"\r", b"\xff", b" ", b"\t", b"<", b">", b":",
                                                 b"\xc3\xa9", b"\x7f"])) + line[at:]
    elif op == "case":
        line = line.lower() if draw(st.booleans()) else line.swapcase()
    elif op == "blanks":
        line = b"  ".join(line.split(b" ")) + draw(st.sampled_from([b" ", b"\t", b"   "]))
    elif op == "number":
        line = re.sub(rb"[0-9]+", draw(st.sampled_from([b"99999999999999999999", b"-1", b"0"])), line)
    elif op == "long":
        line += b" " + draw(_huge_line)
    elif op == "truncate":
        line = line[: draw(st.integers(0, len(line)))]
    ending = draw(st.sampled_from([b"\n", b"\r\r\n", b" \r\n"])) if op == "ending" else step.ending
    # A LF inside the line would make it two commands (pipelining, RFC 2920): keep one per step.
    return Step(line.replace(b"\n", b""), ending, step.body, step.sasl)


@st.composite
def sessions(draw: st.DrawFn) -> tuple[str, list[Step]]:
    """A listener and a mutated script."""
    listener = draw(st.sampled_from(["smtp", "submission"]))
    script = draw(SCRIPTS)
    steps = [draw(_mutate(s)) for s in script]
    for _ in range(draw(st.integers(0, 2))):
        steps.insert(draw(st.integers(0, len(steps))), draw(COMMAND))
    return listener, steps


def check_reply(lines: list[str], *, greeting: bool = False, helo: bool = False) -> int:
    """Assert one reply is well formed; return its code."""
    codes = set()
    for i, line in enumerate(lines):
        m = _REPLY_LINE.match(line)
        assert m, f"malformed reply line {line[:200]!r}"
        codes.add(m.group(1))
        last = i == len(lines) - 1
        assert (m.group(2) == " ") == last, f"multi-line reply continues wrongly: {lines!r}"
    assert len(codes) == 1, f"one reply with several codes: {lines!r}"
    code = codes.pop()
    exempt = greeting or (helo and code == "250") or code[0] == "3"  # RFC 2034 §3; 3xx are not RFC 3463 codes
    if not exempt:
        for line in lines:
            e = _ENHANCED.match(line[4:])
            assert e, f"no enhanced status code (RFC 2034 §3): {line[:200]!r}"
            assert e.group(1) == code[0], f"enhanced code of another class (RFC 3463 §2): {line[:200]!r}"
    return int(code)


async def _reply(client: RawSmtp, *, helo: bool = False) -> int | None:
    """The next reply's code, checked; None when the server closed the connection."""
    try:
        await client.reply()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        return None
    return check_reply(client.lines, helo=helo)


async def play(server: RunningServer, listener: str, steps: list[Step]) -> list[int]:
    """Play ``steps``; return the reply codes. Asserts the properties of the module."""
    client = await RawSmtp.connect(server.port(listener))
    check_reply(client.lines, greeting=True)
    codes: list[int] = []
    last: int | None = None
    try:
        for step in steps:
            verb = step.line.split(b" ")[0].upper()
            await client.send(step.line + step.ending)
            code = await _reply(client, helo=verb in (b"EHLO", b"HELO"))
            if code is None:
                assert last in (221, 421), f"connection closed after {last}, not after QUIT or 421"
                return codes
            codes.append(code)
            last = code
            if code == 421:
                assert await _reply(client) is None, "the connection stays open after 421"
                return codes
            if code == 221:
                assert await _reply(client) is None, "the connection stays open after 221"
                return codes
            sasl = list(step.sasl)
            while code == 334:  # RFC 4954 §4: answer each challenge, "*" cancels
                await client.send((sasl.pop(0) if sasl else b"*").replace(b"\n", b"") + b"\r\n")
                code = await _reply(client)
                assert code is not None, "closed during AUTH"
                codes.append(code)
                last = code
            if code == 354:  # RFC 5321 §4.1.1.4
                await client.send(_stuffed(step.body))
                code = await _reply(client)
                assert code is not None, "closed after the message data"
                codes.append(code)
                last = code
            if code == 220 and verb == b"STARTTLS":  # RFC 3207 §4
                await client.writer.start_tls(server.client_ssl_context(), server_hostname="mail.example.test")
        await client.send(b"QUIT\r\n")
        assert await _reply(client) == 221
    finally:
        await client.close()
    return codes


@pytest.mark.config(auth__max_failures=1_000_000, licences__seats=1000)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
@example(session=("smtp", [Step(b"EHLO client.example.net"), Step(b"MAIL FROM:<x@elsewhere.example>"),
                           Step(b"RCPT TO:<bob@"), Step(b"MAIL FROM:<bob@")]))  # was 451 4.3.0 (IndexError)
@example(session=("smtp", [Step(b"EHLO client.example.net"), Step(b"MAIL FROM:<x@elsewhere.example> X=\xff"),
                           Step(b"MAIL FROM:<x@elsewhere.example>"),
                           Step(b"RCPT TO:<bob@example.test> X=1\r250 2.0.0 injected")]))  # 451 / bare CR in reply
@example(session=("smtp", [Step(b"EHLO client.example.net"), Step(b"MAIL FROM:<\xffx@elsewhere.example>"),
                           Step(b"MAIL FROM:<x@elsewhere.example>"), Step(b"RCPT TO:<\xffbob@example.test>")]))  # 451
@example(session=("smtp", [Step(b"BDAT 10 LAST"), Step(b"EHLO client.example.net"), Step(b"XCLIENT x"),
                           Step(b"GET /"), Step(b"\x00CPT TO:<bob@example.test>"), Step(b"Q")]))  # 502, then closed
@given(session=sessions())
async def test_every_reply_is_well_formed_and_the_server_stays_up(
    server: RunningServer, caplog: pytest.LogCaptureFixture, session: tuple[str, list[Step]]
) -> None:
    """Mutated SMTP sessions: well-formed replies with enhanced codes, no close except
    after QUIT or 421, no unexpected exception, and the daemon keeps answering."""
    if await server.store.directory.get_account(USER) is None:
        await server.accounts.add_user(USER, "Bob", PASSWORD)
        await server.accounts.add_user("alice@example.test", "Alice", PASSWORD)
    caplog.clear()
    listener, steps = session
    with caplog.at_level(logging.ERROR, logger="mailserver"):
        codes = await play(server, listener, steps)
    for code in codes:
        event(f"{code // 100}xx")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("mailserver")]
    assert not errors, [r.getMessage() for r in errors]
    fresh = await RawSmtp.connect(server.port("smtp"))
    try:
        assert await _reply_after(fresh, b"EHLO client.example.net", helo=True) == 250
        assert await _reply_after(fresh, b"NOOP") == 250
    finally:
        await fresh.close()


async def _reply_after(client: RawSmtp, line: bytes, *, helo: bool = False) -> int | None:
    await client.send(line + b"\r\n")
    return await _reply(client, helo=helo)


async def test_starttls_reply_has_an_enhanced_code(server: RunningServer) -> None:
    """Regression (found by the fuzzer): aiosmtpd's "220 Ready to start TLS" went out
    without 2.0.0, though only the greeting and EHLO/HELO replies may omit it."""
    client = await RawSmtp.connect(server.port("smtp"))
    try:
        assert await _reply_after(client, b"EHLO client.example.net", helo=True) == 250
        assert await _reply_after(client, b"STARTTLS") == 220
        assert client.lines == ["220 2.0.0 Ready to start TLS"]
        await client.writer.start_tls(server.client_ssl_context(), server_hostname="mail.example.test")
        assert await _reply_after(client, b"NOOP") == 250
    finally:
        await client.close()


async def test_failed_handshake_after_starttls_is_not_a_server_error(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression (found by the fuzzer): a client that answers 220 to STARTTLS with
    clear text or goes away was logged at ERROR with a traceback, as an unexpected
    server error; it is a client failure, logged at INFO, and the daemon serves on."""
    with caplog.at_level(logging.INFO, logger="mailserver"):
        for after in (b"NOOP\r\n", b""):
            client = await RawSmtp.connect(server.port("smtp"))
            assert await _reply_after(client, b"EHLO client.example.net", helo=True) == 250
            assert await _reply_after(client, b"STARTTLS") == 220
            await client.send(after)
            if not after:
                client.writer.close()
            assert await asyncio.wait_for(client.reader.read(), 10) == b""
            await client.close()
        fresh = await RawSmtp.connect(server.port("smtp"))
        assert await _reply_after(fresh, b"EHLO client.example.net", helo=True) == 250
        await fresh.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "TLS handshake after STARTTLS failed" in caplog.text


@pytest.mark.parametrize("cut", range(0, 8))
def test_data_of_exactly_the_size_limit_is_kept_wherever_the_marker_splits(cut: int) -> None:
    """Regression (found by bench/fuzz/atheris_imap.py): the DATA reader counted a "."
    or ".CR" that turned out to be the end marker's as message data, so a message of
    exactly the size limit was refused (552) when a read ended inside the marker."""
    data = b"ab\r\n.\r\n"  # the message is b"ab\r\n": 4 octets
    for limit, accepted in ((4, True), (3, False)):
        reader = DataReader(limit, 100)
        used = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert reader.done and used == len(data)
        assert (reader.error is None) == accepted, (limit, cut, reader.error)
        if accepted:
            assert reader.message == b"ab\r\n"


@pytest.mark.parametrize("cut", range(0, 12))
def test_longest_line_is_kept_wherever_its_crlf_splits(cut: int) -> None:
    """Regression (found by bench/fuzz/atheris_imap.py): the open line's CR was counted
    in its length before the LF arrived, so a line of exactly the limit (plus its
    transparency dot) was refused (500 5.5.6) when a read ended between CR and LF."""
    data = b"..abc\r\n.\r\n"  # one stuffed line: 5 octets with the dot, limit 4 + dot
    for limit, accepted in ((4, True), (3, False)):
        reader = DataReader(1000, limit)
        used = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert reader.done and used == len(data)
        assert (reader.error is None) == accepted, (limit, cut, reader.error)
        if accepted:
            assert reader.message == b".abc\r\n"
