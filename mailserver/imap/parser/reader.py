"""Incremental, sans-IO command reader (h11 style).

Feed it bytes with :meth:`CommandReader.feed`; call
:meth:`CommandReader.next_event` until it returns :data:`NEED_DATA`.  It frames
commands (CRLF or bare LF lines plus ``{n}`` / ``{n+}`` / ``~{n}`` literals,
RFC 3501 §4.3, RFC 7888, RFC 3516) and hands each complete command to
:func:`.grammar.parse_command`.
"""

from __future__ import annotations

import re

from .commands import Command
from .events import (
    NEED_DATA,
    BadCommand,
    CommandRejected,
    LiteralTooBig,
    NeedData,
    NeedsContinuation,
)
from .grammar import parse_command, read_tag

# Longest line (one segment between literals, without its CRLF) we buffer.
# RFC 7162 §4 asks servers to accept command lines of at least 8192 octets;
# a long UID set from a syncing client can be far longer, so allow 64 KiB,
# which Dovecot also uses (imap_max_line_length).
MAX_LINE_LENGTH = 65536
# Octets of one command outside its literals: all its lines together, CRLFs included.
# Literals can split a command into any number of lines, and every octet of those
# lines may become a parsed value (a search key, a range, a flag), so this bounds the
# parse as well as the buffer.  Two full lines: far beyond what any real command needs
# (a long UID set fits one line), small enough that the parse of the largest command
# stays around a few MiB.
MAX_COMMAND_TEXT = 2 * MAX_LINE_LENGTH
# Digits of a literal size we convert.  RFC 9051 literal8 sizes are 63-bit numbers
# (19 digits); longer digit strings are refused as too big without int(), which
# raises beyond 4,300 digits and would cost quadratic time before that.
MAX_SIZE_DIGITS = 20
# The size reported for a literal announced with more than MAX_SIZE_DIGITS digits.
UNREADABLE_SIZE = 10**MAX_SIZE_DIGITS
# Default literal limit: 25 MiB, the default message size in config.toml
# (limits.message_size).  The server may lower it before login.
DEFAULT_MAX_LITERAL = 26_214_400

# A line that ends in a literal marker, e.g. "a APPEND x {310}" or "{5+}".
# Any number of digits is recognised: a marker the reader did not see as a literal
# would let the octets after a {n+} run as commands (CRLF injection).
_LITERAL_AT_END = re.compile(rb"(~?)\{([0-9]+)(\+?)\}\Z")

Event = Command | NeedsContinuation | BadCommand | CommandRejected | LiteralTooBig | NeedData


class CommandReader:
    """Turns client bytes into IMAP command events.

    Invariants: at most ``MAX_LINE_LENGTH`` octets of an unfinished line and
    ``max_literal`` + ``MAX_COMMAND_TEXT`` octets of one command are held (its
    literals together at most ``max_literal``); after any :class:`BadCommand` or
    :class:`LiteralTooBig` the reader is at the start of the next command, once
    it has skipped the octets of a refused non-synchronizing literal (RFC 7888 §4).
    """

    def __init__(self, max_literal: int = DEFAULT_MAX_LITERAL) -> None:
        #: Largest literal accepted; may be changed between commands (e.g. after login).
        self.max_literal = max_literal
        self._buf = bytearray()
        self._cmd = bytearray()  # the command framed so far (lines with CRLF, literals)
        self._tag: str | None = None
        self._text = 0  # octets of the command's lines so far (literals excluded)
        self._literals = 0  # octets of the command's literals so far
        self._literal_left = 0  # octets of an accepted literal still to come
        self._announced = -1  # size of the last synchronizing literal announced
        self._discard_left = 0  # octets of a refused {n+} literal still to skip
        self._discarding = False  # skipping the rest of a refused command
        self._skip_line = False  # skipping the rest of an overlong line
        self._scanned = 0  # octets of _buf already searched for a line end

    def feed(self, data: bytes) -> None:
        """Append bytes received from the client."""
        self._buf += data

    @property
    def in_command(self) -> bool:
        """True while part of a command has been read (e.g. between a literal and its line)."""
        return bool(self._cmd) or self._literal_left > 0

    def next_event(self) -> Event:
        """The next event, or ``NEED_DATA`` when the buffered bytes are not enough.

        After a :class:`NeedsContinuation`, call this only once ``+`` was sent
        (or call :meth:`refuse_literal` instead).  Never raises for client input.
        """
        self._announced = -1
        while True:
            if self._discard_left:
                taken = min(self._discard_left, len(self._buf))
                del self._buf[:taken]
                self._discard_left -= taken
                if self._discard_left:
                    return NEED_DATA
                continue
            if self._literal_left:
                taken = min(self._literal_left, len(self._buf))
                self._cmd += self._buf[:taken]
                del self._buf[:taken]
                self._literal_left -= taken
                if self._literal_left:
                    return NEED_DATA
            line = self._next_line()
            if line is None:
                return NEED_DATA
            if isinstance(line, BadCommand):
                return line
            if self._discarding:
                m = _LITERAL_AT_END.search(line)
                if m and m.group(3):
                    self._discard_left = _size(m.group(2))
                else:
                    self._discarding = False
                continue
            event = self._on_line(line)
            if event is not None:
                return event

    def read_line_raw(self) -> bytes | NeedData | BadCommand:
        """One raw line without its line end, for AUTHENTICATE responses and IDLE's DONE.

        Call only between commands.  An overlong line gives ``BadCommand(None, ...)``
        and is skipped.
        """
        line = self._next_line()
        return NEED_DATA if line is None else line

    def refuse_literal(self) -> None:
        """Drop the command whose synchronizing literal was just announced.

        Call right after a :class:`NeedsContinuation`, instead of sending ``+``
        when the server answers the command with a tagged BAD or NO at once
        (RFC 3501 §7.5): the client then does not send the literal.

        Raises:
            RuntimeError: if no synchronizing literal is pending.
        """
        if self._announced < 0:
            raise RuntimeError("no synchronizing literal is pending")
        self._reset()

    # -- internals --------------------------------------------------------
    def _next_line(self) -> bytes | BadCommand | None:
        """Take one line (line end removed) from the buffer; None if incomplete.

        Overlong lines are skipped up to their line end and reported once.
        """
        while True:
            end = self._buf.find(b"\n", self._scanned)
            if end < 0:
                if self._skip_line:
                    self._buf.clear()
                    self._scanned = 0
                    return None
                self._scanned = len(self._buf)
                if self._scanned > MAX_LINE_LENGTH + 1:  # +1: a CR may end it
                    bad = self._overlong()
                    self._buf.clear()
                    self._scanned = 0
                    self._skip_line = True
                    return bad
                return None
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            self._scanned = 0
            if self._skip_line:
                self._skip_line = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > MAX_LINE_LENGTH:
                return self._overlong(line)
            return line

    def _overlong(self, start: bytes | None = None) -> BadCommand:
        if self._cmd:
            tag = self._tag
        else:
            tag = read_tag(start if start is not None else bytes(self._buf[:MAX_LINE_LENGTH]))
        self._reset()
        self._discarding = False
        return BadCommand(tag, "Command line too long")

    def _reset(self) -> None:
        self._cmd.clear()
        self._tag = None
        self._text = 0
        self._literals = 0
        self._literal_left = 0
        self._announced = -1

    def _on_line(self, line: bytes) -> Event | None:
        if not self._cmd:
            if not line.strip():
                return BadCommand(None, "Empty command line")
            self._tag = read_tag(line)
        tag = self._tag
        self._cmd += line + b"\r\n"
        self._text += len(line) + 2
        m = _LITERAL_AT_END.search(line)
        size, synchronizing = (_size(m.group(2)), not m.group(3)) if m else (0, True)
        if self._text > MAX_COMMAND_TEXT:
            self._refuse(size, synchronizing)
            return BadCommand(tag, "Command too long")
        if m is None:
            buf = bytes(self._cmd)
            self._reset()
            return parse_command(buf)
        if tag is None:
            # Garbage that announces a literal: refuse it now rather than
            # inviting the octets with "+" (RFC 3501 §7.5 allows BAD instead).
            self._refuse(size, synchronizing)
            return BadCommand(None, "Invalid tag")
        if size > self.max_literal:
            self._refuse(size, synchronizing)
            return LiteralTooBig(tag, size, synchronizing)
        if self._literals + size > self.max_literal:
            total = self._literals + size
            self._refuse(size, synchronizing)
            return BadCommand(tag, f"Literals of {total} octets in one command are over the limit of {self.max_literal}")
        self._literals += size
        self._literal_left = size
        if synchronizing:
            self._announced = size
            return NeedsContinuation(tag, size)
        return None

    def _refuse(self, size: int, synchronizing: bool) -> None:
        self._reset()
        if not synchronizing:  # RFC 7888 §4: read and discard the literal and the command
            self._discard_left = size
            self._discarding = True


def _size(digits: bytes) -> int:
    """A literal's announced size; UNREADABLE_SIZE for more than MAX_SIZE_DIGITS digits."""
    return int(digits) if len(digits) <= MAX_SIZE_DIGITS else UNREADABLE_SIZE
