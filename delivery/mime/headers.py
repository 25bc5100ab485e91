"""Header fields on raw bytes: splitting, unfolding, MIME parameters, RFC 2047 words.

Field values are kept as ``str`` decoded from UTF-8 with ``surrogateescape``, so raw
8-bit bytes (RFC 6532 or just broken mail) survive the round trip back to bytes for
the IMAP wire (``value.encode("utf-8", "surrogateescape")``).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re

#: RFC 5322 §2.2: a field name, then the colon; obsolete syntax (RFC 5322 §4.5) allows
#: white space before the colon, and real mail has 8-bit names, so only WSP, CTLs and
#: the colon are excluded.
_FIELD = re.compile(rb"([^\x00-\x20\x7f:]+)[ \t]*:")
_WSP = (0x20, 0x09)

#: Longest header section scanned for fields; past this the rest is ignored for
#: indexing (offsets are unaffected). Generous: real headers with 100 Received lines
#: stay under 64 KiB.
MAX_FIELDS = 2000


def split_fields(header: bytes) -> list[tuple[str, bytes]]:
    """The fields of a header section as (lower-case name, raw bytes incl. continuation
    lines and line ends), in order.  Lines that are no field and no continuation are
    kept under the name "" (so HEADER.FIELDS.NOT can keep them); blank lines are
    dropped.  At most ``MAX_FIELDS`` fields are returned."""
    names: list[str] = []
    chunks: list[list[bytes]] = []
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n", b"\r"):
            continue
        if line[0] in _WSP and chunks:
            # RFC 5322 §2.2.3: a line starting with WSP continues the previous field.
            chunks[-1].append(line)
            continue
        if len(names) >= MAX_FIELDS:
            break
        m = _FIELD.match(line)
        names.append(m.group(1).decode("latin-1").lower() if m else "")
        chunks.append([line])
    return [(name, b"".join(parts)) for name, parts in zip(names, chunks, strict=True)]


def field_value(raw_field: bytes) -> str:
    """The unfolded value of one raw field (after the colon), WSP-trimmed.

    RFC 5322 §2.2.3: unfolding removes each CRLF that precedes WSP; lone CR/LF are
    removed too so the value is a single line."""
    colon = raw_field.find(b":")
    value = raw_field[colon + 1:] if colon >= 0 else raw_field
    value = value.replace(b"\r\n", b"").replace(b"\n", b"").replace(b"\r", b"")
    return value.strip(b" \t").decode("utf-8", "surrogateescape")


class HeaderMap:
    """First-occurrence lookup of field values by lower-case name."""

    __slots__ = ("fields", "_first")

    def __init__(self, fields: list[tuple[str, bytes]]) -> None:
        self.fields = fields
        self._first: dict[str, bytes] = {}
        for name, raw in fields:
            if name and name not in self._first:
                self._first[name] = raw

    def get(self, name: str) -> str | None:
        """The unfolded value of the first field called ``name``, or None if absent."""
        raw = self._first.get(name)
        return None if raw is None else field_value(raw)

    def all(self, name: str) -> list[str]:
        return [field_value(raw) for n, raw in self.fields if n == name]


# --- MIME parameters (RFC 2045 §5.1, RFC 2183, RFC 2231) -----------------------------

_TYPE = re.compile(r"[ \t]*([^\s;/()\"]+)[ \t]*/[ \t]*([^\s;()\"]+)")
_DISP = re.compile(r"[ \t]*([^\s;()\"=]+)")
_ATTR = re.compile(r"[^\s;=()<>@,:\\\"/\[\]?]+")
_UNQUOTED_VALUE = re.compile(r"[^;\s\"]*")


def _skip_cfws(s: str, i: int) -> int:
    """Skip white space, ``;`` and RFC 5322 comments (nested) from ``i``."""
    n = len(s)
    while i < n:
        c = s[i]
        if c in " \t;":
            i += 1
        elif c == "(":
            depth = 0
            while i < n:
                if s[i] == "\\":
                    i += 2
                    continue
                if s[i] == "(":
                    depth += 1
                elif s[i] == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        else:
            break
    return i


def _quoted(s: str, i: int) -> tuple[str, int]:
    """The content of the quoted string opening at ``s[i] == '"'`` (RFC 5322 §3.2.4),
    and the index after it; an unterminated string runs to the end."""
    out: list[str] = []
    i += 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n:
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), i


def parse_params(s: str, i: int = 0) -> list[tuple[str, str]]:
    """Parameters ``; name=value`` from ``s[i:]``, tolerant: missing or doubled ``;``,
    comments, attributes without value (dropped), unterminated quotes.  Names keep
    their case; RFC 2231 sections are merged by :func:`merge_rfc2231`."""
    params: list[tuple[str, str]] = []
    n = len(s)
    while True:
        i = _skip_cfws(s, i)
        if i >= n:
            break
        m = _ATTR.match(s, i)
        if not m:
            i += 1
            continue
        name = m.group(0)
        i = m.end()
        while i < n and s[i] in " \t":
            i += 1
        if i >= n or s[i] != "=":
            continue
        i += 1
        while i < n and s[i] in " \t":
            i += 1
        if i < n and s[i] == '"':
            value, i = _quoted(s, i)
        else:
            mv = _UNQUOTED_VALUE.match(s, i)
            assert mv is not None  # the pattern matches the empty string
            value, i = mv.group(0), mv.end()
        params.append((name, value))
    return merge_rfc2231(params)


_SECTION = re.compile(r"^(.+?)\*([0-9]{1,3})(\*?)$")
#: RFC 2231 §7 attribute-char: what may stay unescaped in an extended value.
_ATTRIBUTE_CHAR = re.compile(r"[^A-Za-z0-9!#$&+\-.^_`|~]")


def merge_rfc2231(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Merge RFC 2231 §3 continuations (``name*0``, ``name*1*``...) into one parameter.

    Like Dovecot, the value is not decoded: if any section is extended (RFC 2231 §4),
    the result is ``name*`` = ``charset'lang'%XX...`` with the plain sections
    percent-encoded, so the IMAP wire stays ASCII and clients decode it as usual.
    The first occurrence of a name wins; order of first appearance is kept."""
    if not any("*" in name for name, _ in params):
        return _dedupe(params)
    merged: dict[str, dict[int, tuple[str, bool]]] = {}
    order: list[tuple[str, str | None]] = []  # (key, plain value or None for merged)
    for name, value in params:
        m = _SECTION.match(name)
        if m:
            base = m.group(1).lower()
            if base not in merged:
                merged[base] = {}
                order.append((m.group(1), None))
            merged[base].setdefault(int(m.group(2)), (value, bool(m.group(3))))
        else:
            order.append((name, value))
    out: list[tuple[str, str]] = []
    for name, plain in order:
        if plain is not None:
            out.append((name, plain))
            continue
        sections = merged[name.lower()]
        parts = [sections[k] for k in sorted(sections)]
        if any(ext for _, ext in parts):
            text = ""
            for v, ext in parts:
                if ext:
                    text += v
                else:
                    text += "".join(
                        f"%{b:02X}" if _ATTRIBUTE_CHAR.match(chr(b)) else chr(b)
                        for b in v.encode("utf-8", "surrogateescape"))
            if not parts[0][1]:
                text = "''" + text  # no charset section: RFC 2231 §4 empty charset/lang
            out.append((name + "*", text))
        else:
            out.append((name, "".join(v for v, _ in parts)))
    return _dedupe(out)


def _dedupe(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for name, value in params:
        key = name.lower()
        if key not in seen:
            seen.add(key)
            out.append((name, value))
    return out


def parse_content_type(value: str | None) -> tuple[str, str, list[tuple[str, str]]] | None:
    """``(type, subtype, params)`` with type and subtype lower-case, or None when the
    field is absent or has no valid ``type/subtype`` (RFC 2045 §5.2: then the default
    applies)."""
    if value is None:
        return None
    i = _skip_cfws(value, 0)
    m = _TYPE.match(value, i)
    if not m:
        return None
    return m.group(1).lower(), m.group(2).lower(), parse_params(value, m.end())


def parse_disposition(value: str | None) -> tuple[str, list[tuple[str, str]]] | None:
    """``(type, params)`` of Content-Disposition (RFC 2183 §2), or None when absent or
    without a type (``Content-Disposition: ;``)."""
    if value is None:
        return None
    m = _DISP.match(value, _skip_cfws(value, 0))
    if not m:
        return None
    return m.group(1), parse_params(value, m.end())


def param(params: list[tuple[str, str]], name: str) -> str | None:
    for key, value in params:
        if key.lower() == name:
            return value
    return None


# --- RFC 2047 encoded words and charsets ---------------------------------------------

_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"[ \t\r\n]*")


def lookup_charset(name: str | None) -> str:
    """A Python text codec name for a MIME charset; unknown or absent charsets, and
    names of codecs that are no text encoding, give ``utf-8`` (decoding then uses
    ``errors="replace"``). Never raises."""
    if not name:
        return "utf-8"
    name = name.strip().strip('"').lower()
    if name in ("us-ascii", "ascii", "ansi_x3.4-1968"):
        return "utf-8"  # a superset; 8-bit bytes in "ascii" mail are usually UTF-8
    try:
        codec = codecs.lookup(name).name
        b"x".decode(codec, "replace")  # a text encoding: not base64, zlib, rot13 (LookupError)
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        return "utf-8"
    return codec


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """``data`` as text: in ``charset`` if given, else UTF-8 falling back to
    Windows-1252 for raw 8-bit legacy headers.  Never raises."""
    if charset:
        return data.decode(lookup_charset(charset), "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _decode_word(charset: str, enc: str, text: str) -> str:
    charset = charset.split("*", 1)[0]  # RFC 2231 §5: charset*language
    raw = text.encode("ascii", "replace")
    if enc in "Qq":
        # RFC 2047 §4.2: "_" is space, =XX an octet.
        data = binascii.a2b_qp(raw.replace(b"_", b" "))
    else:
        data = b64decode_lenient(raw)
    return data.decode(lookup_charset(charset), "replace")


def decode_words(value: str) -> str:
    """``value`` with RFC 2047 encoded words decoded (RFC 2047 §6.2: white space
    between adjacent encoded words is dropped) and raw 8-bit bytes decoded as UTF-8
    (RFC 6532) or Windows-1252.  Never raises."""
    raw8 = value.encode("utf-8", "surrogateescape")
    if not raw8.isascii():
        value = decode_bytes(raw8)
    if "=?" not in value:
        return value
    out: list[str] = []
    pos = 0
    last_word_end = -1
    for m in _WORD.finditer(value):
        gap = value[pos:m.start()]
        if not (last_word_end == m.start() - len(gap) and last_word_end >= 0
                and _BETWEEN_WORDS.fullmatch(gap)):
            out.append(gap)
        out.append(_decode_word(m.group(1), m.group(2), m.group(3)))
        pos = last_word_end = m.end()
    out.append(value[pos:])
    return "".join(out)


def b64decode_lenient(data: bytes) -> bytes:
    """Base64 decoding that skips characters outside the alphabet and repairs missing
    padding, as mail readers do with broken senders.  Never raises."""
    clean = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    clean = clean[: len(clean) - len(clean) % 4 if len(clean) % 4 == 1 else len(clean)]
    clean += b"=" * (-len(clean) % 4)
    try:
        return base64.b64decode(clean)
    except (binascii.Error, ValueError):
        return b""
