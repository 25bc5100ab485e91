"""Message flags in commands (RFC 3501 §2.3.2, §9 ``flag``, ``flag-list``)."""

from __future__ import annotations

from .lexer import Cursor, ParseError

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_CANONICAL = {f.upper(): f for f in SYSTEM_FLAGS}


def xflag(cur: Cursor) -> str:
    """flag = system flag (returned in canonical case) / flag-keyword (atom, case kept).

    Raises:
        ParseError: for ``\\Recent`` (the client cannot set it, RFC 3501 §2.3.2)
            or any other unknown ``\\`` flag.
    """
    if cur.try_byte(b"\\"):
        word = "\\" + cur.xatom("flag")
        canonical = _CANONICAL.get(word.upper())
        if canonical is None:
            raise ParseError(f"Invalid system flag {word}")
        return canonical
    return cur.xatom("flag")


def xflag_list(cur: Cursor) -> tuple[str, ...]:
    """flag-list = "(" [flag *(SP flag)] ")", duplicates removed, order kept."""
    return tuple(dict.fromkeys(cur.xlist(xflag)))


def xflags_loose(cur: Cursor) -> tuple[str, ...]:
    """STORE's ``flag-list / (flag *(SP flag))``: with or without parentheses."""
    if cur.peek() == 0x28:
        return xflag_list(cur)
    flags = [xflag(cur)]
    while not cur.at_eol():
        cur.xsp()
        flags.append(xflag(cur))
    return tuple(dict.fromkeys(flags))
