"""One mail transaction, from MAIL FROM to the durable commit.

A :class:`MailTransaction` collects the resolutions of its RCPT TOs, each final
recipient once across the whole transaction (direct recipients and list members
alike). :meth:`Delivery.commit` checks and edits the header section, then calls
:meth:`storage.interfaces.MailStore.deliver` exactly once: the body is stored once for
every local recipient, external recipients are queued in the same commit, and the
caller may answer 250 only after it returned.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from dataclasses import dataclass, field

from auth.addresses import InvalidAddress, normalize_address
from auth.login import may_log_in
from delivery import message
from delivery import replies as R
from delivery.mime_index import build_index
from delivery.replies import Reply, ReplyError
from delivery.routing import ListExpansion, LocalMailbox, Rejection, Relay, Router, SenderContext
from delivery.sender import authorize_headers, check_envelope_sender
from storage.errors import StorageError
from storage.interfaces import Store
from storage.types import Account, LocalRecipient, SpecialUse

log = logging.getLogger(__name__)

SEEN = "\\Seen"

#: Queue ids (in Received: and the logs) are a random per-process prefix and a counter:
#: unique across restarts with overwhelming odds, and without an os.urandom() system
#: call per message (which showed in the profile of the SMTP hot path).
_QUEUE_ID_PREFIX = secrets.token_hex(4)
_QUEUE_ID_COUNTER = itertools.count(1)


#: Messages up to this size are indexed for IMAP on the event loop: parsing takes under
#: about a millisecond there (0.1 ms for a plain 64 KiB message, 0.85 ms with 50 parts),
#: less than handing it to a thread costs under load. Larger ones (1 MiB with 200 parts:
#: 4 ms) are parsed on a worker thread so other sessions are not held up.
INDEX_ON_LOOP_BYTES = 128 * 1024


def index_json(body: bytes) -> str | None:
    """The IMAP index of ``body`` as stored with it, or None when it could not be built
    (IMAP then builds it at first use)."""
    try:
        return build_index(body).to_json()
    except Exception:  # noqa: BLE001 - the index is an optimisation; mail is still stored
        log.exception("could not index a message of %d octets", len(body))
        return None


def new_queue_id() -> str:
    """A fresh 16-hex-digit queue id."""
    return f"{_QUEUE_ID_PREFIX}{next(_QUEUE_ID_COUNTER) & 0xFFFFFFFF:08x}"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-message limits from config ``limits.*``."""

    max_recipients: int = 1000
    max_header_size: int = 102_400
    max_hops: int = 100


@dataclass(eq=False)
class MailTransaction:
    """The envelope of one transaction and its deduplicated recipients."""

    sender: SenderContext
    mail_from: str  # as given in MAIL FROM ("" = null sender)
    rcpts: list[str] = field(default_factory=list)  # accepted RCPT TO addresses, as given
    local: dict[int, Account] = field(default_factory=dict)
    #: external address -> the list it was reached through (None: named directly)
    remote: dict[str, str | None] = field(default_factory=dict)

    def add(self, rcpt: str, resolution: LocalMailbox | ListExpansion | Relay) -> None:
        """Record an accepted recipient; mailboxes and addresses already present are not added again."""
        self.rcpts.append(rcpt)
        if isinstance(resolution, LocalMailbox):
            self.local.setdefault(resolution.account.id, resolution.account)
        elif isinstance(resolution, ListExpansion):
            for account in resolution.local:
                self.local.setdefault(account.id, account)
            for address in resolution.remote:
                self.remote.setdefault(address.lower(), resolution.list.address)
        else:
            self.remote.setdefault(_lower_domain(resolution.address), None)


@dataclass(frozen=True, slots=True)
class Committed:
    queue_id: str
    reply: Reply


class Delivery:
    """Decisions and the commit for SMTP transactions; never touches a socket."""

    def __init__(self, store: Store, router: Router, hostname: str, limits: Limits) -> None:
        self._store = store
        self.router = router
        self._hostname = hostname
        self.limits = limits

    async def begin(self, mail_from: str, user: Account | None) -> MailTransaction:
        """Start a transaction at MAIL FROM.

        For an authenticated ``user`` the envelope sender must be one the user may use
        (raises ReplyError 550 5.7.60).
        """
        # One cheap version check per transaction: RCPT and the sender checks below then
        # read the in-memory snapshot (issue 9 §3), which reflects every directory change
        # committed before this MAIL FROM, by this process or another (the CLI).
        await self.router.directory.refresh()
        if user is not None:
            # Disabling, unlicensing or removing a user ends what its open sessions may do
            # at their next transaction, not only its next login.
            current = (await self.router.directory.snapshot()).resolve(user.address)
            if current is None or current.id != user.id or not may_log_in(current):
                raise ReplyError(R.R530_5_7_0_LOGIN_REVOKED)
            await check_envelope_sender(self.router.directory, user, mail_from)
        try:
            normal = normalize_address(mail_from) if mail_from else ""
        except InvalidAddress:
            normal = mail_from.lower()
        return MailTransaction(SenderContext(user, normal), mail_from)

    async def add_recipient(self, txn: MailTransaction, address: str) -> Reply:
        """Resolve one RCPT TO; the reply says whether it was accepted."""
        if len(txn.rcpts) >= self.limits.max_recipients:
            return R.R452_4_5_3_TOO_MANY_RECIPIENTS  # RFC 5321 §4.5.3.1.10
        resolution = await self.router.resolve(address, txn.sender)
        if isinstance(resolution, Rejection):
            return resolution.reply
        txn.add(address, resolution)
        return R.R250_2_1_5_RECIPIENT_OK

    async def commit(self, txn: MailTransaction, data: bytes, trace: message.Trace) -> Committed:
        """Check, complete and durably store the message.

        Raises ReplyError for a refused message (header too large, loop; on submission
        also a header section starting with a continuation line, sender not allowed,
        bad From:) and for a storage failure (451 4.3.0, logged). Returns only after the
        store committed.
        """
        parts = message.split(data)
        message.check_limits(parts, max_header_size=self.limits.max_header_size, max_hops=self.limits.max_hops)
        header = parts.header
        sent_copy: Account | None = None
        user = txn.sender.user
        if user is not None:
            message.check_start(parts)  # the fields added below would take its first line
            authorized = await authorize_headers(self.router.directory, user, header)
            # Added fields go first: a reader stops at the first line of the client's
            # header section that is no field, so fields appended after it were read as body.
            header = message.submission_fields(authorized.header, self._hostname) + authorized.header
            sent_copy = authorized.sent_copy
        queue_id = new_queue_id()
        trace_field = message.received(trace, queue_id, txn.rcpts)
        prefix = message.return_path(txn.mail_from) if txn.local or sent_copy else b""
        body = prefix + trace_field + header + parts.rest
        recipients = [LocalRecipient(account.id) for account in txn.local.values()]
        index: str | None = None
        if txn.local or sent_copy is not None:
            # Parsed once here for IMAP (envelope, body structure), stored in the same
            # commit as the body (issue 9 §2).
            if len(body) <= INDEX_ON_LOOP_BYTES:
                index = index_json(body)
            else:
                index = await asyncio.to_thread(index_json, body)
        try:
            if sent_copy is not None:
                recipients.append(LocalRecipient(sent_copy.id, await self._sent_folder(sent_copy), frozenset({SEEN})))
            await self._store.mail.deliver(
                body, recipients, mail_from=txn.mail_from, remote_recipients=list(txn.remote),
                index_json=index, via_list={a: dl for a, dl in txn.remote.items() if dl is not None},
            )
        except StorageError as err:
            log.error("delivery %s failed: %s", queue_id, err)
            raise ReplyError(R.for_storage_error(err), str(err)) from err
        log.info(
            "delivered %s from=<%s> local=%d remote=%d size=%d",
            queue_id, txn.mail_from, len(recipients), len(txn.remote), len(body),
        )
        return Committed(queue_id, R.R250_2_0_0_STORED.format(id=queue_id))

    async def _sent_folder(self, account: Account) -> str:
        """The name of the account's \\Sent folder (RFC 6154), "Sent" if none is marked."""
        for folder in await self._store.mail.list_folders(account.id):
            if folder.special_use is SpecialUse.SENT:
                return folder.name
        return "Sent"


def _lower_domain(address: str) -> str:
    """The address with its domain lower-cased (the local part of a remote address is
    case-sensitive, RFC 5321 §2.4)."""
    local, at, domain = address.rpartition("@")
    return f"{local}{at}{domain.lower()}"
