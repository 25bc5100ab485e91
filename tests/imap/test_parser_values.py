"""Modified UTF-7, sequence sets, dates and the response encoders."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailserver.imap.parser import (
    MUTF7Error,
    ParseError,
    SequenceSet,
    decode_mutf7,
    encode_mutf7,
    format_date_time,
    parse_command,
    parse_sequence_set,
)
from mailserver.imap.parser import encode as enc
from mailserver.imap.parser.lexer import Cursor

# -- modified UTF-7 (RFC 3501 §5.1.3) -----------------------------------------
MUTF7_VECTORS = [
    ("INBOX", b"INBOX"),
    ("&", b"&-"),
    ("A&B", b"A&-B"),
    ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 example
    ("Entwürfe", b"Entw&APw-rfe"),
    ("😀", b"&2D3eAA-"),  # non-BMP: a surrogate pair
    ("a😀&b€", b"a&2D3eAA-&-b&IKw-"),
    ("", b""),
]


@pytest.mark.parametrize(("text", "wire"), MUTF7_VECTORS)
def test_mutf7_known_vectors(text: str, wire: bytes) -> None:
    """Known names encode to the RFC form and decode back."""
    assert encode_mutf7(text) == wire
    assert decode_mutf7(wire) == text


@given(st.text())
def test_mutf7_round_trip(text: str) -> None:
    """decode(encode(s)) == s for any text, and the encoding is printable ASCII."""
    wire = encode_mutf7(text)
    assert all(0x20 <= b <= 0x7E for b in wire)
    assert decode_mutf7(wire) == text


@given(st.text(alphabet=st.characters(min_codepoint=0x80, exclude_categories=("Cs",))))
def test_mutf7_round_trip_non_ascii(text: str) -> None:
    """Runs of non-ASCII characters (BMP and beyond) round-trip."""
    assert decode_mutf7(encode_mutf7(text)) == text


@pytest.mark.parametrize("wire", [
    b"&", b"&U,BTFw", b"caf\xc3\xa9", b"a\tb", b"&AGE-", b"&U,BTF-", b"&2D0-", b"&U,B!-",
    b"&AOl-",
])
def test_mutf7_rejects_malformed(wire: bytes) -> None:
    """Unterminated runs, 8-bit, controls, encoded ASCII, odd UTF-16, lone surrogates fail."""
    with pytest.raises(MUTF7Error):
        decode_mutf7(wire)


# -- sequence sets --------------------------------------------------------------
@pytest.mark.parametrize(("text", "max_value", "expected"), [
    ("1", 5, [1]),
    ("1:3", 5, [1, 2, 3]),
    ("3:1", 5, [1, 2, 3]),
    ("*", 5, [5]),
    ("*", 0, []),
    ("2:*", 5, [2, 3, 4, 5]),
    ("*:4", 5, [4, 5]),
    ("1,3,5:4,2", 5, [1, 2, 3, 4, 5]),
    ("1:2,2:3", 5, [1, 2, 3]),
    ("4:9", 5, [4, 5]),
    ("559:*", 500, [500]),  # RFC 3501 §9: a UID range with * covers the last message
    ("7:9", 5, []),
])
def test_sequence_set_resolution(text: str, max_value: int, expected: list[int]) -> None:
    """Resolution gives the sorted, de-duplicated numbers within 1..max."""
    seqset = parse_sequence_set(text)
    assert seqset.resolve(max_value) == expected
    assert all(seqset.contains(n, max_value) for n in expected)
    assert str(seqset) == text


def test_sequence_set_normalized_merges_ranges() -> None:
    """Normalized ranges are merged and sorted, for range queries against storage."""
    assert parse_sequence_set("10:12,1,2,3,11:20,*").normalized(100) == [(1, 3), (10, 20), (100, 100)]


def test_sequence_set_exceeds() -> None:
    """exceeds() spots explicit numbers beyond the mailbox (invalid for sequence numbers)."""
    assert parse_sequence_set("1:6").exceeds(5)
    assert not parse_sequence_set("1:*").exceeds(5)
    assert SequenceSet(((None, None),)).resolve(3) == [3]


@given(st.lists(st.tuples(st.integers(1, 60), st.integers(1, 60)), min_size=1, max_size=6),
       st.integers(0, 50))
def test_sequence_set_matches_naive_model(pairs: list[tuple[int, int]], max_value: int) -> None:
    """resolve() equals the naive set union of each range clamped to 1..max."""
    seqset = SequenceSet(tuple(pairs))
    naive = sorted({n for a, b in pairs for n in range(min(a, b), max(a, b) + 1) if n <= max_value})
    assert seqset.resolve(max_value) == naive
    assert parse_sequence_set(str(seqset)) == seqset


@pytest.mark.parametrize("text", ["", "0", "1:", ":1", "1,,2", "a", "1:2:3", "-1"])
def test_sequence_set_rejects_garbage(text: str) -> None:
    """Malformed sequence sets raise ParseError."""
    with pytest.raises(ParseError):
        parse_sequence_set(text)


# -- dates ------------------------------------------------------------------------
def test_date_time_round_trip() -> None:
    """format_date_time writes what APPEND's date-time parser reads back."""
    value = dt.datetime(2024, 3, 5, 7, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30)))
    assert format_date_time(value) == "05-Mar-2024 07:08:09 -0330"
    event = parse_command(b'a APPEND INBOX "%s" {1+}\r\nx\r\n' % format_date_time(value).encode())
    assert event.messages[0].date_time == value  # type: ignore[union-attr]


# -- response encoders -------------------------------------------------------------
def test_string_chooses_quoted_or_literal() -> None:
    """Plain text is quoted (with escapes); CR/LF, 8-bit, NUL or long text goes as a literal."""
    assert enc.string(b'say "hi" \\o/') == b'"say \\"hi\\" \\\\o/"'
    assert enc.string("été") == b"{5}\r\n\xc3\xa9t\xc3\xa9"
    assert enc.string(b"a\r\nb") == b"{4}\r\na\r\nb"
    assert enc.string(b"x" * (enc.MAX_QUOTED + 1)).startswith(b"{1025}\r\n")
    assert enc.nstring(None) == b"NIL"
    assert enc.nstring(b"") == b'""'
    with pytest.raises(ValueError):
        enc.quoted(b"\n")


def test_astring_and_mailbox() -> None:
    """Atoms go bare; NIL, empty and specials are quoted; names are modified UTF-7."""
    assert enc.astring("INBOX") == b"INBOX"
    assert enc.astring("NIL") == b'"NIL"'
    assert enc.astring("") == b'""'
    assert enc.astring("Sent Items") == b'"Sent Items"'
    assert enc.mailbox("Entwürfe") == b"Entw&APw-rfe"
    assert enc.mailbox("A & B") == b'"A &- B"'


def test_encoded_values_parse_back() -> None:
    """What encode writes, the lexer reads back to the same value."""
    for value in [b"", b"plain", b'q"uo\\te', b"line\r\nbreak", "é".encode(), b"NIL", b"x" * 2000]:
        cur = Cursor(enc.astring(value) + b"\r\n")
        assert cur.xastring() == value
        cur.xeol()
    for name in ["INBOX", "Sent Items", "A & B", "台北/😀", "]x["]:
        cur = Cursor(enc.mailbox(name) + b"\r\n")
        assert cur.xmailbox() == name


def test_lists_flags_numbers_and_dates() -> None:
    """Lists, flag lists, numbers and INTERNALDATE serialise in IMAP form."""
    assert enc.plist([b"a", enc.string(b"b c"), enc.NIL]) == b'(a "b c" NIL)'
    assert enc.plist([]) == b"()"
    assert enc.flag_list(["\\Seen", "$Forwarded"]) == b"(\\Seen $Forwarded)"
    assert enc.number(42) == b"42"
    with pytest.raises(ValueError):
        enc.number(-1)
    value = dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=dt.timezone(dt.timedelta(hours=-7)))
    assert enc.date_time(value) == b'"17-Jul-1996 02:44:25 -0700"'


def test_mutf7_encode_rejects_lone_surrogate() -> None:
    """A lone surrogate has no UTF-16 form, so encoding refuses it with a ValueError."""
    with pytest.raises(ValueError):
        encode_mutf7("a\ud800")
