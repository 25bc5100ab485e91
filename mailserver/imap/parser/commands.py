"""Typed IMAP commands: one frozen dataclass per command kind.

Every command has the client's ``tag``.  ``UID FETCH`` and friends are the
plain command with ``uid=True``.  SEARCH and FETCH live in :mod:`.search`
and :mod:`.fetch`.  Mailbox names are decoded text (modified UTF-7 undone,
any case of INBOX given as ``INBOX``).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from .sequence import SequenceSet


@dataclass(frozen=True, slots=True)
class Command:
    """Base class of every parsed command."""

    tag: str


# -- any state (RFC 3501 §6.1) -----------------------------------------------
@dataclass(frozen=True, slots=True)
class Capability(Command):
    """CAPABILITY."""


@dataclass(frozen=True, slots=True)
class Noop(Command):
    """NOOP."""


@dataclass(frozen=True, slots=True)
class Logout(Command):
    """LOGOUT."""


@dataclass(frozen=True, slots=True)
class Id(Command):
    """ID (RFC 2971): ``params`` is None for ``ID NIL``, else (field, value-or-None) pairs."""

    params: tuple[tuple[str, str | None], ...] | None


# -- not authenticated (RFC 3501 §6.2) ---------------------------------------
@dataclass(frozen=True, slots=True)
class StartTLS(Command):
    """STARTTLS."""


@dataclass(frozen=True, slots=True)
class Login(Command):
    """LOGIN userid password (both UTF-8 text)."""

    userid: str
    password: str


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    """AUTHENTICATE mechanism [initial-response] (RFC 3501 §6.2.2, SASL-IR RFC 4959).

    ``mechanism`` is upper-cased.  ``initial_response`` is the base64-decoded
    initial response (``b""`` for ``=``), or None when none was sent.
    """

    mechanism: str
    initial_response: bytes | None


# -- authenticated (RFC 3501 §6.3) -------------------------------------------
@dataclass(frozen=True, slots=True)
class Select(Command):
    """SELECT mailbox [(CONDSTORE)] (RFC 7162 §3.1.8)."""

    mailbox: str
    condstore: bool = False


@dataclass(frozen=True, slots=True)
class Examine(Command):
    """EXAMINE mailbox [(CONDSTORE)]: SELECT, read-only."""

    mailbox: str
    condstore: bool = False


@dataclass(frozen=True, slots=True)
class Create(Command):
    """CREATE mailbox."""

    mailbox: str


@dataclass(frozen=True, slots=True)
class Delete(Command):
    """DELETE mailbox."""

    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename(Command):
    """RENAME existing new."""

    mailbox: str
    new_name: str


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    """SUBSCRIBE mailbox."""

    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    """UNSUBSCRIBE mailbox."""

    mailbox: str


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST, basic (RFC 3501 §6.3.8) or extended (RFC 5258, LIST-STATUS RFC 5819).

    ``selection`` holds upper-cased selection options (SUBSCRIBED, REMOTE,
    RECURSIVEMATCH); ``returns`` the return options (SUBSCRIBED, CHILDREN,
    SPECIAL-USE, STATUS); ``status_items`` the STATUS items when STATUS was
    asked for, else ().  ``extended`` is True if any extended syntax was used
    (selection options, several patterns, or RETURN).
    """

    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()
    returns: frozenset[str] = frozenset()
    status_items: tuple[str, ...] = ()
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    """LSUB reference pattern."""

    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Status(Command):
    """STATUS mailbox (items): items upper-cased, e.g. MESSAGES UIDNEXT HIGHESTMODSEQ."""

    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of an APPEND: flags, optional internal date, octets."""

    flags: tuple[str, ...]
    date_time: dt.datetime | None
    data: bytes
    binary: bool = False  # sent as literal8 ~{n} (RFC 3516)


@dataclass(frozen=True, slots=True)
class Append(Command):
    """APPEND mailbox [flags] [date-time] literal, repeated for MULTIAPPEND (RFC 3502)."""

    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class Enable(Command):
    """ENABLE capability... (RFC 5161), capabilities upper-cased."""

    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    """NAMESPACE (RFC 2342)."""


@dataclass(frozen=True, slots=True)
class Idle(Command):
    """IDLE (RFC 2177); the server then reads ``DONE`` with ``read_line_raw``."""


# -- selected (RFC 3501 §6.4) ------------------------------------------------
@dataclass(frozen=True, slots=True)
class Check(Command):
    """CHECK."""


@dataclass(frozen=True, slots=True)
class Close(Command):
    """CLOSE."""


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    """UNSELECT (RFC 3691)."""


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    """EXPUNGE, or UID EXPUNGE uid-set (RFC 4315 §2.1) when ``uids`` is set."""

    uids: SequenceSet | None = None

    @property
    def uid(self) -> bool:
        """True for UID EXPUNGE."""
        return self.uids is not None


class StoreMode(enum.Enum):
    """STORE data item: FLAGS replaces, +FLAGS adds, -FLAGS removes."""

    REPLACE = "FLAGS"
    ADD = "+FLAGS"
    REMOVE = "-FLAGS"


@dataclass(frozen=True, slots=True)
class Store(Command):
    """[UID] STORE set [(UNCHANGEDSINCE n)] (+|-)FLAGS[.SILENT] flags (RFC 3501 §6.4.6, RFC 7162)."""

    sequence_set: SequenceSet
    mode: StoreMode
    silent: bool
    flags: tuple[str, ...]
    uid: bool = False
    unchanged_since: int | None = None


@dataclass(frozen=True, slots=True)
class Copy(Command):
    """[UID] COPY set mailbox."""

    sequence_set: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Move(Command):
    """[UID] MOVE set mailbox (RFC 6851)."""

    sequence_set: SequenceSet
    mailbox: str
    uid: bool = False
