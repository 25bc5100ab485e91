"""Events returned by :class:`~mailserver.imap.parser.reader.CommandReader`.

The reader never raises for bad client input: every outcome is a value the
server turns into a response (h11 style).  Parsed commands are the frozen
dataclasses of :mod:`.commands`, :mod:`.search` and :mod:`.fetch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


class NeedData:
    """Sentinel type: the reader needs more bytes before it can say anything."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


@dataclass(frozen=True, slots=True)
class NeedsContinuation:
    """A synchronizing literal ``{size}`` was announced (RFC 3501 §7.5).

    The server must send a ``+`` continuation request before the client
    sends the ``size`` octets; then it keeps feeding and calling ``next_event``.
    """

    tag: str | None
    size: int


@dataclass(frozen=True, slots=True)
class BadCommand:
    """The command line is malformed; answer ``<tag> BAD <text>``.

    ``tag`` is ``None`` when no valid tag could be read (answer ``* BAD``).
    The reader has already skipped the rest of the command, so the
    connection stays usable.
    """

    tag: str | None
    text: str


@dataclass(frozen=True, slots=True)
class CommandRejected:
    """Syntactically valid but refused by the parser: answer ``<tag> NO [<code>] <text>``.

    Used for an unsupported SEARCH CHARSET (RFC 3501 §6.4.4 requires NO, not BAD),
    where ``code`` is e.g. ``BADCHARSET (US-ASCII UTF-8)``.
    """

    tag: str
    code: str
    text: str


@dataclass(frozen=True, slots=True)
class LiteralTooBig:
    """A literal larger than the reader's ``max_literal`` was announced.

    Returned before any literal octet is read.  Answer ``<tag> NO [TOOBIG]``
    (RFC 4469 / RFC 7888 §4) or BAD.  For a synchronizing literal the client
    sends nothing more for this command; for a non-synchronizing one
    (``synchronizing`` is False) the reader discards exactly ``size`` octets and
    the rest of the command by itself, so the server need do nothing else.
    """

    tag: str | None
    size: int
    synchronizing: bool
