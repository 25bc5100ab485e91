"""Several daemons on one PostgreSQL beside one daemon on SQLite (issue 8 §6).

    eval "$(bash .ci/postgres.sh)"
    python bench/postgres/run.py [--seconds 5] [--connections 16] [--size 4096]
                                 [--fetch-clients 4] [--commit-delay MICROSECONDS]

Three setups, each daemon a ``python -m mailserver serve`` subprocess on loopback:
sqlite (one daemon, embedded store), pg-1 (one daemon on PostgreSQL), pg-2 (two daemons
on the same PostgreSQL database, clients spread evenly). In each:

* SMTP ingestion: ``--connections`` clients send ``--size`` messages back to back to one
  local mailbox for ``--seconds`` (a message counts at its 250: committed);
* IMAP FETCH: ``--fetch-clients`` clients per daemon log in to that mailbox and repeat
  ``FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)`` plus ``FETCH`` of 20 full bodies.

CPU is read from /proc before and after each phase: per daemon (utime + stime), and
for the database (the postmaster, its live children and the children it reaped: every
PostgreSQL process of the cluster), and divided by the messages handled. The load
generator is this process, on the same (shared) cores: figures show the split of work,
not a machine's ceiling. ``--commit-delay`` sets PostgreSQL's commit_delay (and
commit_siblings = 1) through the superuser ``postgres`` on the same server for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from mailserver import config as cfg  # noqa: E402
from mailserver.daemon import open_services  # noqa: E402
from tests.helpers import free_port, throwaway_config_values, write_config  # noqa: E402
from tests.storage.conftest import ScratchDatabases, pg_base_dsn  # noqa: E402

USER = "bench@example.test"
PASSWORD = "bench password 1"
TICKS = os.sysconf("SC_CLK_TCK")


def make_message(size: int) -> bytes:
    head = b"From: a@elsewhere.example\r\nTo: bench@example.test\r\nSubject: bench\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


# -- CPU accounting from /proc


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on


def cpu_seconds(pid: int, *, with_reaped: bool = False) -> float:
    """utime + stime of ``pid`` (plus cutime + cstime of its reaped children)."""
    f = _stat(pid)
    ticks = int(f[11]) + int(f[12])  # utime, stime (fields 14, 15)
    if with_reaped:
        ticks += int(f[13]) + int(f[14])  # cutime, cstime
    return ticks / TICKS


def cluster_cpu(postmaster: int) -> float:
    """Every process of the PostgreSQL cluster: postmaster (with reaped backends) + live children."""
    total = cpu_seconds(postmaster, with_reaped=True)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat(int(entry))[1]) == postmaster:
                    total += cpu_seconds(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return total


async def find_postmaster(dsn: str) -> int | None:
    """The postmaster's pid (the parent of our backend), when it runs on this machine."""
    conn = await asyncpg.connect(dsn)
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        try:  # read while the backend still exists
            return int(_stat(backend)[1])
        except OSError:
            return None
    finally:
        await conn.close()


# -- clients


async def _smtp_reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def smtp_client(port: int, data: bytes, until: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _smtp_reply(reader)
    writer.write(b"EHLO bench.example\r\n")
    await _smtp_reply(reader)
    sent = 0
    while time.monotonic() < until:
        for cmd in (b"MAIL FROM:<a@elsewhere.example>\r\n", f"RCPT TO:<{USER}>\r\n".encode(), b"DATA\r\n"):
            writer.write(cmd)
            if await _smtp_reply(reader) >= 400:
                raise RuntimeError(f"{cmd!r} refused")
        writer.write(data + b".\r\n")
        if await _smtp_reply(reader) != 250:
            raise RuntimeError("DATA refused")
        sent += 1
    writer.write(b"QUIT\r\n")
    writer.close()
    return sent


class Imap:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w, self.n = reader, writer, 0

    @classmethod
    async def login(cls, port: int) -> Imap:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        c = cls(reader, writer)
        await reader.readline()
        await c.cmd(f'LOGIN {USER} "{PASSWORD}"')
        await c.cmd("SELECT INBOX")
        return c

    async def cmd(self, text: str) -> int:
        """Send a command; return the number of untagged FETCH responses."""
        self.n += 1
        tag = f"b{self.n}".encode()
        self.w.write(tag + b" " + text.encode() + b"\r\n")
        fetched = 0
        while True:
            line = await self.r.readline()
            if not line:
                raise ConnectionError("closed")
            if line.endswith(b"}\r\n"):  # a literal follows
                size = int(line[line.rindex(b"{") + 1:-3])
                await self.r.readexactly(size)
            if line.startswith(b"* ") and b" FETCH " in line[:24]:
                fetched += 1
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1:].startswith(b"OK"):
                    raise RuntimeError(line.decode(errors="replace"))
                return fetched


async def fetch_client(port: int, until: float, total: int) -> int:
    c = await Imap.login(port)
    done = 0
    i = 0
    while time.monotonic() < until:
        done += await c.cmd("FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)")
        first = 1 + (i * 20) % max(1, total - 20)
        done += await c.cmd(f"FETCH {first}:{first + 19} BODY.PEEK[]")
        i += 1
    c.w.close()
    return done


# -- setups


@dataclass
class Setup:
    name: str
    procs: list[subprocess.Popen[bytes]]
    smtp_ports: list[int]
    imap_ports: list[int]
    postmaster: int | None


async def wait_port(port: int) -> None:
    for _ in range(600):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(port)


async def start(name: str, tmp: Path, daemons: int, dsn: str | None) -> Setup:
    procs, smtp_ports, imap_ports = [], [], []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for i in range(daemons):
        smtp, imap = free_port(), free_port()
        values = throwaway_config_values(tmp / f"{name}{i}", ports={"smtp": smtp, "imap": imap})
        values["server.log_level"] = "warning"
        for other in ("submission", "submissions", "imaps", "http"):
            values[f"listeners.{other}.enabled"] = False
        if dsn:
            values["storage.backend"] = "postgres"
            values["storage.dsn"] = dsn
        path = write_config(tmp / f"{name}{i}.toml", values)
        if i == 0:
            store, accounts, _ = await open_services(cfg.load(path))
            await accounts.add_user(USER, "Bench", PASSWORD)
            await store.close()
        procs.append(subprocess.Popen([sys.executable, "-m", "mailserver", "serve", "--config", str(path)],  # noqa: ASYNC220 - starts at once
                                      cwd=ROOT, env=env, stderr=subprocess.DEVNULL))
        smtp_ports.append(smtp)
        imap_ports.append(imap)
    for port in smtp_ports + imap_ports:
        await wait_port(port)
    return Setup(name, procs, smtp_ports, imap_ports, await find_postmaster(dsn) if dsn else None)


def cpu_snapshot(s: Setup) -> tuple[list[float], float]:
    daemons = [cpu_seconds(p.pid) for p in s.procs]
    return daemons, cluster_cpu(s.postmaster) if s.postmaster else 0.0


def report(s: Setup, phase: str, count: int, elapsed: float,
           before: tuple[list[float], float], after: tuple[list[float], float], unit: str) -> None:
    per_daemon = [(a - b) / max(count, 1) * 1e3 for a, b in zip(after[0], before[0], strict=True)]
    db = (after[1] - before[1]) / max(count, 1) * 1e3
    total = sum(per_daemon) + db
    daemons = " + ".join(f"{x:.2f}" for x in per_daemon)
    db_text = f" + db {db:.2f}" if s.postmaster else ""
    print(f"{s.name:7} {phase:5} {count / elapsed:8.0f} {unit}/s   CPU ms/{unit}: daemons {daemons}{db_text}"
          f" = {total:.2f}", flush=True)


async def run_setup(s: Setup, args: argparse.Namespace) -> None:
    data = make_message(args.size)
    ports = [s.smtp_ports[i % len(s.smtp_ports)] for i in range(args.connections)]
    before, t0 = cpu_snapshot(s), time.monotonic()
    until = t0 + args.seconds
    counts = await asyncio.gather(*(smtp_client(p, data, until) for p in ports))
    elapsed = time.monotonic() - t0
    report(s, "smtp", sum(counts), elapsed, before, cpu_snapshot(s), "msg")

    total = sum(counts)
    clients = [p for p in s.imap_ports for _ in range(args.fetch_clients)]
    before, t0 = cpu_snapshot(s), time.monotonic()
    until = t0 + args.seconds
    fetched = await asyncio.gather(*(fetch_client(p, until, total) for p in clients))
    elapsed = time.monotonic() - t0
    report(s, "fetch", sum(fetched), elapsed, before, cpu_snapshot(s), "msg")


async def set_commit_delay(base: str, micros: int) -> None:
    parts = urlsplit(base)
    admin = urlunsplit(parts._replace(netloc=f"postgres@{parts.hostname}:{parts.port or 5432}", path="/postgres"))
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f"ALTER SYSTEM SET commit_delay = {int(micros)}")
        await conn.execute("ALTER SYSTEM SET commit_siblings = 1")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--fetch-clients", type=int, default=2, help="IMAP clients per daemon")
    ap.add_argument("--commit-delay", type=int, default=None, help="PostgreSQL commit_delay (µs) for the run")
    ap.add_argument("--only", default="sqlite,pg-1,pg-2")
    args = ap.parse_args()
    base = pg_base_dsn() if os.environ.get("MAILSERVER_TEST_PG") is None else os.environ["MAILSERVER_TEST_PG"]
    if args.commit_delay is not None:
        await set_commit_delay(base, args.commit_delay)
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} size={args.size} smtp connections="
          f"{args.connections} fetch clients/daemon={args.fetch_clients} commit_delay={args.commit_delay}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    dbs = ScratchDatabases(base)
    try:
        for name in args.only.split(","):
            dsn = None if name == "sqlite" else await dbs.create()
            s = await start(name, tmp, 2 if name == "pg-2" else 1, dsn)
            try:
                await run_setup(s, args)
            finally:
                for p in s.procs:
                    p.terminate()
                for p in s.procs:
                    p.wait(timeout=30)
    finally:
        await dbs.drop_all()
        if args.commit_delay is not None:
            await set_commit_delay(base, 0)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
