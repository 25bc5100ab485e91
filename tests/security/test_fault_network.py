"""Issue 10 §4, network faults: an unreachable DNS server or remote MX leaves the mail
queued with retries scheduled (attempts and next try shown by `queue list`), never lost
or bounced early; once DNS or the MX is back, `queue retry` or the schedule delivers it,
once.

Already covered in tests/outbound (not repeated here): a refused connection to the only
MX is retried, warned about after 4 h and expired after 5 days (test_worker
test_dead_host_is_retried_then_warned_then_expired); a dead preferred MX falls back to
the next (test_falls_back_to_next_mx_when_first_is_dead); a 4xx is retried on the
schedule (test_temporary_failure_then_success); a daemon restart mid-queue sends each
recipient once (test_daemon). Added here: a DNS server that does not answer, an MX that
accepts the connection and then says nothing, and, through the running daemon and the
operator's CLI, an MX that is down and comes back.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from auth.passwords import PasswordHasher
from delivery.outbound.routes import DnsResolver, no_shuffle
from delivery.outbound.worker import OutboundWorker
from mailserver import config as cfg
from mailserver.daemon import Daemon
from storage.interfaces import Store
from storage.types import Account
from tests.helpers import run_cli
from tests.outbound.conftest import (
    MX1,
    REMOTE,
    Clock,
    RemoteHandler,
    Remotes,
    Zone,
    alice,
    clock,
    db_path,
    dns_zone,
    make_settings,
    remotes,
    resolver,
    standard_zone,
    store,
    zone,
)
from tests.outbound.test_daemon import outbound_config, submit, wait_for
from tests.outbound.test_worker import inbox_messages, queue
from tests.smtp.client import PASSWORD

# The outbound fixtures, imported for this module.
__all__ = ["alice", "clock", "db_path", "dns_zone", "remotes", "resolver", "store", "zone"]

#: A loopback address where no MX listens until a test starts one there.
LATE_MX = "127.0.0.4"
#: DNS query lifetime and SMTP command timeout of the worker-level tests: the fault
#: shows as a timeout after this long instead of the production 10 s / 300 s.
FAULT_TIMEOUT = 1.0


@pytest.fixture
def silent_dns() -> Iterator[int]:
    """A UDP port that takes DNS queries and never answers (a dead or filtered resolver)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
async def silent_mx(remotes: Remotes) -> AsyncIterator[str]:
    """An address on the remote port that accepts TCP connections and never sends a byte."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, LATE_MX, remotes.port)
    try:
        yield LATE_MX
    finally:
        server.close()
        for w in held:
            w.close()
        await server.wait_closed()


def start_mx(remotes: Remotes, host: str) -> Controller:
    """A real SMTP server on ``host`` (the remote port), recording into remotes.inbox."""
    controller = Controller(RemoteHandler(host, remotes.inbox, remotes.script), hostname=host, port=remotes.port)
    controller.start()
    return controller


def worker(store: Store, remotes: Remotes, clock: Clock, dns_port: int) -> OutboundWorker:
    return OutboundWorker(
        store, make_settings(remotes, timeout=FAULT_TIMEOUT), DnsResolver("127.0.0.1", dns_port, lifetime=FAULT_TIMEOUT),
        clock=clock, shuffle=no_shuffle,
    )


async def test_dns_server_not_answering_keeps_mail_queued_until_it_answers(
    store: Store, alice: Account, zone: Zone, remotes: Remotes, clock: Clock, silent_dns: int, dns_zone: tuple[Zone, int],
) -> None:
    """A DNS timeout is a temporary failure: the recipient stays pending on the schedule, no DSN; with DNS back it is delivered once."""
    standard_zone(zone)
    qid = await queue(store, alice.address, f"bob@{REMOTE}")
    dead_dns = worker(store, remotes, clock, silent_dns)
    assert await dead_dns.run_once() == 1
    entry = await store.queue.get_queue_entry(qid)
    assert entry is not None and entry.attempts == 1
    assert entry.next_attempt == clock.now + dead_dns.settings.schedule[0]
    [rcpt] = entry.recipients
    assert rcpt.status == "pending" and "DNS" in (rcpt.last_error or ""), rcpt
    assert remotes.inbox == [] and await inbox_messages(store, alice) == []  # not bounced
    clock.advance(minutes=5)
    assert await worker(store, remotes, clock, dns_zone[1]).run_once() == 1  # the resolver answers again
    assert [m.rcpts for m in remotes.inbox] == [[f"bob@{REMOTE}"]]
    assert await store.queue.list_queue() == [] and await inbox_messages(store, alice) == []


async def test_mx_that_never_answers_keeps_mail_queued_until_it_does(
    store: Store, alice: Account, zone: Zone, remotes: Remotes, clock: Clock, silent_mx: str, dns_zone: tuple[Zone, int],
) -> None:
    """An MX that accepts TCP but never greets times out: pending with a retry, no DSN; the next MX up gets it once."""
    zone.add(REMOTE, "MX", (10, f"mx.{REMOTE}"))
    zone.add(f"mx.{REMOTE}", "A", silent_mx)
    qid = await queue(store, alice.address, f"bob@{REMOTE}")
    w = worker(store, remotes, clock, dns_zone[1])
    await w.run_once()
    entry = await store.queue.get_queue_entry(qid)
    assert entry is not None and entry.attempts == 1 and entry.next_attempt == clock.now + w.settings.schedule[0]
    assert entry.recipients[0].status == "pending", entry.recipients
    assert remotes.inbox == [] and await inbox_messages(store, alice) == []
    zone.clear()
    standard_zone(zone)  # the domain moved its mail to a working host
    clock.advance(minutes=5)
    await w.run_once()
    assert [(m.host, m.rcpts) for m in remotes.inbox] == [(MX1, [f"bob@{REMOTE}"])]
    assert await store.queue.list_queue() == []


def queue_list(config_path: Path) -> list[dict[str, Any]]:
    done = run_cli("queue", "list", "--json", config=config_path)
    assert done.returncode == 0, done.stderr
    docs: list[dict[str, Any]] = json.loads(done.stdout)
    return docs


async def test_daemon_keeps_mail_for_a_down_mx_and_queue_retry_delivers_it(
    make_config: Any, dns_zone: tuple[Zone, int], zone: Zone, remotes: Remotes,
) -> None:
    """Running daemon, MX down: `queue list` shows the entry with attempts and next try, no DSN; MX up + `queue retry --all`: delivered once."""
    zone.add(REMOTE, "MX", (10, f"late.{REMOTE}"))
    zone.add(f"late.{REMOTE}", "A", LATE_MX)
    config_path = make_config(
        outbound__enabled=True, outbound__dns_nameserver="127.0.0.1", outbound__dns_port=dns_zone[1],
        outbound__remote_port=remotes.port, outbound__poll_seconds=0.05, outbound__timeout_seconds=5.0,
        outbound__retry_schedule="1h")
    config = cfg.load(config_path)
    daemon = Daemon(config, hasher=PasswordHasher(fast=True))
    app = await daemon.start()
    mx: Controller | None = None
    try:
        alice_account = await app.accounts.add_user("alice@example.test", "Alice", PASSWORD)
        await submit(app.bound["submission"][1], [f"bob@{REMOTE}"])

        async def attempted() -> bool:
            entries = await app.store.queue.list_queue()
            return bool(entries) and entries[0].attempts >= 1

        for _ in range(200):
            if await attempted():
                break
            await asyncio.sleep(0.05)
        assert await attempted()
        [doc] = await asyncio.to_thread(queue_list, config_path)
        assert doc["attempts"] == 1
        next_try = datetime.fromisoformat(doc["next_attempt"])
        assert next_try - datetime.fromisoformat(doc["created"]) >= timedelta(minutes=59)  # the 1 h step
        [rcpt] = doc["recipients"]
        assert rcpt["status"] == "pending" and "cannot connect" in rcpt["last_error"], rcpt
        assert await inbox_messages(app.store, alice_account) == []  # no bounce, no early warning

        mx = start_mx(remotes, LATE_MX)  # the MX is back; the operator retries now
        done = await asyncio.to_thread(run_cli, "queue", "retry", "--all", config=config_path)
        assert done.returncode == 0 and done.stdout.startswith("1 queue entry"), done
        await wait_for(lambda: remotes.got(f"bob@{REMOTE}"))
        for _ in range(200):
            if not await app.store.queue.list_queue():
                break
            await asyncio.sleep(0.05)
        assert await app.store.queue.list_queue() == []
        assert await asyncio.to_thread(queue_list, config_path) == []
    finally:
        await daemon.stop()
        if mx is not None:
            mx.stop()
    assert len(remotes.got(f"bob@{REMOTE}")) == 1


async def test_daemon_retry_schedule_delivers_once_the_mx_is_back(
    make_config: Any, dns_zone: tuple[Zone, int], zone: Zone, remotes: Remotes,
) -> None:
    """MX down at the first attempt, up before the next: the schedule alone delivers it, once, with no DSN."""
    zone.add(REMOTE, "MX", (10, f"late.{REMOTE}"))
    zone.add(f"late.{REMOTE}", "A", LATE_MX)
    config = outbound_config(make_config, dns_zone, remotes, outbound__retry_schedule="1s")
    daemon = Daemon(config, hasher=PasswordHasher(fast=True))
    app = await daemon.start()
    mx: Controller | None = None
    try:
        alice_account = await app.accounts.add_user("alice@example.test", "Alice", PASSWORD)
        await submit(app.bound["submission"][1], [f"bob@{REMOTE}"])
        for _ in range(200):
            entries = await app.store.queue.list_queue()
            if entries and entries[0].attempts >= 1:
                break
            await asyncio.sleep(0.05)
        assert entries and entries[0].recipients[0].status == "pending"
        mx = start_mx(remotes, LATE_MX)
        await wait_for(lambda: remotes.got(f"bob@{REMOTE}"))  # within WAIT_SECONDS, by the 1 s schedule
        for _ in range(200):
            if not await app.store.queue.list_queue():
                break
            await asyncio.sleep(0.05)
        assert await app.store.queue.list_queue() == []
        assert await inbox_messages(app.store, alice_account) == []
    finally:
        await daemon.stop()
        if mx is not None:
            mx.stop()
    assert len(remotes.got(f"bob@{REMOTE}")) == 1
