"""Fixtures for several daemons sharing one PostgreSQL database (see tests/storage/conftest.py
for how the server is found; these tests skip only when none is configured or running)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.multi.daemons import ALICE, BOB, Pair, start_pair
from tests.smtp.client import PASSWORD
from tests.storage.conftest import ScratchDatabases, pg_base_dsn


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """The DSN of a fresh scratch database, dropped after the test."""
    dbs = ScratchDatabases(pg_base_dsn())
    try:
        yield await dbs.create()
    finally:
        await asyncio.shield(dbs.drop_all())


@pytest.fixture
async def pair(make_config: Any, tmp_path: Path, pg_dsn: str) -> AsyncIterator[Pair]:
    """Daemons A and B on one database, with users alice and bob (created through A)."""
    daemons, p = await start_pair(make_config, tmp_path, pg_dsn)
    try:
        await p.a.accounts.add_user(ALICE, "Alice", PASSWORD)
        await p.a.accounts.add_user(BOB, "Bob", PASSWORD)
        yield p
    finally:
        for d in daemons:
            await d.stop()


# The outbound tests' loopback DNS server and fake remote MX hosts, for the queue test.
from tests.outbound.conftest import dns_zone, remotes, zone  # noqa: E402,F401
