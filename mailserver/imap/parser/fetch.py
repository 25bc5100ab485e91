"""FETCH attributes (RFC 3501 §6.4.5) and the CHANGEDSINCE modifier (RFC 7162 §3.1.4)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .commands import Command
from .lexer import Cursor, ParseError
from .sequence import SequenceSet, xsequence_set

# RFC 3501 §6.4.5 macros; FULL also has BODY.
MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
SIMPLE_ATTRS = frozenset({
    "ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
    "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ",
})
SECTION_TEXTS = ("HEADER.FIELDS.NOT", "HEADER.FIELDS", "HEADER", "TEXT", "MIME")
# Deepest MIME part path accepted (1.2.3...); real messages nest far less.
MAX_PART_DEPTH = 32
# Most items in one FETCH (after macros).  Real clients ask for about ten; every body
# section item repeats (part of) the message in the response, so this bounds how many
# times one command can make the server send a message (a 64 KiB line holds 5,000
# "BODY[]", which is 5,000 copies of a 25 MiB message).
MAX_FETCH_ATTRS = 64

_NAME = re.compile(rb"[A-Za-z0-9.]+")
_PART = re.compile(rb"[1-9][0-9]{0,9}(?:\.[1-9][0-9]{0,9})*")


@dataclass(frozen=True, slots=True)
class Section:
    """The ``[...]`` of BODY[...]: a part path and an optional text specifier.

    ``text`` is one of HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME or
    None (the whole part; with no parts, the whole message).  ``headers`` is the
    field list of HEADER.FIELDS (NOT), as the client wrote it.
    """

    parts: tuple[int, ...] = ()
    text: str | None = None
    headers: tuple[str, ...] = ()

    def __str__(self) -> str:
        spec = ".".join(str(p) for p in self.parts)
        if self.text:
            spec = f"{spec}.{self.text}" if spec else self.text
        if self.headers:
            spec += " (" + " ".join(self.headers) + ")"
        return spec


@dataclass(frozen=True, slots=True)
class FetchAttr:
    """One FETCH data item.

    ``name`` is upper-case: ENVELOPE, FLAGS, INTERNALDATE, RFC822, RFC822.HEADER,
    RFC822.SIZE, RFC822.TEXT, BODY, BODYSTRUCTURE, UID or MODSEQ.  ``section`` is
    set only for BODY[...] / BODY.PEEK[...] (``peek`` True: do not set \\Seen);
    ``partial`` is ``(origin, length)`` from ``<origin.length>``.
    """

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    def response_name(self) -> str:
        """The name the FETCH response uses: ``BODY[1.HEADER]<0>`` for BODY.PEEK[1.HEADER]<0.10>."""
        if self.section is None:
            return self.name
        out = f"BODY[{self.section}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}>"  # RFC 3501 §7.4.2: only the origin is echoed
        return out


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """[UID] FETCH set items [(CHANGEDSINCE n)].

    Macros are expanded.  For UID FETCH, ``attrs`` always includes UID
    (RFC 3501 §6.4.8); with CHANGEDSINCE it always includes MODSEQ (RFC 7162 §3.1.4.1).
    """

    sequence_set: SequenceSet
    attrs: tuple[FetchAttr, ...]
    uid: bool = False
    changed_since: int | None = None


def _xheader_name(cur: Cursor) -> str:
    raw = cur.xastring("header field name")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise ParseError("Invalid header field name") from None


def _xsection(cur: Cursor) -> Section:
    cur.xbyte(b"[", "[")
    parts: tuple[int, ...] = ()
    m = _PART.match(cur.buf, cur.pos)
    if m:
        parts = tuple(int(p) for p in m.group().split(b"."))
        if len(parts) > MAX_PART_DEPTH:
            raise ParseError("Section part path too deep")
        cur.pos = m.end()
        if cur.try_byte(b"]"):
            return Section(parts)
        cur.xbyte(b".", "section text")
    elif cur.try_byte(b"]"):
        return Section()
    for text in SECTION_TEXTS:
        if cur.try_keyword(text.encode()):
            break
    else:
        raise ParseError("Invalid section specifier")
    if text == "MIME" and not parts:
        raise ParseError("MIME needs a part number")  # RFC 3501 §9 section-text
    headers: tuple[str, ...] = ()
    if text.startswith("HEADER.FIELDS"):
        cur.xsp()
        headers = tuple(cur.xlist(_xheader_name))
        if not headers:
            raise ParseError("Empty header field list")
    cur.xbyte(b"]", "]")
    return Section(parts, text, headers)


def xfetch_attr(cur: Cursor) -> FetchAttr:
    """One fetch-att (no macros)."""
    m = _NAME.match(cur.buf, cur.pos)
    if not m:
        raise ParseError("Expected fetch attribute")
    name = m.group().decode("ascii").upper()
    cur.pos = m.end()
    if name in ("BODY", "BODY.PEEK") and cur.peek() == 0x5B:
        section = _xsection(cur)
        partial = None
        if cur.try_byte(b"<"):
            origin = cur.xnumber("partial origin")
            cur.xbyte(b".", ".")
            partial = (origin, cur.xnz_number("partial length"))
            cur.xbyte(b">", ">")
        return FetchAttr("BODY", section, partial, peek=name == "BODY.PEEK")
    if name not in SIMPLE_ATTRS:
        raise ParseError(f"Invalid fetch attribute {name}")
    return FetchAttr(name)


def _xmodifier(cur: Cursor) -> int:
    if not cur.try_keyword(b"CHANGEDSINCE"):
        raise ParseError("Unsupported FETCH modifier")
    cur.xsp()
    return cur.xnz_number_mod()


def parse_fetch(cur: Cursor, tag: str, uid: bool) -> Fetch:
    """Arguments of FETCH after the command name (cursor before the first SP)."""
    cur.xsp()
    seqset = xsequence_set(cur)
    cur.xsp()
    attrs: list[FetchAttr]
    if cur.peek() == 0x28:
        attrs = cur.xlist(xfetch_attr)
        if not attrs:
            raise ParseError("Empty fetch attribute list")
    else:
        start = cur.pos
        word = cur.xatom("fetch attribute").upper()
        if word in MACROS:
            attrs = [FetchAttr(a) for a in MACROS[word]]
        else:
            cur.pos = start
            attrs = [xfetch_attr(cur)]
    changed_since = None
    if not cur.at_eol():
        cur.xsp()
        mods = cur.xlist(_xmodifier)
        if len(mods) != 1:
            raise ParseError("Expected one CHANGEDSINCE modifier")
        changed_since = mods[0]
    cur.xeol()
    if len(attrs) > MAX_FETCH_ATTRS:
        raise ParseError(f"Too many fetch items (the limit is {MAX_FETCH_ATTRS})")
    if uid and not any(a.name == "UID" for a in attrs):
        attrs.append(FetchAttr("UID"))
    if changed_since is not None and not any(a.name == "MODSEQ" for a in attrs):
        attrs.append(FetchAttr("MODSEQ"))
    return Fetch(tag, seqset, tuple(attrs), uid, changed_since)
