"""Property tests: no client input makes the parser raise or lose its place."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.imap.parser import (
    NEED_DATA,
    BadCommand,
    CommandReader,
    CommandRejected,
    LiteralTooBig,
    NeedsContinuation,
    Noop,
    parse_command,
)
from mailserver.imap.parser.commands import Command

TOKENS = [
    b"a", b"b1", b" ", b"  ", b"(", b")", b"[", b"]", b"<", b">", b".", b"*", b"%", b":", b",",
    b'"', b"\\", b"{", b"}", b"+", b"~", b"{3}\r\n", b"{2+}\r\n", b"\r\n", b"\n", b"\x00", b"\xff",
    b"1", b"42", b"99999999999", b"NIL", b"UID", b"FETCH", b"SEARCH", b"STORE", b"LIST", b"APPEND",
    b"LOGIN", b"SELECT", b"BODY", b"BODY.PEEK", b"HEADER.FIELDS", b"MIME", b"OR", b"NOT", b"ALL",
    b"CHARSET", b"RETURN", b"FLAGS", b"+FLAGS.SILENT", b"\\Seen", b"&", b"&-", b"&AOk-", b"ID",
    b"1-Jan-2020", b'"17-Jul-1996 02:44:25 -0700"', b"CHANGEDSINCE", b"MODSEQ", b"STATUS",
]
EVENT_TYPES = (Command, BadCommand, CommandRejected, LiteralTooBig, NeedsContinuation)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=30))
def test_parse_command_never_raises(tokens: list[bytes]) -> None:
    """parse_command returns a command or an error event for any token soup."""
    event = parse_command(b"t " + b"".join(tokens) + b"\r\n")
    assert isinstance(event, (Command, BadCommand, CommandRejected))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40), st.binary(max_size=40))
def test_reader_never_raises_and_recovers(tokens: list[bytes], noise: bytes) -> None:
    """The reader yields only events for any input, and a fresh NOOP after a clean break parses."""
    reader = CommandReader(max_literal=8)
    reader.feed(b"".join(tokens) + noise)
    while (event := reader.next_event()) is not NEED_DATA:
        assert isinstance(event, EVENT_TYPES)
    # Finish whatever command is open: at most a pending literal (<= 8 octets) and one line.
    reader.feed(b"\r\n" * 8 + b"\r\n")
    while reader.next_event() is not NEED_DATA:
        pass
    if reader._discard_left:  # a refused {n+} literal: the client owes those octets
        return
    reader.feed(b"z NOOP\r\n")
    events = []
    while (event := reader.next_event()) is not NEED_DATA:
        events.append(event)
    assert events[-1:] == [Noop("z")]
