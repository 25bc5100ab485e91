"""Slowloris against the SMTP listener: many byte-at-a-time clients, and who gets cut when.

    python bench/abuse/slowloris.py [--clients 300] [--interval 0.05] [--modes line,data,noop]
                                    [--command-timeout 5] [--data-timeout 5] [--min-data-rate 500]
                                    [--session-timeout 20] [--limit-check 200] [--keep DIR]

Starts ``python -m mailserver serve`` (SQLite, only the SMTP listener, throwaway folder)
with short ``smtp.*`` deadlines, then for each mode opens ``--clients`` connections from
this process over loopback, all at once, each sending one byte every ``--interval``
seconds:

* ``line``: ``EHLO xxxx...`` that never ends (cut by smtp.command_timeout_seconds);
* ``data``: a valid transaction up to DATA, then message data one byte at a time (cut
  by smtp.data_timeout_seconds + received / smtp.min_data_rate);
* ``noop``: complete ``NOOP`` lines, each sent one byte at a time (every line is on
  time, so only smtp.session_timeout_seconds cuts them).

Meanwhile one ordinary client sends a message every 0.2 s; its transaction times show
whether the server keeps serving. Per mode it prints: clients cut with 421 4.4.2 (and
those that got something else or were never cut), seconds from the first byte to the
cut (min / median / max), the daemon's RSS before the clients, with all of them
connected, and after they were cut, and the ordinary client's messages and latency. Each mode gets a fresh daemon.

``--limit-check N`` then opens N idle connections from one address with the default
``smtp.max_connections_per_address`` (50) and counts the 220 greetings and the 421 4.7.0
refusals.

Bounded: each mode stops at its deadline plus a margin (clients still open then are
counted as not cut and closed), and the daemon is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from auth.passwords import PasswordHasher  # noqa: E402
from mailserver import config as cfg  # noqa: E402
from mailserver.daemon import open_services  # noqa: E402
from tests.helpers import free_port, throwaway_config_values, write_config  # noqa: E402

BOB = "bob@example.test"
#: Seconds past a mode's own deadline before the run gives up on the remaining clients.
MARGIN = 10.0
#: Connections opened per batch (the listen backlog is 100).
CONNECT_BATCH = 50
#: Seconds between the ordinary client's messages.
NORMAL_EVERY = 0.2


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@dataclass
class Outcome:
    cut_after: list[float] = field(default_factory=list)  # seconds from first byte to 421 4.4.2 + close
    other: list[bytes] = field(default_factory=list)  # closed with something else
    not_cut: int = 0
    refused: int = 0  # 421 4.7.0 at connect
    trickling: int = 0  # clients that reached the slow phase


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    """One whole SMTP reply (the last line)."""
    while True:
        line = await asyncio.wait_for(reader.readline(), 15)
        if not line or line[3:4] != b"-":
            return line


async def slow_client(port: int, mode: str, interval: float, give_up: float, out: Outcome) -> None:
    """One slow client; records how it ended."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as err:
        out.other.append(f"connect: {err}".encode())
        return
    try:
        greeting = await read_reply(reader)
        if greeting.startswith(b"421"):
            out.refused += 1
            return
        if mode == "data":
            for command in (b"EHLO slow.example\r\n", b"MAIL FROM:<slow@elsewhere.example>\r\n",
                            f"RCPT TO:<{BOB}>\r\n".encode(), b"DATA\r\n"):
                writer.write(command)
                reply = await read_reply(reader)
                if reply[:1] not in (b"2", b"3"):
                    out.other.append(reply)
                    return
            prefix, filler = b"Subject: slow\r\n\r\n", b"y"
        elif mode == "line":
            prefix, filler = b"EHLO ", b"x"
        else:
            prefix, filler = b"", b"NOOP\r\n"
        out.trickling += 1
        start = time.monotonic()
        pending = asyncio.ensure_future(reader.read())
        i = 0
        while not pending.done():
            if time.monotonic() - start > give_up:
                out.not_cut += 1
                pending.cancel()
                return
            if mode == "noop" and reader._buffer:  # type: ignore[attr-defined]  # replies to our NOOPs
                reader._buffer.clear()  # type: ignore[attr-defined]
            try:
                j = i - len(prefix)
                writer.write(prefix[i:i + 1] if j < 0 else filler[j % len(filler):j % len(filler) + 1])
            except (ConnectionError, RuntimeError):
                break
            i += 1
            await asyncio.wait([pending], timeout=interval)
        rest = await asyncio.wait_for(pending, 15)
        took = time.monotonic() - start
        last = rest.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]
        if last.startswith(b"421 4.4.2 "):
            out.cut_after.append(took)
        else:
            out.other.append(last[:60])
    except (ConnectionError, TimeoutError) as err:
        out.other.append(repr(err).encode())
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def normal_client(port: int, stop: asyncio.Event, times: list[float], failures: list[bytes]) -> None:
    """Sends a message every NORMAL_EVERY seconds, each on a new connection, until stopped."""
    n = 0
    while not stop.is_set():
        n += 1
        start = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            replies = [await read_reply(reader)]
            for command in (b"EHLO normal.example\r\n", b"MAIL FROM:<n@elsewhere.example>\r\n",
                            f"RCPT TO:<{BOB}>\r\n".encode(), b"DATA\r\n",
                            f"Subject: normal {n}\r\n\r\nhello\r\n.\r\n".encode(), b"QUIT\r\n"):
                writer.write(command)
                replies.append(await read_reply(reader))
            writer.close()
            if replies[5].startswith(b"250 "):
                times.append(time.monotonic() - start)
            else:
                failures.append(b" | ".join(r.strip() for r in replies))
        except (OSError, TimeoutError) as err:
            failures.append(repr(err).encode())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), NORMAL_EVERY)


class Daemon:
    def __init__(self, config_path: Path, log_path: Path, port: int) -> None:
        self.config_path, self.log_path, self.port = config_path, log_path, port
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        env = dict(os.environ)
        env.pop(cfg.ENV_VAR, None)
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "-m", "mailserver", "serve", "--config", str(self.config_path)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited; see {self.log_path}")
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"daemon did not listen; see {self.log_path}") from None
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, 10)


async def run_mode(daemon: Daemon, mode: str, args: argparse.Namespace) -> None:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    own = {"line": args.command_timeout, "noop": args.session_timeout,
           "data": args.data_timeout / max(1e-9, 1 - (1 / args.interval) / args.min_data_rate)}[mode]
    give_up = own + MARGIN
    before = rss_kib(pid)
    out = Outcome()
    stop = asyncio.Event()
    normal_times: list[float] = []
    normal_failures: list[bytes] = []
    normal = asyncio.create_task(normal_client(daemon.port, stop, normal_times, normal_failures))
    started = time.monotonic()
    tasks = []
    for i in range(0, args.clients, CONNECT_BATCH):
        batch = [asyncio.create_task(slow_client(daemon.port, mode, args.interval, give_up, out))
                 for _ in range(min(CONNECT_BATCH, args.clients - i))]
        tasks += batch
        await asyncio.sleep(0.05)
    for _ in range(int(own / 0.05)):  # until every client trickles (or the deadline nears)
        if out.trickling + out.refused + len(out.other) >= args.clients:
            break
        await asyncio.sleep(0.05)
    held = rss_kib(pid)
    reached = out.trickling
    await asyncio.gather(*tasks)
    stop.set()
    await normal
    await asyncio.sleep(0.5)
    after = rss_kib(pid)
    cut = sorted(out.cut_after)
    print(f"\n== mode {mode}: {args.clients} clients, one byte every {args.interval} s "
          f"(deadline here ~{own:.1f} s), {time.monotonic() - started:.1f} s")
    print(f"  cut with 421 4.4.2: {len(cut)}; other ending: {len(out.other)}; not cut within {give_up:.0f} s: "
          f"{out.not_cut}; refused at connect: {out.refused}")
    if cut:
        print(f"  seconds from first byte to cut: min {cut[0]:.2f}, median {statistics.median(cut):.2f}, max {cut[-1]:.2f}")
    if out.other:
        print(f"  other endings (first 3): {out.other[:3]}")
    print(f"  daemon RSS KiB: before {before:,}, with {reached} clients trickling {held:,} (+{held - before:,}, "
          f"{(held - before) / max(1, reached):.1f} KiB per client), after the cuts {after:,}")
    lat = sorted(normal_times)
    if lat:
        print(f"  ordinary client meanwhile: {len(lat)} messages accepted, {len(normal_failures)} failed; "
              f"transaction s p50 {statistics.median(lat):.3f}, max {lat[-1]:.3f}")
    else:
        print(f"  ordinary client meanwhile: none accepted, {len(normal_failures)} failed {normal_failures[:2]}")


async def limit_check(port: int, n: int) -> None:
    """N idle connections from one address against the default per-address limit."""
    greeted = refused = other = 0
    writers = []
    for _ in range(n):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            other += 1
            continue
        writers.append(writer)
        line = await read_reply(reader)
        if line.startswith(b"220"):
            greeted += 1
        elif line.startswith(b"421 4.7.0 Too many connections"):
            refused += 1
        else:
            other += 1
    for w in writers:
        w.close()
    print(f"\n== per-address limit: {n} connections from 127.0.0.1 (smtp.max_connections_per_address = 50): "
          f"{greeted} greeted, {refused} refused with 421 4.7.0, {other} other")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=300)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--modes", default="line,data,noop")
    ap.add_argument("--command-timeout", type=float, default=5.0)
    ap.add_argument("--data-timeout", type=float, default=5.0)
    ap.add_argument("--min-data-rate", type=int, default=500)
    ap.add_argument("--session-timeout", type=float, default=20.0)
    ap.add_argument("--limit-check", type=int, default=200)
    ap.add_argument("--keep", type=Path, help="keep the daemon's folder here (default: a temporary one)")
    args = ap.parse_args()

    tmp = args.keep or Path(tempfile.mkdtemp(prefix="slowloris-"))
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    common: dict[str, Any] = {f"listeners.{n}.enabled": False for n in cfg.LISTENERS if n != "smtp"}
    common |= {"listeners.smtp.port": port, "server.log_level": "warning"}
    attack = throwaway_config_values(tmp) | common | {
        "smtp.command_timeout_seconds": args.command_timeout,
        "smtp.data_timeout_seconds": args.data_timeout,
        "smtp.min_data_rate": args.min_data_rate,
        "smtp.session_timeout_seconds": args.session_timeout,
        "smtp.max_connections_per_address": args.clients + 100,
    }
    config_path = write_config(tmp / "config.toml", attack)
    store, accounts, _ = await open_services(cfg.load(config_path), hasher=PasswordHasher(fast=True))
    await accounts.add_user(BOB, "Bob", "slow horse battery staple")
    await store.close()
    print(f"daemon: python -m mailserver serve, SMTP on 127.0.0.1:{port}, folder {tmp}; "
          f"load average before {os.getloadavg()[0]:.2f}")
    daemon = Daemon(config_path, tmp / "daemon.log", port)
    try:
        for mode in args.modes.split(","):  # a fresh daemon each, so RSS figures compare
            await daemon.start()
            await asyncio.sleep(0.5)
            await run_mode(daemon, mode.strip(), args)
            await daemon.stop()
        if args.limit_check:
            write_config(tmp / "config.toml", throwaway_config_values(tmp) | common)  # default limit
            await daemon.start()
            await limit_check(port, args.limit_check)
    finally:
        await daemon.stop()
        print(f"\nload average after {os.getloadavg()[0]:.2f}")
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
