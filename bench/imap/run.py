"""IMAP benchmark (issue 4 §7): APPEND/s, SELECT and FETCH 1:* on large folders, full-body
FETCH MB/s, UID SEARCH latency, STORE 1:*, and the daemon's peak memory.

    python bench/imap/run.py [--sizes 10000,100000] [--appends 2000] [--data DIR]

Folders of the given sizes are filled through the store API before the daemon starts
(with their message index, as APPEND would build it); everything measured then goes
over loopback IMAP to the daemon running as a subprocess. With ``--data DIR`` the
filled store is kept in DIR and reused by later runs (filling 100,000 messages takes
minutes). Not a test: figures depend on the machine.

The client reads responses in large chunks and finds the tagged line with one regex
scan per chunk (skipping literals), so it costs far less CPU than the server it
measures; on a 2-core machine both share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mailserver import config as cfg  # noqa: E402
from mailserver.daemon import open_services  # noqa: E402
from mailserver.imap.mime import index_json  # noqa: E402
from tests.helpers import free_port, throwaway_config_values, write_config  # noqa: E402

USER = "bench@example.test"
PASSWORD = "bench password 1"
WORDS = ("invoice report lunch meeting project budget travel update review release plan "
         "contract holiday agenda minutes draft offer order payment notice").split()
#: APPENDs in flight on one connection (LITERAL+ lets a client pipeline them).
PIPELINE = 64
#: Parts of the benchmark, selectable with --only.
PARTS = ("append", "fetch", "body", "search", "store")
#: UID SEARCH keys timed on the largest folder: a common word in From, a common and a
#: rare word in Subject, a common word in the text.
SEARCHES = ("FROM remote7", "SUBJECT invoice", "SUBJECT #99999", "TEXT holiday")


def make_message(i: int, rng: random.Random) -> bytes:
    subject = " ".join(rng.choice(WORDS) for _ in range(4)) + f" #{i}"
    sender = f"{rng.choice(WORDS)}{rng.randrange(1000)}@remote{rng.randrange(50)}.example"
    body = "\r\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(20))
    return (f"From: Sender {i} <{sender}>\r\nTo: {USER}\r\nSubject: {subject}\r\n"
            f"Date: Mon, 7 Feb 2022 21:52:25 +0100\r\nMessage-ID: <{i}.{rng.random()}@remote.example>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{body}\r\n").encode()


#: Bytes asked for per socket read by the benchmark client.
READ_CHUNK = 1 << 20
#: A literal announcement at the end of a response line (RFC 3501 §4.3).
_LITERAL = re.compile(rb"\{(\d+)\}\r\n")


class Client:
    """Minimal pipelining IMAP client: counts response bytes, waits for tagged lines.

    Responses are read in chunks of up to :data:`READ_CHUNK` bytes and scanned with
    ``bytes.find``/regex (literals skipped by their announced length), never line by
    line, so the client is cheap next to the server even for 100,000-line FETCHes.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w, self.n = reader, writer, 0
        # Unconsumed input, always starting with the CRLF that ended the last line
        # consumed, so every response line is found as CRLF + text.
        self.buf = b"\r\n"

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        c = cls(reader, writer)
        await reader.readline()
        await c.cmd(f'LOGIN {USER} "{PASSWORD}"')
        return c

    def send(self, data: bytes) -> bytes:
        self.n += 1
        tag = b"b%d" % self.n
        self.w.write(tag + b" " + data + b"\r\n")
        return tag

    async def _more(self) -> None:
        data = await self.r.read(READ_CHUNK)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    async def wait(self, tag: bytes) -> tuple[bytes, int]:
        """Read up to and including the tagged response to ``tag``; (that line, bytes read)."""
        total = -len(self.buf)
        marker = b"\r\n" + tag + b" "
        pos = 0
        while True:
            hit = self.buf.find(marker, pos)
            lit = _LITERAL.search(self.buf, pos)
            if lit is not None and (hit < 0 or lit.start() < hit):
                end = lit.end() + int(lit.group(1))
                if len(self.buf) < end:  # drop what is scanned before reading on
                    cut = lit.end()
                    total += cut
                    self.buf = self.buf[cut:]
                    end -= cut
                    while len(self.buf) < end:
                        await self._more()
                pos = end
                continue
            if hit >= 0:
                eol = self.buf.find(b"\r\n", hit + 2)
                while eol < 0:
                    await self._more()
                    eol = self.buf.find(b"\r\n", hit + 2)
                line = self.buf[hit + 2 : eol + 2]
                total += len(self.buf)
                self.buf = self.buf[eol:]
                total -= len(self.buf)
                if line.split()[1] != b"OK":
                    raise RuntimeError(line)
                return line, total
            # Nothing found: drop what is scanned, keeping the last CRLF (a marker or
            # literal announcement may straddle two reads).
            keep = max(self.buf.rfind(b"\r\n", pos), pos)
            total += keep
            self.buf = self.buf[keep:]
            pos = 0
            await self._more()

    async def cmd(self, text: str) -> tuple[bytes, int]:
        return await self.wait(self.send(text.encode()))


async def timed(c: Client, text: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    _, nbytes = await c.cmd(text)
    return time.perf_counter() - t0, nbytes


def index_all(raws: list[bytes]) -> list[str]:
    return [index_json(r) for r in raws]


async def fill(config: cfg.Config, sizes: list[int]) -> None:
    """Create the bench user and a folder ``F<size>`` per size (kept when already there)."""
    store, accounts, _ = await open_services(config)
    account = await store.directory.get_account(USER)
    if account is None:
        account = await accounts.add_user(USER, "Bench", PASSWORD)
    rng = random.Random(1)
    loop = asyncio.get_running_loop()
    for size in sizes:
        existing = await store.mail.get_folder(account.id, f"F{size}")
        if existing is not None and existing.messages == size:
            continue
        if existing is not None:  # a fill that was interrupted
            await store.mail.delete_folder(account.id, f"F{size}")
        folder = await store.mail.create_folder(account.id, f"F{size}")
        for start in range(0, size, 500):
            raws = [make_message(start + i, rng) for i in range(min(500, size - start))]
            indexes = await loop.run_in_executor(None, index_all, raws)
            await asyncio.gather(*(store.mail.append(folder.id, r, index_json=ix) for r, ix in zip(raws, indexes, strict=True)))
        print(f"filled F{size}: {size} messages", flush=True)
    await store.close()


def spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the daemon (returns before it listens)."""
    return subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def bench_append(port: int, count: int) -> tuple[float, float]:
    """(pipelined msgs/s, one-at-a-time msgs/s)."""
    rng = random.Random(2)
    msgs = [make_message(i, rng) for i in range(count)]
    c = await Client.connect(port)
    try:
        await c.cmd("DELETE Appends")  # left by an earlier run on the same --data
    except RuntimeError:
        pass
    await c.cmd("CREATE Appends")
    t0 = time.perf_counter()
    pending: list[bytes] = []
    for m in msgs:
        pending.append(c.send(b"APPEND Appends {%d+}\r\n" % len(m) + m))
        if len(pending) >= PIPELINE:
            await c.wait(pending.pop(0))
    for tag in pending:
        await c.wait(tag)
    piped = count / (time.perf_counter() - t0)
    n = min(count, 300)
    t0 = time.perf_counter()
    for m in msgs[:n]:
        await c.wait(c.send(b"APPEND Appends {%d+}\r\n" % len(m) + m))
    single = n / (time.perf_counter() - t0)
    c.w.close()
    return piped, single


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--data", type=Path, help="keep the filled store here and reuse it")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run (default all: {','.join(PARTS)})")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    parts = set(args.only.split(","))
    if args.data is not None:
        args.data.mkdir(parents=True, exist_ok=True)
    tmp = args.data.resolve() if args.data is not None else Path(tempfile.mkdtemp(prefix="imap-bench-"))
    port = free_port()
    values = throwaway_config_values(tmp, ports={"imap": port})
    for name in ("smtp", "submission", "submissions", "imaps", "http"):
        values[f"listeners.{name}.enabled"] = False
    values["server.log_level"] = "warning"
    config_path = write_config(tmp / "config.toml", values)
    config = cfg.load(config_path)
    await fill(config, sizes)
    env = {k: v for k, v in os.environ.items() if k != cfg.ENV_VAR}
    proc = spawn([sys.executable, "-m", "mailserver", "serve", "--config", str(config_path)], env)
    rows: list[tuple[str, str]] = []
    try:
        for _ in range(300):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        if "append" in parts:
            piped, single = await bench_append(port, args.appends)
            rows.append((f"APPEND, {PIPELINE} pipelined (LITERAL+), ~1.4 KB", f"{piped:,.0f} msg/s"))
            rows.append(("APPEND, one at a time", f"{single:,.0f} msg/s"))
        c = await Client.connect(port)
        for size in sizes:
            t, _ = await timed(c, f"SELECT F{size}")
            rows.append((f"SELECT {size:,}-message folder", f"{t * 1000:,.0f} ms"))
            if "fetch" in parts:
                t, nbytes = await timed(c, "FETCH 1:* (UID FLAGS ENVELOPE RFC822.SIZE)")
                rows.append((f"FETCH 1:* (UID FLAGS ENVELOPE RFC822.SIZE), {size:,}",
                             f"{t:.2f} s ({nbytes / 2**20:.1f} MiB)"))
        big = sizes[-1]
        await c.cmd(f"SELECT F{big}")
        if "body" in parts:
            t, nbytes = await timed(c, "FETCH 1:5000 BODY.PEEK[]")
            rows.append(("full-body FETCH 1:5000 BODY.PEEK[]", f"{nbytes / 2**20 / t:.1f} MiB/s"))
        if "search" in parts:
            for key in SEARCHES:
                t, _ = await timed(c, f"UID SEARCH {key}")
                rows.append((f"UID SEARCH {key}, {big:,}", f"{t * 1000:,.0f} ms"))
        if "store" in parts:
            t, _ = await timed(c, "STORE 1:* +FLAGS.SILENT (\\Flagged)")
            rows.append((f"STORE 1:* +FLAGS.SILENT (\\Flagged), {big:,}", f"{t:.2f} s"))
            t, nbytes = await timed(c, "STORE 1:* -FLAGS (\\Flagged)")
            rows.append((f"STORE 1:* -FLAGS (\\Flagged), {big:,} (with responses)", f"{t:.2f} s"))
        c.w.close()
        rows.append(("daemon peak RSS (VmHWM)", f"{peak_rss_mib(proc.pid):.0f} MiB"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    width = max(len(a) for a, _ in rows)
    print(f"| {'measurement':<{width}} | result |\n|{'-' * (width + 2)}|--------|")
    for a, b in rows:
        print(f"| {a:<{width}} | {b} |")


if __name__ == "__main__":
    asyncio.run(main())
