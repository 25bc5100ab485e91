"""The storage interfaces, in domain terms.

Every backend (``storage/sqlite``, later ``storage/postgres``) implements :class:`Store`
and passes ``tests/storage/test_contract.py`` unchanged. Rules for all backends:

* one method call is one atomic transaction: it happens entirely or not at all;
* a change is committed durably before the method returns and before any listener
  registered with :meth:`MailStore.add_listener` is told about it;
* addresses are compared case-insensitively and stored lower-cased;
* errors are the classes in :mod:`storage.errors`, never driver exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from storage.types import (
    Account,
    AccountKind,
    Alias,
    BusyInterval,
    CalendarCollection,
    CalendarItem,
    CollectionKind,
    DeliveryResult,
    FlagChange,
    Folder,
    Grant,
    LocalRecipient,
    MessageMeta,
    QueueEntry,
    RecipientResult,
    Right,
)

FlagMode = Literal["add", "remove", "replace"]


class Directory(Protocol):
    """Domains, accounts, aliases, grants, list members and licences."""

    async def version(self) -> int:
        """A number that changes whenever anything in the directory changes (any process).

        Caches compare it to know when to reload; it is cheap to call.
        """

    # -- domains
    async def add_domain(self, name: str) -> None:
        """Raises AlreadyExists."""

    async def remove_domain(self, name: str) -> None:
        """Raises NotFound; Conflict while accounts of the domain exist."""

    async def list_domains(self) -> list[str]: ...

    # -- accounts
    async def create_account(
        self,
        address: str,
        kind: AccountKind,
        display_name: str = "",
        *,
        password_hash: str | None = None,
        licensed: bool = False,
        settings: dict[str, Any] | None = None,
        max_seats: int | None = None,
    ) -> Account:
        """Create an account; user, shared and room accounts get DEFAULT_FOLDERS.

        ``licensed`` is only allowed for users, and with ``max_seats`` given the seat
        count is checked in the same transaction.
        Raises AlreadyExists (address or alias taken), NotFound (domain not local),
        SeatsExhausted, Conflict (licence on a non-user).
        """

    async def get_account(self, address: str) -> Account | None:
        """The account with exactly this address (aliases are not followed)."""

    async def get_account_by_id(self, account_id: int) -> Account | None: ...

    async def resolve(self, address: str) -> Account | None:
        """The account an address reaches: itself, or the target of an alias."""

    async def list_accounts(self, kind: AccountKind | None = None) -> list[Account]:
        """All accounts (of one kind), ordered by address."""

    async def remove_account(self, address: str) -> None:
        """Delete the account, its folders, messages, aliases, grants and memberships.

        Raises NotFound.
        """

    async def set_password_hash(self, address: str, password_hash: str | None) -> None:
        """Raises NotFound; Conflict if the account is not a user."""

    async def set_enabled(self, address: str, enabled: bool) -> None:
        """Raises NotFound."""

    async def set_licensed(self, address: str, licensed: bool, max_seats: int) -> None:
        """Assign or remove a licence seat.

        The seat count is checked inside the same transaction, so two concurrent
        assignments can never exceed ``max_seats``. Raises NotFound, Conflict (not a
        user), SeatsExhausted.
        """

    async def count_licensed(self) -> int: ...

    async def update_settings(self, address: str, changes: dict[str, Any]) -> Account:
        """Merge ``changes`` into the account's settings (a value of None deletes the key)."""

    async def set_display_name(self, address: str, display_name: str) -> None: ...

    # -- aliases
    async def add_alias(self, alias: str, target: str) -> None:
        """Raises AlreadyExists (alias is an address or alias), NotFound (target, domain)."""

    async def remove_alias(self, alias: str) -> None:
        """Raises NotFound."""

    async def list_aliases(self, target: str | None = None) -> list[Alias]: ...

    # -- grants
    async def grant(self, mailbox: str, user: str, rights: Iterable[Right]) -> frozenset[Right]:
        """Add rights; return the rights the user now holds on the mailbox.

        Raises NotFound; Conflict when ``user`` is not a user or ``mailbox`` is a user.
        """

    async def revoke(self, mailbox: str, user: str, rights: Iterable[Right]) -> frozenset[Right]:
        """Remove rights; return what remains. Raises NotFound."""

    async def rights(self, mailbox: str, user: str) -> frozenset[Right]:
        """The rights ``user`` holds on ``mailbox`` (empty when none or unknown)."""

    async def grants_on(self, mailbox: str) -> list[Grant]: ...

    async def grants_of(self, user: str) -> list[Grant]: ...

    # -- distribution list members (addresses: local accounts, aliases or external)
    async def add_members(self, list_address: str, members: Sequence[str]) -> None:
        """Raises NotFound (list), Conflict (not a list, or the list would contain itself,
        directly or through nested lists), AlreadyExists (already a member)."""

    async def remove_members(self, list_address: str, members: Sequence[str]) -> None:
        """Raises NotFound (list or member)."""

    async def members(self, list_address: str) -> list[str]:
        """Direct members, ordered as added."""

    async def lists_containing(self, address: str) -> list[str]: ...


class MailStore(Protocol):
    """Folders and messages of user, shared and room mailboxes."""

    def add_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(folder_id)`` (on the event loop) after each committed change
        to a folder's messages, flags or counters."""

    def remove_listener(self, listener: Callable[[int], None]) -> None: ...

    def add_queue_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (on the event loop) after each committed :meth:`deliver`
        of this store that queued remote recipients, so an outbound worker can start at
        once instead of at its next poll. Other processes' deliveries are not reported:
        workers still poll."""

    def remove_queue_listener(self, listener: Callable[[], None]) -> None: ...

    # -- folders
    async def list_folders(self, account_id: int) -> list[Folder]:
        """Folders with message and unseen counts, ordered by name (INBOX first)."""

    async def get_folder(self, account_id: int, name: str) -> Folder | None:
        """``name`` "inbox" in any case means INBOX."""

    async def create_folder(self, account_id: int, name: str) -> Folder:
        """Raises AlreadyExists. A new folder gets a fresh UIDVALIDITY."""

    async def delete_folder(self, account_id: int, name: str) -> None:
        """Raises NotFound; Conflict for INBOX."""

    async def rename_folder(self, account_id: int, old: str, new: str) -> None:
        """Rename (with children ``old/...``). Renaming INBOX moves its messages to a
        new folder ``new`` and leaves INBOX empty (RFC 3501 §6.3.5)."""

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None: ...

    # -- messages
    async def append(
        self,
        folder_id: int,
        body: bytes,
        flags: Iterable[str] = (),
        internal_date: datetime | None = None,
        *,
        index_json: str | None = None,
    ) -> MessageMeta:
        """Store a message; its UID is the folder's uidnext, which then grows.

        ``index_json`` is the body's parsed IMAP index (see :meth:`set_index`), stored
        with the body in the same transaction when given.
        Raises KeywordLimit (nothing stored) when ``flags`` break a bound of
        :mod:`storage.keywords`: too many or too long keywords for one message, or a
        keyword new to the folder when it already holds MAX_KEYWORDS_PER_FOLDER.
        """

    async def list_messages(self, folder_id: int, *, changed_since: int | None = None) -> list[MessageMeta]:
        """All messages of the folder by ascending UID (only those with modseq > changed_since)."""

    async def get_body(self, blob_id: str) -> bytes:
        """Raises NotFound."""

    # -- IMAP read paths (one query each, for large folders)
    async def get_folder_by_id(self, folder_id: int) -> Folder | None:
        """The folder with this id, with fresh counters (None once deleted)."""

    async def list_uids(self, folder_id: int) -> list[int]:
        """Every UID of the folder, ascending."""

    async def first_unseen_uid(self, folder_id: int) -> int | None:
        """The lowest UID without \\Seen, or None."""

    async def accepts_new_keywords(self, folder_id: int) -> bool:
        """Whether a keyword no message of the folder carries can be added now: fewer
        than MAX_KEYWORDS_PER_FOLDER distinct keywords in use (RFC 3501 §7.1: IMAP
        PERMANENTFLAGS lists \\* only then). True for an unknown folder."""

    async def fetch_range(
        self, folder_id: int, first_uid: int, last_uid: int, *, with_index: bool = False
    ) -> list[tuple[MessageMeta, str | None]]:
        """Messages with ``first_uid <= uid <= last_uid`` by ascending UID, each with its
        body's index (``index_json``; None when not asked for or not built yet)."""

    async def set_index(self, items: Sequence[tuple[str, str]]) -> None:
        """Store (blob_id, index_json) pairs in one transaction; unknown blobs are ignored.

        The index is derived from the body, so it never changes once written.
        """

    async def search_index(self, folder_id: int, field: str, needle: str) -> tuple[list[int], list[int]]:
        """SEARCH FROM, TO, CC, BCC or SUBJECT (RFC 3501 §6.4.4) on the bodies' index.

        ``field`` is the lower-case key name; the index (``index_json``) is a JSON object
        whose member "h" (absent when empty) maps such keys to decoded header values
        (see delivery.mime_index). Returns (UIDs whose value contains ``needle`` compared
        after ``str.casefold``, UIDs whose body has no usable index, for the caller to
        check itself), both ascending. An empty needle matches every message that has
        the field. Raises StorageError for another field name.
        """

    async def store_flags(
        self,
        folder_id: int,
        uids: Sequence[int],
        mode: FlagMode,
        flags: Iterable[str],
        *,
        unchanged_since: int | None = None,
    ) -> tuple[list[FlagChange], list[int]]:
        """Change flags; return (changes applied, UIDs refused by UNCHANGEDSINCE).

        Each changed message gets a new modseq (RFC 7162). Messages whose flags
        do not change are not in the result and keep their modseq.
        Raises KeywordLimit, and changes no message at all, when the change would add a
        keyword to a message and break a bound of :mod:`storage.keywords` (keywords per
        message, octets per keyword, distinct keywords per folder). Removing keywords
        and changing system flags are never refused.
        """

    async def expunge(self, folder_id: int, uids: Sequence[int] | None = None) -> list[int]:
        """Remove messages flagged \\Deleted (only those in ``uids`` when given);
        return the removed UIDs ascending."""

    async def copy(self, src_folder_id: int, uids: Sequence[int], dst_folder_id: int) -> list[tuple[int, int]]:
        """Copy; return (source UID, new UID) pairs. The body is not duplicated.

        The copies keep their flags; raises KeywordLimit (nothing copied) when their
        keywords break a bound of :mod:`storage.keywords` in the destination, as for
        :meth:`append`."""

    async def move(self, src_folder_id: int, uids: Sequence[int], dst_folder_id: int) -> list[tuple[int, int]]:
        """Copy then expunge the sources in one transaction (RFC 6851); KeywordLimit
        as :meth:`copy` (nothing moved)."""

    # -- local delivery
    async def deliver(
        self,
        body: bytes,
        recipients: Sequence[LocalRecipient],
        *,
        mail_from: str = "",
        remote_recipients: Sequence[str] = (),
        internal_date: datetime | None = None,
        index_json: str | None = None,
        via_list: Mapping[str, str] | None = None,
    ) -> DeliveryResult:
        """One delivery transaction: store the body once, add it to every recipient
        folder, and enqueue ``remote_recipients`` for outbound delivery, all in one
        durable commit. Nothing is visible before it returns; if it raises, nothing
        was written. Concurrent calls may share one physical commit (group commit).
        ``index_json`` is the body's IMAP index (as for :meth:`append`), stored in the
        same commit when given. ``via_list`` maps a remote recipient to the distribution
        list it was reached through (stored as :attr:`QueuedRecipient.via_list`, so the
        outbound worker sends it with the list's bounce address).
        A recipient's ``flags`` must respect the per-message bounds of
        :mod:`storage.keywords` (else KeywordLimit, nothing written); the folder bound
        is not applied, so mail is never refused for a folder's keywords.
        """


class OutboundQueue(Protocol):
    """Messages waiting for outbound delivery, with per-recipient state.

    Entries are created by :meth:`MailStore.deliver` (``remote_recipients``), in the
    delivery's own commit. Invariants:

    * a recipient's status moves only from "pending" to "delivered" or "failed", never
      back; "delivered" and "failed" recipients are never claimed or sent again;
    * an entry is claimed by at most one worker at a time: :meth:`claim_due` moves the
      claimed entries' ``next_attempt`` forward by the lease, so a worker that dies
      holding a claim loses it when the lease ends and the mail is tried again
      (at-least-once across crashes; a recipient recorded "delivered" is never resent);
      a worker still busy with an entry keeps its claim with :meth:`renew_claims`,
      which never overwrites a ``next_attempt`` someone else set meanwhile;
    * the body (blob) stays as long as the entry exists; removing the entry frees it
      unless a folder still holds it.
    """

    async def list_queue(self) -> list[QueueEntry]: ...

    async def get_queue_entry(self, entry_id: int) -> QueueEntry | None: ...

    async def claim_due(self, now: datetime, *, limit: int, lease: timedelta) -> list[QueueEntry]:
        """Atomically take up to ``limit`` entries due at ``now`` (``next_attempt <= now``)
        that still have a pending recipient or an unnotified failure, oldest due first,
        and set their ``next_attempt`` to ``now + lease``. Returns them as they are
        after the claim."""

    async def renew_claims(self, claims: Mapping[int, datetime], until: datetime) -> list[int]:
        """Extend claims still held, in one commit: ``claims`` maps entry id to the lease
        end the caller last set (``next_attempt`` as :meth:`claim_due` or an earlier
        renewal returned it); each entry whose ``next_attempt`` still equals that value
        gets ``until`` (compare-and-set). An entry rescheduled, retried, claimed again or
        removed meanwhile is left as it is. Returns the ids renewed, ascending."""

    async def record_results(self, entry_id: int, results: Sequence[RecipientResult]) -> None:
        """Record one attempt's per-recipient outcomes (attempts + 1, last error) in one
        commit. Only pending recipients change; unknown addresses are ignored. When this
        leaves nothing open (no recipient pending, no failure unnotified), the entry is
        removed in the same commit: a crash cannot leave a finished entry behind."""

    async def mark_notified(self, entry_id: int, addresses: Sequence[str]) -> None:
        """Record that the sender was told (DSN) about these failed recipients; the entry
        is removed in the same commit when nothing is left open (as in record_results)."""

    async def reschedule(self, entry_id: int, next_attempt: datetime, *, warned: bool | None = None) -> None:
        """End a run on the entry: ``attempts`` + 1, next try at ``next_attempt`` (and
        the delay-warning mark set when ``warned`` is given)."""

    async def retry_now(self, now: datetime, entry_id: int | None = None) -> int:
        """Make one entry (or all with ``entry_id`` None) due at ``now``; return how many
        entries with pending recipients were changed."""

    async def remove_queue_entry(self, entry_id: int) -> bool:
        """Delete the entry and its recipients; False when it did not exist."""


class CalendarStore(Protocol):
    """Calendars (VEVENT), task lists (VTODO) and address books (vCard) per account.

    Invariants: an item's ``href`` is unique in its collection and so is its ``uid``;
    ``etag`` changes exactly when the text does; an event item's busy intervals are
    replaced together with its text, in the same transaction, so conflict checks never
    see one without the other. Removing an account removes its collections.
    """

    async def ensure_default_collections(self, account_id: int) -> list[CalendarCollection]:
        """Create the missing :data:`~storage.types.DEFAULT_COLLECTIONS` of the
        account; return all its collections ordered by name. Raises NotFound."""

    async def list_collections(self, account_id: int) -> list[CalendarCollection]:
        """The account's collections ordered by name (none are created here)."""

    async def get_collection(self, account_id: int, name: str) -> CalendarCollection | None: ...

    async def create_collection(
        self, account_id: int, name: str, kind: CollectionKind, props: dict[str, str] | None = None
    ) -> CalendarCollection:
        """Raises AlreadyExists, NotFound (account)."""

    async def set_collection_props(self, collection_id: int, props: dict[str, str]) -> CalendarCollection:
        """Replace the collection's properties. Raises NotFound."""

    async def delete_collection(self, collection_id: int) -> None:
        """Delete the collection and its items. Raises NotFound."""

    async def list_items(self, collection_id: int) -> list[CalendarItem]:
        """All items ordered by href."""

    async def get_items(self, collection_id: int, hrefs: Sequence[str]) -> list[CalendarItem]:
        """The items with these hrefs (missing ones are left out)."""

    async def get_item_by_uid(self, collection_id: int, uid: str) -> CalendarItem | None: ...

    async def put_item(
        self,
        collection_id: int,
        href: str,
        uid: str,
        text: str,
        busy: Sequence[BusyInterval] = (),
        *,
        replace_uid: bool = False,
    ) -> tuple[CalendarItem, CalendarItem | None]:
        """Create or replace the item at ``href`` with its busy intervals; return
        (new item, replaced item or None). Another item with the same uid is a Conflict,
        unless ``replace_uid`` is set: then that item is removed in the same
        transaction. Raises NotFound (collection)."""

    async def delete_item(self, collection_id: int, href: str) -> CalendarItem | None:
        """Remove an item; return it (None when there was none)."""

    async def busy(
        self, collection_id: int, start: datetime, end: datetime, *, exclude_uid: str | None = None
    ) -> list[BusyInterval]:
        """Busy intervals of the collection overlapping ``[start, end)``, by start,
        leaving out those of ``exclude_uid``."""


#: Seconds :meth:`Locks.exclusive` waits by default before giving up with Unavailable:
#: as long as the store's own busy timeout, so a holder that is merely slow (one
#: booking decision, a few transactions) is waited for and a stuck one is reported.
DEFAULT_LOCK_TIMEOUT_SECONDS = 10.0


class Locks(Protocol):
    """Named locks shared by every process that uses the same store.

    Invariants (all backends, ``tests/storage/test_lock_contract.py``):

    * while one holder is inside ``exclusive(name)``, no other holder of the same
      ``name`` gets in: not another task, not another store object on the same
      database, not another process (two daemons on one PostgreSQL, the CLI beside a
      daemon on one SQLite file);
    * different names never wait for each other;
    * the lock is released when the block is left in any way: normally, by an
      exception, or by cancellation of the holding task; a waiter that is cancelled
      or times out never ends up holding it;
    * a waiter gives up after ``timeout`` seconds with :class:`storage.errors.Unavailable`
      (the block did not run); waiters of one process get the lock in arrival order;
    * not re-entrant: taking a name already held by the same task waits for itself
      until the timeout;
    * a lock protects only code that agrees to take it; it is advisory, and it is not a
      transaction: work done inside the block commits as each call commits.
    """

    def exclusive(
        self, name: str, timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS
    ) -> AbstractAsyncContextManager[None]:
        """``async with locks.exclusive(name):`` runs the block while holding ``name``.

        Raises Unavailable when the lock is not obtained within ``timeout`` seconds or
        the store cannot be reached.
        """
        ...


class Store(Protocol):
    directory: Directory
    mail: MailStore
    queue: OutboundQueue
    calendars: CalendarStore
    #: Cross-process named locks (see :class:`Locks`).
    locks: Locks

    async def close(self) -> None:
        """Finish in-flight writes and close the database."""
