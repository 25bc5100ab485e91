"""The in-memory directory snapshot (auth.snapshot) that routing and sender policy read.

Pins: reads through CachedDirectory equal the store's own reads; a refresh costs one
version check and reloads only after a change; a change made through another handle
on the same database (as the CLI does) is seen at the next refresh; once loaded,
routing a recipient (lists included) makes no directory call at all.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from auth.snapshot import CachedDirectory
from delivery.routing import ListExpansion, LocalMailbox, Rejection, Router, SenderContext
from storage.interfaces import Directory, Store
from storage.sqlite import SqliteStore
from storage.types import AccountKind, Right

DOMAIN = "example.test"
ANON = SenderContext(None, "x@elsewhere.example")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await SqliteStore.open(tmp_path / "mail.sqlite3")
    d = s.directory
    await d.add_domain(DOMAIN)
    await d.create_account(f"alice@{DOMAIN}", AccountKind.USER, "Alice", licensed=True)
    await d.create_account(f"bob@{DOMAIN}", AccountKind.USER, "Bob", licensed=True)
    await d.create_account(f"carol@{DOMAIN}", AccountKind.USER, "Carol")
    await d.create_account(f"hr@{DOMAIN}", AccountKind.SHARED, "HR", settings={"copy_sent_as": True})
    await d.create_account(f"room@{DOMAIN}", AccountKind.ROOM, "Room")
    await d.create_account(f"team@{DOMAIN}", AccountKind.LIST, "Team", settings={"require_sender_authentication": False})
    await d.create_account(f"all@{DOMAIN}", AccountKind.LIST, "All", settings={"require_sender_authentication": False})
    await d.add_members(f"team@{DOMAIN}", [f"alice@{DOMAIN}", f"bob@{DOMAIN}", "ext@elsewhere.example"])
    await d.add_members(f"all@{DOMAIN}", [f"team@{DOMAIN}", f"hr@{DOMAIN}", f"al@{DOMAIN}"])
    await d.add_alias(f"al@{DOMAIN}", f"alice@{DOMAIN}")
    await d.grant(f"hr@{DOMAIN}", f"alice@{DOMAIN}", [Right.SEND_AS, Right.FULL_ACCESS])
    await d.grant(f"team@{DOMAIN}", f"bob@{DOMAIN}", [Right.SEND_ON_BEHALF])
    yield s
    await s.close()


async def test_reads_equal_the_store(store: Store) -> None:
    """Every read CachedDirectory serves from memory equals the store's answer."""
    real = store.directory
    cached = CachedDirectory(real)
    addresses = [f"{n}@{DOMAIN}" for n in ("alice", "bob", "carol", "hr", "room", "team", "all", "al", "nobody")]
    assert await cached.list_domains() == await real.list_domains()
    assert await cached.list_accounts() == await real.list_accounts()
    assert await cached.list_accounts(AccountKind.LIST) == await real.list_accounts(AccountKind.LIST)
    assert await cached.list_aliases() == await real.list_aliases()
    assert await cached.list_aliases(f"alice@{DOMAIN}") == await real.list_aliases(f"alice@{DOMAIN}")
    assert await cached.count_licensed() == await real.count_licensed()
    for a in addresses + [a.upper() for a in addresses]:
        assert await cached.get_account(a) == await real.get_account(a), a
        assert await cached.resolve(a) == await real.resolve(a), a
        assert await cached.grants_on(a) == await real.grants_on(a), a
        assert await cached.grants_of(a) == await real.grants_of(a), a
        assert await cached.lists_containing(a) == await real.lists_containing(a), a
        for b in addresses:
            assert await cached.rights(a, b) == await real.rights(a, b), (a, b)
    for lst in ("team", "all"):
        assert await cached.members(f"{lst}@{DOMAIN}") == await real.members(f"{lst}@{DOMAIN}")
    alice = await real.get_account(f"alice@{DOMAIN}")
    assert alice is not None and await cached.get_account_by_id(alice.id) == alice


async def test_refresh_reloads_only_after_a_change(store: Store) -> None:
    """refresh() is one version check; the snapshot is reloaded only when the version moved."""
    cached = CachedDirectory(store.directory)
    await cached.refresh()
    await cached.refresh()
    assert (cached.stats.checks, cached.stats.loads) == (2, 1)
    await store.directory.set_enabled(f"bob@{DOMAIN}", False)
    snap = await cached.refresh()
    assert cached.stats.loads == 2
    bob = snap.get_account(f"bob@{DOMAIN}")
    assert bob is not None and not bob.enabled


async def test_concurrent_refreshes_share_one_reload(store: Store) -> None:
    """Many transactions starting together after a change load the directory once, not once each."""
    cached = CachedDirectory(store.directory)
    await cached.refresh()
    await store.directory.set_enabled(f"bob@{DOMAIN}", False)
    snaps = await asyncio.gather(*(cached.refresh() for _ in range(20)))
    assert cached.stats.loads == 2
    assert all(s is snaps[0] for s in snaps)
    bob = snaps[0].get_account(f"bob@{DOMAIN}")
    assert bob is not None and not bob.enabled


async def test_change_from_another_handle_is_seen_at_next_refresh(store: Store, tmp_path: Path) -> None:
    """A change committed by another process's store handle (the CLI) reaches routing at the next refresh."""
    router = Router(CachedDirectory(store.directory))
    await router.directory.refresh()
    assert isinstance(await router.resolve(f"dan@{DOMAIN}", ANON), Rejection)
    other = await SqliteStore.open(tmp_path / "mail.sqlite3")
    try:
        dan = await other.directory.create_account(f"dan@{DOMAIN}", AccountKind.USER, "Dan", licensed=True)
        await other.directory.add_members(f"team@{DOMAIN}", [f"dan@{DOMAIN}"])
    finally:
        await other.close()
    # Not before the refresh: one transaction sees one directory.
    assert isinstance(await router.resolve(f"dan@{DOMAIN}", ANON), Rejection)
    await router.directory.refresh()
    assert await router.resolve(f"dan@{DOMAIN}", ANON) == LocalMailbox(dan)
    team = await router.resolve(f"team@{DOMAIN}", ANON)
    assert isinstance(team, ListExpansion) and dan.id in {a.id for a in team.local}


async def test_write_through_cache_is_visible_at_once(store: Store) -> None:
    """A write made through CachedDirectory is visible to its next read without an explicit refresh."""
    cached = CachedDirectory(store.directory)
    assert await cached.rights(f"hr@{DOMAIN}", f"bob@{DOMAIN}") == frozenset()
    await cached.grant(f"hr@{DOMAIN}", f"bob@{DOMAIN}", [Right.SEND_AS])
    assert await cached.rights(f"hr@{DOMAIN}", f"bob@{DOMAIN}") == frozenset({Right.SEND_AS})


class CountingDirectory:
    """Forwards to a real directory and counts every call by method name."""

    def __init__(self, real: Directory) -> None:
        self.real = real
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.real, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await target(*args, **kwargs)

        return call


async def test_rcpt_routing_makes_no_directory_call(store: Store) -> None:
    """Once the snapshot is loaded, resolving users, aliases and nested lists calls the store zero times."""
    counting = CountingDirectory(store.directory)
    router = Router(CachedDirectory(counting))
    await router.directory.refresh()
    counting.calls.clear()
    for rcpt in ("alice", "AL", "team", "all", "room", "carol", "nobody"):
        await router.resolve(f"{rcpt}@{DOMAIN}", ANON)
    await router.resolve("x@far.example", ANON)
    assert counting.calls == Counter()
    await router.directory.refresh()
    assert counting.calls == Counter({"version": 1})
