"""Issue 10 §3: fuzzing the message builder (delivery/message.py, delivery/sender.py via
:meth:`delivery.local.Delivery.commit`) and the IMAP index of what it stores
(delivery/mime_index.py).

tests/delivery/test_mime_property.py already checks that random MIME trees slice into
the right sections and that any byte string indexes without raising; this file adds
the other side: random header sections (From/Sender missing, duplicated, unparsable,
naming the user, a mailbox the user may Send As or Send on Behalf of, or someone else;
encoded words valid and broken, 8-bit octets, folded and over-long lines, garbage
lines, bare LF or CR line ends) with random bodies, and odd display names of the
submitting user, committed by a real Delivery into a real SQLite store.

Properties of every committed message:
* the stored bytes are Return-Path + Received + the fields added (Sender:, Date:,
  Message-ID:) + the client's header section, only Sender: possibly removed + the
  original body, byte for byte;
* Python's email parser reads every added field as a header field (not as body), the
  Sender: of a Send-on-Behalf message names exactly the user, and a Send-As message
  keeps no Sender: naming the user;
* every added line is at most 998 octets (RFC 5322 §2.1.1) and holds no bare CR or LF;
* the stored message indexes for IMAP, and its ENVELOPE and BODYSTRUCTURE are
  well-formed IMAP data (balanced, quoted strings closed, literals of their size).
A refused message gets a 5xx reply from the table, never an exception.
"""

from __future__ import annotations

import email.parser
import email.policy
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from auth.accounts import AccountService
from auth.passwords import PasswordHasher
from delivery import message
from delivery.local import Delivery, Limits
from delivery.mime_index import build_index, matches_text
from delivery.replies import ReplyError
from delivery.routing import Router
from storage.sqlite import SqliteStore
from storage.types import Account, Right
from tests.security.test_fuzz_imap import check_data

#: Examples per run; FUZZ_EXAMPLES raises it for a longer hunt.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
DOMAIN = "example.test"
BOB, ALICE = f"bob@{DOMAIN}", f"alice@{DOMAIN}"
SEND_AS, ON_BEHALF = f"hr@{DOMAIN}", f"sales@{DOMAIN}"
TRACE = message.Trace("client.example.net", "127.0.0.1", "mail.example.test", True, "TLSv1.3",
                      "TLS_AES_256_GCM_SHA384", BOB)
PARSER = email.parser.BytesParser(policy=email.policy.default)


@dataclass
class World:
    store: SqliteStore
    accounts: AccountService
    delivery: Delivery
    alice: Account


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """bob (the submitter), alice (the recipient), hr (bob: Send As), sales (bob: Send on Behalf)."""
    store = await SqliteStore.open(tmp_path / "mail.sqlite3")
    accounts = AccountService(store.directory, PasswordHasher(fast=True), seats=100)
    await accounts.add_domain(DOMAIN)
    await accounts.add_user(BOB, "Bob", "pw")
    alice = await accounts.add_user(ALICE, "Alice", "pw")
    await accounts.add_shared(SEND_AS, "HR")
    await accounts.add_shared(ON_BEHALF, "Sales")
    await accounts.grant(SEND_AS, BOB, [Right.SEND_AS])
    await accounts.grant(ON_BEHALF, BOB, [Right.SEND_ON_BEHALF])
    try:
        yield World(store, accounts, Delivery(store, Router(store.directory), "mail.example.test", Limits()), alice)
    finally:
        await store.close()


# -- header sections ---------------------------------------------------------------------

_good_from = st.sampled_from([BOB, f"Bob <{BOB}>", f"=?utf-8?q?B=C3=B6b?= <{BOB}>", f"HR <{SEND_AS}>", ON_BEHALF,
                              f"=?utf-8?b?U2FsZXM=?= <{ON_BEHALF}>", f'"Bob, the builder" <{BOB}>'])
_mailbox = st.sampled_from([
    BOB, f"Bob <{BOB}>", f"=?utf-8?q?B=C3=B6b?= <{BOB}>", f'"Bob, the builder" <{BOB}>', f"{BOB} (Bob)",
    f"(comment) {BOB}", f"=?x-unknown?q?=FF?= <{BOB}>", f"B\u00f6b <{BOB}>", f"BOB@{DOMAIN.upper()}",
    SEND_AS, f"HR <{SEND_AS}>", ON_BEHALF, f"=?utf-8?b?U2FsZXM=?= <{ON_BEHALF}>", ALICE, "x@elsewhere.example",
    "", "<>", f"{BOB}, {SEND_AS}", "undisclosed-recipients:;", "group: a@b.test;", "bob", "@", f"<{BOB}",
    "bob@[127.0.0.1]", "=?utf-8?q?broken", "\"unterminated <bob@example.test>",
])
_text = st.one_of(
    st.sampled_from(["hello", "=?utf-8?q?caf=C3=A9?=", "=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=", "=?bogus?x?y?=",
                     "=?utf\x00-8?q?x?=", "=?zlib?b?eA==?=", "=?rot13?q?x?=", "text/plain; charset=base64",
                     "=?utf-8?q?=?=", "caf\u00e9 \U0001f600", "a" * 2000, "x\ty", "  leading", ""]),
    st.text(max_size=40),
)
#: Field names for the other lines; a second From: or Sender: now and then, in odd case.
_field_name = st.sampled_from(["Subject", "To", "Cc", "Date", "Message-ID", "Received", "X-Custom", "Reply-To",
                               "MIME-Version", "Content-Type", "In-Reply-To", "Return-Path"] * 3 + ["from", "SENDER"])


@st.composite
def _fields(draw: st.DrawFn) -> list[bytes]:
    """Header lines without their line ends (a folded field holds "\\r\\n " inside)."""
    lines: list[bytes] = []
    froms = draw(st.sampled_from([1] * 8 + [0, 2]))
    for _ in range(froms):
        lines.append(b"From: " + draw(st.one_of(_good_from, _mailbox)).encode("utf-8"))
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 0, 1, 2]))):
        lines.append(b"Sender: " + draw(_mailbox).encode("utf-8"))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["field"] * 6 + ["garbage", "continuation"]))
        if kind == "field":
            lines.append(draw(_field_name).encode() + b": " + draw(_text).encode("utf-8", "surrogateescape"))
        elif kind == "garbage":
            lines.append(draw(st.sampled_from([b"no colon here", b": empty name", b"From : spaced", b"\xff\xfe: x",
                                               b"X-Bin: \x00\x01", b"Sender:", b"From:"])))
        else:
            lines.append(b" continued " + draw(_text).encode("utf-8"))
    order = draw(st.permutations(range(len(lines))))
    lines = [lines[i] for i in order]
    if lines and draw(st.integers(0, 4)) == 0:  # fold one field (RFC 5322 §2.2.3)
        at = draw(st.integers(0, len(lines) - 1))
        lines[at] = lines[at].replace(b" ", b"\r\n ", 1)
    return lines


_body = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"Hello\r\n", b"\r\n\r\nafter blanks\r\n", b"From: not a header\r\nSender: x@y\r\n",
                     b"--b\r\nContent-Type: text/plain\r\n\r\n\xff\r\n--b--\r\n", b".\r\n..\r\n"]),
)


@dataclass
class Submission:
    data: bytes  # the DATA octets as the SMTP reader hands them over
    display_name: str
    inbound: bool = False  # from outside, not authenticated (MX): trace fields only


@st.composite
def submissions(draw: st.DrawFn) -> Submission:
    lines = draw(_fields())
    eol = draw(st.sampled_from([b"\r\n"] * 7 + [b"\n", b"mixed", b"\r"]))
    if eol == b"mixed":
        head = b"".join(line + draw(st.sampled_from([b"\r\n", b"\n"])) for line in lines)
        eol = b"\r\n"
    else:
        head = b"".join(line.replace(b"\r\n", eol) + eol for line in lines)
    shape = draw(st.sampled_from(["normal"] * 8 + ["no body", "no header"]))
    if shape == "no body":
        data = head
    elif shape == "no header":
        data = eol + draw(_body)
    else:
        data = head + eol + draw(_body)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"  # DATA always ends with the CRLF before the final dot (RFC 5321 §4.1.1.4)
    name = draw(st.one_of(st.sampled_from(["Bob", "Bob \"the\" Builder", "B\u00f6b", "Bob, Jr.", "", "=?utf-8?q?x?=",
                                           "Bob\r\nBcc: eve@elsewhere.example", "Bob\nX-Injected: 1", "b" * 1200,
                                           "\u00e9" * 400, "Bob\x00"]),
                          st.text(max_size=20)))
    return Submission(data, name, draw(st.integers(0, 5)) == 0)


# -- the property ---------------------------------------------------------------------------

_ADDED_NAMES = {"return-path", "received", "sender", "date", "message-id"}


async def _stored(world: World) -> bytes:
    folder = await world.store.mail.get_folder(world.alice.id, "INBOX")
    assert folder is not None
    last = (await world.store.mail.list_messages(folder.id))[-1]
    return await world.store.mail.get_body(last.blob_id)


async def check_submission(world: World, sub: Submission) -> str:
    """Commit ``sub`` as bob; check the properties; return the outcome for statistics."""
    await world.store.directory.set_display_name(BOB, sub.display_name)  # as stored, however it got there
    bob = await world.store.directory.get_account(BOB)
    assert bob is not None
    txn = await world.delivery.begin("x@elsewhere.example", None) if sub.inbound else await world.delivery.begin(BOB, bob)
    assert (await world.delivery.add_recipient(txn, ALICE)).code == 250
    try:
        await world.delivery.commit(txn, sub.data, TRACE)
    except ReplyError as err:
        assert err.reply.code in (550, 552, 554) and err.reply.enhanced, err.reply
        assert not sub.inbound or err.reply.code == 552, f"inbound mail refused: {err.reply}"
        return f"refused {err.reply.code} {err.reply.enhanced} {err.reply.text}"
    stored = await _stored(world)
    original = message.split(sub.data)
    if sub.inbound:  # RFC 5321 §4.4: trace fields prepended, nothing else touched
        assert stored.endswith(sub.data)
        prefix = message.fields(stored[: len(stored) - len(sub.data)])
        assert [name for name, _ in prefix] == ["return-path", "received"], stored[:300]
        return "stored inbound"
    # Byte for byte: trace + added fields + the header (only Sender: may go) + body.
    assert stored.endswith(original.rest), "the body changed"
    stored_header = stored[: len(stored) - len(original.rest)]
    out = message.fields(stored_header)
    assert [name for name, _ in out[:2]] == ["return-path", "received"], stored_header[:300]
    rest = stored_header[len(out[0][1]) + len(out[1][1]):]
    for base in (original.header, message.remove_fields(original.header, "sender")):
        if rest.endswith(base):
            head = rest[: len(rest) - len(base)]  # the fields added in front of the client's
            break
    else:
        raise AssertionError(f"original header fields were changed: {stored_header[:600]!r}")
    added = [raw for _, raw in message.fields(head)]
    for raw in [out[0][1], out[1][1], *added]:  # Return-Path, Received, Sender/Date/Message-ID
        assert raw.endswith(b"\r\n")
        for line in raw[:-2].split(b"\r\n"):
            assert len(line) <= 998, f"added line over 998 octets (RFC 5322 §2.1.1): {line[:80]!r}"
            assert b"\r" not in line and b"\n" not in line, f"bare CR/LF in an added field: {raw[:200]!r}"
        assert message.fields(raw)[0][0] in _ADDED_NAMES, f"an added field is not one: {raw[:200]!r}"
    # Python's email parser sees the added fields as header fields, not as body.
    parsed = PARSER.parsebytes(stored)
    for name in {message.fields(raw)[0][0] for raw in added} | {"return-path", "received"}:
        assert parsed.get(name) is not None, f"{name} not read as a header field: {stored[:600]!r}"
    senders = [str(v) for v in parsed.get_all("Sender") or []]
    author = re.search(rb"(?im)^from:.*?([\w.+-]+@[\w.-]+)", original.header)
    if author and author.group(1).lower() == ON_BEHALF.encode():
        assert len(senders) == 1 and BOB in senders[0].lower(), senders  # RFC 5322 §3.6.2
        sender_header = parsed["Sender"]
        assert [a.addr_spec.lower() for a in sender_header.addresses] == [BOB], senders
    if author and author.group(1).lower() == SEND_AS.encode():
        assert not any(BOB in s.lower() for s in senders), senders  # Send As leaves no trace
    # The IMAP index of the stored message: no crash, well-formed wire data.
    index = build_index(stored)
    check_data(index.envelope_wire)
    check_data(index.bodystructure_wire)
    return "stored"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
# Regressions found by this test: fields added after a client line that is no field
# (or after a LF-only header section, read whole as header) were body to every reader,
# hiding the Send-on-Behalf Sender:; a display name with CR LF injected a field; a long
# one made an over-long line.
@example(sub=Submission(b"From: sales@example.test\r\nno colon here\r\n\r\nbody\r\n", "Bob"))
@example(sub=Submission(b"From: sales@example.test\nSubject: x\n\nbody\r\n", "Bob"))
@example(sub=Submission(b"From: sales@example.test\r\n\r\nbody\r\n", "Bob\r\nBcc: eve@elsewhere.example"))
@example(sub=Submission(b"From: sales@example.test\r\n\r\nbody\r\n", "b" * 1200))
@example(sub=Submission(b"From: bob@example.test\r\nno colon here\r\n\r\nbody\r\n", "Bob"))
@example(sub=Submission(b"From: undisclosed-recipients:;\r\n continued hello\r\n\r\n", "Bob"))  # AttributeError
@example(sub=Submission(b"\t, eve@elsewhere.example\r\nFrom: sales@example.test\r\n\r\nhi\r\n", "Bob"))  # joined our Sender:
@given(sub=submissions())
async def test_submitted_headers_are_built_correctly(world: World, sub: Submission) -> None:
    """Random header sections and display names: refused with a 5xx or stored with the
    body untouched, added fields well formed and read as header fields, Sender: right."""
    event(await check_submission(world, sub))


@pytest.mark.parametrize("charset", ["utf\x00-8", "zlib", "base64", "rot13", "hex", "bz2", "x-unknown"])
def test_charset_names_that_are_no_text_encoding_index(charset: str) -> None:
    """Regression (found by bench/fuzz/atheris_imap.py): a charset name with a NUL made
    codecs.lookup raise ValueError, and names of Python codecs that are no text encoding
    (zlib, base64, rot13) passed the lookup and raised LookupError when used: indexing
    (at delivery and at IMAP FETCH/SEARCH) failed. They now read as UTF-8."""
    cs = charset.encode("latin-1")
    raw = (b"From: =?" + cs + b"?q?A?= <a@b.test>\r\nSubject: =?" + cs + b"?b?eA==?=\r\n"
           b"Content-Type: text/plain; charset=\"" + cs + b"\"\r\n\r\nbody \xe9\r\n")
    index = build_index(raw)
    check_data(index.envelope_wire)
    check_data(index.bodystructure_wire)
    for where in ("BODY", "TEXT", "SUBJECT", "FROM"):
        matches_text(raw, index, "x", where)
