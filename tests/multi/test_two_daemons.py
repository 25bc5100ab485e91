"""Two daemons (in-process, different ports) sharing one PostgreSQL database."""

from __future__ import annotations

import asyncio
import imaplib
import re
import time
from pathlib import Path
from typing import Any

from storage.types import AccountKind, LocalRecipient
from tests.imap.conftest import Raw
from tests.multi.daemons import ALICE, Pair, imap_login, smtp_send, start_pair
from tests.outbound.conftest import REMOTE, Remotes, Zone, standard_zone
from tests.smtp.client import PASSWORD


async def test_idle_on_b_sees_smtp_delivery_flags_and_expunge_through_a(pair: Pair) -> None:
    """IMAP IDLE on daemon B sees mail delivered by SMTP into daemon A within a second,
    then a flag change and an expunge made through A's IMAP."""
    def start_idle() -> Raw:
        r = imap_login(pair.port(pair.b, "imap"))
        r.cmd("SELECT INBOX")
        r.send(b"i IDLE\r\n")
        assert r.line().startswith(b"+")
        return r

    idle = await asyncio.to_thread(start_idle)
    t0 = time.monotonic()
    await smtp_send(pair.port(pair.a, "smtp"), ALICE, "cross")
    line = await asyncio.to_thread(idle.line)
    assert line == b"* 1 EXISTS" and time.monotonic() - t0 < 1.0

    def flag_and_expunge_on_a() -> None:
        r = imap_login(pair.port(pair.a, "imap"))
        r.cmd("SELECT INBOX")
        assert r.cmd("STORE 1 +FLAGS (\\Deleted)")[-1].split()[1] == b"OK"
        assert r.cmd("EXPUNGE")[-1].split()[1] == b"OK"
        r.close()

    t0 = time.monotonic()
    await asyncio.to_thread(flag_and_expunge_on_a)
    seen = [await asyncio.to_thread(idle.line) for _ in range(2)]
    assert seen[0].startswith(b"* 1 FETCH (") and b"\\Deleted" in seen[0]
    assert seen[1] == b"* 1 EXPUNGE" and time.monotonic() - t0 < 2.0
    idle.send(b"DONE\r\n")
    assert (await asyncio.to_thread(idle.until, b"i"))[-1] == b"i OK IDLE terminated"
    idle.close()


async def test_concurrent_appends_through_both_daemons_get_unique_ascending_uids(pair: Pair) -> None:
    """Two clients APPENDing at once through A and B into one folder get distinct UIDs,
    each client's ascending, together exactly 1..n."""
    per_client = 15

    def appender(port: int, tag: str) -> list[int]:
        c = imaplib.IMAP4("127.0.0.1", port, timeout=20)
        c.login(ALICE, PASSWORD)
        uids = []
        for i in range(per_client):
            typ, data = c.append("INBOX", "", None, f"Subject: {tag}{i}\r\n\r\nx\r\n".encode())
            assert typ == "OK", data
            m = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            assert m, data
            uids.append(int(m.group(1)))
        c.logout()
        return uids

    got_a, got_b = await asyncio.gather(
        asyncio.to_thread(appender, pair.port(pair.a, "imap"), "a"),
        asyncio.to_thread(appender, pair.port(pair.b, "imap"), "b"),
    )
    assert got_a == sorted(got_a) and got_b == sorted(got_b)
    assert sorted(got_a + got_b) == list(range(1, 2 * per_client + 1))
    alice = await pair.b.store.directory.get_account(ALICE)
    assert alice is not None
    inbox = await pair.b.store.mail.get_folder(alice.id, "INBOX")
    assert inbox is not None and inbox.messages == 2 * per_client and inbox.uidnext == 2 * per_client + 1


async def test_account_changes_through_a_take_effect_on_b(pair: Pair) -> None:
    """A user added and then disabled through daemon A can log in to B, then cannot, without restart."""
    await pair.a.accounts.add_user("carol@example.test", "Carol", PASSWORD)
    r = await asyncio.to_thread(imap_login, pair.port(pair.b, "imap"), "carol@example.test")
    r.close()
    await pair.a.store.directory.set_enabled("carol@example.test", False)

    def refused() -> bytes:
        r = Raw(pair.port(pair.b, "imap"))
        out = r.cmd(f'LOGIN carol@example.test "{PASSWORD}"')[-1]
        r.close()
        return out

    assert b" NO " in await asyncio.to_thread(refused)


async def test_store_listener_crosses_daemons(pair: Pair) -> None:
    """A store listener on B is called with the folder id when A's store delivers."""
    alice = await pair.a.store.directory.get_account(ALICE)
    assert alice is not None
    folder = await pair.a.store.mail.get_folder(alice.id, "INBOX")
    assert folder is not None
    heard = asyncio.Event()
    calls: list[int] = []

    def listener(folder_id: int) -> None:
        calls.append(folder_id)
        heard.set()

    pair.b.store.mail.add_listener(listener)
    try:
        await pair.a.store.mail.deliver(b"Subject: x\r\n\r\ny\r\n", [LocalRecipient(alice.id)])
        await asyncio.wait_for(heard.wait(), 1.0)
        assert calls == [folder.id]
    finally:
        pair.b.store.mail.remove_listener(listener)


async def test_queue_workers_on_both_daemons_send_each_message_once(
    make_config: Any, tmp_path: Path, pg_dsn: str, dns_zone: tuple[Zone, int], zone: Zone, remotes: Remotes,
) -> None:
    """With the outbound worker running on A and on B, mail queued through either is
    handed to the remote MX exactly once per recipient, and the queue empties."""
    standard_zone(zone)
    daemons, p = await start_pair(
        make_config, tmp_path, pg_dsn, outbound__enabled=True, outbound__dns_nameserver="127.0.0.1",
        outbound__dns_port=dns_zone[1], outbound__remote_port=remotes.port, outbound__poll_seconds=0.05,
        outbound__timeout_seconds=5.0,
    )
    try:
        sender = await p.a.store.directory.create_account(ALICE, AccountKind.USER)
        count = 24
        for i in range(count):
            store = (p.a if i % 2 else p.b).store
            await store.mail.deliver(
                f"From: {ALICE}\r\nMessage-ID: <m{i}@example.test>\r\nSubject: {i}\r\n\r\nx\r\n".encode(),
                [], mail_from=sender.address, remote_recipients=[f"r{i}@{REMOTE}", f"s{i}@{REMOTE}"],
            )
        deadline = time.monotonic() + 20
        def handed_over() -> int:
            return sum(len(m.rcpts) for m in remotes.inbox)

        while handed_over() < 2 * count or await p.a.store.queue.list_queue():
            assert time.monotonic() < deadline, f"{handed_over()} handed over"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # a duplicate hand-over would arrive now
        handed = sorted(r for m in remotes.inbox for r in m.rcpts)
        assert handed == sorted([f"r{i}@{REMOTE}" for i in range(count)] + [f"s{i}@{REMOTE}" for i in range(count)])
    finally:
        for d in daemons:
            await d.stop()
