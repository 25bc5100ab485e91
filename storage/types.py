"""Domain types of the mail store.

Everything that crosses the storage boundary is one of these frozen dataclasses or a
plain Python value: no SQL, no driver rows, no cursors.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class AccountKind(enum.StrEnum):
    """The four kinds of address an organisation has."""

    USER = "user"  # licensed person with a password
    SHARED = "shared"  # shared mailbox: no password, opened through Full Access
    ROOM = "room"  # resource mailbox that books itself
    LIST = "list"  # distribution list: expands to its members, has no folders


#: Kinds that own folders (everything except distribution lists).
MAILBOX_KINDS = frozenset({AccountKind.USER, AccountKind.SHARED, AccountKind.ROOM})


class Right(enum.StrEnum):
    """A grant from a mailbox (shared, room or list) to a user. The three are independent."""

    FULL_ACCESS = "full_access"
    SEND_AS = "send_as"
    SEND_ON_BEHALF = "send_on_behalf"


@dataclass(frozen=True, slots=True)
class Account:
    """One address of the organisation.

    ``address`` is stored lower-cased (local part and domain); ``settings`` is a small
    kind-specific document (list sender policy, room booking policy, shared mailbox
    copy-to-Sent flags, room capacity) that the layers above give a typed view.
    """

    id: int
    address: str
    kind: AccountKind
    display_name: str
    enabled: bool
    licensed: bool
    password_hash: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    created: datetime | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    mailbox: str  # address of the shared mailbox, room or list
    user: str  # address of the user holding the rights
    rights: frozenset[Right]


@dataclass(frozen=True, slots=True)
class Alias:
    alias: str
    target: str


# Special-use attributes, RFC 6154.
class SpecialUse(enum.StrEnum):
    DRAFTS = "\\Drafts"
    SENT = "\\Sent"
    TRASH = "\\Trash"
    JUNK = "\\Junk"
    ARCHIVE = "\\Archive"


#: Folders every user, shared and room mailbox has, created with the account.
DEFAULT_FOLDERS: tuple[tuple[str, SpecialUse | None], ...] = (
    ("INBOX", None),
    ("Drafts", SpecialUse.DRAFTS),
    ("Sent", SpecialUse.SENT),
    ("Trash", SpecialUse.TRASH),
    ("Junk", SpecialUse.JUNK),
    ("Archive", SpecialUse.ARCHIVE),
)


@dataclass(frozen=True, slots=True)
class Folder:
    """A folder's identity and counters at the time it was read.

    Invariants: ``uidnext`` only grows; a UID once given is never given again in this
    folder; ``uidvalidity`` never changes while the folder keeps its UIDs;
    ``highestmodseq`` grows with every change of a message in the folder.
    """

    id: int
    account_id: int
    name: str  # hierarchy separator is "/"; INBOX is always "INBOX"
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: SpecialUse | None
    subscribed: bool
    messages: int = 0
    unseen: int = 0


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """One message as it appears in one folder (no body)."""

    uid: int
    flags: frozenset[str]  # system flags with backslash (\\Seen) and keywords ($Forwarded)
    internal_date: datetime  # timezone-aware
    modseq: int
    size: int  # RFC822.SIZE: octets of the stored message
    blob_id: str  # content address (sha256 hex) of the body


@dataclass(frozen=True, slots=True)
class FlagChange:
    """Result of a STORE on one message."""

    uid: int
    flags: frozenset[str]
    modseq: int


@dataclass(frozen=True, slots=True)
class LocalRecipient:
    """Where a delivery transaction puts one copy."""

    account_id: int
    folder: str = "INBOX"
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What a committed delivery wrote: (account_id, folder name) -> UID, and the blob."""

    blob_id: str
    uids: dict[tuple[int, str], int]
    queue_id: int | None = None


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    address: str
    status: str  # "pending" | "delivered" | "failed"
    attempts: int
    last_error: str | None
    #: a "failed" recipient whose sender has been sent its DSN (or none is due)
    notified: bool = False
    #: the distribution list this external member was reached through (its envelope
    #: sender is rewritten to the list's bounce address), None for a direct recipient
    via_list: str | None = None


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """The outcome of one delivery attempt to one queued recipient."""

    address: str
    status: str  # "delivered" | "failed" (permanent) | "pending" (try again later)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """A message waiting for outbound delivery."""

    id: int
    mail_from: str
    recipients: tuple[QueuedRecipient, ...]
    blob_id: str
    created: datetime
    next_attempt: datetime
    attempts: int = 0  # delivery runs so far (indexes the retry schedule)
    warned: bool = False  # a delay warning DSN was sent


# -- calendars, task lists and address books (CalDAV/CardDAV, room booking)


class CollectionKind(enum.StrEnum):
    """What a calendar collection holds (RFC 4791 supported-calendar-component-set,
    RFC 6352 address book)."""

    CALENDAR = "calendar"  # VEVENT
    TASKS = "tasks"  # VTODO
    CONTACTS = "contacts"  # VCARD


#: Collections every user, shared and room mailbox has: (name, kind).
DEFAULT_COLLECTIONS: tuple[tuple[str, CollectionKind], ...] = (
    ("calendar", CollectionKind.CALENDAR),
    ("tasks", CollectionKind.TASKS),
    ("contacts", CollectionKind.CONTACTS),
)


@dataclass(frozen=True, slots=True)
class CalendarCollection:
    """One calendar, task list or address book of an account.

    ``props`` are WebDAV properties set by clients (display name, colour...), keyed as
    the DAV layer names them; ``modified`` changes with every change of an item.
    """

    id: int
    account_id: int
    name: str
    kind: CollectionKind
    props: dict[str, str]
    modified: datetime


@dataclass(frozen=True, slots=True)
class BusyInterval:
    """A span (UTC, ``start < end``) during which an event keeps its calendar busy."""

    start: datetime
    end: datetime
    uid: str = ""
    tentative: bool = False


@dataclass(frozen=True, slots=True)
class CalendarItem:
    """One iCalendar object (all components of one UID) or one vCard.

    ``etag`` is the sha256 hex of ``text``: it changes exactly when the text changes.
    """

    collection_id: int
    href: str
    uid: str
    text: str
    etag: str
    modified: datetime
