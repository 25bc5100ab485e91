"""A missing database is one clear line at start; a lost one gives temporary failures
(SMTP 451, IMAP NO [UNAVAILABLE]) and the daemons recover by themselves."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from mailserver import config as cfg
from mailserver.daemon import Daemon, StartupError
from storage.errors import StorageError
from storage.postgres import PgStore
from tests.helpers import free_port
from tests.multi.daemons import ALICE, Pair, imap_login, smtp_send
from tests.smtp.client import RawSmtp
from tests.storage.conftest import pg_base_dsn


async def test_unreachable_database_is_one_line_at_start(make_config: Any) -> None:
    """Opening a store or starting a daemon on a closed port fails with one line naming
    the server, without the password."""
    dsn = f"postgresql://mailserver:s3cret@127.0.0.1:{free_port()}/mailserver"
    with pytest.raises(StorageError) as err:
        await PgStore.open(dsn)
    text = str(err.value)
    assert "\n" not in text and "127.0.0.1" in text and "s3cret" not in text and "refused" in text
    daemon = Daemon(cfg.load(make_config(storage__backend="postgres", storage__dsn=dsn)))
    with pytest.raises(StartupError) as start:
        await daemon.start()
    assert str(start.value).startswith("store: cannot connect to PostgreSQL") and "\n" not in str(start.value)


async def test_postgres_backend_without_dsn_is_refused(make_config: Any) -> None:
    """backend = "postgres" with no storage.dsn is refused at start with one line."""
    daemon = Daemon(cfg.load(make_config(storage__backend="postgres")))
    with pytest.raises(StartupError, match="storage.dsn"):
        await daemon.start()


async def _cut(dsn: str, limit: int) -> None:
    """Set the database's connection limit and drop every connection to it (done from
    the server's base database, as an operator or a failover would)."""
    name = urlsplit(dsn).path.lstrip("/")
    conn = await asyncpg.connect(pg_base_dsn())
    try:
        await conn.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT {limit}')
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
    finally:
        await conn.close()


async def test_lost_database_gives_451_and_no_unavailable_then_recovers(pair: Pair, pg_dsn: str) -> None:
    """With the database gone, SMTP DATA gets 451 and IMAP SELECT NO [UNAVAILABLE]
    (the daemons keep running); once it is back, mail flows again and IDLE on B
    hears deliveries through A (the listening connection reconnected)."""
    smtp = await RawSmtp.connect(Pair.port(pair.a, "smtp"))
    await smtp.ehlo()
    imap = await asyncio.to_thread(imap_login, Pair.port(pair.b, "imap"))
    await _cut(pg_dsn, 0)
    try:
        code, _ = await smtp.send_mail("zed@remote.test", [ALICE], b"Subject: lost\r\n\r\nx\r\n")
        assert code == 451
        selected = await asyncio.to_thread(imap.cmd, "SELECT INBOX")
        assert selected[-1].startswith(b"t2 NO [UNAVAILABLE]")
    finally:
        await _cut(pg_dsn, -1)
        await smtp.close()

    deadline = time.monotonic() + 10
    while True:  # the first tries may still meet the old, dropped connections
        try:
            await smtp_send(Pair.port(pair.a, "smtp"), ALICE, "back")
            break
        except AssertionError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    selected = await asyncio.to_thread(imap.cmd, "SELECT INBOX")
    assert selected[-1].split()[1] == b"OK" and b"* 1 EXISTS" in selected

    # The notifier reconnects with backoff (at most a few seconds): wait until B hears A.
    heard = asyncio.Event()
    pair.b.store.mail.add_listener(lambda _fid: heard.set())
    deadline = time.monotonic() + 15
    while not heard.is_set():
        assert time.monotonic() < deadline, "B never heard A again"
        await smtp_send(Pair.port(pair.a, "smtp"), ALICE, f"ping{time.monotonic()}")
        try:
            await asyncio.wait_for(heard.wait(), 1.0)
        except TimeoutError:
            pass
    imap.close()


def test_broken_pooled_connection_counts_as_unavailable() -> None:
    """asyncpg's InternalClientError (a pooled connection left mid-operation when the server
    cut it) is a temporary Unavailable, and a read retries it on a fresh connection: found
    as an SMTP 500 / IMAP SERVERBUG during the lost-database test before."""
    from storage.errors import Unavailable
    from storage.postgres.db import _connection_lost, translate

    err = asyncpg.exceptions.InternalClientError("cannot switch to state 11; another operation (2) is in progress")
    assert isinstance(translate(err), Unavailable)
    assert _connection_lost(err)
