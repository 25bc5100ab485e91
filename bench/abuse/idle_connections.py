"""Memory of idle IMAP connections and IDLE sessions, and the fan-out of new mail to them.

    python bench/abuse/idle_connections.py [--idle 1000] [--sessions 1000] [--users 10]
                                           [--tls] [--deadline 900] [--keep DIR]

Starts the daemon as a child process (SQLite in a throwaway folder, only the IMAP,
IMAPS and SMTP listeners; the child is this script with ``--serve``, which runs
:class:`mailserver.daemon.Daemon` with the test suite's cheap password hashing, so that
a thousand logins measure sessions, not argon2), then from this process over loopback:

1. warms the daemon up with one full session (LOGIN, SELECT, IDLE, DONE, LOGOUT) and
   reads its RSS (VmRSS of /proc/<pid>/status): the baseline;
2. opens ``--idle`` connections that only read the greeting (not authenticated) and
   reads the RSS again: KiB per idle connection;
3. keeps those open and opens ``--sessions`` sessions that LOGIN, SELECT INBOX and IDLE,
   spread over ``--users`` users (so imap.max_connections_per_user is sessions / users
   + a margin; all connections come from 127.0.0.1, so imap.max_connections_per_address
   is raised above the total): KiB per IDLE session;
4. sends one message over SMTP to every user (one transaction, one RCPT each) and waits
   until every IDLE session got its ``* n EXISTS``: the time from the end of DATA to the
   SMTP 250 and to the last EXISTS, and the spread of the per-session times;
5. checks that every idle connection is still open, then closes everything and stops
   the daemon.

``--tls`` makes both kinds of connection use IMAPS (implicit TLS) instead of plain IMAP.

Bounded: the whole run stops at ``--deadline`` seconds (the daemon is killed then), and
every step has its own timeout. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from auth.passwords import PasswordHasher  # noqa: E402
from mailserver import config as cfg  # noqa: E402
from mailserver.daemon import Daemon, open_services  # noqa: E402
from tests.helpers import CertAuthority, free_port, throwaway_config_values, write_config  # noqa: E402

PASSWORD = "idle bench 1"
#: Connections opened at once (asyncio's listen backlog is 100).
CONNECT_BATCH = 50
#: Seconds for one batch of connections to be greeted / reach IDLE.
BATCH_TIMEOUT = 120.0
#: Seconds for every IDLE session to see the new message.
FANOUT_TIMEOUT = 120.0
#: Seconds the RSS is left to settle before it is read.
SETTLE = 1.0


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """``field`` (VmRSS, VmHWM) of ``pid`` in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def user(i: int) -> str:
    return f"idle{i}@example.test"


# -- the daemon (child process) -------------------------------------------------------

async def serve(config_path: Path) -> None:
    """Run the daemon until SIGTERM; print READY once it listens."""
    daemon = Daemon(cfg.load(config_path), hasher=PasswordHasher(fast=True))
    await daemon.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()
    await daemon.stop()


# -- clients ----------------------------------------------------------------------------

class Bench:
    def __init__(self, port: int, tls: ssl.SSLContext | None) -> None:
        self.port = port
        self.tls = tls

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=self.tls, server_hostname="mail.example.test" if self.tls else None)
        greeting = await reader.readline()
        if not greeting.startswith(b"* OK"):
            raise RuntimeError(f"greeting: {greeting!r}")
        return reader, writer

    async def idle_session(self, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A session of ``address`` in IDLE on INBOX."""
        reader, writer = await self.connect()
        writer.write(f'a LOGIN {address} "{PASSWORD}"\r\nb SELECT INBOX\r\nc IDLE\r\n'.encode())
        while not (line := await reader.readline()).startswith(b"+ "):
            if not line or line.startswith((b"a NO", b"a BAD", b"b NO", b"b BAD", b"* BYE")):
                raise RuntimeError(f"session refused: {line!r}")
        return reader, writer

    async def warm_up(self, address: str) -> None:
        reader, writer = await self.idle_session(address)
        writer.write(b"DONE\r\nd LOGOUT\r\n")
        while (line := await reader.readline()) and not line.startswith(b"d "):
            pass
        writer.close()


async def batches(make, count: int) -> list:  # type: ignore[no-untyped-def]
    """``count`` results of ``make(i)``, CONNECT_BATCH at a time."""
    out = []
    for start in range(0, count, CONNECT_BATCH):
        n = min(CONNECT_BATCH, count - start)
        out += await asyncio.wait_for(asyncio.gather(*(make(start + i) for i in range(n))), BATCH_TIMEOUT)
    return out


async def smtp_to_all(port: int, rcpts: list[str]) -> tuple[float, float]:
    """One message to every address in ``rcpts``; (time the end of DATA was sent, time of the 250)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while (line := await reader.readline())[3:4] == b"-":
            pass
        return line

    async def cmd(line: str, expect: bytes) -> None:
        writer.write(line.encode() + b"\r\n")
        got = await reply()
        if not got.startswith(expect):
            raise RuntimeError(f"SMTP {line!r}: {got!r}")

    await reply()
    await cmd("EHLO bench.example", b"250")
    await cmd("MAIL FROM:<zed@remote.example>", b"250")
    for rcpt in rcpts:
        await cmd(f"RCPT TO:<{rcpt}>", b"250")
    await cmd("DATA", b"354")
    writer.write(b"From: Zed <zed@remote.example>\r\nTo: idle users\r\nSubject: fan-out\r\n"
                 b"Message-ID: <fan-out@remote.example>\r\n\r\nNew mail for every IDLE session.\r\n")
    sent = time.monotonic()
    writer.write(b".\r\n")
    got = await reply()
    accepted = time.monotonic()
    if not got.startswith(b"250"):
        raise RuntimeError(f"SMTP DATA: {got!r}")
    writer.write(b"QUIT\r\n")
    writer.close()
    return sent, accepted


async def wait_exists(reader: asyncio.StreamReader) -> float:
    """Time this session read its ``* n EXISTS``."""
    while not (line := await reader.readline()).endswith(b" EXISTS\r\n"):
        if not line:
            raise RuntimeError("closed before EXISTS")
    return time.monotonic()


# -- the run ---------------------------------------------------------------------------

async def run(args: argparse.Namespace, folder: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * (args.idle + args.sessions) + 200  # both ends live in this machine; the daemon inherits
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    ca = CertAuthority(folder / "ca")
    ports = {"imap": free_port(), "imaps": free_port(), "smtp": free_port()}
    values = throwaway_config_values(folder, ports=ports)
    for name in cfg.LISTENERS:
        if name not in ports:
            values[f"listeners.{name}.enabled"] = False
    per_user = -(-args.sessions // args.users)
    values.update({
        "tls.cert_file": str(ca.cert_file), "tls.key_file": str(ca.key_file),
        "licences.seats": args.users + 1,
        "imap.max_connections_per_address": args.idle + args.sessions + 10,
        "imap.max_connections_per_user": per_user + 2,
        "imap.login_timeout_seconds": args.deadline,  # idle connections must outlive the run
    })
    config_path = write_config(folder / "config.toml", values)
    store, accounts, _ = await open_services(cfg.load(config_path), PasswordHasher(fast=True))
    for i in range(args.users):
        await accounts.add_user(user(i), f"Idle {i}", PASSWORD)
    await store.close()

    log = (folder / "daemon.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), "--serve", str(config_path),
        stdout=asyncio.subprocess.PIPE, stderr=log, cwd=ROOT)
    open_conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"READY":
            raise RuntimeError(f"daemon did not start: {line!r}; see {folder / 'daemon.log'}")
        tls = ca.client_context() if args.tls else None
        bench = Bench(ports["imaps" if args.tls else "imap"], tls)
        kind = "IMAPS" if args.tls else "plain IMAP"
        print(f"daemon pid {proc.pid}; {kind}; {args.idle} idle connections, {args.sessions} IDLE sessions "
              f"over {args.users} users", flush=True)

        await bench.warm_up(user(0))
        await asyncio.sleep(SETTLE)
        base = rss_kib(proc.pid)

        started = time.monotonic()
        idle = await batches(lambda i: bench.connect(), args.idle)
        open_conns += idle
        opened_idle = time.monotonic() - started
        await asyncio.sleep(SETTLE)
        with_idle = rss_kib(proc.pid)

        started = time.monotonic()
        sessions = await batches(lambda i: bench.idle_session(user(i % args.users)), args.sessions)
        open_conns += sessions
        opened_sessions = time.monotonic() - started
        await asyncio.sleep(SETTLE)
        with_sessions = rss_kib(proc.pid)

        waits = [asyncio.ensure_future(wait_exists(r)) for r, _ in sessions]
        sent, accepted = await smtp_to_all(ports["smtp"], [user(i) for i in range(args.users)])
        seen = await asyncio.wait_for(asyncio.gather(*waits), FANOUT_TIMEOUT)
        after_fanout = rss_kib(proc.pid)
        still_open = sum(not r.at_eof() for r, _ in idle)
        peak = rss_kib(proc.pid, "VmHWM")

        per_idle = (with_idle - base) / max(args.idle, 1)
        per_session = (with_sessions - with_idle) / max(args.sessions, 1)
        delays = sorted(t - sent for t in seen)
        print(f"daemon RSS: {base / 1024:.1f} MiB warmed up, {with_idle / 1024:.1f} MiB with {args.idle} idle "
              f"connections, {with_sessions / 1024:.1f} MiB with {args.sessions} IDLE sessions more, "
              f"{after_fanout / 1024:.1f} MiB after the fan-out (peak {peak / 1024:.1f} MiB)")
        print(f"per idle connection (greeted, not authenticated): {per_idle:.1f} KiB "
              f"(opened in {opened_idle:.1f} s)")
        print(f"per IDLE session (logged in, INBOX selected): {per_session:.1f} KiB "
              f"(opened in {opened_sessions:.1f} s)")
        print(f"fan-out: SMTP 250 {accepted - sent:.3f} s after the end of DATA; EXISTS reached "
              f"{len(seen)}/{args.sessions} sessions, median {statistics.median(delays):.3f} s, "
              f"last {delays[-1]:.3f} s after the end of DATA")
        print(f"idle connections still open after all that: {still_open}/{args.idle}")
    finally:
        for _, writer in open_conns:
            writer.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=int, default=1000, help="unauthenticated idle connections")
    ap.add_argument("--sessions", type=int, default=1000, help="logged-in IDLE sessions")
    ap.add_argument("--users", type=int, default=10, help="users the IDLE sessions are spread over")
    ap.add_argument("--tls", action="store_true", help="connect over IMAPS instead of plain IMAP")
    ap.add_argument("--deadline", type=float, default=900.0, help="seconds before the whole run is stopped")
    ap.add_argument("--keep", type=Path, help="keep the store, config and daemon log in this folder")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the child: run the daemon
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    if args.users < 1 or args.sessions < 0 or args.idle < 0:
        ap.error("--users must be at least 1, --idle and --sessions not negative")

    async def bounded(folder: Path) -> None:
        await asyncio.wait_for(run(args, folder), args.deadline)

    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        asyncio.run(bounded(args.keep))
    else:
        with tempfile.TemporaryDirectory(prefix="idle-bench-") as tmp:
            asyncio.run(bounded(Path(tmp)))


if __name__ == "__main__":
    main()
