"""The sans-IO DATA reader: end marker, transparency, limits, smuggling, any split."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.smtp.data import DataError, DataReader


def feed_split(data: bytes, cuts: list[int], max_size: int = 10_000, max_line: int = 100) -> tuple[DataReader, int]:
    """Feed ``data`` cut at the given offsets; return the reader and octets consumed."""
    reader = DataReader(max_size, max_line)
    used = 0
    start = 0
    for cut in [*cuts, len(data)]:
        chunk = data[start:cut]
        start = cut
        if reader.done:
            break
        n = reader.feed(chunk)
        used += n
        if reader.done:
            break
    return reader, used


def line_by_line(data: bytes) -> tuple[bytes, int] | None:
    """Reference: the classic reader that reads CRLF-terminated lines (aiosmtpd's way)."""
    out: list[bytes] = []
    pos = 0
    while True:
        nl = data.find(b"\r\n", pos)
        if nl < 0:
            return None
        line = data[pos:nl + 2]
        pos = nl + 2
        if line == b".\r\n":
            return b"".join(out), pos
        out.append(line[1:] if line.startswith(b".") else line)


# (name, bytes after 354, expected message or None when not finished, octets consumed)
CASES: list[tuple[str, bytes, bytes | None, int]] = [
    ("empty message", b".\r\n", b"", 3),
    ("simple", b"Subject: x\r\n\r\nhi\r\n.\r\n", b"Subject: x\r\n\r\nhi\r\n", 21),
    ("dot stuffed first line", b"..x\r\n.\r\n", b".x\r\n", 8),
    ("dot stuffed later line", b"a\r\n..\r\n...b\r\n.\r\n", b"a\r\n.\r\n..b\r\n", 16),
    ("pipelined command stays", b"a\r\n.\r\nQUIT\r\n", b"a\r\n", 6),
    ("bare LF dot LF is content", b"a\n.\nb\r\n.\r\n", b"a\n.\nb\r\n", 10),
    ("CR dot LF is content", b"a\r.\nb\r\n.\r\n", b"a\r.\nb\r\n", 10),
    ("LF dot CRLF is content", b"a\n.\r\nb\r\n.\r\n", b"a\n.\r\nb\r\n", 11),
    ("CRLF dot LF is content (dot unstuffed)", b"a\r\n.\nb\r\n.\r\n", b"a\r\n\nb\r\n", 11),
    ("CRLF dot CR is content (dot unstuffed)", b"a\r\n.\rb\r\n.\r\n", b"a\r\n\rb\r\n", 11),
    ("CR dot CRLF is content", b"a\r.\r\nb\r\n.\r\n", b"a\r.\r\nb\r\n", 11),
    ("CRLF dot CR CRLF is content", b"a\r\n.\r\r\nb\r\n.\r\n", b"a\r\n\r\r\nb\r\n", 13),
    ("not finished", b"a\r\n.\n", None, 5),
    ("not finished after CRLF dot", b"a\r\n.", None, 4),
    ("8-bit and UTF-8 intact", b"S: \xc3\xa9\r\n\r\n\xff\r\n.\r\n", b"S: \xc3\xa9\r\n\r\n\xff\r\n", 15),
]


@pytest.mark.parametrize(("name", "data", "expected", "consumed"), CASES, ids=[c[0] for c in CASES])
def test_cases_split_at_every_byte(name: str, data: bytes, expected: bytes | None, consumed: int) -> None:
    """Every case gives the same message and consumed count whichever byte the input is split at."""
    for cut in range(len(data) + 1):
        for cut2 in (cut, min(len(data), cut + 1), min(len(data), cut + 3)):
            reader, used = feed_split(data, sorted({cut, cut2}))
            assert used == consumed, (cut, cut2)
            assert line_by_line(data) == (None if expected is None else (expected, consumed))
            if expected is None:
                assert not reader.done
            else:
                assert reader.done and reader.error is None
                assert reader.message == expected, (cut, cut2)


def test_one_byte_at_a_time_matches_reference() -> None:
    """Feeding one byte at a time equals the line-by-line reference for a smuggling-rich body."""
    data = b".a\r\n\n.\n\r\n.\rx\r\n..\r\n\r.\r\nend\r\n.\r\nMAIL FROM:<>\r\n"
    reader, used = feed_split(data, list(range(1, len(data))))
    ref = line_by_line(data)
    assert ref is not None
    assert (reader.message, used) == ref


def test_size_limit_reads_to_end_and_flags_too_big() -> None:
    """More than max_size octets: the data is read to its end, flagged TOO_BIG, not kept."""
    body = b"x" * 50 + b"\r\n"
    data = body * 10 + b".\r\nQUIT\r\n"
    reader, used = feed_split(data, list(range(7, len(data), 7)), max_size=200)
    assert reader.done and reader.error is DataError.TOO_BIG
    assert used == len(data) - len(b"QUIT\r\n")
    with pytest.raises(ValueError):
        reader.message  # noqa: B018


def test_size_limit_exact_fits() -> None:
    """A message of exactly max_size octets is accepted."""
    data = b"x" * 98 + b"\r\n.\r\n"
    reader, _ = feed_split(data, [], max_size=100, max_line=200)
    assert reader.error is None and len(reader.message) == 100


def test_line_limit_flags_line_too_long_even_split() -> None:
    """A line longer than max_line is flagged wherever the input is cut, and the end still found."""
    data = b"ok\r\n" + b"y" * 102 + b"\r\n.\r\n"
    for cut in range(len(data) + 1):
        reader, used = feed_split(data, [cut], max_line=100)
        assert reader.done and reader.error is DataError.LINE_TOO_LONG
        assert used == len(data)


def test_line_limit_allows_transparency_dot() -> None:
    """A 100-octet line that was dot-stuffed (101 on the wire) is within a 100 limit."""
    data = b"." + b"." + b"z" * 99 + b"\r\n.\r\n"
    reader, _ = feed_split(data, [], max_line=100)
    assert reader.error is None and reader.message == b"." + b"z" * 99 + b"\r\n"


def test_memory_bounded_after_limit() -> None:
    """After a limit is passed the reader keeps only a few octets, however much follows."""
    reader = DataReader(1000, 100)
    for _ in range(100):
        reader.feed(b"x" * 50 + b"\r\n")
    assert reader.error is DataError.TOO_BIG
    assert len(reader._raw) < 8


_ALPHABET = st.sampled_from([b"\r", b"\n", b".", b"a", b"\r\n", b"\r\n.", b"..", b"\xc3\xa9", b"\x00"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=60), st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_property_block_reader_equals_line_reader(parts: list[bytes], cuts: list[int]) -> None:
    """For random bodies with dots, CR, LF, any cuts: block reader == line-by-line reader."""
    data = b"".join(parts) + b"\r\n.\r\nRSET\r\n"
    cuts = sorted({c for c in cuts if c <= len(data)})
    reader, used = feed_split(data, cuts, max_size=100_000, max_line=10_000)
    ref = line_by_line(data)
    assert ref is not None
    assert reader.done and reader.error is None
    assert (reader.message, used) == ref
