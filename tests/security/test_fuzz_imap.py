"""Issue 10 §3: IMAP session fuzzing over a real socket to the running daemon.

tests/imap/test_parser_fuzz.py feeds token soup to the sans-IO parser alone. Here
command lines are built from a grammar of the real commands (every command of
RFC 3501 and the extensions we announce, with real mailbox names, sequence sets, FETCH
items, SEARCH keys, flags, literals), then mutated (random bytes, random and invalid
tags, huge numbers, unbalanced parentheses, wrong literal sizes, truncation, bare LF),
and sent to the daemon as a client would: line by line, waiting for ``+`` after a
synchronizing literal. Each example starts in one state (not authenticated, logged
in, a mailbox selected read-write or read-only, a shared mailbox selected) with a
fresh user holding a few messages.

Properties, for every input line:
* the server answers it: a tagged OK/NO/BAD with the command's own tag when the tag is
  valid (RFC 3501 §9 ``tag``), ``* BAD`` when it is not, or ``* BYE``;
* every response line is well formed (balanced parentheses, terminated quoted strings,
  literals of the announced size, no bare CR, LF or NUL outside literals);
* no ``[SERVERBUG]`` answer and nothing logged at ERROR: no exception escaped a handler;
* the connection still works: a NOOP sent after each command gets its OK, and the
  connection closes only after a BYE.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import os
import re
import ssl
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from storage.types import LocalRecipient, Right
from tests.conftest import RunningServer

PASSWORD = "fuzz pass 1"
SHARED = "hr@example.test"
#: Examples per run (each plays 1-6 commands); FUZZ_EXAMPLES raises it for a longer hunt.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
#: Seconds to wait for any one response before calling the server stuck.
REPLY_TIMEOUT = 10.0
#: Sentinel tags: the fuzz tags never start with an upper-case Z.
SENTINEL = b"Zsync"

_users = itertools.count(1)


# -- the command grammar --------------------------------------------------------------

@dataclass(frozen=True)
class Lit:
    """A literal argument: ``content`` sent after ``{announced}`` (RFC 3501 §4.3),
    ``{announced+}`` (RFC 7888) or ``~{announced}`` (RFC 3516)."""

    content: bytes
    kind: str = "sync"  # "sync" | "nonsync" | "lit8"
    announced: int | None = None  # None: the true length

    def marker(self) -> bytes:
        n = len(self.content) if self.announced is None else self.announced
        return {"sync": b"{%d}", "nonsync": b"{%d+}", "lit8": b"~{%d}"}[self.kind] % n


Piece = bytes | Lit

MAILBOXES = [b"INBOX", b"inbox", b"Archive", b'"Sent"', b"Trash", b'"Drafts"', b'"Shared/hr@example.test/INBOX"',
             b"Shared", b'"Shared/hr@example.test"', b'"Shared/nobody@example.test/INBOX"', b'"a/b/c"', b'""',
             b'"&AOk-t&AOk-"', b'"&Jjo"', b"%", b"*", b"Archive/Sub", b'"INBOX/Child"', b"NIL", b'"\\\\"']
NEW_NAMES = [b"New1", b'"new folder"', b"Archive/Deep/Er", b"INBOX", b'"&ZeVnLIqe-"', b'"x/"', b'"/x"', b'"a//b"',
             b'"Shared/x"', b"Trash"]
SEQUENCES = [b"1", b"2", b"3", b"1:*", b"*", b"1:3", b"2,4:*", b"3:1", b"1,1,1", b"1:4294967295", b"4294967295",
             b"4294967296", b"0", b"0:*", b"99999999999999999999", b"$", b"1:", b":2", b",", b"1,,2", b"*:*"]
FETCH_ATTS = [b"FLAGS", b"UID", b"ENVELOPE", b"BODYSTRUCTURE", b"BODY", b"INTERNALDATE", b"RFC822.SIZE", b"RFC822",
              b"RFC822.HEADER", b"RFC822.TEXT", b"BODY[]", b"BODY.PEEK[]", b"BODY[HEADER]", b"BODY[TEXT]",
              b"BODY.PEEK[HEADER.FIELDS (From Subject)]", b"BODY[HEADER.FIELDS.NOT (To)]", b"BODY[1]",
              b"BODY[1.MIME]", b"BODY[2.1.TEXT]", b"BODY[]<0.10>", b"BODY[]<4294967295.4294967295>",
              b"BODY[1]<5.99999999999>", b"BINARY[1]", b"BINARY.PEEK[1]<0.5>", b"BINARY.SIZE[1]", b"MODSEQ",
              b"ALL", b"FAST", b"FULL", b"BODY[0]", b"BODY[1.0]", b"BODY[HEADER.FIELDS ()]", b"BODY[", b"<0.1>"]
FLAG_WORDS = [b"\\Seen", b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Draft", b"\\Recent", b"\\*", b"$Junk",
              b"$Forwarded", b"custom", b"\\Bogus", b"", b"NIL"]
STATUS_ITEMS = [b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN", b"HIGHESTMODSEQ", b"SIZE", b"BOGUS"]
DATES = [b"1-Jan-2020", b"31-Dec-1999", b"29-Feb-2021", b"1-Foo-2020", b"99-Jan-99999", b'"17-Jul-1996"']
DATE_TIMES = [b'"17-Jul-1996 02:44:25 -0700"', b'" 1-Jan-2020 00:00:00 +0000"', b'"31-Feb-2020 25:61:61 +9999"',
              b'"garbage"', b"17-Jul-1996"]
NUMBERS = [b"0", b"1", b"4294967295", b"4294967296", b"18446744073709551615", b"18446744073709551616",
           b"99999999999999999999999999999999", b"-1", b"1e9", b"00000000000000000001"]
JUNK = [b"(", b")", b"((((((((((((", b"))))", b"[", b"]", b"{", b"}", b'"', b"\\", b"*", b"%", b"~", b"+", b"<>",
        b"{3}", b"{0}", b"\x00", b"\xff\xfe", b"\r", b"\t", b"NIL", b"UID", b"CHARSET", b"RETURN", b"&", b"&-"]
MESSAGE = (b"From: Zed <zed@remote.test>\r\nTo: fuzz@example.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
           b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\nHello\r\n")


def _choice(values: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.sampled_from(values)


def _maybe_literal(values: st.SearchStrategy[bytes]) -> st.SearchStrategy[Piece]:
    """A string argument sent as itself or as a literal (unquoted first)."""
    return st.one_of(values, values.map(lambda v: Lit(v[1:-1] if v[:1] == b'"' == v[-1:] and len(v) > 1 else v)))


_mailbox = _maybe_literal(_choice(MAILBOXES))
#: Thousands of ranges (a syncing client's UID set, or an attempt to make the server work).
_many_ranges = st.integers(1, 4000).map(lambda n: b",".join(b"%d:%d" % (i, i + 1) for i in range(1, 3 * n, 3)))
_seq = st.one_of(_choice(SEQUENCES), _choice(SEQUENCES), _many_ranges)
_number = _choice(NUMBERS)


def _paren(items: st.SearchStrategy[list[bytes]]) -> st.SearchStrategy[bytes]:
    return items.map(lambda xs: b"(" + b" ".join(xs) + b")")


_flags = _paren(st.lists(_choice(FLAG_WORDS), max_size=4))
_search_leaf = st.one_of(
    _choice([b"ALL", b"SEEN", b"UNSEEN", b"ANSWERED", b"DELETED", b"DRAFT", b"FLAGGED", b"NEW", b"OLD", b"RECENT",
             b"UNDELETED", b"UNFLAGGED", b"UNKEYWORD $Junk", b"KEYWORD custom"]),
    st.tuples(_choice([b"FROM", b"TO", b"CC", b"BCC", b"SUBJECT", b"BODY", b"TEXT"]),
              _choice([b"zed", b'"caf\xc3\xa9"', b'""', b"x", b'"a b"'])).map(b" ".join),
    st.tuples(_choice([b"SINCE", b"BEFORE", b"ON", b"SENTSINCE", b"SENTBEFORE", b"SENTON"]), _choice(DATES)).map(b" ".join),
    st.tuples(_choice([b"LARGER", b"SMALLER", b"MODSEQ", b"UID"]), st.one_of(_number, _seq)).map(b" ".join),
    st.tuples(st.just(b"HEADER"), _choice([b"Subject", b"X-None", b'""']), _choice([b"x", b'""'])).map(b" ".join),
    _seq,
)
_search_key: st.SearchStrategy[bytes] = st.recursive(
    _search_leaf,
    lambda inner: st.one_of(
        st.tuples(st.just(b"OR"), inner, inner).map(b" ".join),
        inner.map(lambda k: b"NOT " + k),
        st.lists(inner, min_size=1, max_size=3).map(lambda ks: b"(" + b" ".join(ks) + b")"),
    ),
    max_leaves=6,
)


def _words(*parts: st.SearchStrategy[Piece] | st.SearchStrategy[list[Piece]] | bytes) -> st.SearchStrategy[list[Piece]]:
    """A command's words: fixed bytes, single pieces, or optional groups (lists)."""
    strategies = [st.just([p]) if isinstance(p, bytes) else p for p in parts]
    lifted = [s.map(lambda v: v if isinstance(v, list) else [v]) for s in strategies]
    return st.tuples(*lifted).map(lambda groups: [w for g in groups for w in g])


def _opt(s: st.SearchStrategy[list[Piece]]) -> st.SearchStrategy[list[Piece]]:
    return st.one_of(st.just([]), s)


def _uid(s: st.SearchStrategy[list[Piece]]) -> st.SearchStrategy[list[Piece]]:
    return st.tuples(st.booleans(), s).map(lambda t: ([b"UID"] if t[0] else []) + t[1])


_auth_response: st.SearchStrategy[list[Piece]] = st.one_of(
    st.just(b"=").map(lambda v: [v]),
    st.just([]),
    st.sampled_from([b"\x00@USER@\x00@PASS@", b"@USER@\x00@USER@\x00@PASS@", b"\x00x\x00y", b"junk"]).map(
        lambda v: [base64.b64encode(v)]),
    st.just([b"!!notbase64"]),
)

COMMANDS: st.SearchStrategy[list[Piece]] = st.one_of(
    st.sampled_from([[b"CAPABILITY"], [b"NOOP"], [b"LOGOUT"], [b"ID", b"NIL"], [b"ID", b'("name" "fuzz" "version" "1")'],
                     [b"STARTTLS"], [b"NAMESPACE"], [b"IDLE"], [b"CHECK"], [b"CLOSE"], [b"UNSELECT"], [b"EXPUNGE"],
                     [b"ENABLE", b"CONDSTORE"], [b"ENABLE", b"UTF8=ACCEPT", b"X-UNKNOWN"]]),
    _words(b"LOGIN", _maybe_literal(_choice([b"@USER@", b'"@USER@"', b"nobody@example.test", b'""'])),
           _maybe_literal(_choice([b'"@PASS@"', b"wrong", b'""']))),
    _words(b"AUTHENTICATE", _choice([b"PLAIN", b"plain", b"LOGIN", b"CRAM-MD5", b"XOAUTH2"]), _auth_response),
    _words(_choice([b"SELECT", b"EXAMINE"]), _mailbox, _opt(st.just([b"(CONDSTORE)"]))),
    _words(_choice([b"CREATE", b"DELETE", b"SUBSCRIBE", b"UNSUBSCRIBE"]), _maybe_literal(_choice(NEW_NAMES + MAILBOXES))),
    _words(b"RENAME", _mailbox, _maybe_literal(_choice(NEW_NAMES))),
    _words(_choice([b"LIST", b"LSUB"]), _maybe_literal(_choice([b'""', b"INBOX", b'"Shared/"'])),
           _maybe_literal(_choice([b'"*"', b"%", b'"Shared/%"', b'"INBOX*"', b'""', b'"%/%"']))),
    _words(b"LIST", _choice([b"(SUBSCRIBED)", b"(RECURSIVEMATCH SUBSCRIBED)", b"()", b"(REMOTE)"]), b'""',
           _choice([b'"*"', b'("INBOX" "Arch*")']),
           _opt(_choice([b"RETURN (CHILDREN SPECIAL-USE)", b"RETURN (STATUS (MESSAGES UNSEEN HIGHESTMODSEQ))",
                         b"RETURN ()"]).map(lambda v: [v]))),
    _words(b"STATUS", _mailbox, _paren(st.lists(_choice(STATUS_ITEMS), max_size=5))),
    _words(b"APPEND", _mailbox, _opt(_flags.map(lambda v: [v])), _opt(_choice(DATE_TIMES).map(lambda v: [v])),
           st.sampled_from(["sync", "nonsync", "lit8"]).map(lambda k: Lit(MESSAGE, k))),
    _words(b"UID", b"EXPUNGE", _seq),
    _uid(_words(b"SEARCH", _opt(_choice([b"CHARSET UTF-8", b"CHARSET KOI8-R", b"RETURN (MIN MAX COUNT ALL)",
                                          b"RETURN ()"]).map(lambda v: [v])),
                st.lists(_search_key, min_size=1, max_size=3))),
    _uid(_words(b"FETCH", _seq, st.one_of(_choice(FETCH_ATTS), _paren(st.lists(_choice(FETCH_ATTS), max_size=4))),
                _opt(_choice([b"(CHANGEDSINCE 1)", b"(CHANGEDSINCE 0)", b"(CHANGEDSINCE 99999999999999999999)",
                              b"(VANISHED)"]).map(lambda v: [v])))),
    _uid(_words(b"STORE", _seq, _opt(_choice([b"(UNCHANGEDSINCE 1)", b"(UNCHANGEDSINCE 0)"]).map(lambda v: [v])),
                _choice([b"FLAGS", b"+FLAGS", b"-FLAGS", b"+FLAGS.SILENT", b"FLAGS.SILENT", b"X-FLAGS"]),
                st.one_of(_flags, _choice(FLAG_WORDS)))),
    _uid(_words(_choice([b"COPY", b"MOVE"]), _seq, _mailbox)),
    st.lists(_choice(JUNK + [b"FOO", b"X-UNKNOWN"]), min_size=1, max_size=4),
)

_valid_tag = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_", min_size=1, max_size=8).map(
    lambda t: ("t" + t).encode())
_weird_tag = st.one_of(
    st.sampled_from([b"*", b"+", b"", b"a+b", b"\xff", b"(", b"a(", b"%", b"]", b"a]b", b"{3}", b'"q"', b"x" * 300,
                     b"\x00", b"\t", b"+ ", b"UID"]),
    st.binary(min_size=1, max_size=6).filter(lambda b: b"\n" not in b),
).filter(lambda t: not t.startswith(SENTINEL))


@st.composite
def _mutated(draw: st.DrawFn, words: list[Piece]) -> list[Piece]:
    """Apply 0-3 mutations to a command's words."""
    words = list(words)
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 1, 2, 3]))):
        op = draw(st.sampled_from(["bytes", "number", "junk", "delete", "duplicate", "literal", "swap"]))
        # Mostly the arguments: a mangled command name only ever gets BAD.
        at = draw(st.integers(0 if draw(st.integers(0, 3)) == 0 else min(1, len(words) - 1), max(len(words) - 1, 0)))
        if op == "bytes":
            words[at:at + 1] = [draw(st.binary(max_size=12))]
        elif op == "number":
            words[at:at + 1] = [draw(_number)]
        elif op == "junk":
            words.insert(at, draw(_choice(JUNK)))
        elif op == "delete" and words:
            del words[at]
        elif op == "duplicate" and words:
            words.insert(at, words[at])
        elif op == "swap" and len(words) > 1:
            other = draw(st.integers(0, len(words) - 1))
            words[at], words[other] = words[other], words[at]
        elif op == "literal" and words:
            w = words[at]
            content = w.content if isinstance(w, Lit) else w
            kind = draw(st.sampled_from(["sync", "nonsync", "lit8"]))
            n = len(content)
            announced = draw(st.one_of(
                st.none(), st.integers(0, n + 40),
                st.sampled_from([4294967295, 10**20, 30_000_000, 9000]) if kind != "nonsync" else st.integers(0, 200),
            ))
            words[at] = Lit(content, kind, announced)
    return words


def _serialize(tag: bytes, words: list[Piece]) -> bytes:
    out = tag + b" "
    for i, w in enumerate(words):
        if i:
            out += b" "
        out += (w.marker() + b"\r\n" + w.content) if isinstance(w, Lit) else w
    return out


@st.composite
def fuzz_input(draw: st.DrawFn) -> bytes:
    """One client input: usually one command (several when random bytes hold a LF)."""
    tag = draw(_weird_tag) if draw(st.integers(0, 9)) == 0 else draw(_valid_tag)
    words = draw(_mutated(draw(COMMANDS)))
    raw = _serialize(tag, words)
    if draw(st.integers(0, 11)) == 0:  # truncated anywhere
        raw = raw[: draw(st.integers(0, len(raw)))]
    if draw(st.integers(0, 11)) == 0:  # a few random bytes overwritten
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, max(len(raw) - 1, 0)))
            raw = raw[:at] + draw(st.binary(min_size=1, max_size=3)) + raw[at + 1:]
    ending = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b" \r\n", b"\r\r\n"]))
    return raw + ending


START_STATES = ["not-authenticated", "authenticated", "selected", "examined", "shared-selected", "condstore"]


# -- a line-level client that checks every response -----------------------------------

#: RFC 3501 §9: tag = 1*<any ASTRING-CHAR except "+">; ASTRING-CHAR = ATOM-CHAR / "]";
#: ATOM-CHAR = CHAR except "(" ")" "{" SP CTL "%" "*" DQUOTE "\".
_TAG_CHARS = frozenset(range(0x21, 0x7F)) - frozenset(b'(){%*"\\+')
_CLIENT_LITERAL = re.compile(rb"(~?)\{([0-9]+)(\+?)\}\Z")  # RFC 3501 §4.3, RFC 7888, RFC 3516
_SERVER_LITERAL = re.compile(rb"~?\{([0-9]+)\}\r\n\Z")
_TAGGED_STATUS = re.compile(rb"(OK|NO|BAD) ")
_UNTAGGED = re.compile(rb"\* (?:(OK|NO|BAD|BYE|PREAUTH)(?: |\Z)|([0-9]+) ([A-Z]+)|([A-Z][A-Z0-9.=-]*)(?: |\Z))")
#: Untagged responses whose rest is data (checked token by token, RFC 3501 §7).
_DATA_RESPONSES = frozenset({b"FETCH", b"LIST", b"LSUB", b"STATUS", b"ESEARCH", b"SEARCH", b"FLAGS", b"NAMESPACE",
                             b"ID", b"ENABLED", b"CAPABILITY", b"VANISHED", b"EXISTS", b"RECENT", b"EXPUNGE"})


def tag_of(line: bytes) -> bytes | None:
    """The command's tag when the line starts with a valid one and SP (RFC 3501 §9)."""
    i = 0
    while i < len(line) and line[i] in _TAG_CHARS:
        i += 1
    return line[:i] if i and line[i:i + 1] == b" " else None


def check_data(data: bytes) -> None:
    """Assert ``data`` is a well-formed sequence of IMAP response values: atoms,
    quoted strings, literals of the announced size (no NUL unless ~{n}), balanced
    parentheses and brackets, nothing else; no CR, LF or NUL outside literals."""
    i, depth = 0, 0
    while i < len(data):
        c = data[i:i + 1]
        if c in b" ":
            i += 1
        elif c in (b"(", b"["):
            depth += 1
            i += 1
        elif c in (b")", b"]"):
            depth -= 1
            assert depth >= 0, f"unbalanced {c!r} at {i} in {data[:300]!r}"
            i += 1
        elif c == b'"':
            j = i + 1
            while True:
                assert j < len(data), f"unterminated quoted string in {data[:300]!r}"
                if data[j:j + 1] == b"\\":
                    assert data[j + 1:j + 2] in (b"\\", b'"'), f"bad escape in {data[:300]!r}"
                    j += 2
                    continue
                if data[j:j + 1] == b'"':
                    break
                assert data[j] not in (0, 10, 13) and data[j] < 0x80, f"bad char in quoted {data[:300]!r}"
                j += 1
            i = j + 1
        else:
            m = re.compile(rb"(~?)\{([0-9]+)\}\r\n").match(data, i)
            if m:
                end = m.end() + int(m.group(2))
                assert end <= len(data), f"short literal in {data[:300]!r}"
                if not m.group(1):
                    assert b"\x00" not in data[m.end():end], "NUL in a literal (RFC 3501 §4.3)"
                i = end
                continue
            j = i
            while j < len(data) and data[j:j + 1] not in b' ()[]"':
                assert data[j] not in (0, 10, 13), f"control character in {data[:300]!r}"
                j += 1
            assert j > i, f"unexpected {data[i:i + 1]!r} at {i} in {data[:300]!r}"
            i = j
    assert depth == 0, f"unbalanced parentheses in {data[:300]!r}"


def check_text(text: bytes) -> None:
    """resp-text (RFC 3501 §9): an optional [code] and text without CR, LF or NUL."""
    assert not re.search(rb"[\x00\r\n]", text), f"control character in response text {text[:300]!r}"
    if text.startswith(b"["):
        assert b"]" in text, f"unterminated response code in {text[:300]!r}"


class Client:
    """One connection; ``response()`` returns a logical response with literals inline."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        greeting = await client.response()
        assert greeting.startswith(b"* OK "), greeting
        return client

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> bytes:
        """The next logical response; raises ConnectionError at EOF."""
        out = b""
        while True:
            line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), REPLY_TIMEOUT)
            out += line
            m = _SERVER_LITERAL.search(line)
            if not m:
                return out[:-2]
            out += await asyncio.wait_for(self.reader.readexactly(int(m.group(1))), REPLY_TIMEOUT)

    async def at_eof(self) -> bool:
        """True when the server closed the connection (after its last bytes)."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), REPLY_TIMEOUT)
        except (ConnectionError, ssl.SSLError):
            return True
        return data == b""

    async def starttls(self, context: ssl.SSLContext) -> None:
        await self.writer.start_tls(context, server_hostname="mail.example.test")

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


def classify(resp: bytes, tag: bytes | None) -> str:
    """Check one response's form; return "cont", "final" (the command's end), "bye" or
    "untagged". ``tag``: the command's valid tag, None when it has none."""
    if resp.startswith(b"+"):
        assert resp == b"+" or resp.startswith(b"+ "), resp
        check_text(resp[2:])
        return "cont"
    assert b"[SERVERBUG]" not in resp, f"exception escaped a handler: {resp!r}"
    if resp.startswith(b"* "):
        m = _UNTAGGED.match(resp)
        assert m, f"malformed untagged response {resp[:300]!r}"
        if m.group(1):
            check_text(resp[m.end():])
            if m.group(1) == b"BYE":
                return "bye"
            return "final" if m.group(1) == b"BAD" and tag is None else "untagged"
        name = m.group(3) or m.group(4)
        assert name in _DATA_RESPONSES, f"unknown untagged response {resp[:300]!r}"
        check_data(resp[m.end():])
        return "untagged"
    assert tag is not None, f"tagged response to a command without a valid tag: {resp[:300]!r}"
    assert resp.startswith(tag + b" "), f"response with a foreign tag (expected {tag!r}): {resp[:300]!r}"
    m = _TAGGED_STATUS.match(resp, len(tag) + 1)
    assert m, f"malformed tagged response {resp[:300]!r}"
    check_text(resp[m.end():])
    return "final"


@dataclass
class Session:
    """The fuzz client's view of one connection."""

    client: Client
    tls: ssl.SSLContext
    sentinels: int = 0
    closed: bool = False


async def send_command(s: Session, raw: bytes, pos: int) -> tuple[int, list[bytes]]:
    """Send the command starting at ``raw[pos]`` as a client would and read its answer.

    Lines go out one at a time; after a synchronizing literal marker the client waits
    for ``+`` (or the command's refusal, then drops the rest of the input); literals
    are sent as announced (following bytes fill a short one, ``x`` pads at the end).
    Returns the next position and the command's responses.
    """
    c = s.client
    tag: bytes | None = None
    verb = b""
    first = True
    responses: list[bytes] = []
    while True:
        nl = raw.find(b"\n", pos)
        line = raw[pos:] + b"\r\n" if nl < 0 else raw[pos:nl + 1]
        pos = len(raw) if nl < 0 else nl + 1
        if first:
            tag = tag_of(line)
            words = line.rstrip(b"\r\n").split(b" ")
            verb = words[1].upper() if tag is not None and len(words) > 1 else b""
            first = False
        await c.send(line)
        body = line[:-1]
        body = body[:-1] if body.endswith(b"\r") else body
        m = _CLIENT_LITERAL.search(body)
        if not m:
            break
        size, synchronizing = int(m.group(2)), not m.group(3)
        if synchronizing:
            while True:  # RFC 3501 §7.5: wait for "+", or the command's refusal
                resp = await c.response()
                responses.append(resp)
                kind = classify(resp, tag)
                if kind == "cont":
                    break
                if kind in ("final", "bye"):
                    return len(raw), responses
        assert size <= 1_000_000, "the generator keeps literals small"
        chunk = raw[pos:pos + size]
        pos += len(chunk)
        await c.send(chunk + b"x" * (size - len(chunk)))
        if pos >= len(raw):
            await c.send(b"\r\n")
            break
    continuations = 0
    while True:
        resp = await c.response()
        responses.append(resp)
        kind = classify(resp, tag)
        if kind == "cont":  # IDLE, AUTHENTICATE: end it the way a client would
            continuations += 1
            assert continuations < 4, f"endless continuation requests: {responses!r}"
            await c.send(b"DONE\r\n" if verb == b"IDLE" else b"*\r\n")
        elif kind == "bye":
            s.closed = True
            while not await c.at_eof():  # RFC 3501 §7.1.5: the server closes after BYE
                pass
            return pos, responses
        elif kind == "final":
            break
    if verb == b"STARTTLS" and tag is not None and responses[-1].startswith(tag + b" OK"):
        await c.starttls(s.tls)  # RFC 3501 §6.2.1: the handshake starts after the OK
    return pos, responses


async def sentinel(s: Session) -> None:
    """A NOOP after each command: only untagged data, then its OK (or a BYE, after
    which the driver reconnects)."""
    s.sentinels += 1
    tag = SENTINEL + b"%d" % s.sentinels
    await s.client.send(tag + b" NOOP\r\n")
    while True:
        resp = await s.client.response()
        kind = classify(resp, tag)
        if kind == "bye":  # the server may end a connection it cannot resynchronise (RFC 7888 §4)
            s.closed = True
            while not await s.client.at_eof():
                pass
            return
        assert kind == "untagged" or resp.startswith(tag + b" OK"), f"sentinel NOOP answered {resp[:300]!r}"
        if kind == "final":
            return


# -- the test ---------------------------------------------------------------------------

async def _fresh_user(server: RunningServer) -> str:
    """A new user with three messages (one multipart, one 8-bit), folders and Full
    Access to the shared mailbox."""
    user = f"fz{next(_users)}@example.test"
    if await server.store.directory.get_account(SHARED) is None:
        await server.accounts.add_shared(SHARED, "Human Resources")
    account = await server.accounts.add_user(user, "Fuzz", PASSWORD)
    await server.accounts.grant(SHARED, user, [Right.FULL_ACCESS])
    multipart = (b"From: a@b.test\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
                 b"--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
                 b"Subject: inner\r\n\r\ntwo\r\n--b--\r\n")
    eight_bit = b"From: =?utf-8?b?w6k=?= <x@y.test>\r\nSubject: \xc3\xa9t\xc3\xa9\r\n\r\n\xff\xfe body\r\n"
    for raw in (MESSAGE, multipart, eight_bit):
        await server.store.mail.deliver(raw, [LocalRecipient(account.id, "INBOX")])
    return user


async def _open(server: RunningServer, user: str, state: str) -> Session:
    """A connection in ``state`` (see START_STATES)."""
    s = Session(await Client.connect(server.port("imap")), server.client_ssl_context())
    setup = {
        "not-authenticated": [],
        "authenticated": [b"LOGIN"],
        "selected": [b"LOGIN", b"SELECT INBOX"],
        "examined": [b"LOGIN", b"EXAMINE INBOX"],
        "shared-selected": [b"LOGIN", b'SELECT "Shared/hr@example.test/INBOX"'],
        "condstore": [b"LOGIN", b"ENABLE CONDSTORE", b"SELECT INBOX (CONDSTORE)"],
    }[state]
    for n, cmd in enumerate(setup):
        if cmd == b"LOGIN":
            cmd = b'LOGIN "%s" "%s"' % (user.encode(), PASSWORD.encode())
        tag = b"setup%d" % n
        await s.client.send(tag + b" " + cmd + b"\r\n")
        while not (resp := await s.client.response()).startswith(tag + b" "):
            pass
        assert resp.startswith(tag + b" OK"), resp
    return s


def _with_credentials(raw: bytes, user: str) -> bytes:
    auth = base64.b64encode  # the AUTHENTICATE grammar encodes placeholders: re-encode real ones
    for plain in (b"\x00@USER@\x00@PASS@", b"@USER@\x00@USER@\x00@PASS@"):
        real = plain.replace(b"@USER@", user.encode()).replace(b"@PASS@", PASSWORD.encode())
        raw = raw.replace(auth(plain), auth(real))
    return raw.replace(b"@USER@", user.encode()).replace(b"@PASS@", PASSWORD.encode())


def _outcome(responses: list[bytes]) -> str:
    """A label for hypothesis statistics: how the command ended."""
    last = responses[-1] if responses else b""
    if last.startswith(b"* "):
        return "untagged " + last.split(b" ")[1].decode("ascii", "replace")
    words = last.split(b" ")
    return "tagged " + (words[1].decode("ascii", "replace") if len(words) > 1 else "?")


async def run_session(server: RunningServer, state: str, inputs: list[bytes]) -> list[str]:
    """Play ``inputs`` from ``state``; return how each command ended (see _outcome)."""
    user = await _fresh_user(server)
    s = await _open(server, user, state)
    answered: list[str] = []
    try:
        for raw in inputs:
            raw = _with_credentials(raw, user)
            pos = 0
            while pos < len(raw):
                if s.closed:
                    await s.client.close()
                    s = await _open(server, user, state)
                pos, responses = await send_command(s, raw, pos)
                answered.append(_outcome(responses))
                if not s.closed:
                    await sentinel(s)
        if not s.closed:
            await s.client.send(b"zz LOGOUT\r\n")
            while not (await s.client.response()).startswith(b"zz "):
                pass
    finally:
        await s.client.close()
    return answered


@pytest.mark.config(auth__max_failures=1_000_000, imap__max_connections_per_user=1000, licences__seats=100_000)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
@example(state="selected", inputs=[b't0 SEARCH HEADER "" x\r\n', b"t1 UID SEARCH NOT HEADER {0}\r\n x\r\n"])
@given(state=st.sampled_from(START_STATES), inputs=st.lists(fuzz_input(), min_size=1, max_size=6))
async def test_every_mutated_command_gets_a_well_formed_answer(
    server: RunningServer, caplog: pytest.LogCaptureFixture, state: str, inputs: list[bytes]
) -> None:
    """Mutated real commands in every state: each gets its own tagged answer (or * BAD /
    BYE), every response is well formed, nothing crashes, the connection keeps working.
    Explicit example: SEARCH HEADER with an empty field name was NO [SERVERBUG] (the
    matcher's ValueError escaped)."""
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="mailserver"):
        outcomes = await run_session(server, state, inputs)
    assert outcomes
    for outcome in outcomes:
        event(outcome)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("mailserver")]
    assert not errors, [r.getMessage() for r in errors]
