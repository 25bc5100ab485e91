"""BODY[section] as slices of the raw message (RFC 3501 §6.4.5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .headers import split_fields
from .parts import Part


class SectionLike(Protocol):
    """What :func:`section_bytes` reads; ``mailserver.imap.parser.fetch.Section`` fits."""

    @property
    def parts(self) -> tuple[int, ...]: ...
    @property
    def text(self) -> str | None: ...
    @property
    def headers(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class Section:
    """A section specifier: part path, text specifier (HEADER, HEADER.FIELDS,
    HEADER.FIELDS.NOT, TEXT, MIME or None) and the HEADER.FIELDS field names."""

    parts: tuple[int, ...] = ()
    text: str | None = None
    headers: tuple[str, ...] = ()


def _numbered(message: Part) -> list[Part]:
    """The parts numbered 1..n inside a message: a multipart body's parts, else the
    body itself as part 1 (RFC 3501 §6.4.5: "every message has at least one part
    number")."""
    return message.children if message.is_multipart else [message]


def find_part(root: Part, path: tuple[int, ...]) -> Part | None:
    """The part a numeric path names, or None if there is no such part.

    RFC 3501 §6.4.5: numbers index the parts of a multipart; for a part of type
    MESSAGE/RFC822 the next number indexes the parts of the encapsulated message."""
    level = _numbered(root)
    cur: Part | None = None
    for n in path:
        if not 1 <= n <= len(level):
            return None
        cur = level[n - 1]
        if cur.is_multipart:
            level = cur.children
        elif cur.message is not None:
            level = _numbered(cur.message)
        else:
            level = []
    return cur


def _blank_line(header: bytes) -> bytes:
    """The line end the header section uses (its blank line), CRLF by default."""
    return b"\n" if header.endswith(b"\n") and not header.endswith(b"\r\n") else b"\r\n"


def header_fields(header: bytes, names: tuple[str, ...] | list[str], exclude: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT (RFC 3501 §6.4.5): the fields whose name is
    (or, with ``exclude``, is not) in ``names``, compared case-insensitively, with
    their continuation lines, in message order, followed by the blank line."""
    wanted = {n.lower() for n in names}
    kept = [raw for name, raw in split_fields(header) if (name in wanted) != exclude
            and (name or exclude)]
    return b"".join(kept) + _blank_line(header)


def section_bytes(raw: bytes, root: Part, section: SectionLike) -> bytes | None:
    """The octets of BODY[section] (before any ``<partial>``), or None when the
    section does not exist in this message (the server then answers NIL).

    HEADER/TEXT after a part path apply to the encapsulated message of a
    MESSAGE/RFC822 part; on another part they give its MIME header and its body,
    as Dovecot does.  MIME needs a part path (RFC 3501 §6.4.5)."""
    text = (section.text or "").upper() or None
    if not section.parts:
        target = root
        if text is None:
            return raw
        if text == "MIME":
            return None
    else:
        part = find_part(root, tuple(section.parts))
        if part is None:
            return None
        if text is None:
            return raw[part.bs:part.be]
        if text == "MIME":
            return raw[part.hs:part.bs]
        target = part.message if part.message is not None else part
    if text == "HEADER":
        return raw[target.hs:target.bs]
    if text == "TEXT":
        return raw[target.bs:target.be]
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return header_fields(raw[target.hs:target.bs], section.headers,
                             text == "HEADER.FIELDS.NOT")
    return None


def partial(data: bytes, origin: int, length: int | None = None) -> bytes:
    """``<origin.length>`` of a section (RFC 3501 §6.4.5): empty when ``origin`` is
    past the end; ``length`` None means to the end."""
    if origin >= len(data):
        return b""
    return data[origin:] if length is None else data[origin:origin + length]
