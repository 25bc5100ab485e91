"""Contract tests of the outbound queue (storage.interfaces.OutboundQueue), every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage.errors import NotFound
from storage.interfaces import Store
from storage.types import Account, LocalRecipient, RecipientResult
from tests.storage.conftest import Backend

LEASE = timedelta(minutes=10)


async def _queue(store: Store, sender: str, *rcpts: str, body: bytes = b"Subject: q\r\n\r\nhi\r\n") -> int:
    res = await store.mail.deliver(body, [], mail_from=sender, remote_recipients=list(rcpts))
    assert res.queue_id is not None
    return res.queue_id


async def test_claim_due_takes_each_entry_once_per_lease(store: Store, user: Account) -> None:
    """A due entry is claimed once; a second claim before the lease ends gets nothing; after it, again."""
    qid = await _queue(store, user.address, "a@remote.test")
    now = datetime.now(UTC) + timedelta(seconds=1)
    first = await store.queue.claim_due(now, limit=10, lease=LEASE)
    assert [e.id for e in first] == [qid]
    assert first[0].next_attempt == now + LEASE
    assert await store.queue.claim_due(now + LEASE - timedelta(seconds=1), limit=10, lease=LEASE) == []
    again = await store.queue.claim_due(now + LEASE, limit=10, lease=LEASE)
    assert [e.id for e in again] == [qid]


async def test_renew_claims_extends_only_claims_still_held(store: Store, user: Account) -> None:
    """renew_claims moves a held lease forward; an entry rescheduled, retried, claimed again or removed since is left alone."""
    ids = [await _queue(store, user.address, f"r{i}@remote.test") for i in range(5)]
    now = datetime.now(UTC).replace(microsecond=123456) + timedelta(seconds=1)
    claimed = {e.id: e.next_attempt for e in await store.queue.claim_due(now, limit=10, lease=LEASE)}
    assert sorted(claimed) == ids
    held, resched, retried, reclaimed, removed = ids
    later = now + timedelta(hours=3)
    await store.queue.reschedule(resched, later)  # the worker's own end of the run
    await store.queue.retry_now(now, retried)  # the operator's `queue retry`
    await store.queue.retry_now(now, reclaimed)
    [other] = await store.queue.claim_due(now + timedelta(seconds=1), limit=1, lease=LEASE)
    assert other.id == retried  # oldest due first: taken by another claim, lease of its own
    await store.queue.retry_now(now, reclaimed)
    await store.queue.remove_queue_entry(removed)
    until = now + timedelta(minutes=7)
    assert await store.queue.renew_claims({**claimed, 999_999: now}, until) == [held]
    after = {e.id: e.next_attempt for e in await store.queue.list_queue()}
    assert after == {held: until, resched: later, retried: other.next_attempt, reclaimed: now}
    # The renewed lease is the one to present next time; the old one no longer matches.
    assert await store.queue.renew_claims({held: claimed[held]}, until + LEASE) == []
    assert await store.queue.renew_claims({held: until}, until + LEASE) == [held]
    due = await store.queue.claim_due(until + LEASE - timedelta(seconds=1), limit=10, lease=LEASE)
    assert held not in [e.id for e in due]
    assert await store.queue.renew_claims({}, until) == []


async def test_claim_due_respects_time_order_and_limit(store: Store, user: Account) -> None:
    """Entries not yet due are left; the limit bounds how many are taken, oldest due first."""
    ids = [await _queue(store, user.address, f"r{i}@remote.test") for i in range(3)]
    now = datetime.now(UTC) + timedelta(seconds=1)
    await store.queue.reschedule(ids[0], now + timedelta(hours=1))
    got = await store.queue.claim_due(now, limit=1, lease=LEASE)
    assert [e.id for e in got] == [ids[1]]
    got = await store.queue.claim_due(now, limit=5, lease=LEASE)
    assert [e.id for e in got] == [ids[2]]


async def test_record_results_per_recipient(store: Store, user: Account) -> None:
    """Results change only pending recipients: delivered and failed are final."""
    qid = await _queue(store, user.address, "a@remote.test", "b@remote.test", "c@remote.test")
    await store.queue.record_results(qid, [
        RecipientResult("a@remote.test", "delivered"),
        RecipientResult("b@remote.test", "failed", "550 5.1.1 no such user"),
        RecipientResult("c@remote.test", "pending", "451 4.3.0 try later"),
        RecipientResult("zz@remote.test", "delivered"),
    ])
    await store.queue.record_results(qid, [
        RecipientResult("a@remote.test", "failed", "late"),
        RecipientResult("b@remote.test", "delivered"),
    ])
    entry = await store.queue.get_queue_entry(qid)
    assert entry is not None
    assert [(r.address, r.status, r.attempts, r.last_error) for r in entry.recipients] == [
        ("a@remote.test", "delivered", 1, None),
        ("b@remote.test", "failed", 1, "550 5.1.1 no such user"),
        ("c@remote.test", "pending", 1, "451 4.3.0 try later"),
    ]


async def test_finished_entries_are_not_claimed(store: Store, user: Account) -> None:
    """An entry whose recipients are all delivered, or failed and notified, is never claimed:
    it is removed in the commit that notified its last failure."""
    qid = await _queue(store, user.address, "a@remote.test", "b@remote.test")
    await store.queue.record_results(qid, [
        RecipientResult("a@remote.test", "delivered"), RecipientResult("b@remote.test", "failed", "550"),
    ])
    now = datetime.now(UTC) + timedelta(seconds=1)
    assert [e.id for e in await store.queue.claim_due(now, limit=5, lease=LEASE)] == [qid]
    entry = await store.queue.get_queue_entry(qid)
    assert entry is not None and not entry.recipients[1].notified
    await store.queue.mark_notified(qid, ["b@remote.test"])
    assert await store.queue.get_queue_entry(qid) is None
    assert await store.queue.claim_due(now + 2 * LEASE, limit=5, lease=LEASE) == []
    assert await store.queue.retry_now(now) == 0


async def test_entry_is_removed_with_its_last_result(store: Store, user: Account) -> None:
    """The result that delivers the last pending recipient removes the entry in the same commit,
    so a crash before a separate removal cannot leave a finished entry in the queue forever."""
    qid = await _queue(store, user.address, "a@remote.test", "b@remote.test")
    await store.queue.record_results(qid, [RecipientResult("a@remote.test", "delivered")])
    entry = await store.queue.get_queue_entry(qid)
    assert entry is not None and [r.status for r in entry.recipients] == ["delivered", "pending"]
    await store.queue.record_results(qid, [RecipientResult("b@remote.test", "delivered")])
    assert await store.queue.get_queue_entry(qid) is None
    assert await store.queue.list_queue() == []
    assert await store.queue.remove_queue_entry(qid) is False  # the worker's own removal finds nothing


async def test_reschedule_counts_runs_and_sets_warning(store: Store, user: Account) -> None:
    """reschedule increments the entry's run count and can set the delay-warning mark."""
    qid = await _queue(store, user.address, "a@remote.test")
    later = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    await store.queue.reschedule(qid, later)
    await store.queue.reschedule(qid, later, warned=True)
    entry = await store.queue.get_queue_entry(qid)
    assert entry is not None and entry.attempts == 2 and entry.warned and entry.next_attempt == later


async def test_retry_now_makes_entries_due(store: Store, user: Account) -> None:
    """retry_now brings one entry, or all, forward to now."""
    a = await _queue(store, user.address, "a@remote.test")
    b = await _queue(store, user.address, "b@remote.test")
    far = datetime.now(UTC) + timedelta(days=1)
    for qid in (a, b):
        await store.queue.reschedule(qid, far)
    now = datetime.now(UTC)
    assert await store.queue.retry_now(now, a) == 1
    assert [e.id for e in await store.queue.claim_due(now, limit=5, lease=LEASE)] == [a]
    assert await store.queue.retry_now(now) == 2
    assert await store.queue.retry_now(now, 999_999) == 0


async def test_remove_entry_frees_its_body(store: Store, user: Account) -> None:
    """Removing an entry deletes its recipients and the body no folder holds."""
    body = b"Subject: only queued\r\n\r\nx\r\n"
    qid = await _queue(store, user.address, "a@remote.test", body=body)
    entry = await store.queue.get_queue_entry(qid)
    assert entry is not None
    assert await store.queue.remove_queue_entry(qid) is True
    assert await store.queue.remove_queue_entry(qid) is False
    assert await store.queue.get_queue_entry(qid) is None
    with pytest.raises(NotFound):
        await store.mail.get_body(entry.blob_id)


async def test_remove_entry_keeps_body_held_by_a_folder(store: Store, user: Account) -> None:
    """A body delivered locally and queued survives removal of the queue entry."""
    res = await store.mail.deliver(b"both", [LocalRecipient(user.id)], mail_from=user.address,
                                   remote_recipients=["a@remote.test"])
    assert res.queue_id is not None
    await store.queue.remove_queue_entry(res.queue_id)
    assert await store.mail.get_body(res.blob_id) == b"both"


async def test_queue_state_survives_reopen(store: Store, user: Account, backend: Backend) -> None:
    """Claims, results and marks are durable: another Store on the same database sees them."""
    qid = await _queue(store, user.address, "a@remote.test", "b@remote.test")
    now = datetime.now(UTC) + timedelta(seconds=1)
    await store.queue.claim_due(now, limit=5, lease=LEASE)
    await store.queue.record_results(qid, [RecipientResult("a@remote.test", "delivered")])
    await store.queue.reschedule(qid, now + timedelta(minutes=5))
    other = await backend.open()
    try:
        entry = await other.queue.get_queue_entry(qid)
    finally:
        await other.close()
    assert entry is not None and entry.attempts == 1
    assert entry.next_attempt == now + timedelta(minutes=5)
    assert [(r.address, r.status) for r in entry.recipients] == [
        ("a@remote.test", "delivered"), ("b@remote.test", "pending")
    ]


async def test_deliver_records_the_list_a_remote_recipient_came_through(store: Store, user: Account) -> None:
    """deliver(via_list=...) stores, per queued recipient, the list it was reached through."""
    res = await store.mail.deliver(
        b"Subject: q\r\n\r\nhi\r\n", [], mail_from=user.address,
        remote_recipients=["direct@remote.test", "member@remote.test"],
        via_list={"member@remote.test": "team@example.test"},
    )
    assert res.queue_id is not None
    entry = await store.queue.get_queue_entry(res.queue_id)
    assert entry is not None
    assert {r.address: r.via_list for r in entry.recipients} == {
        "direct@remote.test": None, "member@remote.test": "team@example.test",
    }


async def test_queue_listener_told_after_a_delivery_that_queued(store: Store, user: Account) -> None:
    """add_queue_listener: called once per committed deliver() that queued remote recipients, not for local-only ones."""
    calls: list[int] = []
    store.mail.add_queue_listener(lambda: calls.append(1))
    await store.mail.deliver(b"Subject: local\r\n\r\nx\r\n", [LocalRecipient(user.id)])
    assert calls == []
    await store.mail.deliver(b"Subject: q\r\n\r\nx\r\n", [], mail_from=user.address, remote_recipients=["a@remote.test"])
    assert calls == [1]
