"""Benchmark: local deliveries per second through the SQLite store.

Runs deliver() with one local recipient for 1 KiB and 64 KiB bodies at 1 and 50
concurrent callers (each body distinct, so nothing is deduplicated) and prints
deliveries/s and how many deliveries shared one commit on average.

    python bench/storage_deliver.py [--seconds 3] [--path DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from storage.sqlite import SqliteStore
from storage.types import AccountKind, LocalRecipient

SIZES = (1024, 64 * 1024)
CONCURRENCY = (1, 50)
ACCOUNTS = 10  # spread deliveries over a few mailboxes, like real traffic


async def run(path: Path, size: int, callers: int, seconds: float) -> tuple[float, float]:
    store = await SqliteStore.open(path)
    try:
        await store.directory.add_domain("bench.test")
        ids = [
            (await store.directory.create_account(f"u{i}@bench.test", AccountKind.USER)).id
            for i in range(ACCOUNTS)
        ]
        filler = os.urandom(size // 2).hex().encode()[:size]
        count = 0
        commits0, jobs0 = store.writer.stats.commits, store.writer.stats.jobs
        deadline = time.perf_counter() + seconds

        async def caller(n: int) -> None:
            nonlocal count
            i = 0
            while time.perf_counter() < deadline:
                body = b"X-Seq: %d-%d\r\n\r\n" % (n, i) + filler
                await store.mail.deliver(body, [LocalRecipient(ids[(n + i) % ACCOUNTS])])
                count += 1
                i += 1

        start = time.perf_counter()
        await asyncio.gather(*(caller(n) for n in range(callers)))
        elapsed = time.perf_counter() - start
        commits = store.writer.stats.commits - commits0
        jobs = store.writer.stats.jobs - jobs0
        return count / elapsed, jobs / max(commits, 1)
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each run")
    parser.add_argument("--path", type=Path, default=None, help="folder for the databases")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.path) as tmp:
        for size in SIZES:
            for callers in CONCURRENCY:
                path = Path(tmp) / f"bench-{size}-{callers}.sqlite3"
                rate, per_commit = await run(path, size, callers, args.seconds)
                print(
                    f"body {size // 1024:>3} KiB  callers {callers:>3}: "
                    f"{rate:8.0f} deliveries/s  ({per_commit:.1f} per commit)"
                )


if __name__ == "__main__":
    asyncio.run(main())
