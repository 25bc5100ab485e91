"""Backend fixtures for the storage contract suite.

To add a backend, add its name to BACKENDS and an opener to ``_opener``; the contract
tests do not change.

PostgreSQL: the server named by ``MAILSERVER_TEST_PG`` (a DSN whose role may create
databases; ``eval "$(bash .ci/postgres.sh)"`` starts one and sets it). Each test gets
a scratch database, dropped afterwards. With the variable unset, the DSN that
.ci/postgres.sh prints is tried, and the postgres cases are skipped only when nothing
answers there; with it set, an unreachable server is a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from storage.interfaces import Store
from storage.types import Account, AccountKind
from tests.helpers import unavailable

BACKENDS = ["sqlite", "postgres"]
DOMAIN = "example.test"

PG_ENV = "MAILSERVER_TEST_PG"
#: What .ci/postgres.sh starts and prints.
PG_DEFAULT_DSN = "postgresql://mailserver@127.0.0.1:55432/mailserver"


def pg_base_dsn() -> str:
    """The DSN to create scratch databases through; skips the test when PostgreSQL is
    not configured and not running locally (never when MAILSERVER_TEST_PG is set)."""
    dsn = os.environ.get(PG_ENV)
    if dsn:
        return dsn
    parts = urlsplit(PG_DEFAULT_DSN)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=1):
            pass
    except OSError:
        unavailable(f"no PostgreSQL: set {PG_ENV} or run .ci/postgres.sh")
    return PG_DEFAULT_DSN


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@dataclass
class ScratchDatabases:
    """Creates PostgreSQL databases on the test server and drops them all at the end."""

    base: str
    names: list[str] = field(default_factory=list)

    async def create(self) -> str:
        import asyncpg

        name = "mstest_" + uuid.uuid4().hex[:16]
        conn = await asyncpg.connect(self.base)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.names.append(name)
        return with_database(self.base, name)

    async def drop_all(self) -> None:
        import asyncpg

        if not self.names:
            return
        conn = await asyncpg.connect(self.base)
        try:
            for name in self.names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self.names.clear()


@pytest.fixture
async def pg_databases() -> AsyncIterator[ScratchDatabases]:
    """Scratch PostgreSQL databases for one test (skips when there is no server)."""
    dbs = ScratchDatabases(pg_base_dsn())
    try:
        yield dbs
    finally:
        await asyncio.shield(dbs.drop_all())


@dataclass
class Backend:
    """A backend under test: ``open()`` opens another Store on the same database."""

    name: str
    open: Callable[[], Awaitable[Store]]


async def _opener(name: str, tmp_path: Path, dbs: ScratchDatabases | None) -> Callable[[], Awaitable[Store]]:
    if name == "sqlite":
        from storage.sqlite import SqliteStore

        path = tmp_path / "db" / "mail.sqlite3"

        async def open_sqlite() -> Store:
            return await SqliteStore.open(path)

        return open_sqlite
    if name == "postgres":
        from storage.postgres import PgStore

        assert dbs is not None
        dsn = await dbs.create()

        async def open_postgres() -> Store:
            return await PgStore.open(dsn)

        return open_postgres
    raise AssertionError(f"unknown backend {name}")


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    dbs = ScratchDatabases(pg_base_dsn()) if request.param == "postgres" else None
    try:
        yield Backend(request.param, await _opener(request.param, tmp_path, dbs))
    finally:
        if dbs is not None:
            await asyncio.shield(dbs.drop_all())


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    s = await backend.open()
    await s.directory.add_domain(DOMAIN)
    yield s
    await s.close()


@pytest.fixture
async def user(store: Store) -> Account:
    return await store.directory.create_account(f"alice@{DOMAIN}", AccountKind.USER, "Alice")


@pytest.fixture
async def user2(store: Store) -> Account:
    return await store.directory.create_account(f"bob@{DOMAIN}", AccountKind.USER, "Bob")
