"""SEARCH (RFC 3501 §6.4.4), ESEARCH return options (RFC 4731), MODSEQ (RFC 7162 §3.1.5)."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from .commands import Command
from .dates import xdate
from .lexer import MAX_MODSEQ, Cursor, ParseError, RejectError
from .sequence import SequenceSet, xsequence_set

# Deepest nesting of NOT/OR/parentheses accepted: real clients stay far below,
# and the bound keeps a hostile command from exhausting the Python stack.
MAX_SEARCH_DEPTH = 50
# Most search keys in one SEARCH, nested ones included (each OR, NOT and parenthesised
# list counts as one too).  Real clients send a few dozen; every key is evaluated for
# every message, so this bounds a search's work per message as well as its parse
# (a 64 KiB line holds 16,000 keys such as "1:*").
MAX_SEARCH_KEYS = 1000

# The CHARSETs we can search with; both decode as UTF-8 (ASCII is a subset).
SUPPORTED_CHARSETS = ("US-ASCII", "UTF-8")
BADCHARSET_CODE = "BADCHARSET (" + " ".join(SUPPORTED_CHARSETS) + ")"

# RFC 4731 §3.1 (SAVE needs "$" sequence sets, which we do not support)
ESEARCH_RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT"})


@dataclass(frozen=True, slots=True)
class SearchAll:
    """ALL: every message."""


@dataclass(frozen=True, slots=True)
class SearchFlag:
    """Messages that have (``present``) or lack ``flag``.

    ANSWERED/UNANSWERED, DELETED, DRAFT, FLAGGED, SEEN, RECENT, KEYWORD,
    UNKEYWORD and OLD map here; NEW is RECENT and not SEEN.
    """

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SearchHeader:
    """Header ``field`` contains ``value`` (FROM/TO/CC/BCC/SUBJECT/HEADER).

    An empty ``value`` matches every message that has the field.
    """

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchBody:
    """BODY: the body (not the header) contains ``value``."""

    value: str


@dataclass(frozen=True, slots=True)
class SearchText:
    """TEXT: the header or body contains ``value``."""

    value: str


class DateRelation(enum.Enum):
    """How a SEARCH date compares (dates ignore time and time zone, RFC 3501 §6.4.4)."""

    BEFORE = "BEFORE"
    ON = "ON"
    SINCE = "SINCE"


@dataclass(frozen=True, slots=True)
class SearchDate:
    """BEFORE/ON/SINCE (internal date) or SENTBEFORE/SENTON/SENTSINCE (``sent``: Date header)."""

    relation: DateRelation
    date: dt.date
    sent: bool = False


@dataclass(frozen=True, slots=True)
class SearchSize:
    """LARGER n (``larger``) or SMALLER n: RFC822.SIZE compared strictly."""

    larger: bool
    size: int


@dataclass(frozen=True, slots=True)
class SearchSequence:
    """A sequence set of message numbers, or ``UID set`` when ``uid``."""

    sequence_set: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class SearchModSeq:
    """MODSEQ [entry-name entry-type] n: messages with mod-sequence >= ``modseq``."""

    modseq: int
    entry_name: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class SearchNot:
    """NOT key."""

    key: SearchKey


@dataclass(frozen=True, slots=True)
class SearchOr:
    """OR key1 key2."""

    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class SearchAnd:
    """All keys match: a parenthesised list, or several top-level keys."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    SearchAll | SearchFlag | SearchHeader | SearchBody | SearchText | SearchDate
    | SearchSize | SearchSequence | SearchModSeq | SearchNot | SearchOr | SearchAnd
)


@dataclass(frozen=True, slots=True)
class Search(Command):
    """[UID] SEARCH [RETURN (opts)] [CHARSET c] keys.

    ``returns`` is None for a plain SEARCH (answer ``* SEARCH``) and the set of
    ESEARCH return options otherwise (``RETURN ()`` means ALL; answer ``* ESEARCH``).
    ``charset`` is the upper-cased CHARSET given, or None.
    """

    key: SearchKey
    charset: str | None = None
    uid: bool = False
    returns: frozenset[str] | None = None


_FLAG_KEYS = {
    b"ANSWERED": ("\\Answered", True), b"UNANSWERED": ("\\Answered", False),
    b"DELETED": ("\\Deleted", True), b"UNDELETED": ("\\Deleted", False),
    b"DRAFT": ("\\Draft", True), b"UNDRAFT": ("\\Draft", False),
    b"FLAGGED": ("\\Flagged", True), b"UNFLAGGED": ("\\Flagged", False),
    b"SEEN": ("\\Seen", True), b"UNSEEN": ("\\Seen", False),
    b"RECENT": ("\\Recent", True), b"OLD": ("\\Recent", False),
}
_HEADER_KEYS = {b"FROM": "From", b"TO": "To", b"CC": "Cc", b"BCC": "Bcc", b"SUBJECT": "Subject"}
_DATE_KEYS = {
    b"BEFORE": (DateRelation.BEFORE, False), b"ON": (DateRelation.ON, False),
    b"SINCE": (DateRelation.SINCE, False), b"SENTBEFORE": (DateRelation.BEFORE, True),
    b"SENTON": (DateRelation.ON, True), b"SENTSINCE": (DateRelation.SINCE, True),
}


def _xvalue(cur: Cursor) -> str:
    cur.xsp()
    raw = cur.xastring("search string")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("Search string is not valid in its CHARSET") from None


def _xkeyword(cur: Cursor) -> str:
    cur.xsp()
    word = cur.xatom("flag keyword")
    return word


class _KeyBudget:
    """How many more keys one SEARCH may have (MAX_SEARCH_KEYS)."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_SEARCH_KEYS

    def take(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise ParseError(f"Too many search keys (the limit is {MAX_SEARCH_KEYS})")


def xsearch_key(cur: Cursor, depth: int = 0, budget: _KeyBudget | None = None) -> SearchKey:
    """One search-key; raises ParseError on unknown keys or bad arguments, nesting
    deeper than MAX_SEARCH_DEPTH or more than MAX_SEARCH_KEYS keys (``budget``, shared
    by the keys of one command)."""
    if depth > MAX_SEARCH_DEPTH:
        raise ParseError("Search criteria nested too deeply")
    if budget is None:
        budget = _KeyBudget()
    budget.take()
    if cur.peek() == 0x28:  # "("
        keys = tuple(cur.xlist(lambda c: xsearch_key(c, depth + 1, budget)))
        if not keys:
            raise ParseError("Empty search key list")  # RFC 3501 §9: "(" search-key ... ")"
        return SearchAnd(keys)
    b = cur.peek()
    if b == 0x2A or 0x30 <= b <= 0x39:
        return SearchSequence(xsequence_set(cur))
    start = cur.pos
    word = cur.xatom("search key").upper().encode()
    if word in _FLAG_KEYS:
        return SearchFlag(*_FLAG_KEYS[word])
    if word == b"ALL":
        return SearchAll()
    if word == b"NEW":  # RFC 3501: NEW is (RECENT UNSEEN)
        return SearchAnd((SearchFlag("\\Recent", True), SearchFlag("\\Seen", False)))
    if word in (b"KEYWORD", b"UNKEYWORD"):
        return SearchFlag(_xkeyword(cur), word == b"KEYWORD")
    if word in _HEADER_KEYS:
        return SearchHeader(_HEADER_KEYS[word], _xvalue(cur))
    if word == b"HEADER":
        cur.xsp()
        field = cur.xastring("header field name").decode("ascii", "replace")
        return SearchHeader(field, _xvalue(cur))
    if word == b"BODY":
        return SearchBody(_xvalue(cur))
    if word == b"TEXT":
        return SearchText(_xvalue(cur))
    if word in _DATE_KEYS:
        cur.xsp()
        relation, sent = _DATE_KEYS[word]
        return SearchDate(relation, xdate(cur), sent)
    if word in (b"LARGER", b"SMALLER"):
        cur.xsp()
        return SearchSize(word == b"LARGER", cur.xnumber("size"))
    if word == b"UID":
        cur.xsp()
        return SearchSequence(xsequence_set(cur), uid=True)
    if word == b"NOT":
        cur.xsp()
        return SearchNot(xsearch_key(cur, depth + 1, budget))
    if word == b"OR":
        cur.xsp()
        left = xsearch_key(cur, depth + 1, budget)
        cur.xsp()
        return SearchOr(left, xsearch_key(cur, depth + 1, budget))
    if word == b"MODSEQ":
        return _xmodseq(cur)
    cur.pos = start
    raise ParseError(f"Unknown search key {word.decode('ascii', 'replace')}")


def _xmodseq(cur: Cursor) -> SearchModSeq:
    # RFC 7162 §3.1.5: "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer
    cur.xsp()
    if cur.peek() == 0x22:
        name = cur.xquoted().decode("ascii", "replace")
        cur.xsp()
        kind = cur.xatom("entry type").lower()
        if kind not in ("priv", "shared", "all"):
            raise ParseError("Expected priv, shared or all")
        cur.xsp()
        return SearchModSeq(cur.xnumber("mod-sequence", MAX_MODSEQ), name, kind)
    return SearchModSeq(cur.xnumber("mod-sequence", MAX_MODSEQ))


def parse_search(cur: Cursor, tag: str, uid: bool) -> Search:
    """Arguments of SEARCH after the command name (cursor before the first SP)."""
    returns: frozenset[str] | None = None
    charset: str | None = None
    cur.xsp()
    if cur.try_keyword(b"RETURN"):
        cur.xsp()
        opts = cur.xlist(lambda c: c.xatom("return option").upper())
        unknown = set(opts) - ESEARCH_RETURN_OPTIONS
        if unknown:
            raise ParseError(f"Unsupported SEARCH return option {sorted(unknown)[0]}")
        returns = frozenset(opts) or frozenset({"ALL"})  # RFC 4731 §3.1: () means ALL
        cur.xsp()
    if cur.try_keyword(b"CHARSET"):
        cur.xsp()
        raw = cur.xquoted() if cur.peek() == 0x22 else cur.xatom("charset").encode()
        charset = raw.decode("ascii", "replace").upper()
        if charset not in SUPPORTED_CHARSETS:
            raise RejectError(BADCHARSET_CODE, f"Unsupported charset {charset}")
        cur.xsp()
    budget = _KeyBudget()
    keys = [xsearch_key(cur, 0, budget)]
    while not cur.at_eol():
        cur.xsp()
        keys.append(xsearch_key(cur, 0, budget))
    cur.xeol()
    key = keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))
    return Search(tag, key, charset, uid, returns)
