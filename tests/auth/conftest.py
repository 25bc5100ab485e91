"""Fixtures for auth tests: a real SQLite directory, a cheap hasher, an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from auth.accounts import AccountService
from auth.passwords import PasswordHasher
from storage.interfaces import Directory
from storage.sqlite import SqliteStore

SEATS = 3


class FakeClock:
    """A monotonic clock that moves only when told (or when FakeClock.sleep is awaited)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
async def directory(tmp_path: Path) -> AsyncIterator[Directory]:
    store = await SqliteStore.open(tmp_path / "mail.db")
    try:
        yield store.directory
    finally:
        await store.close()


@pytest.fixture(scope="session")
def hasher() -> PasswordHasher:
    return PasswordHasher(fast=True)


@pytest.fixture
async def service(directory: Directory, hasher: PasswordHasher) -> AccountService:
    svc = AccountService(directory, hasher, seats=SEATS)
    await svc.add_domain("example.test")
    return svc


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
