"""Backend fixtures for the storage contract suite.

To add a backend (e.g. postgres), add its name to BACKENDS and an opener to
``_opener``; the contract tests do not change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.interfaces import Store
from storage.types import Account, AccountKind

BACKENDS = ["sqlite"]
DOMAIN = "example.test"


@dataclass
class Backend:
    """A backend under test: ``open()`` opens another Store on the same database."""

    name: str
    open: Callable[[], Awaitable[Store]]


def _opener(name: str, tmp_path: Path) -> Callable[[], Awaitable[Store]]:
    if name == "sqlite":
        from storage.sqlite import SqliteStore

        path = tmp_path / "db" / "mail.sqlite3"

        async def open_sqlite() -> Store:
            return await SqliteStore.open(path)

        return open_sqlite
    raise AssertionError(f"unknown backend {name}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(request.param, _opener(request.param, tmp_path))


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
