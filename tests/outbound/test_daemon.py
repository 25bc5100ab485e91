"""The running daemon sends submitted mail out, and a restart mid-queue loses nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from auth.passwords import PasswordHasher
from mailserver import config as cfg
from mailserver.daemon import Daemon
from tests.outbound.conftest import MX1, REMOTE, Remotes, Zone, standard_zone
from tests.smtp.client import PASSWORD, RawSmtp, message

#: Longest wait for the worker (it polls every 50 ms here).
WAIT_SECONDS = 10.0


async def wait_for(predicate: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def _outbound_latency_count() -> float:
    """Observations of the outbound delivery-latency histogram so far (process-wide)."""
    from mailserver import metrics

    for family in metrics.DELIVERY_SECONDS.collect():
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels.get("kind") == "outbound":
                return sample.value
    return 0.0


def outbound_config(make_config: Any, dns_zone: tuple[Zone, int], remotes: Remotes, **extra: Any) -> cfg.Config:
    return cfg.load(make_config(
        outbound__enabled=True, outbound__dns_nameserver="127.0.0.1", outbound__dns_port=dns_zone[1],
        outbound__remote_port=remotes.port, outbound__poll_seconds=0.05, outbound__timeout_seconds=5.0,
        **extra,
    ))


async def submit(port: int, rcpts: list[str]) -> None:
    client = await RawSmtp.connect(port)
    try:
        await client.ehlo()
        code, text = await client.login("alice@example.test", PASSWORD)
        assert code == 235, text
        code, text = await client.send_mail(
            "alice@example.test", rcpts, message(to=", ".join(rcpts), extra="Message-ID: <d1@example.test>\r\n"))
        assert code == 250, text
    finally:
        await client.close()


async def test_daemon_delivers_submitted_mail_to_remote_mx(make_config: Any, dns_zone: tuple[Zone, int], zone: Zone, remotes: Remotes) -> None:
    """outbound.enabled: mail submitted for another domain reaches the remote MX found in DNS."""
    standard_zone(zone)
    latencies_before = _outbound_latency_count()
    daemon = Daemon(outbound_config(make_config, dns_zone, remotes), hasher=PasswordHasher(fast=True))
    app = await daemon.start()
    try:
        await app.accounts.add_user("alice@example.test", "Alice", PASSWORD)
        await submit(app.bound["submission"][1], [f"bob@{REMOTE}"])
        await wait_for(lambda: remotes.got(f"bob@{REMOTE}"))
        await wait_for(lambda: _outbound_latency_count() == latencies_before + 1)
        [got] = remotes.inbox
        assert got.host == MX1 and got.mail_from == "alice@example.test"
        assert b"Subject: hello" in got.data and not got.data.startswith(b"Return-Path:")
        for _ in range(200):
            if not await app.store.queue.list_queue():
                break
            await asyncio.sleep(0.05)
        assert await app.store.queue.list_queue() == []
    finally:
        await daemon.stop()


async def test_daemon_restart_mid_queue_sends_each_recipient_once(make_config: Any, dns_zone: tuple[Zone, int], zone: Zone, remotes: Remotes) -> None:
    """A recipient deferred before a restart is delivered after it; the one already delivered is not sent again."""
    standard_zone(zone)
    remotes.script.rcpt[f"late@{REMOTE}"] = ["451 4.3.2 try again"]
    config = outbound_config(make_config, dns_zone, remotes, outbound__retry_schedule="300s")
    daemon = Daemon(config, hasher=PasswordHasher(fast=True))
    app = await daemon.start()
    try:
        await app.accounts.add_user("alice@example.test", "Alice", PASSWORD)
        await submit(app.bound["submission"][1], [f"now@{REMOTE}", f"late@{REMOTE}"])
        await wait_for(lambda: remotes.got(f"now@{REMOTE}"))
        queue = app.store.queue

        async def deferred() -> bool:
            entries = await queue.list_queue()
            return bool(entries) and entries[0].attempts == 1

        for _ in range(200):
            if await deferred():
                break
            await asyncio.sleep(0.05)
        assert await deferred()
    finally:
        await daemon.stop()
    # Restart; the operator asks for a retry now: the deferred recipient is delivered.
    daemon2 = Daemon(config, hasher=PasswordHasher(fast=True))
    app2 = await daemon2.start()
    try:
        [entry] = await app2.store.queue.list_queue()
        assert {(r.address, r.status) for r in entry.recipients} == {
            (f"now@{REMOTE}", "delivered"), (f"late@{REMOTE}", "pending")
        }
        await app2.store.queue.retry_now(datetime.now(UTC))  # what `mailserver queue retry --all` does
        await wait_for(lambda: remotes.got(f"late@{REMOTE}"))
    finally:
        await daemon2.stop()
    assert len(remotes.got(f"now@{REMOTE}")) == 1
    assert len(remotes.got(f"late@{REMOTE}")) == 1


async def test_list_mail_to_external_members_uses_the_bounce_address_and_bounces_reach_the_sender(
    make_config: Any, dns_zone: tuple[Zone, int], zone: Zone, remotes: Remotes
) -> None:
    """An external list member gets the mail from the list's bounce address; a report sent
    there later is delivered to the original sender; a forged tag is an unknown user."""
    standard_zone(zone)
    daemon = Daemon(outbound_config(make_config, dns_zone, remotes), hasher=PasswordHasher(fast=True))
    app = await daemon.start()
    try:
        alice = await app.accounts.add_user("alice@example.test", "Alice", PASSWORD)
        await app.accounts.add_list("team@example.test", "Team")
        await app.accounts.add_members("team@example.test", [f"ext@{REMOTE}"])
        await submit(app.bound["submission"][1], ["team@example.test", f"direct@{REMOTE}"])
        await wait_for(lambda: remotes.got(f"ext@{REMOTE}") and remotes.got(f"direct@{REMOTE}"))
        [to_member] = remotes.got(f"ext@{REMOTE}")
        [to_direct] = remotes.got(f"direct@{REMOTE}")
        assert to_direct.mail_from == "alice@example.test"
        bounce_address = to_member.mail_from
        assert bounce_address.startswith("team-bounces+") and bounce_address.endswith("@example.test")

        report = (b"From: MAILER-DAEMON@remote.test\r\nTo: " + bounce_address.encode()
                  + b"\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\next is gone\r\n")
        client = await RawSmtp.connect(app.bound["smtp"][1])
        try:
            await client.ehlo()
            assert (await client.send_mail("", [bounce_address], report))[0] == 250
            forged = bounce_address.replace("+", "+0", 1)
            code, text = await client.send_mail("", [forged], report)
            assert code == 550 and "5.1.1" in text
        finally:
            await client.close()
        inbox = await app.store.mail.get_folder(alice.id, "INBOX")
        assert inbox is not None
        bodies = [await app.store.mail.get_body(m.blob_id) for m in await app.store.mail.list_messages(inbox.id)]
        assert any(b"ext is gone" in b for b in bodies)
    finally:
        await daemon.stop()


async def test_queued_mail_leaves_without_waiting_for_the_poll(make_config: Any, dns_zone: tuple[Zone, int], zone: Zone, remotes: Remotes) -> None:
    """A delivery that queues remote recipients wakes the worker: with a 60 s poll the mail still leaves at once."""
    standard_zone(zone)
    config = outbound_config(make_config, dns_zone, remotes).replace(**{"outbound.poll_seconds": 60.0})
    daemon = Daemon(config, hasher=PasswordHasher(fast=True))
    app = await daemon.start()
    try:
        await app.accounts.add_user("alice@example.test", "Alice", PASSWORD)
        await asyncio.sleep(0.2)  # the worker's first run is over: it now sleeps for the poll
        await submit(app.bound["submission"][1], [f"bob@{REMOTE}"])
        await wait_for(lambda: remotes.got(f"bob@{REMOTE}"))  # within WAIT_SECONDS (10 s), far below the poll
    finally:
        await daemon.stop()
