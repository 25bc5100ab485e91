"""The outbound queue worker.

Each run claims the due entries (:meth:`OutboundQueue.claim_due`, a short lease so
that no entry is worked on twice, renewed every :data:`CLAIM_RENEW_INTERVAL` while the
run still holds the entry), splits each entry's pending recipients by destination
domain and envelope sender, and sends the groups concurrently, bounded in total and
per domain. Every group's per-recipient results are committed as soon as its SMTP
transaction ends (at the DATA reply, before QUIT), so a recipient recorded "delivered"
is never sent again, even after a crash; a crash between the remote 250 and that
commit can cause one duplicate, which RFC 5321 §6.1 prefers to a loss. A daemon
killed while holding claims leaves them to run out within :data:`CLAIM_LEASE`; the
next worker then takes the mail.

After the sends: permanently failed recipients produce one DSN to the envelope sender
(RFC 3464; never to the null sender), delivered locally or queued; the entry is
removed when nothing is left, otherwise rescheduled on the retry schedule, with an
optional delay warning and expiry after ``max_age``.

Everything from outside is injected: the store, a :class:`~.routes.Resolver`, a
:class:`~.client.Dialer`, the clock and the MX shuffle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from delivery.outbound import bounces, client, dsn
from delivery.outbound.client import Dialer, Outcome
from delivery.outbound.dkim import DkimSigner
from delivery.outbound.routes import MailHost, Resolver, RouteError, resolve_route
from delivery.outbound.settings import OutboundSettings
from storage.errors import NotFound, StorageError
from storage.interfaces import Store
from storage.types import (
    MAILBOX_KINDS,
    LocalRecipient,
    QueuedRecipient,
    QueueEntry,
    RecipientResult,
)

log = logging.getLogger(__name__)

#: How long a claim reserves an entry without being renewed. Short, because a worker
#: that dies holding claims (kill -9, power loss) delays those entries by up to this
#: much after a restart; a run that takes longer (several hosts, each command allowed
#: the 300 s timeout, can take many minutes) keeps its claim by renewing it every
#: CLAIM_RENEW_INTERVAL. Daemons sharing one PostgreSQL store must keep their clocks
#: well within this of each other (NTP), since one's lease is judged by another's now.
CLAIM_LEASE = timedelta(minutes=2)

#: How often the entries a run holds have their claim renewed (to now + CLAIM_LEASE).
#: A quarter of the lease: three renewals in a row may be late or fail (a busy store,
#: a stalled loop) before another worker can take an entry that is still being sent.
CLAIM_RENEW_INTERVAL = timedelta(seconds=30)

#: Entries claimed per run: enough to keep every connection slot busy, few enough that
#: one run's bodies stay small in memory.
CLAIM_BATCH = 100

#: How often queue size and oldest age are logged while the queue is not empty.
STATS_INTERVAL = timedelta(minutes=1)


def utc_now() -> datetime:
    return datetime.now(UTC)


def strip_return_path(message: bytes) -> bytes:
    """Drop leading Return-Path fields: the final delivery adds its own (RFC 5321 §4.4)."""
    while message[:12].lower() == b"return-path:":
        end = message.find(b"\r\n")
        if end < 0:
            return b""
        message = message[end + 2:]
        while message[:1] in (b" ", b"\t"):
            nxt = message.find(b"\r\n")
            message = b"" if nxt < 0 else message[nxt + 2:]
    return message


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


class OutboundWorker:
    """Delivers the outbound queue. ``await start()`` / ``await stop(grace)``, or drive
    it with :meth:`run_once` (tests)."""

    def __init__(
        self,
        store: Store,
        settings: OutboundSettings,
        resolver: Resolver,
        *,
        clock: Callable[[], datetime] = utc_now,
        dialer: Dialer | None = None,
        shuffle: Callable[[list[MailHost]], None] = random.shuffle,
        on_delivered: Callable[[float], None] | None = None,
    ) -> None:
        """``on_delivered(seconds)`` is told, for each recipient handed over, how long
        it waited since it was queued (the daemon feeds its delivery-latency metric)."""
        self._store = store
        self._on_delivered = on_delivered
        self.settings = settings
        self._resolver = resolver
        self._clock = clock
        self._dialer = dialer or Dialer(settings.hostname, settings.remote_port, settings.timeout)
        self._shuffle = shuffle
        self._signer = (
            DkimSigner(settings.dkim_key_dir, settings.dkim_selector) if settings.dkim_key_dir else None
        )
        self._total = asyncio.Semaphore(settings.max_connections)
        self._per_domain: dict[str, asyncio.Semaphore] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[int] = set()
        #: Entry id -> the lease end this worker last set for it (claim or renewal):
        #: the claims the heartbeat renews, each by compare-and-set on that value.
        self._held: dict[int, datetime] = {}
        self._last_stats: datetime | None = None

    # -- lifecycle

    async def start(self) -> None:
        """Start the background loop (idempotent)."""
        if self._task is None:
            self._store.mail.add_queue_listener(self.wake)  # new mail goes out at once
            self._task = asyncio.create_task(self._loop(), name="outbound-worker")

    def wake(self) -> None:
        """Run now instead of at the next poll (new mail was queued, or `queue retry`)."""
        self._wake.set()

    async def stop(self, grace: float = 5.0) -> None:
        """Let the current run finish for up to ``grace`` seconds, then cancel it. Entries
        whose run was cut are made due again at once, so a restart picks them up."""
        task, self._task = self._task, None
        if task is None:
            return
        self._store.mail.remove_queue_listener(self.wake)
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except asyncio.CancelledError:
            task.cancel()
            raise
        for entry_id in list(self._inflight):
            with contextlib.suppress(StorageError):
                await self._store.queue.retry_now(self._clock(), entry_id)
        self._inflight.clear()

    _stopping = False

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self.run_once()
                await self._log_stats()
            except StorageError as err:
                log.error("outbound queue: %s", err)
            except Exception:  # one bad run must not end the worker
                log.exception("outbound worker run failed")
            if self._stopping:
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)

    async def _log_stats(self) -> None:
        now = self._clock()
        if self._last_stats is not None and now - self._last_stats < STATS_INTERVAL:
            return
        self._last_stats = now
        entries = await self._store.queue.list_queue()
        if entries:
            oldest = min(e.created for e in entries)
            log.info("outbound queue: %d messages, oldest %ds", len(entries), (now - oldest).total_seconds())

    # -- one run

    async def run_once(self) -> int:
        """Claim every due entry (in batches) and work on them; return how many were
        claimed. While it runs, a heartbeat renews the claims it holds."""
        total = 0
        heartbeat = asyncio.create_task(self._heartbeat(), name="outbound-claims")
        try:
            while not self._stopping:
                entries = await self._store.queue.claim_due(self._clock(), limit=CLAIM_BATCH, lease=CLAIM_LEASE)
                for e in entries:  # ours now, also an entry already in flight here (claimed again after a retry)
                    self._held[e.id] = e.next_attempt
                entries = [e for e in entries if e.id not in self._inflight]
                if not entries:
                    break
                total += len(entries)
                await asyncio.gather(*(self._process(e) for e in entries))
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        return total

    async def _heartbeat(self) -> None:
        """Renew the held claims every CLAIM_RENEW_INTERVAL until cancelled."""
        while True:
            await asyncio.sleep(CLAIM_RENEW_INTERVAL.total_seconds())
            try:
                await self.renew_claims()
            except Exception:  # the next beat tries again; the claims last CLAIM_LEASE
                log.exception("outbound: renewing claims failed")

    async def renew_claims(self) -> int:
        """Extend every claim this worker holds to now + CLAIM_LEASE (now from the
        worker's clock), where the entry's ``next_attempt`` is still the lease this
        worker set: a retry time set meanwhile (reschedule, ``queue retry``, another
        claim) is kept, and that entry is no longer renewed. Returns how many were renewed."""
        held = dict(self._held)
        if not held:
            return 0
        until = self._clock() + CLAIM_LEASE
        try:
            renewed = set(await self._store.queue.renew_claims(held, until))
        except StorageError as err:
            log.warning("outbound: cannot renew %d claims: %s", len(held), err)
            return 0
        for entry_id, lease in held.items():
            if self._held.get(entry_id) != lease:
                continue  # released or claimed again while the renewal ran
            if entry_id in renewed:
                self._held[entry_id] = until
            else:
                del self._held[entry_id]
                log.warning("outbound %d: claim lost (retried or rescheduled meanwhile); no longer renewed", entry_id)
        return len(renewed)

    async def _process(self, entry: QueueEntry) -> None:
        self._inflight.add(entry.id)
        try:
            await self._work(entry)
        except StorageError as err:
            log.error("outbound %d: %s (retried when its claim ends)", entry.id, err)
        except Exception:
            log.exception("outbound %d: unexpected failure (retried when its claim ends)", entry.id)
        finally:
            self._inflight.discard(entry.id)
            self._held.pop(entry.id, None)

    async def _work(self, entry: QueueEntry) -> None:
        s = self.settings
        try:
            body = await self._store.mail.get_body(entry.blob_id)
        except NotFound:
            log.error("outbound %d: body %s is gone; entry removed", entry.id, entry.blob_id)
            await self._store.queue.remove_queue_entry(entry.id)
            return
        now = self._clock()
        pending = [r for r in entry.recipients if r.status == "pending"]
        if pending and now - entry.created >= s.max_age:
            days = s.max_age.total_seconds() / 86400
            await self._store.queue.record_results(entry.id, [
                RecipientResult(r.address, "failed", _expired(r, days)) for r in pending
            ])
            log.info("outbound %d: expired for %d recipients", entry.id, len(pending))
        elif pending:
            message = strip_return_path(body)
            if self._signer is not None:
                message = await asyncio.to_thread(self._signer.sign, message)
            groups: dict[tuple[str, str], list[QueuedRecipient]] = {}
            for r in pending:
                groups.setdefault((_domain(r.address), self._envelope(entry, r, now)), []).append(r)
            # Every group ends before a failure of one is raised: the entry's claim is
            # released with the raise, and must not be while a send is still running.
            failures = [err for err in await asyncio.gather(*(
                self._send_group(entry, domain, sender, [r.address for r in rcpts], message)
                for (domain, sender), rcpts in groups.items()
            ), return_exceptions=True) if isinstance(err, BaseException)]
            if failures:
                raise failures[0]
        # The sends are over: what is left (DSNs, the reschedule that ends the claim)
        # takes moments, well inside the lease already granted; no more renewals.
        self._held.pop(entry.id, None)
        await self._finish(entry.id, body)

    def _envelope(self, entry: QueueEntry, rcpt: QueuedRecipient, now: datetime) -> str:
        """MAIL FROM for ``rcpt``: the list's bounce address for an external list member
        (mission-semantics §3.3), the original envelope sender otherwise."""
        if rcpt.via_list and entry.mail_from:
            return bounces.encode(rcpt.via_list, entry.mail_from, form=self.settings.list_bounce_local,
                                  secret=self.settings.bounce_secret, now=now)
        return entry.mail_from

    async def _send_group(self, entry: QueueEntry, domain: str, sender: str, rcpts: Sequence[str], message: bytes) -> None:
        async def record(outcomes: dict[str, Outcome]) -> None:
            # Called at the DATA reply, before QUIT (client.Settle): the commit that
            # ends the window in which a crash would send these recipients again.
            await self._store.queue.record_results(entry.id, [
                RecipientResult(a, o.status, o.diagnostic) for a, o in outcomes.items()
            ])

        domain_slots = self._per_domain.setdefault(domain, asyncio.Semaphore(self.settings.max_per_domain))
        async with self._total, domain_slots:
            outcomes = await self._send(domain, sender, rcpts, message, record)
        waited = (self._clock() - entry.created).total_seconds()
        for address, o in outcomes.items():
            log.info("outbound %d: <%s> %s via %s: %s", entry.id, address, o.status, o.remote or "-", o.diagnostic)
            if o.status == client.DELIVERED and self._on_delivered is not None:
                self._on_delivered(waited)

    async def _send(
        self, domain: str, sender: str, rcpts: Sequence[str], message: bytes, settle: client.Settle,
    ) -> dict[str, Outcome]:
        """Deliver one group; ``settle`` is awaited once with the outcomes, as soon as they are known."""
        relay = self.settings.smart_host
        if relay is not None:
            return await client.deliver_smart_host(relay, sender, rcpts, message, dialer=self._dialer, settle=settle)
        try:
            hosts = await resolve_route(domain, self._resolver, shuffle=self._shuffle)
        except RouteError as err:
            code = ("556" if err.status == "5.1.10" else "550") if err.permanent else "451"
            status = client.FAILED if err.permanent else client.PENDING
            outcomes = {r: Outcome(status, f"{code} {err}") for r in rcpts}
            await settle(outcomes)
            return outcomes
        return await client.deliver(hosts, sender, rcpts, message, resolver=self._resolver, dialer=self._dialer,
                                    settle=settle)

    async def _finish(self, entry_id: int, body: bytes) -> None:
        """DSNs for new failures, then remove or reschedule the entry."""
        s = self.settings
        entry = await self._store.queue.get_queue_entry(entry_id)
        if entry is None:  # removed meanwhile (queue remove)
            return
        now = self._clock()
        failed = [r for r in entry.recipients if r.status == "failed" and not r.notified]
        if failed:
            await self._notify(entry, failed, body, "failed", now)
            await self._store.queue.mark_notified(entry.id, [r.address for r in failed])
        pending = [r for r in entry.recipients if r.status == "pending"]
        if not pending:
            await self._store.queue.remove_queue_entry(entry.id)
            return
        warned: bool | None = None
        if s.delay_warning is not None and not entry.warned and now - entry.created >= s.delay_warning:
            await self._notify(entry, pending, body, "delayed", now)
            warned = True
        expiry = entry.created + s.max_age
        next_attempt = min(now + s.retry_delay(entry.attempts + 1), expiry)
        await self._store.queue.reschedule(entry.id, next_attempt, warned=warned)

    async def _notify(
        self, entry: QueueEntry, rcpts: Sequence[QueuedRecipient], body: bytes, action: dsn.Action, now: datetime,
    ) -> None:
        """Send a DSN about ``rcpts`` to the entry's envelope sender: into its INBOX when
        it is local, through the queue (null sender) otherwise. Never to the null sender
        (RFC 5321 §4.5.5), which also keeps DSNs from bouncing forever."""
        sender = entry.mail_from
        if not sender:
            return
        s = self.settings
        report = dsn.build_dsn(
            reporting_mta=s.hostname, postmaster=s.postmaster, sender=sender, original=body,
            recipients=[dsn.DsnRecipient(r.address, r.last_error or "") for r in rcpts],
            action=action, arrival=entry.created, now=now,
            will_retry_until=entry.created + s.max_age if action == "delayed" else None,
        )
        domains = {d.lower() for d in await self._store.directory.list_domains()}
        if _domain(sender) in domains:
            account = await self._store.directory.resolve(sender)
            if account is None or account.kind not in MAILBOX_KINDS:
                log.warning("outbound %d: DSN for <%s> dropped: no such local mailbox", entry.id, sender)
                return
            # RFC 5321 §4.4: the final delivery records the (null) envelope sender.
            await self._store.mail.deliver(b"Return-Path: <>\r\n" + report, [LocalRecipient(account.id)], mail_from="")
        else:
            await self._store.mail.deliver(report, [], mail_from="", remote_recipients=[sender])
        log.info("outbound %d: %s DSN for %d recipients sent to <%s>", entry.id, action, len(rcpts), sender)


def _expired(r: QueuedRecipient, days: float) -> str:
    """The diagnostic of a recipient given up on: RFC 3463 4.4.7 "delivery time expired",
    with the last error seen."""
    last = r.last_error or "no attempt was answered"
    return f"451 4.4.7 message expired after {days:g} days in the queue; last error: {last}"
