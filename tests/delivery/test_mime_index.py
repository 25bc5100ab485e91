"""ENVELOPE, BODY and BODYSTRUCTURE wire strings of the message index (RFC 3501 §7.4.2),
its JSON round trip and its SEARCH helpers.

Expected strings were checked by hand against RFC 3501 §7.4.2 / §9 and the shapes
Dovecot answers (imaptest fetch-envelope / fetch-bodystructure): upper-case type and
parameter names as in the RFC 3501 examples, values as written, text/* without a
charset gets ("CHARSET" "us-ascii"), lines count LF octets.
"""

from __future__ import annotations

import datetime as dt

import pytest

from delivery.mime_index import (
    IndexFormatError,
    MessageIndex,
    Section,
    build_index,
    matches_text,
    section_bytes,
)

# (raw message, ENVELOPE, BODY, BODYSTRUCTURE)
WIRE_CASES = [
    pytest.param(
        b'Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.COM>\r\nSubject: afternoon meeting\r\nTo: mooch@owatagu.siam.edu\r\nMessage-Id: <B27397-0100000@Blurdybloop.COM>\r\nMIME-Version: 1.0\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n',
        b'("Mon, 7 Feb 1994 21:52:25 -0800 (PST)" "afternoon meeting" (("Fred Foobar" NIL "foobar" "Blurdybloop.COM")) (("Fred Foobar" NIL "foobar" "Blurdybloop.COM")) (("Fred Foobar" NIL "foobar" "Blurdybloop.COM")) ((NIL NIL "mooch" "owatagu.siam.edu")) NIL NIL NIL "<B27397-0100000@Blurdybloop.COM>")',
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 55 1)',
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 55 1 NIL NIL NIL NIL)',
        id='plain'),
    pytest.param(
        b'From: =?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?= <keld@dkuug.dk>\r\nTo: =?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>\r\nSubject: =?utf-8?B?w6lww6l0?= =?utf-8?Q?_caf=C3=A9?=\r\n\r\nx\r\n',
        b'(NIL "=?utf-8?B?w6lww6l0?= =?utf-8?Q?_caf=C3=A9?=" (("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=" NIL "keld" "dkuug.dk")) (("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=" NIL "keld" "dkuug.dk")) (("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=" NIL "keld" "dkuug.dk")) (("=?US-ASCII?Q?Keith_Moore?=" NIL "moore" "cs.utk.edu")) NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 3 1)',
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 3 1 NIL NIL NIL NIL)',
        id='rfc2047'),
    pytest.param(
        b'From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="XX"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain\r\n--XX\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>h=C3=A9</p>\r\n--XX--\r\nepilogue\r\n',
        b'(NIL NIL ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) NIL NIL NIL NIL NIL)',
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 5 0)("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 14 0) "ALTERNATIVE")',
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 5 0 NIL NIL NIL NIL)("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 14 0 NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "XX") NIL NIL NIL)',
        id='alternative'),
    pytest.param(
        b'From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n\r\nbody text\r\n--b1\r\nContent-Type: application/pdf; name="r.pdf"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment;\r\n filename*0*=utf-8\'\'r%C3%A9sum; filename*1="e.pdf"; size=4\r\nContent-ID: <c1@x>\r\nContent-Description: CV\r\nContent-Language: en, fr\r\nContent-Location: http://x/r.pdf\r\n\r\nJVBERg==\r\n--b1--\r\n',
        b'(NIL NIL ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) NIL NIL NIL NIL NIL)',
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 9 0)("APPLICATION" "PDF" ("NAME" "r.pdf") "<c1@x>" "CV" "BASE64" 8) "MIXED")',
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 9 0 NIL NIL NIL NIL)("APPLICATION" "PDF" ("NAME" "r.pdf") "<c1@x>" "CV" "BASE64" 8 NIL ("ATTACHMENT" ("FILENAME*" "utf-8\'\'r%C3%A9sume.pdf" "SIZE" "4")) ("en" "fr") "http://x/r.pdf") "MIXED" ("BOUNDARY" "b1") NIL NIL NIL)',
        id='attachment'),
    pytest.param(
        b'Content-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\n\r\none\r\n--inner\r\nContent-Type: text/html\r\n\r\n<b>two</b>\r\n--inner--\r\n--outer\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBO\r\n--outer--\r\n',
        b'(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)',
        b'((("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 3 0)("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 0) "ALTERNATIVE")("IMAGE" "PNG" NIL NIL NIL "BASE64" 4) "MIXED")',
        b'((("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 3 0 NIL NIL NIL NIL)("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 0 NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "inner") NIL NIL NIL)("IMAGE" "PNG" NIL NIL NIL "BASE64" 4 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)',
        id='nested'),
    pytest.param(
        b'From: a@example.com\r\nSubject: fwd\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--m\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\nFrom: Inner <in@example.org>\r\nSubject: inner\r\nDate: Tue, 2 Jan 2024 00:00:00 +0000\r\n\r\ninner body\r\nline 2\r\n--m--\r\n',
        b'(NIL "fwd" ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) NIL NIL NIL NIL NIL)',
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 12 0)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 104 ("Tue, 2 Jan 2024 00:00:00 +0000" "inner" (("Inner" NIL "in" "example.org")) (("Inner" NIL "in" "example.org")) (("Inner" NIL "in" "example.org")) NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 18 1) 5) "MIXED")',
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 12 0 NIL NIL NIL NIL)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 104 ("Tue, 2 Jan 2024 00:00:00 +0000" "inner" (("Inner" NIL "in" "example.org")) (("Inner" NIL "in" "example.org")) (("Inner" NIL "in" "example.org")) NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 18 1 NIL NIL NIL NIL) 5 NIL ("INLINE" NIL) NIL NIL) "MIXED" ("BOUNDARY" "m") NIL NIL NIL)',
        id='rfc822'),
    pytest.param(
        b'From: x@y\r\nSubject: hi\r\n\r\nno mime here\r\n',
        b'(NIL "hi" ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) NIL NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 14 1)',
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 14 1 NIL NIL NIL NIL)',
        id='no_mime_version'),
    pytest.param(
        b'From: x@y\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--zz\r\n\r\nsecond, never closed\r\n',
        b'(NIL NIL ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) NIL NIL NIL NIL NIL)',
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 5 0)("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 22 1) "MIXED")',
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 5 0 NIL NIL NIL NIL)("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 22 1 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "zz") NIL NIL NIL)',
        id='broken_boundary'),
    pytest.param(
        b'Content-Type: multipart/mixed; boundary=nope\r\n\r\nno delimiter at all\r\n',
        b'(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)',
        b'(("TEXT" "PLAIN" NIL NIL NIL "7BIT" 0 0) "MIXED")',
        b'(("TEXT" "PLAIN" NIL NIL NIL "7BIT" 0 0 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "nope") NIL NIL NIL)',
        id='no_parts'),
    pytest.param(
        b'From: x@y\r\nSubject: empty\r\n\r\n',
        b'(NIL "empty" ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) NIL NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0)',
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)',
        id='empty_body'),
    pytest.param(
        b'From: x@y\nContent-Type: multipart/mixed; boundary=q\n\n--q\n\nl1\nl2\n--q--\n',
        b'(NIL NIL ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) NIL NIL NIL NIL NIL)',
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 5 1) "MIXED")',
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 5 1 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "q") NIL NIL NIL)',
        id='bare_lf'),
    pytest.param(
        b'From: x@y\r\nTo: undisclosed-recipients:;\r\nCc: Team: "Ann B" <ann@t.example>, bob@t.example;, carol@c.example\r\n\r\n.\r\n',
        b'(NIL NIL ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) ((NIL NIL "Team" NIL)("Ann B" NIL "ann" "t.example")(NIL NIL "bob" "t.example")(NIL NIL NIL NIL)(NIL NIL "carol" "c.example")) NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 3 1)',
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 3 1 NIL NIL NIL NIL)',
        id='groups'),
    pytest.param(
        b'Subject: orphan\r\nReply-To: r@example.com\r\n\r\n.\r\n',
        b'(NIL "orphan" NIL NIL ((NIL NIL "r" "example.com")) NIL NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 3 1)',
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 3 1 NIL NIL NIL NIL)',
        id='no_from'),
    pytest.param(
        b'From: x@y\r\nSubject: only headers',
        b'(NIL "only headers" ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) NIL NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0)',
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)',
        id='no_separator'),
    pytest.param(
        b'Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nFrom: m1@example.com\r\nSubject: one\r\n\r\nbody 1\r\n--d\r\nContent-Type: text/plain\r\n\r\nnot a message\r\n--d--\r\n',
        b'(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)',
        b'(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 44 (NIL "one" ((NIL NIL "m1" "example.com")) ((NIL NIL "m1" "example.com")) ((NIL NIL "m1" "example.com")) NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 6 0) 3)("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 13 0) "DIGEST")',
        b'(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 44 (NIL "one" ((NIL NIL "m1" "example.com")) ((NIL NIL "m1" "example.com")) ((NIL NIL "m1" "example.com")) NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 6 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 13 0 NIL NIL NIL NIL) "DIGEST" ("BOUNDARY" "d") NIL NIL NIL)',
        id='digest'),
    pytest.param(
        b'From: J\xc3\xbcrgen <j@example.de>\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nHallo\r\n',
        b'(NIL {7}\r\nGr\xc3\xbc\xc3\x9fe (({7}\r\nJ\xc3\xbcrgen NIL "j" "example.de")) (({7}\r\nJ\xc3\xbcrgen NIL "j" "example.de")) (({7}\r\nJ\xc3\xbcrgen NIL "j" "example.de")) NIL NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 7 1)',
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 7 1 NIL NIL NIL NIL)',
        id='raw_utf8'),
]


@pytest.mark.parametrize(("raw", "envelope", "body", "bodystructure"), WIRE_CASES)
def test_wire_strings(raw: bytes, envelope: bytes, body: bytes, bodystructure: bytes) -> None:
    """Each message shape gives exactly the expected ENVELOPE, BODY and BODYSTRUCTURE."""
    index = build_index(raw)
    assert index.envelope_wire == envelope
    assert index.body_wire == body
    assert index.bodystructure_wire == bodystructure


@pytest.mark.parametrize(("raw", "envelope", "body", "bodystructure"), WIRE_CASES)
def test_json_round_trip(raw: bytes, envelope: bytes, body: bytes, bodystructure: bytes) -> None:
    """to_json/from_json keeps wire strings, part offsets, search fields and sent date."""
    index = build_index(raw)
    loaded = MessageIndex.from_json(index.to_json())
    assert loaded.envelope_wire == envelope
    assert loaded.body_wire == body
    assert loaded.bodystructure_wire == bodystructure
    assert loaded.root == index.root
    assert loaded.search_fields == index.search_fields
    assert loaded.sent_date == index.sent_date
    assert loaded.size == len(raw)
    assert loaded.to_json() == index.to_json()


def test_rfc3501_example_envelope() -> None:
    """The RFC 3501 §8 sample FETCH ENVELOPE answer is reproduced from its header."""
    raw = (b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
           b"From: Terry Gray <gray@cac.washington.edu>\r\n"
           b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
           b"To: imap@cac.washington.edu\r\n"
           b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
           b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n\r\nx\r\n")
    assert build_index(raw).envelope_wire == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
        b'NIL NIL "<B27397-0100000@cac.washington.edu>")')


def test_quoted_specials_and_source_route() -> None:
    """Quotes and backslashes are escaped in quoted strings; an obs-route goes to adl."""
    raw = b'From: "A \\"q\\" B" <@r1,@r2:u@h>\r\nSubject: back\\slash\r\n\r\n'
    env = build_index(raw).envelope_wire
    assert env.startswith(b'(NIL "back\\\\slash" (("A \\"q\\" B" "@r1,@r2" "u" "h"))')


def test_missing_domain_is_not_group_syntax() -> None:
    """A bare local part gets host MISSING_DOMAIN (a NIL host would mean a group)."""
    env = build_index(b"To: postmaster\r\n\r\n").envelope_wire
    assert b'((NIL NIL "postmaster" "MISSING_DOMAIN"))' in env


def test_nul_and_newline_in_strings() -> None:
    """A header value with a NUL is sent without it; 8-bit text is sent as a literal."""
    env = build_index(b"Subject: a\x00b\r\n\r\n").envelope_wire
    assert env.startswith(b'(NIL "ab" ')
    env = build_index(b"Subject: caf\xc3\xa9\r\n\r\n").envelope_wire
    assert env.startswith(b'(NIL {5}\r\ncaf\xc3\xa9 NIL')


def test_content_type_without_subtype_defaults() -> None:
    """An invalid Content-Type is text/plain; charset=us-ascii (RFC 2045 §5.2)."""
    raw = b"Content-Type: garbage\r\n\r\nx"
    assert build_index(raw).body_wire == b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 1 0)'


def test_base64_message_rfc822_is_opaque() -> None:
    """A base64 message/rfc822 part is not parsed as a message (its bytes are encoded)."""
    raw = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"RnJvbTogYUBiDQoNCng=\r\n--b--\r\n")
    index = build_index(raw)
    assert index.body_wire == b'(("MESSAGE" "RFC822" NIL NIL NIL "BASE64" 20) "MIXED")'
    assert index.root.children[0].message is None


def test_search_fields_and_sent_date() -> None:
    """Decoded From/To/Subject are kept for SEARCH; the sent date is in the header's zone."""
    raw = (b"From: =?ISO-8859-1?Q?Keld_J=F8rn?= <keld@dkuug.dk>\r\n"
           b"Subject: =?utf-8?B?w6lww6l0?= =?utf-8?Q?_caf=C3=A9?=\r\n"
           b"Date: Mon, 01 Jan 2024 23:30:00 -0500\r\n\r\nbody\r\n")
    index = build_index(raw)
    assert index.search_fields == {"from": "Keld J\u00f8rn <keld@dkuug.dk>",
                                   "subject": "\u00e9p\u00e9t caf\u00e9"}
    assert index.sent_date == dt.date(2024, 1, 1)
    assert build_index(b"Date: not a date\r\n\r\n").sent_date is None


SEARCH_MESSAGE = (
    b"From: =?utf-8?Q?Ren=C3=A9e?= <renee@example.com>\r\n"
    b"To: Bob <bob@example.net>\r\nCc: carol@example.org\r\n"
    b"Subject: =?utf-8?Q?Stra=C3=9Fe?= plans\r\nX-Tag: Alpha Beta\r\n"
    b"Content-Type: multipart/mixed; boundary=s\r\n\r\n"
    b"--s\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 au lait\r\n"
    b"--s\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"PGI+R3LDvMOfZTwvYj4=\r\n"
    b"--s\r\nContent-Type: application/octet-stream\r\n\r\nhidden needle\r\n"
    b"--s\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner words\r\n"
    b"--s--\r\n")


@pytest.mark.parametrize(("needle", "where", "field", "expected"), [
    ("CAFÉ", "BODY", None, True),            # QP + ISO-8859-1, case-insensitive
    ("grüsse", "BODY", None, True),          # base64 + UTF-8, casefold ß -> ss
    ("hidden needle", "BODY", None, False),  # not a text part
    ("inner words", "BODY", None, True),     # text inside message/rfc822
    ("Content-Type", "BODY", None, False),   # headers are not BODY
    ("x-tag: alpha", "TEXT", None, True),    # TEXT sees the header
    ("café au", "TEXT", None, True),
    ("STRASSE", "SUBJECT", None, True),      # RFC 2047 decoded, casefold
    ("=?utf-8", "SUBJECT", None, False),
    ("renée", "FROM", None, True),
    ("renee@example", "FROM", None, True),
    ("bob", "TO", None, True),
    ("carol", "CC", None, True),
    ("carol", "BCC", None, False),
    ("beta", "HEADER", "x-tag", True),
    ("", "HEADER", "X-TAG", True),           # empty string: the field exists
    ("", "HEADER", "X-Missing", False),
    ("gamma", "HEADER", "x-tag", False),
])
def test_matches_text(needle: str, where: str, field: str | None, expected: bool) -> None:
    """SEARCH keys match case-insensitively on decoded text where RFC 3501 §6.4.4 says."""
    index = MessageIndex.from_json(build_index(SEARCH_MESSAGE).to_json())
    assert matches_text(SEARCH_MESSAGE, index, needle, where, field) is expected


def test_header_keys_do_not_read_raw() -> None:
    """FROM/TO/CC/BCC/SUBJECT are answered from the index alone."""
    index = build_index(SEARCH_MESSAGE)
    assert matches_text(b"", index, "plans", "SUBJECT")
    assert not matches_text(b"", index, "plans", "FROM")


def test_matches_text_rejects_unknown_key() -> None:
    """An unknown key or HEADER without a field name is a programming error."""
    index = build_index(SEARCH_MESSAGE)
    with pytest.raises(ValueError):
        matches_text(SEARCH_MESSAGE, index, "x", "BOGUS")
    with pytest.raises(ValueError):
        matches_text(SEARCH_MESSAGE, index, "x", "HEADER")


@pytest.mark.parametrize("text", ["", "{}", '{"v": 999}', "[1]", '{"v":1}', "not json"])
def test_from_json_rejects_garbage(text: str) -> None:
    """A corrupt or foreign stored index raises IndexFormatError, not KeyError."""
    with pytest.raises(IndexFormatError):
        MessageIndex.from_json(text)


def test_bad_part_tree_raises_on_use() -> None:
    """A stored index with a broken part tree fails with IndexFormatError when used."""
    doc = build_index(b"\r\nx").to_json().replace('"p":[0,', '"p":["zero",')
    index = MessageIndex.from_json(doc)
    with pytest.raises(IndexFormatError):
        section_bytes(b"\r\nx", index, Section((1,)))


def test_json_is_compact() -> None:
    """A plain 1 KiB message indexes to well under 1 KiB of JSON."""
    raw = b"From: a@b.c\r\nTo: d@e.f\r\nSubject: s\r\n\r\n" + b"x" * 1000 + b"\r\n"
    assert len(build_index(raw).to_json()) < 600


def test_limits_bound_the_stored_index() -> None:
    """A 200,000-recipient To: line and a 100,000-part message keep the JSON bounded."""
    from delivery.mime_index import MAX_PARTS, MAX_SEARCH_FIELD
    huge_to = build_index(b"To: " + b"a@b, " * 200_000 + b"\r\n\r\n")
    assert len(huge_to.search_fields["to"]) == MAX_SEARCH_FIELD
    assert huge_to.envelope_wire.count(b'"a" "b"') == 500
    assert len(huge_to.to_json()) < 64 * 1024
    many = build_index(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * 100_000)
    assert len(many.root.children) <= MAX_PARTS
    assert len(many.to_json()) < 300 * 1024
