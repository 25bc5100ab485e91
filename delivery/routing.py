"""Recipient routing at RCPT TO: an address in, a typed resolution out.

* a local user (licensed, enabled), shared mailbox or room: :class:`LocalMailbox`;
* an alias: whatever its target resolves to;
* a distribution list: :class:`ListExpansion` with every final recipient, after the
  list's sender policy allowed the sender;
* another domain: :class:`Relay` for authenticated senders, otherwise rejected;
* an address literal (``user@[192.0.2.1]``): never routed, rejected;
* a malformed or over-long address (RFC 5321 §4.1.2, §4.5.3.1): rejected, local or not;
* anything else: :class:`Rejection` carrying its reply.

Routing reads an in-memory directory snapshot (:mod:`auth.snapshot`), never writes
and never talks to the client; :mod:`delivery.local` collects the
resolutions of one transaction (deduplicating across them) and commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from auth.addresses import InvalidAddress, normalize_address, normalize_domain, parse_mailbox
from auth.settings import ListPolicy
from auth.snapshot import CachedDirectory, DirectorySnapshot
from delivery import replies as R
from delivery.replies import Reply
from storage.interfaces import Directory
from storage.types import Account, AccountKind

log = logging.getLogger(__name__)

#: Deepest nesting of lists expanded (mission-semantics §3.3: "maximum depth 10"); the
#: visited set already stops cycles, the depth bounds the work a deep chain can cause.
MAX_LIST_DEPTH = 10

#: The local part every SMTP server must accept for each of its domains (RFC 5321 §4.5.1).
POSTMASTER = "postmaster"


@dataclass(frozen=True, slots=True)
class SenderContext:
    """Who sends: the authenticated user (None: anonymous) and the envelope sender
    (normal form when it could be normalised, "" for the null sender)."""

    user: Account | None
    mail_from: str

    @property
    def authenticated(self) -> bool:
        return self.user is not None

    def addresses(self) -> frozenset[str]:
        """The addresses a list's allowed/blocked senders are compared with."""
        found = {self.mail_from} if self.mail_from else set()
        if self.user is not None:
            found.add(self.user.address)
        return frozenset(found)


@dataclass(frozen=True, slots=True)
class LocalMailbox:
    """Deliver to the INBOX of a user, shared mailbox or room."""

    account: Account


@dataclass(frozen=True, slots=True)
class ListExpansion:
    """A list's final recipients: local mailboxes (each once) and external addresses."""

    list: Account
    local: tuple[Account, ...]
    remote: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Relay:
    """An address of another domain, for the outbound queue."""

    address: str


@dataclass(frozen=True, slots=True)
class Rejection:
    reply: Reply


Resolution = LocalMailbox | ListExpansion | Relay | Rejection


def deliverable(account: Account) -> bool:
    """True when the account receives mail: enabled, and licensed if it is a user."""
    if not account.enabled:
        return False
    if account.kind is AccountKind.USER:
        return account.licensed
    return True


class Router:
    """Resolves recipients against an in-memory directory snapshot.

    ``directory`` is wrapped in a :class:`~auth.snapshot.CachedDirectory` unless it is
    one already; resolving reads the snapshot of the last refresh (no database round
    trip). Whoever starts a unit of work calls ``router.directory.refresh()`` first
    (:meth:`delivery.local.Delivery.begin` does, at MAIL FROM).
    """

    def __init__(
        self,
        directory: Directory,
        *,
        max_depth: int = MAX_LIST_DEPTH,
        list_bounce_sender: Callable[[str], str | None] | None = None,
        postmaster: str | None = None,
    ) -> None:
        """``list_bounce_sender(address)`` returns the original sender behind a list's
        bounce address (:mod:`delivery.outbound.bounces`), or None when ``address`` is
        not a valid one; without it, bounce addresses are unknown users.

        ``postmaster`` is where mail for the bare ``Postmaster`` recipient and for
        ``postmaster@<local domain>`` without an account of its own goes (RFC 5321
        §4.5.1 requires both to be accepted); None: they are unknown users."""
        self.directory = directory if isinstance(directory, CachedDirectory) else CachedDirectory(directory)
        self._max_depth = max_depth
        self._list_bounce_sender = list_bounce_sender
        self._postmaster = normalize_address(postmaster) if postmaster else None

    async def resolve(self, address: str, sender: SenderContext) -> Resolution:
        """Resolve one RCPT TO address for ``sender``. Never raises for bad input."""
        snap = await self.directory.snapshot()
        if address.strip().lower() == POSTMASTER and self._postmaster:
            address = self._postmaster  # RFC 5321 §4.5.1: "Postmaster" without a domain
        try:
            # RFC 5321 §4.1.2: split as a Mailbox, so that "%", "!" and a quoted "@" stay
            # inside the local part and never become a route (RFC 5321 §2.3.11).
            mailbox = parse_mailbox(address)
        except InvalidAddress as err:
            if err.problem.too_long:  # RFC 5321 §4.5.3.1
                return Rejection(R.R501_5_1_3_ADDRESS_TOO_LONG.format(detail=err.problem.value))
            return Rejection(R.R553_5_1_3_BAD_ADDRESS)
        if mailbox.is_literal or not _is_local(snap, mailbox.domain):
            if not sender.authenticated:
                return Rejection(R.R554_5_7_1_RELAY_DENIED)  # RFC 5321 §3.6.1: no open relay
            if mailbox.is_literal:
                return Rejection(R.R550_5_7_1_ADDRESS_LITERAL_DENIED)  # RFC 5321 §4.1.3
            return Relay(address)
        try:
            normal = normalize_address(address)
        except InvalidAddress:
            return Rejection(R.R550_5_1_1_USER_UNKNOWN.format(address=_printable(address)))
        account = snap.resolve(normal)
        if account is None and self._postmaster and normal.partition("@")[0] == POSTMASTER:
            # RFC 5321 §4.5.1: postmaster@ every local domain, to the one postmaster.
            account = snap.resolve(self._postmaster)
        if account is None:
            original = self._list_bounce_sender(normal) if self._list_bounce_sender else None
            if original is not None:
                return self._bounce_to_originator(snap, original)
            return Rejection(R.R550_5_1_1_USER_UNKNOWN.format(address=normal))
        if not deliverable(account):
            return Rejection(R.R550_5_2_1_MAILBOX_UNAVAILABLE)
        if account.kind is not AccountKind.LIST:
            return LocalMailbox(account)
        refusal = list_refusal(ListPolicy.of(account), sender)
        if refusal is not None:
            return Rejection(refusal)
        return self._expand(snap, account)

    def _bounce_to_originator(self, snap: DirectorySnapshot, original: str) -> Resolution:
        """A report sent to a list's bounce address goes to the sender of the list
        message (Exchange's ReportToOriginatorEnabled default, mission-semantics §3.1):
        the keyed hash in the address authorised it, so no AUTH is needed to relay it."""
        if original.rpartition("@")[2] not in snap.domains:
            return Relay(original)
        account = snap.resolve(original)
        if account is None or account.kind is AccountKind.LIST or not deliverable(account):
            return Rejection(R.R550_5_1_1_USER_UNKNOWN.format(address=original))
        return LocalMailbox(account)

    async def expand(self, dl: Account) -> ListExpansion:
        """Every final recipient of ``dl``: nested lists expanded depth-first with a
        visited set (so cycles end and the list never reaches itself), at most
        ``max_depth`` levels; each mailbox and external address once; members that are
        unknown, disabled or unlicensed are skipped (and logged)."""
        return self._expand(await self.directory.snapshot(), dl)

    def _expand(self, snap: DirectorySnapshot, dl: Account) -> ListExpansion:
        visited: set[int] = {dl.id}
        local: dict[int, Account] = {}
        remote: dict[str, None] = {}
        domains = snap.domains

        def walk(current: Account, depth: int) -> None:
            for member in snap.list_members(current.address):
                try:
                    normal = normalize_address(member)
                except InvalidAddress:
                    log.warning("list %s: skipping malformed member %r", current.address, member)
                    continue
                if normal.rpartition("@")[2] not in domains:
                    remote.setdefault(normal, None)
                    continue
                account = snap.resolve(normal)
                if account is None or not deliverable(account):
                    log.info("list %s: skipping member %s (unknown or unavailable)", current.address, normal)
                    continue
                if account.kind is AccountKind.LIST:
                    if account.id in visited:
                        continue  # a cycle, or a list reached twice: expanded once
                    if depth >= self._max_depth:
                        log.warning("list %s: nesting deeper than %d, %s not expanded",
                                    dl.address, self._max_depth, account.address)
                        continue
                    visited.add(account.id)
                    walk(account, depth + 1)
                else:
                    local.setdefault(account.id, account)

        walk(dl, 1)
        return ListExpansion(dl, tuple(local.values()), tuple(remote))


def _is_local(snap: DirectorySnapshot, domain: str) -> bool:
    """True when ``domain`` (any spelling, U-labels too) is one of the snapshot's domains."""
    if domain in snap.domains:  # the common case: already in normal form
        return True
    try:
        return normalize_domain(domain) in snap.domains
    except InvalidAddress:
        return False


def list_refusal(policy: ListPolicy, sender: SenderContext) -> Reply | None:
    """The reply refusing ``sender`` for a list with ``policy``, or None when allowed
    (Exchange RequireSenderAuthenticationEnabled, AcceptMessagesOnlyFrom,
    RejectMessagesFrom; mission-semantics §3.3)."""
    if policy.require_sender_authentication and not sender.authenticated:
        return R.R550_5_7_133_LIST_SENDER_NOT_AUTHENTICATED
    addresses = sender.addresses()
    if policy.blocked_senders and addresses & set(policy.blocked_senders):
        return R.R550_5_7_1_LIST_DELIVERY_NOT_AUTHORIZED
    if policy.allowed_senders and not addresses & set(policy.allowed_senders):
        return R.R550_5_7_124_LIST_SENDER_NOT_ALLOWED
    return None


def _printable(text: str) -> str:
    """``text`` safe to echo in a reply: printable ASCII only."""
    return "".join(c if 32 < ord(c) < 127 and c not in "<>" else "?" for c in text)[:254]
