"""Malformed commands give BadCommand (or NO for CHARSET) and the reader recovers."""

from __future__ import annotations

import pytest

from mailserver.imap.parser import (
    BadCommand,
    CommandRejected,
    NeedsContinuation,
    Noop,
    parse_command,
)

from .test_parser_support import events_every_split

# (wire, expected tag, a fragment the BAD text must contain)
BAD: list[tuple[bytes, str | None, str]] = [
    (b"\r\n", None, "Empty"),
    (b"   \r\n", None, "Empty"),
    (b"NOOP\r\n", None, "Invalid tag"),
    (b"a+b NOOP\r\n", None, "Invalid tag"),
    (b"a(b NOOP\r\n", None, "Invalid tag"),
    (b'"a" NOOP\r\n', None, "Invalid tag"),
    (b"a \r\n", "a", "Expected command name"),
    (b"a FROBNICATE\r\n", "a", "Unknown command FROBNICATE"),
    (b"a UID NOOP\r\n", "a", "Unknown UID command NOOP"),
    (b"a NOOP extra\r\n", "a", "extra arguments"),
    (b"a NOOP \r\n", "a", "extra arguments"),
    (b"a LOGIN alice\r\n", "a", "Expected space"),
    (b"a LOGIN alice  secret\r\n", "a", "Expected password"),
    (b'a LOGIN "alice secret\r\n', "a", "Unterminated quoted string"),
    (b'a LOGIN "al\\ice" x\r\n', "a", "Invalid escape"),
    (b"a LOGIN alice \xff\r\n", "a", "Expected password"),
    (b'a LOGIN alice "\xff"\r\n', "a", "Invalid UTF-8"),
    (b"a AUTHENTICATE PLAIN !!!\r\n", "a", "Invalid base64"),
    (b"a AUTHENTICATE PLAIN (x)\r\n", "a", "Expected initial response"),
    (b"a AUTHENTICATE PLAIN AGFsaWNl=x\r\n", "a", "Invalid base64"),
    (b"a SELECT\r\n", "a", "Expected space"),
    (b"a SELECT INBOX (QRESYNC)\r\n", "a", "Unsupported SELECT parameter"),
    (b"a SELECT &Jjo\r\n", "a", "Invalid mailbox name"),
    (b"a SELECT &AGE-\r\n", "a", "Invalid mailbox name"),
    (b"a SELECT {2}\r\n\xc3\xa9\r\n", "a", "Invalid mailbox name"),
    (b'a LIST (FOO) "" *\r\n', "a", "Unsupported LIST selection option FOO"),
    (b'a LIST (RECURSIVEMATCH) "" *\r\n', "a", "RECURSIVEMATCH needs"),
    (b'a LIST "" * RETURN (BOGUS)\r\n', "a", "Unsupported LIST return option"),
    (b'a LIST "" * FOO\r\n', "a", "Expected RETURN"),
    (b'a LIST "" ()\r\n', "a", "Empty pattern list"),
    (b"a STATUS INBOX (MESSAGES BOGUS)\r\n", "a", "Invalid status item BOGUS"),
    (b"a STATUS INBOX ()\r\n", "a", "Empty status item list"),
    (b"a APPEND INBOX\r\n", "a", "Expected space"),
    (b'a APPEND INBOX "hello"\r\n', "a", "Expected message literal"),
    (b"a APPEND INBOX (\\Recent) {1+}\r\nx\r\n", "a", "Invalid system flag"),
    (b'a APPEND INBOX "31-Feb-2020 10:00:00 +0000" {1+}\r\nx\r\n', "a", "Invalid date"),
    (b"a APPEND INBOX {3+}\r\na\x00b\r\n", "a", "NUL"),
    (b"a STORE 1 FLAGS \\Bogus\r\n", "a", "Invalid system flag"),
    (b"a STORE 1 XFLAGS (\\Seen)\r\n", "a", "Invalid store item"),
    (b"a STORE 1 (UNCHANGEDSINCE x) FLAGS ()\r\n", "a", "Expected mod-sequence"),
    (b"a STORE 0 FLAGS ()\r\n", "a", "sequence set"),
    (b"a COPY 1:x Trash\r\n", "a", "sequence set"),
    (b"a COPY 1, Trash\r\n", "a", "sequence set"),
    (b"a COPY 1a Trash\r\n", "a", "Invalid sequence set"),
    (b"a COPY 99999999999 Trash\r\n", "a", "sequence set"),
    (b"a FETCH 1 (FLAGS\r\n", "a", "Expected space"),
    (b"a FETCH 1 ()\r\n", "a", "Empty fetch attribute list"),
    (b"a FETCH 1 BOGUS\r\n", "a", "Invalid fetch attribute BOGUS"),
    (b"a FETCH 1 BODY[MIME]\r\n", "a", "MIME needs a part number"),
    (b"a FETCH 1 BODY[0]\r\n", "a", "Invalid section"),
    (b"a FETCH 1 BODY[HEADER.FIELDS ()]\r\n", "a", "Empty header field list"),
    (b"a FETCH 1 BODY[TEXT]<0.0>\r\n", "a", "partial length"),
    (b"a FETCH 1 FLAGS (CHANGEDSINCE 0)\r\n", "a", "mod-sequence"),
    (b"a FETCH 1 FLAGS (VANISHED)\r\n", "a", "Unsupported FETCH modifier"),
    (b"a SEARCH\r\n", "a", "Expected space"),
    (b"a SEARCH BOGUS\r\n", "a", "Unknown search key BOGUS"),
    (b"a SEARCH ()\r\n", "a", "Empty search key list"),
    (b"a SEARCH OR SEEN\r\n", "a", "Expected space"),
    (b"a SEARCH (SEEN\r\n", "a", "Expected space"),
    (b"a SEARCH SINCE 1-Foo-2020\r\n", "a", "Invalid month"),
    (b"a SEARCH SINCE 2020-01-01\r\n", "a", "Expected date"),
    (b"a SEARCH LARGER -1\r\n", "a", "Expected size"),
    (b"a SEARCH RETURN (SAVE) ALL\r\n", "a", "Unsupported SEARCH return option SAVE"),
    (b"a SEARCH " + b"NOT " * 60 + b"ALL\r\n", "a", "nested too deeply"),
    (b"a SEARCH " + b"(" * 60 + b"ALL" + b")" * 60 + b"\r\n", "a", "nested too deeply"),
    (b"a ID (\"a\")\r\n", "a", "Expected space"),
    (b"a ID (" + b'"k" "v" ' * 31 + b")\r\n", "a", "Too many ID fields"),
    (b"a ENABLE\r\n", "a", "Expected space"),
    (b"a UID EXPUNGE\r\n", "a", "Expected space"),
]


@pytest.mark.parametrize(("wire", "tag", "fragment"), BAD,
                         ids=[b[0][:40].decode("latin-1") for b in BAD])
def test_malformed_command_is_bad_and_reader_recovers(wire: bytes, tag: str | None,
                                                      fragment: str) -> None:
    """Garbage gives one BadCommand with a clear text; the next command parses normally."""
    events = events_every_split(wire + b"z NOOP\r\n")
    events = [e for e in events if not isinstance(e, NeedsContinuation)]
    assert len(events) == 2, events
    bad, after = events
    assert isinstance(bad, BadCommand)
    assert bad.tag == tag
    assert fragment in bad.text
    assert after == Noop("z")


def test_unsupported_charset_is_no_badcharset() -> None:
    """An unknown SEARCH CHARSET is a tagged NO [BADCHARSET ...], not BAD (RFC 3501 §6.4.4)."""
    event = parse_command(b"a SEARCH CHARSET KOI8-R TEXT x\r\n")
    assert event == CommandRejected("a", "BADCHARSET (US-ASCII UTF-8)", "Unsupported charset KOI8-R")


def test_parse_command_never_raises_on_truncated_literal() -> None:
    """A literal announcing more octets than the buffer holds is BAD, not an exception."""
    assert parse_command(b"a LOGIN {10}\r\nab\r\n") == BadCommand("a", "Truncated literal")
