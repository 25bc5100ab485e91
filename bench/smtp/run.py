"""SMTP ingestion benchmark: our daemon against a bare aiosmtpd do-nothing server.

    python bench/smtp/run.py [--seconds 3] [--sizes 1024,65536] [--connections 1,10,50]

For each message size and connection count, N clients send messages back to back over
loopback to one local recipient for ``--seconds``; a message counts once it got 250
(for our daemon 250 means durably committed). Prints messages/s, p50/p99 transaction
latency (MAIL FROM to the 250 after DATA), our rate as a fraction of the bare server's,
and the daemon's peak RSS. Both servers run as subprocesses; the load generator is this
process. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mailserver import config as cfg  # noqa: E402
from mailserver.daemon import open_services  # noqa: E402
from tests.helpers import free_port, throwaway_config_values, write_config  # noqa: E402

BARE_SERVER = """
import asyncio, sys
from aiosmtpd.smtp import SMTP

class Handler:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

async def main(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Handler(), data_size_limit=None), "127.0.0.1", port)
    await server.serve_forever()

asyncio.run(main(int(sys.argv[1])))
"""


def make_message(size: int) -> bytes:
    head = b"From: bench@elsewhere.example\r\nTo: bob@example.test\r\nSubject: bench\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


async def _reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def client(port: int, data: bytes, until: float, latencies: list[float]) -> int:
    """Send messages until ``until``; append each transaction's latency; return count."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _reply(reader)
    writer.write(b"EHLO bench.example\r\n")
    await _reply(reader)
    sent = 0
    while time.monotonic() < until:
        start = time.perf_counter()
        for cmd in (b"MAIL FROM:<bench@elsewhere.example>\r\n", b"RCPT TO:<bob@example.test>\r\n", b"DATA\r\n"):
            writer.write(cmd)
            code = await _reply(reader)
            if code >= 400:
                raise RuntimeError(f"{cmd!r} -> {code}")
        writer.write(data + b".\r\n")
        if await _reply(reader) != 250:
            raise RuntimeError("DATA refused")
        latencies.append(time.perf_counter() - start)
        sent += 1
    writer.write(b"QUIT\r\n")
    writer.close()
    return sent


async def measure(port: int, size: int, connections: int, seconds: float) -> tuple[float, float, float, int]:
    data = make_message(size)
    latencies: list[float] = []
    until = time.monotonic() + seconds
    t0 = time.monotonic()
    counts = await asyncio.gather(*(client(port, data, until, latencies) for _ in range(connections)))
    elapsed = time.monotonic() - t0
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return sum(counts) / elapsed, p50, p99, sum(counts)


async def wait_port(port: int) -> None:
    for _ in range(300):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(port)


def spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a server process (quick: it returns before the server listens)."""
    return subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sizes", default="1024,65536")
    parser.add_argument("--connections", default="1,10,50")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    conns = [int(c) for c in args.connections.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="smtp-bench-"))
    ours_port, bare_port = free_port(), free_port()
    values = throwaway_config_values(tmp, ports={"smtp": ours_port})
    for name in ("submission", "submissions", "imap", "imaps", "http"):
        values[f"listeners.{name}.enabled"] = False
    values["server.log_level"] = "warning"
    config_path = write_config(tmp / "config.toml", values)
    config = cfg.load(config_path)
    store, accounts, _ = await open_services(config)
    await accounts.add_user("bob@example.test", "Bob", "pw")
    await store.close()

    env = {k: v for k, v in os.environ.items() if k != cfg.ENV_VAR}
    ours = spawn([sys.executable, "-m", "mailserver", "serve", "--config", str(config_path)], env)
    bare = spawn([sys.executable, "-c", BARE_SERVER, str(bare_port)], env)
    rows = []
    acked = 0
    try:
        await wait_port(ours_port)
        await wait_port(bare_port)
        for size in sizes:
            for n in conns:
                bare_rate, bare_p50, bare_p99, _ = await measure(bare_port, size, n, args.seconds)
                rate, p50, p99, count = await measure(ours_port, size, n, args.seconds)
                acked += count
                rows.append((size, n, rate, p50, p99, bare_rate, bare_p50, bare_p99))
        rss = peak_rss_mib(ours.pid)
    finally:
        ours.terminate()
        bare.terminate()
        ours.wait(30)
        bare.wait(30)

    store, _, _ = await open_services(config)
    bob = await store.directory.get_account("bob@example.test")
    assert bob is not None
    folder = await store.mail.get_folder(bob.id, "INBOX")
    assert folder is not None
    stored = len(await store.mail.list_messages(folder.id))
    await store.close()
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"SMTP ingestion, {args.seconds:g}s per cell, loopback, {os.cpu_count()} CPUs; one local recipient, 250 = durably stored")
    print(f"{'size':>6} {'conns':>5} | {'ours msg/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'bare msg/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'ours/bare':>9}")
    for size, n, rate, p50, p99, brate, bp50, bp99 in rows:
        label = f"{size // 1024}KiB"
        print(f"{label:>6} {n:>5} | {rate:>10.0f} {p50:>7.1f} {p99:>7.1f} | {brate:>10.0f} {bp50:>7.1f} {bp99:>7.1f} | {rate / brate:>9.2f}")
    print(f"daemon peak RSS: {rss:.1f} MiB; acknowledged with 250: {acked}, in the store after the run: {stored}")


if __name__ == "__main__":
    asyncio.run(main())
