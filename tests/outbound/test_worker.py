"""Outbound delivery end to end: real DNS on loopback, real SMTP servers as remote MXes."""

from __future__ import annotations

import asyncio
import email
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from email.message import Message
from typing import Any

import pytest

from delivery.outbound import worker as worker_module
from delivery.outbound.worker import CLAIM_LEASE
from storage.interfaces import Store
from storage.sqlite import SqliteStore
from storage.types import Account
from tests.outbound.conftest import (
    DEAD,
    LOCAL,
    MX1,
    MX2,
    REMOTE,
    Clock,
    Remotes,
    Zone,
    standard_zone,
)

MESSAGE = (
    f"From: Alice <alice@{LOCAL}>\r\nTo: bob@{REMOTE}\r\nSubject: hello\r\n"
    "Message-ID: <m1@example.test>\r\n\r\nHi Bob.\r\n"
).encode()


#: Longest a test waits for the worker to reach a point (it is there in milliseconds).
WAIT_SECONDS = 5.0


async def wait_until(predicate: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``predicate`` until it holds; fail after WAIT_SECONDS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not await predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def queue(store: Store, sender: str, *rcpts: str, body: bytes = MESSAGE) -> int:
    res = await store.mail.deliver(body, [], mail_from=sender, remote_recipients=list(rcpts))
    assert res.queue_id is not None
    return res.queue_id


async def inbox_messages(store: Store, account: Account) -> list[Message]:
    folder = await store.mail.get_folder(account.id, "INBOX")
    assert folder is not None
    out = []
    for meta in await store.mail.list_messages(folder.id):
        out.append(email.message_from_bytes(await store.mail.get_body(meta.blob_id)))
    return out


def delivery_status(dsn: Message) -> str:
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    parts: list[Any] = dsn.get_payload()  # type: ignore[assignment]
    assert isinstance(parts, list)
    assert parts[1].get_content_type() == "message/delivery-status"
    assert parts[2].get_content_type() == "text/rfc822-headers"
    return str(parts[1]) + "\n" + str(parts[2])


async def test_delivers_to_most_preferred_mx(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any) -> None:
    """A queued message goes to the lowest-preference MX, with the envelope kept, and leaves the queue."""
    standard_zone(zone)
    await queue(store, alice.address, f"bob@{REMOTE}")
    assert await make_worker().run_once() == 1
    assert [(m.host, m.mail_from, m.rcpts) for m in remotes.inbox] == [(MX1, alice.address, [f"bob@{REMOTE}"])]
    assert remotes.inbox[0].data.endswith(b"Hi Bob.\r\n")
    assert await store.queue.list_queue() == []


async def test_falls_back_to_next_mx_when_first_is_dead(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any) -> None:
    """RFC 5321 §5.1: an unreachable preferred MX passes the turn to the next one."""
    zone.add(REMOTE, "MX", (5, f"dead.{REMOTE}"))
    zone.add(REMOTE, "MX", (50, f"mx2.{REMOTE}"))
    zone.add(f"dead.{REMOTE}", "A", DEAD)
    zone.add(f"mx2.{REMOTE}", "A", MX2)
    await queue(store, alice.address, f"bob@{REMOTE}")
    await make_worker().run_once()
    assert [m.host for m in remotes.inbox] == [MX2]
    assert await store.queue.list_queue() == []


async def test_implicit_mx_uses_the_domain_address(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any) -> None:
    """No MX record: the domain's own A record is the mail host (RFC 5321 §5.1)."""
    zone.add(REMOTE, "A", MX2)
    await queue(store, alice.address, f"bob@{REMOTE}")
    await make_worker().run_once()
    assert [m.host for m in remotes.inbox] == [MX2]


async def test_temporary_failure_then_success(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any, clock: Clock) -> None:
    """A 4xx keeps the recipient queued on the retry schedule; the next run delivers it once."""
    standard_zone(zone)
    remotes.script.rcpt[f"bob@{REMOTE}"] = ["451 4.7.1 greylisted, come back later"]
    qid = await queue(store, alice.address, f"bob@{REMOTE}")
    worker = make_worker()
    await worker.run_once()
    entry = await store.queue.get_queue_entry(qid)
    assert entry is not None and entry.attempts == 1
    assert entry.recipients[0].status == "pending" and "greylisted" in (entry.recipients[0].last_error or "")
    assert entry.next_attempt == clock.now + worker.settings.schedule[0]
    assert await worker.run_once() == 0  # not due yet
    clock.advance(minutes=5)
    assert await worker.run_once() == 1
    assert len(remotes.got(f"bob@{REMOTE}")) == 1
    assert await store.queue.list_queue() == []
    assert await inbox_messages(store, alice) == []  # no DSN for a success


async def test_partial_bounce_sends_dsn_for_the_refused_recipient(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any) -> None:
    """5xx to one of two recipients: the other is delivered, the sender gets an RFC 3464 DSN naming only the refused one."""
    standard_zone(zone)
    remotes.script.rcpt[f"nobody@{REMOTE}"] = ["550 5.1.1 <nobody@remote.test>: no such user"]
    await queue(store, alice.address, f"bob@{REMOTE}", f"nobody@{REMOTE}")
    await make_worker().run_once()
    assert [m.rcpts for m in remotes.inbox] == [[f"bob@{REMOTE}"]]
    assert await store.queue.list_queue() == []
    [dsn] = await inbox_messages(store, alice)
    assert dsn["To"] == f"<{alice.address}>" and dsn["Auto-Submitted"] == "auto-replied"
    assert dsn["Return-Path"] == "<>"
    status = delivery_status(dsn)
    assert f"Final-Recipient: rfc822; nobody@{REMOTE}" in status
    assert "Action: failed" in status and "Status: 5.1.1" in status
    assert "Diagnostic-Code: smtp; 550 5.1.1" in status
    assert f"bob@{REMOTE}" not in status.split("Subject: hello")[0].split("To: bob")[0]
    assert "Subject: hello" in status  # the original headers


async def test_null_mx_fails_at_once(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any) -> None:
    """RFC 7505: a null MX is a permanent failure without any connection; DSN status 5.1.10."""
    zone.add(REMOTE, "MX", (0, ""))
    zone.add(REMOTE, "A", MX1)  # must not be used
    await queue(store, alice.address, f"bob@{REMOTE}")
    await make_worker().run_once()
    assert remotes.inbox == []
    assert await store.queue.list_queue() == []
    [dsn] = await inbox_messages(store, alice)
    assert "Status: 5.1.10" in delivery_status(dsn)


async def test_unknown_domain_fails_at_once(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any) -> None:
    """NXDOMAIN for the recipient domain is permanent (5.1.2)."""
    await queue(store, alice.address, "bob@nowhere.test")
    await make_worker().run_once()
    [dsn] = await inbox_messages(store, alice)
    assert "Status: 5.1.2" in delivery_status(dsn)


async def test_dead_host_is_retried_then_warned_then_expired(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any, clock: Clock) -> None:
    """A dead host keeps the mail queued; after 4 h the sender gets a delay warning, after 5 days a failure DSN, and the entry goes."""
    zone.add(REMOTE, "MX", (10, f"dead.{REMOTE}"))
    zone.add(f"dead.{REMOTE}", "A", DEAD)
    qid = await queue(store, alice.address, f"bob@{REMOTE}")
    worker = make_worker()
    await worker.run_once()
    entry = await store.queue.get_queue_entry(qid)
    assert entry is not None and entry.recipients[0].status == "pending"
    assert "cannot connect" in (entry.recipients[0].last_error or "")
    assert await inbox_messages(store, alice) == []
    clock.advance(hours=4, minutes=1)
    await worker.run_once()
    [warning] = await inbox_messages(store, alice)
    assert "Action: delayed" in delivery_status(warning) and "Will-Retry-Until:" in delivery_status(warning)
    entry = await store.queue.get_queue_entry(qid)
    assert entry is not None and entry.warned
    clock.advance(days=5)
    await worker.run_once()
    assert await store.queue.list_queue() == []
    msgs = await inbox_messages(store, alice)
    assert len(msgs) == 2
    status = delivery_status(msgs[1])
    assert "Action: failed" in status and "Status: 4.4.7" in status and "expired" in status
    assert remotes.inbox == []


async def test_expiry_is_never_later_than_max_age(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any, clock: Clock) -> None:
    """Retries are scheduled no later than the expiry time, so the DSN is not delayed by a long backoff step."""
    zone.add(REMOTE, "A", DEAD)
    from datetime import timedelta
    qid = await queue(store, alice.address, f"bob@{REMOTE}")
    worker = make_worker(max_age=timedelta(minutes=2), delay_warning=None)
    await worker.run_once()
    entry = await store.queue.get_queue_entry(qid)
    assert entry is not None and entry.next_attempt <= entry.created + timedelta(minutes=2)


async def test_no_dsn_to_the_null_sender(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any) -> None:
    """A bounce of a message with the null envelope sender is dropped, never sent (RFC 5321 §4.5.5)."""
    zone.add(REMOTE, "MX", (0, ""))
    await queue(store, "", f"bob@{REMOTE}")
    await make_worker().run_once()
    assert await store.queue.list_queue() == []
    assert await inbox_messages(store, alice) == []


async def test_dsn_to_remote_sender_is_queued_with_null_sender(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any) -> None:
    """A failure for a remote envelope sender queues the DSN (null sender) to that sender, and it is delivered."""
    standard_zone(zone)
    zone.add("nowhere-null.test", "MX", (0, ""))
    await queue(store, f"carol@{REMOTE}", "x@nowhere-null.test")
    worker = make_worker()
    await worker.run_once()
    [received] = remotes.got(f"carol@{REMOTE}")
    assert received.mail_from == "<>"  # aiosmtpd spells the null sender so
    assert b"multipart/report" in received.data
    assert await store.queue.list_queue() == []


async def test_one_transaction_per_domain(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any) -> None:
    """Recipients of one domain share one SMTP transaction; other domains get their own."""
    standard_zone(zone)
    zone.add("other.test", "MX", (10, f"mx2.{REMOTE}"))
    await queue(store, alice.address, f"a@{REMOTE}", f"b@{REMOTE}", "c@other.test")
    await make_worker().run_once()
    got = sorted((m.host, tuple(sorted(m.rcpts))) for m in remotes.inbox)
    assert got == [(MX1, (f"a@{REMOTE}", f"b@{REMOTE}")), (MX2, ("c@other.test",))]


async def test_restart_mid_queue_loses_nothing_and_sends_once(db_path: Any, store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any, clock: Clock) -> None:
    """A stop and a new worker on a reopened store finish the queue: every recipient delivered exactly once."""
    standard_zone(zone)
    remotes.script.rcpt[f"late@{REMOTE}"] = ["421 4.3.2 busy"]
    first = await queue(store, alice.address, f"now@{REMOTE}", f"late@{REMOTE}")
    worker = make_worker()
    await worker.run_once()
    # A second entry is claimed by a worker that then dies (a crash: no results recorded,
    # no renewals): the claim runs out after CLAIM_LEASE, well before the first retry.
    second = await queue(store, alice.address, f"crash@{REMOTE}")
    assert [e.id for e in await store.queue.claim_due(clock.now, limit=10, lease=CLAIM_LEASE)] == [second]
    assert CLAIM_LEASE < worker.settings.schedule[0]
    await store.close()
    reopened = await SqliteStore.open(db_path)
    try:
        entries = {e.id: e for e in await reopened.queue.list_queue()}
        assert set(entries) == {first, second}
        again = make_worker(on=reopened)
        clock.advance(seconds=CLAIM_LEASE.total_seconds() - 1)
        assert await again.run_once() == 0  # the crashed claim still leased, the first entry not due
        clock.advance(seconds=1)
        assert await again.run_once() == 1  # the crashed claim has run out
        assert [e.id for e in await reopened.queue.list_queue()] == [first]
        clock.advance(minutes=5)
        await again.run_once()
        assert await reopened.queue.list_queue() == []
    finally:
        await reopened.close()
    for rcpt in ("now", "late", "crash"):
        assert len(remotes.got(f"{rcpt}@{REMOTE}")) == 1, rcpt


async def test_list_member_gets_list_bounce_envelope(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any) -> None:
    """An external list member's copy goes out with MAIL FROM the list's tagged bounce address, which decodes to the sender."""
    from datetime import UTC, datetime

    from delivery.outbound import bounces
    standard_zone(zone)
    qid = await queue(store, alice.address, f"ext@{REMOTE}", f"direct@{REMOTE}")
    # Mark ext@ as reached through team@ (what the SMTP commit records for list members).
    assert isinstance(store, SqliteStore)
    writer = store.writer
    await writer.submit(lambda conn: conn.execute(
        "UPDATE queue_recipients SET via_list = ? WHERE queue_id = ? AND address = ?",
        (f"team@{LOCAL}", qid, f"ext@{REMOTE}")))
    await make_worker().run_once()
    by_rcpt = {m.rcpts[0]: m.mail_from for m in remotes.inbox}
    assert by_rcpt[f"direct@{REMOTE}"] == alice.address
    bounce = by_rcpt[f"ext@{REMOTE}"]
    assert bounce.startswith("team-bounces+") and bounce.endswith(f"@{LOCAL}")
    decoded = bounces.decode(bounce, secret=b"k" * 32, now=datetime.now(UTC))
    assert decoded is not None and decoded.sender == alice.address
    assert bounces.decode(bounce, secret=b"other", now=datetime.now(UTC)) is None


async def test_background_loop_logs_queue_size_and_stop_releases_claims(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any, caplog: Any) -> None:
    """The started worker logs queue size and oldest age; stop() ends it and leaves deferred mail queued."""
    import asyncio
    import logging
    zone.add(REMOTE, "A", DEAD)
    qid = await queue(store, alice.address, f"bob@{REMOTE}")
    worker = make_worker()
    caplog.set_level(logging.INFO, logger="delivery.outbound.worker")
    await worker.start()
    for _ in range(100):
        entry = await store.queue.get_queue_entry(qid)
        if entry is not None and entry.attempts == 1:
            break
        await asyncio.sleep(0.05)
    await worker.stop(grace=2.0)
    assert any("outbound queue: 1 messages, oldest" in r.getMessage() for r in caplog.records)
    entry = await store.queue.get_queue_entry(qid)
    assert entry is not None and entry.attempts == 1 and entry.recipients[0].status == "pending"


async def test_results_are_committed_before_the_quit_round_trip(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any) -> None:
    """The DATA 250 is committed (recipient delivered, entry gone) before QUIT is sent, so a crash while the remote answers QUIT cannot resend it."""
    standard_zone(zone)
    gate = remotes.script.hold["QUIT"] = threading.Event()
    qid = await queue(store, alice.address, f"bob@{REMOTE}")
    run = asyncio.create_task(make_worker().run_once())
    try:
        await wait_until(lambda: _true("QUIT" in remotes.script.seen))
        assert not run.done()  # QUIT not yet answered
        assert await store.queue.get_queue_entry(qid) is None
    finally:
        gate.set()
    assert await run == 1
    assert len(remotes.got(f"bob@{REMOTE}")) == 1


async def test_connection_lost_at_quit_keeps_the_outcome(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any, clock: Clock) -> None:
    """A remote that drops the connection instead of answering QUIT still counts as delivered: nothing is resent."""
    standard_zone(zone)
    remotes.script.cut_quit = True
    await queue(store, alice.address, f"bob@{REMOTE}", f"carol@{REMOTE}")
    worker = make_worker()
    assert await worker.run_once() == 1
    assert "QUIT" in remotes.script.seen
    assert await store.queue.list_queue() == []
    clock.advance(hours=1)
    assert await worker.run_once() == 0
    assert [sorted(m.rcpts) for m in remotes.inbox] == [[f"bob@{REMOTE}", f"carol@{REMOTE}"]]


async def _true(value: bool) -> bool:
    return value


async def test_claim_is_renewed_while_a_send_outlasts_the_lease(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a send takes longer than CLAIM_LEASE, the heartbeat renews the claim from the worker's clock, so no other
    claim takes the entry; a retry time set meanwhile (queue retry) is never overwritten; the mail goes out once."""
    monkeypatch.setattr(worker_module, "CLAIM_RENEW_INTERVAL", timedelta(seconds=0.02))
    standard_zone(zone)
    gate = remotes.script.hold["DATA"] = threading.Event()
    qid = await queue(store, alice.address, f"bob@{REMOTE}")
    worker = make_worker()
    run = asyncio.create_task(worker.run_once())

    async def next_attempt() -> Any:
        entry = await store.queue.get_queue_entry(qid)
        assert entry is not None
        return entry.next_attempt

    try:
        await wait_until(lambda: _true("DATA" in remotes.script.seen))
        clock.advance(minutes=10)  # the first lease is long over; the worker is still sending
        await wait_until(lambda: _equal(next_attempt(), clock.now + CLAIM_LEASE))
        assert await store.queue.claim_due(clock.now, limit=10, lease=CLAIM_LEASE) == []
        await store.queue.retry_now(clock.now, qid)  # the operator's `queue retry` meanwhile
        assert await worker.renew_claims() == 0
        assert await next_attempt() == clock.now  # kept, not overwritten by a renewal
    finally:
        gate.set()
    assert await run == 1
    assert len(remotes.got(f"bob@{REMOTE}")) == 1
    assert await store.queue.list_queue() == []
    assert await worker.renew_claims() == 0  # nothing held after the run


async def _equal(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


async def test_failed_commit_of_one_group_keeps_the_claim_while_another_sends(store: Store, alice: Account, zone: Zone, remotes: Remotes, make_worker: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """When recording one domain's results fails, the entry stays claimed (renewed) until the other domain's send
    has ended and been recorded; only then is the failure logged and the claim left to run out."""
    from storage.errors import Unavailable

    monkeypatch.setattr(worker_module, "CLAIM_RENEW_INTERVAL", timedelta(seconds=0.02))
    standard_zone(zone)  # nowhere.test: NXDOMAIN, a failure known at once, without a connection
    gate = remotes.script.hold["DATA"] = threading.Event()
    qid = await queue(store, alice.address, f"bob@{REMOTE}", "x@nowhere.test")
    real = store.queue.record_results

    async def record_results(entry_id: int, results: Any) -> None:
        if any(r.address == "x@nowhere.test" for r in results):
            raise Unavailable("the store is busy")
        await real(entry_id, results)

    monkeypatch.setattr(store.queue, "record_results", record_results)
    run = asyncio.create_task(make_worker().run_once())
    try:
        await wait_until(lambda: _true("DATA" in remotes.script.seen))
        clock.advance(minutes=10)
        await asyncio.sleep(0.1)  # several heartbeats
        assert await store.queue.claim_due(clock.now, limit=10, lease=CLAIM_LEASE) == []
    finally:
        gate.set()
    await run
    entry = await store.queue.get_queue_entry(qid)
    assert entry is not None
    assert {r.address: r.status for r in entry.recipients} == {f"bob@{REMOTE}": "delivered", "x@nowhere.test": "pending"}
    assert entry.next_attempt <= clock.now + CLAIM_LEASE  # left to run out, then retried
    assert len(remotes.got(f"bob@{REMOTE}")) == 1
