"""Message index for IMAP: parse a message once, answer FETCH and SEARCH from it.

``build_index(raw)`` parses the message (RFC 5322 + MIME) a single time, at delivery
or APPEND, and records what IMAP needs without parsing again: the ENVELOPE, BODY and
BODYSTRUCTURE as ready IMAP wire strings (RFC 3501 §7.4.2), the part tree as byte
offsets into the raw message (so every BODY[section] is a slice), and the decoded
header values and sent date that SEARCH uses.  ``to_json``/``from_json`` store it
compactly per message; loading is lazy, so FETCH ENVELOPE decodes one JSON object
and copies bytes.

Pure: no I/O, no asyncio.  CPU cost is about linear in the message size; callers
on an event loop run ``build_index`` for large messages in a thread (STYLE.md #5).
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import json

from delivery.mime.headers import HeaderMap, decode_words
from delivery.mime.parts import MAX_DEPTH, MAX_PARTS, Part, parse_message
from delivery.mime.search import body_contains, decoded_header, header_contains
from delivery.mime.sections import Section, SectionLike, find_part, header_fields, partial
from delivery.mime.sections import section_bytes as _section_bytes
from delivery.mime.wire import envelope as _envelope

__all__ = [
    "MAX_DEPTH", "MAX_PARTS", "MAX_SEARCH_FIELD", "SEARCH_FIELDS", "SEARCH_WHERE", "IndexFormatError",
    "MessageIndex", "Part", "Section", "SectionLike", "build_index", "find_part",
    "header_fields", "matches_text", "partial", "section_bytes",
]

#: Version of the JSON layout; bump when it changes (old rows then need re-indexing).
FORMAT_VERSION = 1
#: Header fields whose decoded values the index keeps for SEARCH (RFC 3501 §6.4.4
#: FROM, TO, CC, BCC, SUBJECT), so those keys need no access to the message bytes.
SEARCH_FIELDS = ("from", "to", "cc", "bcc", "subject")
#: Longest decoded value kept per search field.  A To: line with thousands of
#: recipients would otherwise put megabytes into every stored index; SEARCH TO/CC
#: then only sees the first 16 KiB of such a list (documented limitation).
MAX_SEARCH_FIELD = 16 * 1024
#: Values of ``where`` accepted by :func:`matches_text`.
SEARCH_WHERE = frozenset({"BODY", "TEXT", "HEADER", "FROM", "TO", "CC", "BCC", "SUBJECT"})


class IndexFormatError(ValueError):
    """A stored index cannot be read (corrupt, or another FORMAT_VERSION)."""


class MessageIndex:
    """What IMAP FETCH and SEARCH need about one message.

    Attributes and properties:
      ``size``: octets of the raw message (RFC822.SIZE);
      ``envelope_wire``, ``body_wire``, ``bodystructure_wire``: the parenthesised
        ENVELOPE, BODY and BODYSTRUCTURE values exactly as sent after the item name
        (may contain IMAP literals ``{n}\\r\\n`` for 8-bit text);
      ``root``: the :class:`Part` tree with byte offsets (built lazily after
        ``from_json``);
      ``search_fields``: decoded (RFC 2047, unicode) values of From, To, Cc, Bcc and
        Subject, by lower-case name, only for fields present (repeated fields joined
        with ", ");
      ``sent_date``: the Date field's calendar date in its own zone (RFC 3501 §6.4.4
        SENTBEFORE/SENTON/SENTSINCE), or None if absent or unparseable.
    """

    __slots__ = ("size", "_env", "_body", "_bs", "_tree", "_root", "search_fields", "_date")

    def __init__(self, size: int, envelope: str, body: str, bodystructure: str,
                 tree: list[object] | None, root: Part | None,
                 search_fields: dict[str, str], sent_date: str | None) -> None:
        self.size = size
        self._env = envelope
        self._body = body
        self._bs = bodystructure
        self._tree = tree
        self._root = root
        self.search_fields = search_fields
        self._date = sent_date

    # Wire strings are held as latin-1 text (one char per octet), so JSON keeps them
    # without escaping and converting back is a plain copy.
    @property
    def envelope_wire(self) -> bytes:
        return self._env.encode("latin-1")

    @property
    def body_wire(self) -> bytes:
        return self._body.encode("latin-1")

    @property
    def bodystructure_wire(self) -> bytes:
        return self._bs.encode("latin-1")

    @property
    def root(self) -> Part:
        if self._root is None:
            assert self._tree is not None
            try:
                self._root = Part.from_list(self._tree)
            except (TypeError, ValueError, AssertionError) as exc:
                raise IndexFormatError(f"bad part tree: {exc}") from exc
        return self._root

    @property
    def sent_date(self) -> _dt.date | None:
        return None if self._date is None else _dt.date.fromisoformat(self._date)

    def to_json(self) -> str:
        """Compact JSON (UTF-8 safe text; non-ASCII wire octets appear as U+0080-U+00FF)."""
        tree = self._tree if self._tree is not None else self.root.to_list()
        doc: dict[str, object] = {"v": FORMAT_VERSION, "n": self.size, "e": self._env,
                                  "b": self._body, "s": self._bs, "p": tree}
        if self.search_fields:
            doc["h"] = self.search_fields
        if self._date is not None:
            doc["d"] = self._date
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> MessageIndex:
        """Load an index written by :meth:`to_json`.  Cheap: the part tree is only
        turned into objects when ``root`` is first used.

        Raises:
            IndexFormatError: not an index of this FORMAT_VERSION.
        """
        try:
            d = json.loads(text)
            if d["v"] != FORMAT_VERSION:
                raise IndexFormatError(f"index format {d['v']!r}, expected {FORMAT_VERSION}")
            return cls(d["n"], d["e"], d["b"], d["s"], d["p"], None, d.get("h", {}), d.get("d"))
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, IndexFormatError):
                raise
            raise IndexFormatError(f"unreadable message index: {exc}") from exc

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MessageIndex) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<MessageIndex size={self.size} envelope={self._env[:60]!r}...>"


def _sent_date(value: str | None) -> str | None:
    """RFC 5322 §3.3 date → ISO date in the field's own time zone, or None."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return _dt.date(parsed[0], parsed[1], parsed[2]).isoformat()
    except (ValueError, TypeError, OverflowError, IndexError):
        return None


def _search_fields(headers: HeaderMap) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in SEARCH_FIELDS:
        values = headers.all(name)
        if values:
            out[name] = ", ".join(decode_words(v[:MAX_SEARCH_FIELD])
                                  for v in values)[:MAX_SEARCH_FIELD]
    return out


def build_index(raw: bytes) -> MessageIndex:
    """Parse ``raw`` once and index it.  Never raises on malformed mail: whatever
    cannot be parsed is indexed by the RFC defaults (text/plain, NIL fields)."""
    parsed = parse_message(raw)
    return MessageIndex(
        len(raw),
        _envelope(parsed.headers).decode("latin-1"),
        parsed.body.decode("latin-1"),
        parsed.bodystructure.decode("latin-1"),
        None,
        parsed.part,
        _search_fields(parsed.headers),
        _sent_date(parsed.headers.get("date")),
    )


def section_bytes(raw: bytes, index: MessageIndex, section: SectionLike) -> bytes | None:
    """The octets of BODY[section] of ``raw`` (RFC 3501 §6.4.5), before any partial
    (apply :func:`partial` for ``<origin.length>``); None if the message has no such
    part (answer NIL).  ``section`` may be :class:`Section` or the IMAP parser's
    ``Section`` (same fields: parts, text, headers)."""
    return _section_bytes(raw, index.root, section)


def matches_text(raw: bytes, index: MessageIndex, needle: str, where: str,
                 field: str | None = None) -> bool:
    """RFC 3501 §6.4.4 text search keys, case-insensitive (``str.casefold``) substring
    on decoded text:

    - ``BODY``: the decoded text/* parts (transfer encoding and charset undone);
    - ``TEXT``: the decoded header fields or BODY;
    - ``HEADER`` with ``field``: some field of that name contains ``needle`` (empty
      needle: the field exists);
    - ``FROM``/``TO``/``CC``/``BCC``/``SUBJECT``: the decoded field value.  These read
      only ``index.search_fields``, never ``raw`` (callers may pass ``b""``).

    Raises:
        ValueError: unknown ``where``, or HEADER without ``field``.
    """
    where = where.upper()
    if where in ("FROM", "TO", "CC", "BCC", "SUBJECT"):
        value = index.search_fields.get(where.lower())
        return value is not None and needle.casefold() in value.casefold()
    if where == "HEADER":
        if not field:
            raise ValueError("HEADER search needs a field name")
        return header_contains(raw, index.root, field, needle)
    if where == "BODY":
        return body_contains(raw, index.root, needle)
    if where == "TEXT":
        root = index.root
        return (needle.casefold() in decoded_header(raw, root).casefold()
                or body_contains(raw, root, needle))
    raise ValueError(f"unknown search key {where!r}")
