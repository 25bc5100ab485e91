"""Fixtures for several daemons sharing one PostgreSQL database (see tests/storage/conftest.py
for how the server is found; these tests skip only when none is configured or running)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.storage.conftest import ScratchDatabases, pg_base_dsn


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """The DSN of a fresh scratch database, dropped after the test."""
    dbs = ScratchDatabases(pg_base_dsn())
    try:
        yield await dbs.create()
    finally:
        await asyncio.shield(dbs.drop_all())


# The outbound tests' loopback DNS server and fake remote MX hosts, for the queue test.
from tests.outbound.conftest import dns_zone, remotes, zone  # noqa: E402,F401
