"""Lexer for one complete IMAP command (RFC 3501 §9 formal syntax).

:class:`Cursor` walks a command buffer that the reader has already framed:
lines end in CRLF and every literal's octets follow its ``{n}`` marker.
Each ``x``-method consumes one grammar element or raises :class:`ParseError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from .mutf7 import MUTF7Error, decode_mutf7

# RFC 3501 §9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards /
# quoted-specials / resp-specials
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]')
_LIST_WILDCARDS = frozenset(b"%*")

T = TypeVar("T")


def is_atom_char(b: int) -> bool:
    """ATOM-CHAR: any CHAR (7-bit, not CTL) except atom-specials."""
    return 0x20 < b < 0x7F and b not in _ATOM_SPECIALS


def is_astring_char(b: int) -> bool:
    """ASTRING-CHAR = ATOM-CHAR / resp-specials."""
    return is_atom_char(b) or b == 0x5D


def _is_list_char(b: int) -> bool:
    return is_astring_char(b) or b in _LIST_WILDCARDS


_NUMBER = re.compile(rb"[0-9]+")
_LITERAL = re.compile(rb"(~?)\{([0-9]{1,32})(\+?)\}\r\n")
# number = 1*DIGIT ; unsigned 32-bit integer (RFC 3501 §9)
MAX_NUMBER = 2**32 - 1
# mod-sequence-value = 1*DIGIT ; 63-bit (RFC 7162 §7)
MAX_MODSEQ = 2**63 - 1


class ParseError(Exception):
    """Syntax error; ``str(err)`` is the text for the BAD response."""


class RejectError(Exception):
    """Valid syntax the parser refuses; becomes ``tag NO [code] text``."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class Cursor:
    """A position in a framed command buffer."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    # -- low level --------------------------------------------------------
    def peek(self) -> int:
        """The next octet, or -1 at the end of the buffer."""
        return self.buf[self.pos] if self.pos < len(self.buf) else -1

    def at_eol(self) -> bool:
        """True if only the final CRLF remains."""
        return self.buf.startswith(b"\r\n", self.pos)

    def try_byte(self, ch: bytes) -> bool:
        """Consume ``ch`` (one octet) if it comes next."""
        if self.buf.startswith(ch, self.pos):
            self.pos += 1
            return True
        return False

    def xbyte(self, ch: bytes, what: str) -> None:
        """Consume ``ch`` or fail with ``expected <what>``."""
        if not self.try_byte(ch):
            raise ParseError(f"Expected {what}")

    def xsp(self) -> None:
        """Consume exactly one SP."""
        self.xbyte(b" ", "space")

    def xeol(self) -> None:
        """Require the end of the command."""
        if not self.at_eol() or self.pos + 2 != len(self.buf):
            raise ParseError("Unexpected extra arguments")

    def try_keyword(self, word: bytes) -> bool:
        """Consume ``word`` (case-insensitive) if it is next and not followed by an atom char."""
        end = self.pos + len(word)
        if self.buf[self.pos : end].upper() == word and (
            end >= len(self.buf) or not is_atom_char(self.buf[end])
        ):
            self.pos = end
            return True
        return False

    # -- tokens -----------------------------------------------------------
    def _run(self, pred: Callable[[int], bool]) -> bytes:
        start = self.pos
        buf = self.buf
        n = len(buf)
        while self.pos < n and pred(buf[self.pos]):
            self.pos += 1
        return buf[start : self.pos]

    def xatom(self, what: str = "atom") -> str:
        """atom = 1*ATOM-CHAR, returned as ASCII text."""
        raw = self._run(is_atom_char)
        if not raw:
            raise ParseError(f"Expected {what}")
        return raw.decode("ascii")

    def xnumber(self, what: str = "number", limit: int = MAX_NUMBER) -> int:
        """number = 1*DIGIT, at most ``limit``."""
        m = _NUMBER.match(self.buf, self.pos)
        if not m or len(m.group()) > 20 or int(m.group()) > limit:
            raise ParseError(f"Expected {what}")
        self.pos = m.end()
        return int(m.group())

    def xnz_number(self, what: str = "non-zero number") -> int:
        """nz-number: a number greater than zero."""
        value = self.xnumber(what)
        if value == 0:
            raise ParseError(f"Expected {what}")
        return value

    def xnz_number_mod(self) -> int:
        """mod-sequence-value: a positive 63-bit number (RFC 7162 §7)."""
        value = self.xnumber("mod-sequence", MAX_MODSEQ)
        if value == 0:
            raise ParseError("Expected mod-sequence")
        return value

    def xquoted(self) -> bytes:
        """quoted = DQUOTE *QUOTED-CHAR DQUOTE, with backslash escapes removed.

        8-bit octets are accepted (UTF-8 SEARCH strings); CR, LF and NUL are not.
        """
        self.xbyte(b'"', "quoted string")
        out = bytearray()
        buf = self.buf
        while True:
            if self.pos >= len(buf):
                raise ParseError("Unterminated quoted string")
            b = buf[self.pos]
            self.pos += 1
            if b == 0x22:
                return bytes(out)
            if b == 0x5C:
                nxt = self.peek()
                if nxt not in (0x22, 0x5C):
                    raise ParseError("Invalid escape in quoted string")
                out.append(nxt)
                self.pos += 1
            elif b in (0x0D, 0x0A, 0x00):
                raise ParseError("Unterminated quoted string")
            else:
                out.append(b)

    def try_literal(self, allow_binary: bool = False) -> tuple[bytes, bool] | None:
        """literal = "{" number ["+"] "}" CRLF *CHAR8 (RFC 3501, RFC 7888).

        Returns ``(octets, is_literal8)`` or None if no literal comes next.
        ``~{n}`` (RFC 3516 literal8) is accepted only if ``allow_binary``.
        """
        m = _LITERAL.match(self.buf, self.pos)
        if not m:
            return None
        if m.group(1) and not allow_binary:
            raise ParseError("literal8 not allowed here")
        size = int(m.group(2))
        start = m.end()
        if start + size > len(self.buf):
            raise ParseError("Truncated literal")
        data = self.buf[start : start + size]
        if not m.group(1) and 0 in data:
            raise ParseError("NUL octet in literal")  # RFC 3501 §4.3: CHAR8 excludes NUL
        self.pos = start + size
        return data, bool(m.group(1))

    def xstring(self) -> bytes:
        """string = quoted / literal."""
        if self.peek() == 0x22:
            return self.xquoted()
        lit = self.try_literal()
        if lit is None:
            raise ParseError("Expected string")
        return lit[0]

    def xastring(self, what: str = "string") -> bytes:
        """astring = 1*ASTRING-CHAR / string."""
        b = self.peek()
        if b == 0x22 or b == 0x7B:
            return self.xstring()
        raw = self._run(is_astring_char)
        if not raw:
            raise ParseError(f"Expected {what}")
        return raw

    def xnstring(self) -> bytes | None:
        """nstring = string / nil."""
        if self.try_keyword(b"NIL"):
            return None
        return self.xstring()

    def xtext(self, what: str = "string") -> str:
        """An astring decoded as UTF-8 (user names, passwords, ID values)."""
        raw = self.xastring(what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(f"Invalid UTF-8 in {what}") from None

    def xmailbox(self) -> str:
        """mailbox = "INBOX" / astring, decoded from modified UTF-7.

        Any case of ``INBOX`` is returned as ``INBOX`` (RFC 3501 §5.1).
        """
        return _decode_mailbox(self.xastring("mailbox name"))

    def xlist_mailbox(self) -> str:
        """list-mailbox = 1*list-char / string (may hold ``%`` and ``*``)."""
        b = self.peek()
        raw = self.xstring() if b in (0x22, 0x7B) else self._run(_is_list_char)
        if not raw and b not in (0x22, 0x7B):
            raise ParseError("Expected mailbox pattern")
        return _decode_mailbox(raw)

    def xlist(self, item: Callable[[Cursor], T]) -> list[T]:
        """A parenthesised, space-separated list; ``item(cursor)`` parses each element."""
        self.xbyte(b"(", "(")
        out: list[T] = []
        if self.try_byte(b")"):
            return out
        while True:
            out.append(item(self))
            if self.try_byte(b")"):
                return out
            self.xsp()


def _decode_mailbox(raw: bytes) -> str:
    try:
        name = decode_mutf7(raw)
    except MUTF7Error as exc:
        raise ParseError(f"Invalid mailbox name: {exc}") from None
    return "INBOX" if name.upper() == "INBOX" else name
