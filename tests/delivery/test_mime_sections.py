"""BODY[section] slices of the raw message (RFC 3501 §6.4.5)."""

from __future__ import annotations

import pytest

from delivery.mime_index import Section, build_index, header_fields, partial, section_bytes

# The imaptest fetch-body-message-rfc822-mime message (dovecot/imaptest, MIT), with the
# answers Dovecot gives for it in fetch-body-message-rfc822-mime (LF line ends as stored).
INNER = (b"From: sub@domain.org\nDate: Sun, 12 Aug 2012 12:34:56 +0300\nSubject: submsg\n"
         b'Content-Type: multipart/digest; boundary="foo"\n\n')
INNER_TEXT = (b"prologue\n\n--foo \n\nFrom: m1@example.com\nSubject: m1\n\nm1 body\n\n"
              b"--foo \nX-Mime: m2 header\n\nFrom: m2@example.com\nSubject: m2\n\nm2 body\n\n"
              b"--foo--\n\nepilogue\n")
OUTER = (b"From: user@domain.org\nDate: Sat, 24 Mar 2007 23:00:00 +0200\nMime-Version: 1.0\n"
         b"Content-Type: message/rfc822\n\n")
DIGEST = OUTER + INNER + INNER_TEXT


@pytest.mark.parametrize(("spec", "expected"), [
    (Section(), DIGEST),
    (Section(text="TEXT"), INNER + INNER_TEXT),
    (Section(text="HEADER"), OUTER),
    (Section((1,)), INNER + INNER_TEXT),
    (Section((1,), "HEADER"), INNER),
    (Section((1,), "TEXT"), INNER_TEXT),
    (Section((1, 1)), b"From: m1@example.com\nSubject: m1\n\nm1 body\n"),
    (Section((1, 1), "MIME"), b"\n"),
    (Section((1, 1), "HEADER"), b"From: m1@example.com\nSubject: m1\n\n"),
    (Section((1, 1), "TEXT"), b"m1 body\n"),
    (Section((1, 2)), b"From: m2@example.com\nSubject: m2\n\nm2 body\n"),
    (Section((1, 2), "MIME"), b"X-Mime: m2 header\n\n"),
    (Section((1, 2), "HEADER"), b"From: m2@example.com\nSubject: m2\n\n"),
    (Section((1, 2), "TEXT"), b"m2 body\n"),
    (Section((1, 2, 1)), b"m2 body\n"),  # the inner message is single-part: 1 is its body
    (Section((1, 3)), None),
    (Section((2,)), None),
    (Section(text="MIME"), None),
])
def test_dovecot_digest_sections(spec: Section, expected: bytes | None) -> None:
    """Sections of message/rfc822 > multipart/digest match Dovecot's imaptest answers."""
    assert section_bytes(DIGEST, build_index(DIGEST), spec) == expected


MIXED = (b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
         b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
         b"--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n"
         b"--c\r\n\r\nalt one\r\n--c\r\nContent-Type: text/html\r\n\r\n<p>two</p>\r\n--c--\r\n"
         b"--b--\r\n")


@pytest.mark.parametrize(("spec", "expected"), [
    (Section((1,)), b"hello"),
    (Section((1,), "MIME"), b"Content-Type: text/plain\r\n\r\n"),
    (Section((2,)), b"--c\r\n\r\nalt one\r\n--c\r\nContent-Type: text/html\r\n\r\n<p>two</p>\r\n--c--"),
    (Section((2, 1)), b"alt one"),
    (Section((2, 1), "MIME"), b"\r\n"),
    (Section((2, 2)), b"<p>two</p>"),
    (Section((2, 2), "MIME"), b"Content-Type: text/html\r\n\r\n"),
    (Section((2, 3)), None),
    (Section((1, 1)), None),
    (Section((0,)), None),
])
def test_nested_multipart_sections(spec: Section, expected: bytes | None) -> None:
    """Part numbers walk nested multiparts; the CRLF before a delimiter is not part data."""
    assert section_bytes(MIXED, build_index(MIXED), spec) == expected


SINGLE = b"From: a@b\r\nX-Long: one\r\n two\r\nSubject: hi\r\n\r\nBody line\r\n"


@pytest.mark.parametrize(("spec", "expected"), [
    (Section((1,)), b"Body line\r\n"),  # non-multipart: part 1 is the body
    (Section(text="TEXT"), b"Body line\r\n"),
    (Section(text="HEADER"), b"From: a@b\r\nX-Long: one\r\n two\r\nSubject: hi\r\n\r\n"),
    (Section(text="HEADER.FIELDS", headers=("x-long", "SUBJECT")),
     b"X-Long: one\r\n two\r\nSubject: hi\r\n\r\n"),
    (Section(text="HEADER.FIELDS.NOT", headers=("X-LONG",)), b"From: a@b\r\nSubject: hi\r\n\r\n"),
    (Section(text="HEADER.FIELDS", headers=("Missing",)), b"\r\n"),
    (Section((1,), "MIME"), b"From: a@b\r\nX-Long: one\r\n two\r\nSubject: hi\r\n\r\n"),
    (Section((2,)), None),
])
def test_single_part_sections(spec: Section, expected: bytes | None) -> None:
    """A non-multipart message: part 1 is the body; HEADER.FIELDS keep continuations."""
    assert section_bytes(SINGLE, build_index(SINGLE), spec) == expected


def test_header_fields_bare_lf_blank_line() -> None:
    """HEADER.FIELDS ends with the blank line in the message's own line-end style."""
    assert header_fields(b"A: 1\nB: 2\n\n", ("b",), False) == b"B: 2\n\n"


def test_section_of_rfc822_attachment() -> None:
    """N.HEADER, N.TEXT and N.1 of an attached message address the encapsulated message."""
    raw = (b"Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n\r\nx\r\n"
           b"--m\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\ninner\r\n--m--\r\n")
    index = build_index(raw)
    assert section_bytes(raw, index, Section((2,))) == b"Subject: in\r\n\r\ninner"
    assert section_bytes(raw, index, Section((2,), "HEADER")) == b"Subject: in\r\n\r\n"
    assert section_bytes(raw, index, Section((2,), "TEXT")) == b"inner"
    assert section_bytes(raw, index, Section((2, 1))) == b"inner"
    assert section_bytes(raw, index, Section((2,), "MIME")) == b"Content-Type: message/rfc822\r\n\r\n"
    assert section_bytes(raw, index, Section((2,), "HEADER.FIELDS", ("subject",))) == (
        b"Subject: in\r\n\r\n")


def test_parser_section_type_is_accepted() -> None:
    """The IMAP parser's own Section dataclass works as the section argument."""
    from mailserver.imap.parser.fetch import Section as ParserSection
    assert section_bytes(MIXED, build_index(MIXED), ParserSection((2, 1))) == b"alt one"


@pytest.mark.parametrize(("origin", "length", "expected"), [
    (0, 3, b"abc"), (2, None, b"cdef"), (4, 10, b"ef"), (6, 1, b""), (99, 1, b""), (1, 0, b""),
])
def test_partial(origin: int, length: int | None, expected: bytes) -> None:
    """<origin.length> slices; an origin past the end gives an empty string."""
    assert partial(b"abcdef", origin, length) == expected
