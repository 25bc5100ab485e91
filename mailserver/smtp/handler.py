"""The SMTP decisions of one listener: asks auth/ and delivery/, answers with replies.

The protocol class (:mod:`mailserver.smtp.server`) parses commands and moves bytes; it
calls one method here per command and writes the :class:`~delivery.replies.Reply` it
gets back. Nothing here touches a socket.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from auth.errors import AuthFailed, AuthThrottled
from auth.login import Principal
from delivery import replies as R
from delivery.local import Committed, Delivery, Limits, MailTransaction
from delivery.message import Trace
from delivery.replies import Reply, ReplyError
from delivery.routing import Router
from mailserver import metrics
from mailserver.app import App
from mailserver.booking import booking_for, rooms_of
from storage.errors import StorageError

log = logging.getLogger("mailserver.smtp")


@dataclass(frozen=True, slots=True)
class ListenerPolicy:
    """How one SMTP listener behaves.

    ``implicit_tls``: TLS from the first byte (RFC 8314); ``starttls``: STARTTLS offered
    (RFC 3207); ``auth_required``: MAIL needs AUTH first (submission, RFC 6409 §4.3).
    """

    name: str
    implicit_tls: bool
    starttls: bool
    auth_required: bool


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    reply: Reply
    principal: Principal | None


class SmtpHandler:
    """Shared by every connection of one listener."""

    def __init__(self, app: App, policy: ListenerPolicy, delivery: Delivery) -> None:
        self.app = app
        self.policy = policy
        self.delivery = delivery
        config = app.config
        self.hostname = config.hostname
        self.max_message_size = int(config["limits.message_size"])
        self.max_line_length = int(config["limits.max_line_length"])
        self.allow_plaintext_on_loopback = bool(config["auth.allow_plaintext_on_loopback"])

    @classmethod
    def for_listener(cls, app: App, policy: ListenerPolicy, router: Router | None = None) -> SmtpHandler:
        config = app.config
        limits = Limits(
            max_recipients=int(config["limits.max_recipients"]),
            max_header_size=int(config["limits.max_header_size"]),
            max_hops=int(config["limits.max_hops"]),
        )
        router = router or Router(app.store.directory)
        return cls(app, policy, Delivery(app.store, router, config.hostname, limits))

    async def authenticate(self, username: str, password: str, authzid: str | None, client_ip: str) -> AuthOutcome:
        """AUTH: 235 with the principal, or 535 5.7.8 for every failure (RFC 4954 §6),
        454 4.7.0 while throttled, 451 4.3.0 when the directory is unavailable."""
        try:
            principal = await self.app.authenticator.authenticate(
                username, password, authzid=authzid, client_ip=client_ip
            )
        except AuthFailed:
            metrics.auth_failed("smtp")
            return AuthOutcome(R.R535_5_7_8_AUTH_INVALID, None)
        except AuthThrottled:
            return AuthOutcome(R.R454_4_7_0_AUTH_THROTTLED, None)
        except StorageError as err:
            log.error("AUTH: directory unavailable: %s", err)
            return AuthOutcome(R.R451_4_3_0_LOCAL_ERROR, None)
        log.info("AUTH ok user=%s mailbox=%s ip=%s", principal.user.address, principal.mailbox.address, client_ip)
        return AuthOutcome(R.R235_2_7_0_AUTH_OK, principal)

    async def mail(self, mail_from: str, principal: Principal | None) -> tuple[Reply, MailTransaction | None]:
        """MAIL FROM: start a transaction, or refuse."""
        if self.app.shutting_down:
            return R.R421_4_3_2_SHUTTING_DOWN, None  # RFC 5321 §3.8: no new transaction
        if self.policy.auth_required and principal is None:
            return R.R530_5_7_0_AUTH_REQUIRED, None  # RFC 6409 §4.3
        try:
            txn = await self.delivery.begin(mail_from, principal.user if principal else None)
        except ReplyError as err:
            return self._refused(err.reply), None
        except StorageError as err:
            log.error("MAIL: store unavailable: %s", err)
            return R.for_storage_error(err), None
        return R.R250_2_1_0_SENDER_OK, txn

    async def rcpt(self, txn: MailTransaction, address: str) -> Reply:
        """RCPT TO: the routing decision as a reply."""
        try:
            return self._refused(await self.delivery.add_recipient(txn, address))
        except StorageError as err:
            log.error("RCPT: store unavailable: %s", err)
            return R.for_storage_error(err)

    async def data(self, txn: MailTransaction, content: bytes, trace: Trace) -> Reply:
        """End of DATA: 250 only once the message is durably committed."""
        try:
            async with self.app.inflight.hold():
                with metrics.Timer() as timer:
                    committed: Committed = await self.delivery.commit(txn, content, trace)
        except ReplyError as err:
            if err.reply.code >= 500:
                log.info("DATA refused: %s", err.reply.line())
            return self._refused(err.reply)
        except StorageError as err:
            log.error("DATA: store unavailable: %s", err)
            return R.for_storage_error(err)
        metrics.message_accepted(self.policy.name, timer.seconds)
        booking_for(self.app).submit(rooms_of(txn), content, txn.sender.user)  # issue 5, after the commit
        return committed.reply

    def _refused(self, reply: Reply) -> Reply:
        """Count a 4xx/5xx decision in the metrics; return the reply unchanged."""
        if reply.code >= 400:
            metrics.message_rejected(self.policy.name, reply.code, reply.enhanced)
        return reply
