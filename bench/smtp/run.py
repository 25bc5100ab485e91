"""SMTP ingestion benchmark: our daemon beside two do-nothing servers.

    python bench/smtp/run.py [--seconds 3] [--sizes 1024,65536] [--connections 1,10,50]
                             [--profile OUT.txt]

For each message size and connection count, N clients send messages back to back over
loopback to one local recipient for ``--seconds``; a message counts once it got 250
(for our daemon 250 means durably committed). Three servers run as subprocesses, each
measured in turn in every cell:

* ours: ``python -m mailserver serve`` (inbound listener, throwaway SQLite store);
* aiosmtpd: a stock aiosmtpd server with a do-nothing handler (reads DATA line by line);
* block: a minimal asyncio SMTP server written here that reads DATA in blocks (scans
  for CRLF.CRLF, undoes dot-stuffing on whole buffers) and does nothing with the mail.

Prints messages/s and p50/p99 transaction latency (MAIL FROM to the 250 after DATA) for
each, our rate as a ratio of both, our daemon's CPU time per message (steadier than rates on
a shared machine), the load average before and after, and the daemon's peak RSS.
``--profile OUT`` samples the daemon with py-spy (``pip install py-spy``) during our cell
for the first size at the largest connection count and prints where its threads spent
their time (raw stacks in OUT).
The load generator is this process. Not a test: figures depend on the machine.
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
from collections import Counter
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


BLOCK_SERVER = """
import asyncio, sys

END = b"\\r\\n.\\r\\n"


class Block(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = bytearray()
        self.in_data = False
        self.scanned = 0
        transport.write(b"220 block ESMTP\\r\\n")

    def data_received(self, data):
        self.buf += data
        while True:
            if self.in_data:
                end = self.buf.find(END, self.scanned)
                if end < 0:
                    self.scanned = max(0, len(self.buf) - 4)
                    return
                message = bytes(self.buf[:end + 2]).replace(b"\\r\\n.", b"\\r\\n")[2:]
                del self.buf[:end + 5]
                self.in_data = False
                self.t.write(b"250 OK %d octets\\r\\n" % len(message))
                continue
            nl = self.buf.find(b"\\r\\n")
            if nl < 0:
                return
            verb = bytes(self.buf[:4]).upper()
            del self.buf[:nl + 2]
            if verb == b"EHLO":
                self.t.write(b"250-block\\r\\n250-PIPELINING\\r\\n250 8BITMIME\\r\\n")
            elif verb == b"DATA":
                self.t.write(b"354 go ahead\\r\\n")
                self.buf[:0] = b"\\r\\n"  # the CRLF that ended DATA begins the first line
                self.in_data = True
                self.scanned = 0
            elif verb == b"QUIT":
                self.t.write(b"221 bye\\r\\n")
                self.t.close()
                return
            else:
                self.t.write(b"250 OK\\r\\n")


async def main(port):
    server = await asyncio.get_running_loop().create_server(Block, "127.0.0.1", port)
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (proc(5): utime and stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_profiler(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` (all threads, idle included) for ``seconds``, raw stacks to ``out``."""
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--threads", "--idle",
         "--duration", str(max(1, int(seconds))), "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def summarise_profile(path: Path, top: int = 12) -> list[str]:
    """Per thread: share of busy samples, and the functions with most own time."""
    idle = ("select (selectors", "_worker (concurrent", "_connection_worker_thread (aiosqlite/core.py:59)",
            "Writer._run (storage/sqlite/writer.py", "wait (threading", "_run (storage/sqlite/writer.py",
            "Checkpointer._run (storage/sqlite/checkpoint.py")
    threads: dict[str, Counter[str]] = {}
    busy: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        count = int(n)
        total += count
        if any(mark in frames[-1] for mark in idle):
            continue
        name = frames[0].split(": ", 1)[-1] if ": " in frames[0] else frames[0]
        busy[name] += count
        threads.setdefault(name, Counter())[frames[-1]] += count
    lines = [f"profile of the daemon ({total} samples over all threads): per thread, busy samples"
             " and the functions with most own time, as % of that thread's busy samples"]
    for name, count in busy.most_common(4):
        lines.append(f"  {name}: {count} busy samples")
        for frame, c in threads[name].most_common(top):
            lines.append(f"    {100 * c / count:5.1f}%  {frame}")
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sizes", default="1024,65536")
    parser.add_argument("--connections", default="1,10,50")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy raw output file; the daemon is sampled during our cell for the first size"
                             " at the largest connection count")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    conns = [int(c) for c in args.connections.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="smtp-bench-"))
    ours_port, bare_port, block_port = free_port(), free_port(), free_port()
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
    block = spawn([sys.executable, "-c", BLOCK_SERVER, str(block_port)], env)
    rows = []
    acked = 0
    load_before = os.getloadavg()
    profiler: subprocess.Popen[bytes] | None = None
    profile_cell = (sizes[0], max(conns))
    try:
        for port in (ours_port, bare_port, block_port):
            await wait_port(port)
        for size in sizes:
            for n in conns:
                bare_rate, bare_p50, bare_p99, _ = await measure(bare_port, size, n, args.seconds)
                block_rate, block_p50, block_p99, _ = await measure(block_port, size, n, args.seconds)
                profiler = None
                if args.profile is not None and (size, n) == profile_cell:
                    profiler = start_profiler(ours.pid, args.profile, args.seconds)
                    await asyncio.sleep(0.5)  # attached before the cell starts
                cpu_before = cpu_seconds(ours.pid)
                rate, p50, p99, count = await measure(ours_port, size, n, args.seconds)
                cpu_ms = (cpu_seconds(ours.pid) - cpu_before) * 1000 / max(1, count)
                if profiler is not None:
                    await asyncio.to_thread(profiler.wait, args.seconds + 30)
                acked += count
                rows.append((size, n, rate, p50, p99, bare_rate, bare_p50, bare_p99, block_rate, block_p50, block_p99,
                             cpu_ms))
        rss = peak_rss_mib(ours.pid)
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.terminate()
        for proc in (ours, bare, block):
            proc.terminate()
        for proc in (ours, bare, block):
            proc.wait(30)
    load_after = os.getloadavg()

    store, _, _ = await open_services(config)
    bob = await store.directory.get_account("bob@example.test")
    assert bob is not None
    folder = await store.mail.get_folder(bob.id, "INBOX")
    assert folder is not None
    stored = len(await store.mail.list_messages(folder.id))
    await store.close()
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"SMTP ingestion, {args.seconds:g}s per cell, loopback, {os.cpu_count()} CPUs; one local recipient, 250 = durably stored")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}; after: {' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"{'size':>6} {'conns':>5} | {'ours msg/s':>10} {'p50':>6} {'p99':>6} | {'aiosmtpd':>8} {'p50':>6} {'p99':>6}"
          f" | {'block':>6} {'p50':>6} {'p99':>6} | {'/aiosmtpd':>9} {'/block':>6} | {'cpu ms/msg':>10}")
    for size, n, rate, p50, p99, brate, bp50, bp99, krate, kp50, kp99, cpu_ms in rows:
        label = f"{size // 1024}KiB"
        print(f"{label:>6} {n:>5} | {rate:>10.0f} {p50:>6.1f} {p99:>6.1f} | {brate:>8.0f} {bp50:>6.1f} {bp99:>6.1f}"
              f" | {krate:>6.0f} {kp50:>6.1f} {kp99:>6.1f} | {rate / brate:>9.2f} {rate / krate:>6.2f} | {cpu_ms:>10.2f}")
    print("(p50/p99: transaction latency in ms; /aiosmtpd, /block: our rate as a ratio of theirs;"
          " cpu ms/msg: our daemon's CPU time per stored message, all threads)")
    print(f"daemon peak RSS: {rss:.1f} MiB; acknowledged with 250: {acked}, in the store after the run: {stored}")
    if args.profile is not None and args.profile.exists():
        print("\n".join(summarise_profile(args.profile)))


if __name__ == "__main__":
    asyncio.run(main())
