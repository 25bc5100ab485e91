"""Response-side primitives: serialise IMAP values (RFC 3501 §4, §9).

Every function returns wire bytes ready to be joined into a response line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from .dates import format_date_time
from .lexer import is_astring_char
from .mutf7 import encode_mutf7

NIL = b"NIL"
# Longest string sent as a quoted string; longer ones go out as literals so a
# client never has to buffer a huge line (and RFC 3501 §4.3 quoted strings
# cannot hold 8-bit, CR or LF anyway).
MAX_QUOTED = 1024


def _quotable(data: bytes) -> bool:
    return len(data) <= MAX_QUOTED and all(0 < b < 0x80 and b not in (0x0A, 0x0D) for b in data)


def quoted(data: bytes) -> bytes:
    """``"..."`` with ``\\`` and ``"`` escaped.

    Raises:
        ValueError: if ``data`` holds NUL, CR, LF or 8-bit octets.
    """
    if any(b == 0 or b >= 0x80 or b in (0x0A, 0x0D) for b in data):
        raise ValueError("octets not allowed in a quoted string")
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(data: bytes) -> bytes:
    """``{n}`` CRLF followed by the octets (a server literal is never ``{n+}``)."""
    return b"{%d}\r\n" % len(data) + data


def string(value: bytes | str) -> bytes:
    """string: quoted when it can be, else a literal. ``str`` is sent as UTF-8."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    return quoted(data) if _quotable(data) else literal(data)


def nstring(value: bytes | str | None) -> bytes:
    """nstring: NIL for None, else :func:`string`."""
    return NIL if value is None else string(value)


def astring(value: bytes | str) -> bytes:
    """astring: a bare atom when safe (and not ``NIL``), else :func:`string`."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if data and data.upper() != NIL and all(is_astring_char(b) for b in data):
        return data
    return string(data)


def mailbox(name: str) -> bytes:
    """A mailbox name: modified UTF-7 (RFC 3501 §5.1.3), as an astring."""
    return astring(encode_mutf7(name))


def number(value: int) -> bytes:
    """A decimal number."""
    if value < 0:
        raise ValueError("IMAP numbers are unsigned")
    return b"%d" % value


def plist(items: Iterable[bytes]) -> bytes:
    """A parenthesised list of already-encoded items: ``(a b c)``."""
    return b"(" + b" ".join(items) + b")"


def flag_list(flags: Iterable[str]) -> bytes:
    """``(\\Seen $Forwarded)``: flags are atoms (system flags with their backslash)."""
    return plist(f.encode("ascii") for f in flags)


def date_time(value: dt.datetime) -> bytes:
    """Quoted date-time for INTERNALDATE: ``"17-Jul-1996 02:44:25 -0700"``."""
    return b'"' + format_date_time(value).encode("ascii") + b'"'
