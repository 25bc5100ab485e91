"""Contract suite for the cross-process named locks (:class:`storage.interfaces.Locks`).

Two store objects opened on the same database stand for two processes (SQLite file
locks and PostgreSQL advisory locks do not know the difference); one test also uses a
real second process that is killed while it holds the lock.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest

from storage.errors import Unavailable
from storage.interfaces import Store
from tests.storage.conftest import Backend

#: Long enough for a waiter to have got the lock if exclusion were broken (SQLite
#: waiters poll every few milliseconds; PostgreSQL wakes them at once).
SETTLE_SECONDS = 0.15


@pytest.fixture
async def other(backend: Backend, store: Store) -> AsyncIterator[Store]:
    """A second store object on the same database, as another process would open it."""
    s = await backend.open()
    yield s
    await s.close()


async def _hold(store: Store, name: str, events: list[str], tag: str, entered: asyncio.Event,
                leave: asyncio.Event) -> None:
    async with store.locks.exclusive(name, timeout=5):
        events.append(f"{tag} in")
        entered.set()
        await leave.wait()
        events.append(f"{tag} out")


async def test_same_name_excludes_other_store(store: Store, other: Store) -> None:
    """A second store on the same database gets a held name only after the holder leaves."""
    events: list[str] = []
    a_in, a_leave, b_in = asyncio.Event(), asyncio.Event(), asyncio.Event()
    a = asyncio.create_task(_hold(store, "room-booking:1", events, "a", a_in, a_leave))
    await a_in.wait()
    b = asyncio.create_task(_hold(other, "room-booking:1", events, "b", b_in, asyncio.Event()))
    await asyncio.sleep(SETTLE_SECONDS)
    assert events == ["a in"]
    a_leave.set()
    await a
    await asyncio.wait_for(b_in.wait(), 5)
    assert events == ["a in", "a out", "b in"]
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b


async def test_waiters_in_one_process_enter_in_arrival_order(store: Store) -> None:
    """Tasks of one store waiting for a name enter one at a time, first come first served."""
    events: list[str] = []
    leaves = {t: asyncio.Event() for t in "abc"}
    ins = {t: asyncio.Event() for t in "abc"}
    tasks = {}
    for t in "abc":
        tasks[t] = asyncio.create_task(_hold(store, "n", events, t, ins[t], leaves[t]))
        await asyncio.sleep(0.02)
    assert events == ["a in"]
    for t in "abc":
        leaves[t].set()
        await tasks[t]
    assert events == ["a in", "a out", "b in", "b out", "c in", "c out"]


async def test_different_names_do_not_block(store: Store, other: Store) -> None:
    """Holding one name never delays another name, in this store or another one."""
    async with store.locks.exclusive("room-booking:1", timeout=1):
        async with other.locks.exclusive("room-booking:2", timeout=1):
            async with store.locks.exclusive("room-booking:3", timeout=1):
                pass


async def test_timeout_raises_unavailable(store: Store, other: Store) -> None:
    """A waiter gives up with Unavailable after its timeout, without running its block."""
    loop = asyncio.get_running_loop()
    ran = False
    async with store.locks.exclusive("x", timeout=1):
        started = loop.time()
        with pytest.raises(Unavailable):
            async with other.locks.exclusive("x", timeout=0.3):
                ran = True
        elapsed = loop.time() - started
        with pytest.raises(Unavailable):
            async with store.locks.exclusive("x", timeout=0.1):  # same store: not re-entrant
                ran = True
    assert not ran
    assert 0.25 <= elapsed < 3
    async with other.locks.exclusive("x", timeout=1):  # the failed waiters left nothing held
        pass


async def test_released_on_exception(store: Store, other: Store) -> None:
    """An exception leaving the block releases the name for the other store."""
    with pytest.raises(ValueError):
        async with store.locks.exclusive("x", timeout=1):
            raise ValueError("boom")
    async with other.locks.exclusive("x", timeout=1):
        pass
    async with store.locks.exclusive("x", timeout=1):
        pass


async def test_released_when_holder_cancelled(store: Store, other: Store) -> None:
    """Cancelling the task inside the block releases the name."""
    entered = asyncio.Event()
    holder = asyncio.create_task(_hold(store, "x", [], "a", entered, asyncio.Event()))
    await entered.wait()
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    async with other.locks.exclusive("x", timeout=2):
        pass
    async with store.locks.exclusive("x", timeout=2):
        pass


async def test_cancelled_waiter_never_holds(store: Store, other: Store) -> None:
    """A waiter cancelled while waiting does not take the name later on its own."""
    leave, entered = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(store, "x", [], "a", entered, leave))
    await entered.wait()
    waiter_ran: list[str] = []
    waiters = [
        asyncio.create_task(_hold(s, "x", waiter_ran, tag, asyncio.Event(), asyncio.Event()))
        for s, tag in ((other, "other"), (store, "same"))
    ]
    await asyncio.sleep(SETTLE_SECONDS)
    for w in waiters:
        w.cancel()
    for w in waiters:
        with pytest.raises(asyncio.CancelledError):
            await w
    leave.set()
    await holder
    await asyncio.sleep(SETTLE_SECONDS)
    assert waiter_ran == []
    async with other.locks.exclusive("x", timeout=1):
        async with store.locks.exclusive("y", timeout=1):
            pass
    async with store.locks.exclusive("x", timeout=1):
        pass


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from storage import open_store

    async def main(backend, where):
        if backend == "sqlite":
            store = await open_store("sqlite", path=Path(where))
        else:
            store = await open_store("postgres", dsn=where)
        async with store.locks.exclusive("room-booking:7", timeout=5):
            print("held", flush=True)
            await asyncio.sleep(60)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_other_process_excludes_and_its_death_releases(backend: Backend, store: Store) -> None:
    """A name held by another process is refused here; killing that process (-9) frees it."""
    where = str(getattr(store, "path", "") or getattr(store, "dsn", ""))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, backend.name, where,
        stdout=asyncio.subprocess.PIPE, cwd=os.getcwd(),
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"held"
        with pytest.raises(Unavailable):
            async with store.locks.exclusive("room-booking:7", timeout=0.3):
                pass
        async with store.locks.exclusive("room-booking:8", timeout=1):
            pass
        child.send_signal(signal.SIGKILL)
        await child.wait()
        async with store.locks.exclusive("room-booking:7", timeout=5):
            pass
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
