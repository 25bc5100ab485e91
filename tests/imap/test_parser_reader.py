"""CommandReader framing: literals, continuation requests, limits, raw lines."""

from __future__ import annotations

import pytest

from mailserver.imap.parser import (
    MAX_LINE_LENGTH,
    NEED_DATA,
    Append,
    AppendMessage,
    BadCommand,
    CommandReader,
    Idle,
    LiteralTooBig,
    Login,
    NeedsContinuation,
    Noop,
    ParseError,
    decode_sasl,
)

from .test_parser_support import drain, events_every_split


def test_synchronizing_literal_asks_for_continuation_first() -> None:
    """{n} yields NeedsContinuation before any literal octet is needed, then the command."""
    reader = CommandReader()
    reader.feed(b"a LOGIN {5}\r\n")
    assert reader.next_event() == NeedsContinuation("a", 5)
    assert reader.next_event() is NEED_DATA
    assert reader.in_command
    reader.feed(b"alice {6}\r\n")
    assert reader.next_event() == NeedsContinuation("a", 6)
    reader.feed(b"secret\r\n")
    assert reader.next_event() == Login("a", "alice", "secret")
    assert not reader.in_command


def test_non_synchronizing_literal_needs_no_continuation() -> None:
    """{n+} (LITERAL+, RFC 7888) is read straight through with no continuation event."""
    assert events_every_split(b"a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n") == [
        Login("a", "alice", "secret")
    ]


def test_literal_may_contain_crlf_and_literal_markers() -> None:
    """Literal octets are opaque: CRLF, '{9}' and 'b NOOP' inside do not frame anything."""
    body = b"x {9}\r\nb NOOP\r\n"
    wire = b"a APPEND INBOX {%d+}\r\n%s\r\n" % (len(body), body)
    assert events_every_split(wire) == [Append("a", "INBOX", (AppendMessage((), None, body),))]


def test_bare_lf_is_accepted_as_line_end() -> None:
    """Lines may end in LF alone; the literal marker still works."""
    assert events_every_split(b"a LOGIN {5+}\nalice bob\nb NOOP\n") == [
        Login("a", "alice", "bob"), Noop("b")
    ]


@pytest.mark.parametrize("marker", [b"{100}", b"{99999999999999999999}"])
def test_oversize_synchronizing_literal_refused_before_reading(marker: bytes) -> None:
    """Too-big {n}: LiteralTooBig at once; the client sends nothing, the next command parses."""
    wire = b"a APPEND INBOX " + marker + b"\r\nb NOOP\r\n"
    size = int(marker.strip(b"{}"))
    assert events_every_split(wire, max_literal=99) == [
        LiteralTooBig("a", size, True), Noop("b")
    ]


def test_oversize_non_synchronizing_literal_is_discarded_exactly() -> None:
    """Too-big {n+}: LiteralTooBig, then exactly n octets and the command's rest are skipped."""
    data = b"b NOOP\r\n" * 20  # looks like commands: must still be skipped
    wire = b"a APPEND INBOX {%d+}\r\n%s\r\nc NOOP\r\n" % (len(data), data)
    assert events_every_split(wire, max_literal=100) == [
        LiteralTooBig("a", len(data), False), Noop("c")
    ]


def test_oversize_literal_rest_of_command_with_more_literals_is_skipped() -> None:
    """After a refused {n+}, further {m+} literals of the same command are skipped too (MULTIAPPEND)."""
    big = b"x" * 200
    wire = b"a APPEND INBOX {200+}\r\n" + big + b" (\\Seen) {6+}\r\nb NOOP\r\nc NOOP\r\n"
    assert events_every_split(wire, max_literal=100) == [
        LiteralTooBig("a", 200, False), Noop("c")
    ]


def test_literal_exactly_at_limit_is_accepted() -> None:
    """A literal of exactly max_literal octets is fine; one more is refused."""
    ok = events_every_split(b"a APPEND INBOX {10+}\r\n0123456789\r\n", max_literal=10)
    assert ok == [Append("a", "INBOX", (AppendMessage((), None, b"0123456789"),))]
    refused = events_every_split(b"a APPEND INBOX {11}\r\n", max_literal=10)
    assert refused == [LiteralTooBig("a", 11, True)]


def test_max_literal_can_change_between_commands() -> None:
    """The server may raise the literal limit after login."""
    reader = CommandReader(max_literal=10)
    reader.feed(b"a APPEND INBOX {20}\r\n")
    assert reader.next_event() == LiteralTooBig("a", 20, True)
    reader.max_literal = 1000
    reader.feed(b"b APPEND INBOX {20}\r\n")
    assert reader.next_event() == NeedsContinuation("b", 20)


def test_overlong_line_is_bad_once_and_skipped() -> None:
    """A line over MAX_LINE_LENGTH gives one BadCommand; the next line parses."""
    wire = b"a NOOP " + b"x" * (MAX_LINE_LENGTH + 10) + b"\r\nb NOOP\r\n"
    for chunks in ([wire], [wire[:100], wire[100:70000], wire[70000:]]):
        reader = CommandReader()
        events = []
        for chunk in chunks:
            reader.feed(chunk)
            events += drain(reader)
        assert events == [BadCommand("a", "Command line too long"), Noop("b")]


def test_unterminated_overlong_line_does_not_grow_buffer() -> None:
    """Without a line end, the reader keeps at most about MAX_LINE_LENGTH octets."""
    reader = CommandReader()
    reader.feed(b"a NOOP ")
    reader.feed(b"y" * (MAX_LINE_LENGTH + 10))
    assert reader.next_event() == BadCommand("a", "Command line too long")
    for _ in range(5):
        reader.feed(b"y" * MAX_LINE_LENGTH)
        assert reader.next_event() is NEED_DATA
        assert len(reader._buf) == 0
    reader.feed(b"\r\nb NOOP\r\n")
    assert drain(reader) == [Noop("b")]


def test_line_at_max_length_is_accepted() -> None:
    """A line of exactly MAX_LINE_LENGTH octets is parsed normally."""
    head = b"a LOGIN u "
    line = head + b"p" * (MAX_LINE_LENGTH - len(head))
    reader = CommandReader()
    reader.feed(line + b"\r\n")
    event = reader.next_event()
    assert isinstance(event, Login) and len(event.password) == MAX_LINE_LENGTH - len(head)


def test_raw_lines_for_authenticate_and_idle() -> None:
    """read_line_raw returns client response lines and DONE, sharing the buffer with commands."""
    reader = CommandReader()
    reader.feed(b"a IDLE\r\nDO")
    assert reader.next_event() == Idle("a")
    assert reader.read_line_raw() is NEED_DATA
    reader.feed(b"NE\r\nb NOOP\r\n")
    assert reader.read_line_raw() == b"DONE"
    assert reader.next_event() == Noop("b")
    reader.feed(b"AGFsaWNlAHNlY3JldA==\n*\r\n")
    assert reader.read_line_raw() == b"AGFsaWNlAHNlY3JldA=="
    assert reader.read_line_raw() == b"*"
    assert reader.read_line_raw() is NEED_DATA


def test_raw_line_too_long_is_reported() -> None:
    """An overlong AUTHENTICATE response gives BadCommand(None) and is skipped."""
    reader = CommandReader()
    reader.feed(b"A" * (MAX_LINE_LENGTH + 5))
    assert reader.read_line_raw() == BadCommand(None, "Command line too long")
    reader.feed(b"AAAA\r\nok\r\n")
    assert reader.read_line_raw() == b"ok"


def test_decode_sasl() -> None:
    """SASL responses are strict base64; '=' is the empty response (RFC 4959)."""
    assert decode_sasl(b"AGFsaWNlAHNlY3JldA==") == b"\x00alice\x00secret"
    assert decode_sasl(b"=") == b""
    with pytest.raises(ParseError):
        decode_sasl(b"not base64!")


def test_refuse_literal_drops_the_pending_command() -> None:
    """After NeedsContinuation the server may refuse: the client sends nothing, the next command parses."""
    reader = CommandReader()
    reader.feed(b"a APPEND INBOX {0}\r\n")
    assert reader.next_event() == NeedsContinuation("a", 0)
    reader.refuse_literal()
    assert not reader.in_command
    reader.feed(b"b NOOP\r\n")
    assert reader.next_event() == Noop("b")
    with pytest.raises(RuntimeError):
        reader.refuse_literal()


def test_refuse_literal_only_before_continuing() -> None:
    """Once next_event was called after the continuation, the literal can no longer be refused."""
    reader = CommandReader()
    reader.feed(b"a LOGIN {5}\r\n")
    assert reader.next_event() == NeedsContinuation("a", 5)
    assert reader.next_event() is NEED_DATA
    with pytest.raises(RuntimeError):
        reader.refuse_literal()


@pytest.mark.parametrize(("marker", "after"), [(b"{5}", b""), (b"{5+}", b"hello\r\n")])
def test_literal_after_invalid_tag_is_refused(marker: bytes, after: bytes) -> None:
    """A garbage line announcing a literal is BAD at once; a {n+} literal's octets are skipped."""
    wire = b"+bad APPEND x " + marker + b"\r\n" + after + b"b NOOP\r\n"
    assert events_every_split(wire) == [BadCommand(None, "Invalid tag"), Noop("b")]
