"""The MIME part tree of a raw message, on byte offsets (RFC 5322, RFC 2045-2046).

Boundaries are scanned on the raw bytes (the ``email`` package loses positions).
Every part records where its header starts (``hs``), where its body starts (``bs``,
just after the blank line, or the end of the header when there is none) and where
its body ends (``be``), so any FETCH section is a slice of the stored message.

Tolerance, as real mail needs: CRLF or bare LF line ends; a part with no blank line is
all header; an unclosed multipart ends where its parent's range ends; a missing or
invalid Content-Type is text/plain (RFC 2045 §5.2), message/rfc822 inside
multipart/digest (RFC 2046 §5.1.5); message/rfc822 with a base64 or quoted-printable
encoding is not parsed as a message (its inner bytes are not in the raw message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import wire
from .headers import HeaderMap, param, parse_content_type, parse_disposition, split_fields

#: Deepest nesting of multiparts and message/rfc822 parsed; deeper entities are
#: indexed as opaque leaves.  Real mail nests under 10; this stops recursion bombs.
MAX_DEPTH = 40
#: Most parts indexed per message; past this a multipart's last indexed part runs to
#: the end of its range.  The index is stored per message and loaded by FETCH, so a
#: message of 100,000 empty parts must not produce megabytes of JSON (about 200
#: octets of JSON per part).
MAX_PARTS = 1000

_BLANK_LINE = re.compile(rb"\n\r?\n")
_DEFAULT_TEXT = ("text", "plain", [("charset", "us-ascii")])
_DEFAULT_MESSAGE: tuple[str, str, list[tuple[str, str]]] = ("message", "rfc822", [])
#: RFC 2045 §6.1 / RFC 3030: encodings under which a message/rfc822 body is the
#: message itself (RFC 2046 §5.2.1 forbids the others, but they occur).
_IDENTITY_ENCODINGS = frozenset({"7BIT", "8BIT", "BINARY"})


@dataclass(slots=True)
class Part:
    """One MIME entity.

    ``hs``..``bs`` is its header including the blank line (for a message: the RFC
    5322 header; for a body part: the MIME header); ``bs``..``be`` its body.  For a
    multipart, ``children`` are its body parts (never empty: a multipart without
    parts gets one empty text/plain part, as the BODYSTRUCTURE grammar needs one).
    For a parsed message/rfc822, ``message`` is the encapsulated message, whose
    range is this part's body.  ``type``/``subtype`` are lower-case; ``charset`` is
    the charset parameter or ""; ``encoding`` the upper-case transfer encoding."""

    hs: int
    bs: int
    be: int
    type: str = "text"
    subtype: str = "plain"
    charset: str = ""
    encoding: str = "7BIT"
    children: list[Part] = field(default_factory=list)
    message: Part | None = None

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart"

    def to_list(self) -> list[object]:
        """Compact JSON form (see :meth:`from_list`)."""
        return [self.hs, self.bs, self.be, self.type, self.subtype, self.charset,
                self.encoding, [c.to_list() for c in self.children],
                self.message.to_list() if self.message is not None else None]

    @classmethod
    def from_list(cls, data: list[object]) -> Part:
        hs, bs, be, typ, sub, charset, enc, children, message = data
        assert isinstance(children, list)
        return cls(int(hs), int(bs), int(be), str(typ), str(sub), str(charset),  # type: ignore[call-overload]
                   str(enc), [cls.from_list(c) for c in children],
                   cls.from_list(message) if isinstance(message, list) else None)


@dataclass(slots=True)
class Parsed:
    """A parsed entity with its BODY (no extension data) and BODYSTRUCTURE wire forms,
    and its header fields."""

    part: Part
    body: bytes
    bodystructure: bytes
    headers: HeaderMap


class _Budget:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = 0


def parse_message(raw: bytes) -> Parsed:
    """Parse ``raw`` as a message (RFC 5322 header and body).  Never raises."""
    return _entity(raw, 0, len(raw), _DEFAULT_TEXT, 0, _Budget())


def _count_lines(raw: bytes, start: int, end: int) -> int:
    """RFC 3501 §7.4.2 body-fld-lines: the line ends (LF) in ``raw[start:end]``, as
    Dovecot and Stalwart count them (a last line without a line end is not counted)."""
    return raw.count(b"\n", start, end)


def _split_header(raw: bytes, start: int, end: int) -> int:
    """Offset of the body: after the first blank line, or ``end`` if there is none
    (RFC 5322 §2.1; an entity starting with a blank line has an empty header)."""
    if raw.startswith(b"\n", start) and start < end:
        return start + 1
    if raw.startswith(b"\r\n", start) and start + 1 < end:
        return start + 2
    m = _BLANK_LINE.search(raw, start, end)
    return end if m is None else m.end()


def _entity(raw: bytes, start: int, end: int,
            default: tuple[str, str, list[tuple[str, str]]], depth: int,
            budget: _Budget) -> Parsed:
    budget.parts += 1
    bs = _split_header(raw, start, end)
    headers = HeaderMap(split_fields(raw[start:bs]))
    ctype = parse_content_type(headers.get("content-type"))
    typ, sub, prm = ctype if ctype is not None else default
    cte = (headers.get("content-transfer-encoding") or "7BIT").split("(")[0].strip().upper()
    part = Part(start, bs, end, typ, sub, param(prm, "charset") or "", cte or "7BIT")

    if typ == "multipart":
        boundary = param(prm, "boundary")
        if boundary and depth < MAX_DEPTH:
            return _multipart(raw, part, boundary, prm, headers, depth, budget)
        # RFC 2046 §5.1.1 requires a boundary: without one, treat as text/plain.
        part.type, part.subtype, prm = _DEFAULT_TEXT
    if part.type == "text" and not part.charset:
        # RFC 2045 §5.2 / RFC 2046 §4.1.2: text without charset is US-ASCII; said
        # explicitly, as Dovecot and Stalwart do.
        prm = [*prm, ("charset", "us-ascii")]
    fields = _body_fields(part, prm, headers)
    ext = _basic_ext(headers)
    if typ == "message" and sub == "rfc822" and cte in _IDENTITY_ENCODINGS and depth < MAX_DEPTH:
        inner = _entity(raw, bs, end, _DEFAULT_TEXT, depth + 1, budget)
        part.message = inner.part
        lines = b" %d" % _count_lines(raw, bs, end)
        env = wire.envelope(inner.headers)
        body = b"(" + fields + b" " + env + b" " + inner.body + lines + b")"
        bstr = b"(" + fields + b" " + env + b" " + inner.bodystructure + lines + ext + b")"
        return Parsed(part, body, bstr, headers)
    if part.type == "text":
        fields += b" %d" % _count_lines(raw, bs, end)
    return Parsed(part, b"(" + fields + b")", b"(" + fields + ext + b")", headers)


def _body_fields(part: Part, prm: list[tuple[str, str]], headers: HeaderMap) -> bytes:
    """RFC 3501 §9 ``media-*`` SP ``body-fields``."""
    return b" ".join((
        wire.string(part.type.upper()), wire.string(part.subtype.upper()), wire.params(prm),
        wire.nstring(headers.get("content-id")), wire.nstring(headers.get("content-description")),
        wire.string(part.encoding), b"%d" % (part.be - part.bs)))


def _basic_ext(headers: HeaderMap) -> bytes:
    """RFC 3501 §9 ``body-ext-1part``: md5, disposition, language, location."""
    return b" " + b" ".join((
        wire.nstring(headers.get("content-md5")),
        wire.disposition(parse_disposition(headers.get("content-disposition"))),
        wire.language(headers.get("content-language")),
        wire.nstring(headers.get("content-location"))))


def _delimiters(raw: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int, bool]]:
    """(line start, next line start, is close-delimiter) of each delimiter line of
    ``boundary`` in ``raw[start:end]``, up to and including the close-delimiter.

    RFC 2046 §5.1.1: a delimiter line is ``--boundary`` at the start of a line,
    optionally ``--``, then only white space (so a boundary that is a prefix of an
    inner one does not match the inner one's lines)."""
    delim = b"--" + boundary
    found: list[tuple[int, int, bool]] = []
    pos = start
    while True:
        i = raw.find(delim, pos, end)
        if i < 0:
            return found
        j = i + len(delim)
        if i != start and raw[i - 1] != 0x0A:
            pos = i + 1
            continue
        eol = raw.find(b"\n", j, end)
        line_end = end if eol < 0 else eol + 1
        rest = raw[j:line_end]
        close = rest.startswith(b"--")
        if (rest[2:] if close else rest).strip(b" \t\r\n"):
            pos = j
            continue
        found.append((i, line_end, close))
        if close or len(found) > MAX_PARTS:
            return found
        pos = line_end


def _multipart(raw: bytes, part: Part, boundary: str, prm: list[tuple[str, str]],
               headers: HeaderMap, depth: int, budget: _Budget) -> Parsed:
    bs, end = part.bs, part.be
    default = _DEFAULT_MESSAGE if part.subtype == "digest" else _DEFAULT_TEXT
    delims = _delimiters(raw, bs, end, boundary.encode("utf-8", "surrogateescape"))
    children: list[Parsed] = []
    for k, (_, line_end, close) in enumerate(delims):
        if close:
            break
        if k + 1 < len(delims) and budget.parts < MAX_PARTS:
            nxt = delims[k + 1][0]
            # RFC 2046 §5.1.1: the line break before a delimiter belongs to it.
            ce = nxt - 1
            if ce > line_end and raw[ce - 1] == 0x0D:
                ce -= 1
            ce = max(ce, line_end)
        else:
            ce = end  # unclosed (or over budget): the last part runs to the end
        children.append(_entity(raw, line_end, ce, default, depth + 1, budget))
        if ce == end:
            break
    if not children:
        # The BODYSTRUCTURE grammar (RFC 3501 §9 body-type-mpart) needs one part.
        empty = Part(end, end, end)
        fields = b'"TEXT" "PLAIN" NIL NIL NIL "7BIT" 0 0'
        children.append(Parsed(empty, b"(" + fields + b")",
                               b"(" + fields + b" NIL NIL NIL NIL)", HeaderMap([])))
    part.children = [c.part for c in children]
    sub = wire.string(part.subtype.upper())
    body = b"(" + b"".join(c.body for c in children) + b" " + sub + b")"
    # RFC 3501 §9 body-ext-mpart: params, disposition, language, location.
    ext = b" ".join((
        wire.params(prm), wire.disposition(parse_disposition(headers.get("content-disposition"))),
        wire.language(headers.get("content-language")),
        wire.nstring(headers.get("content-location"))))
    bstr = b"(" + b"".join(c.bodystructure for c in children) + b" " + sub + b" " + ext + b")"
    return Parsed(part, body, bstr, headers)
