"""kill -9 soak: the daemon is killed at random moments under mixed load, many times.

    python bench/soak/kill9.py [--cycles 30] [--seconds-per-cycle 4] [--seed 1]
                               [--no-retry] [--keep DIR] [--verbose]

One daemon (``python -m mailserver serve``, SQLite store) serves, on loopback:

* SMTP (MX listener) clients sending to a local mailbox (bob);
* submission clients (AUTH as alice) sending to external recipients, sometimes with bob
  as well; the outbound worker hands them to a sink MX on 127.0.0.2 (aiosmtpd, found
  through a real DNS server, dnslib on 127.0.0.1) that records every (Message-ID,
  recipient) it accepted, with the time;
* IMAP clients (imaplib, as carol) doing APPEND, then now and then SELECT, UID SEARCH,
  UID FETCH of Message-IDs, UID STORE +FLAGS (\\Deleted) and EXPUNGE.

Each cycle runs that load, sends SIGKILL to the daemon at a random moment (seeded),
restarts it, makes the queue due now (what ``mailserver queue retry --all`` does: the
killed daemon's claims would otherwise wait out their lease; with --no-retry they do,
which measures how late CLAIM_LEASE makes that mail), lets the outbound queue drain
(each row has the drain time and how many entries the killed daemon held claimed),
then checks, over everything acknowledged in every cycle so far:

* every message that got 250 (SMTP) or OK (APPEND) is in its mailbox exactly once
  (Message-IDs are recorded on the client side only after the 250/OK); APPENDed
  messages the client deleted (STORE \\Deleted answered OK, then EXPUNGE OK) are gone;
  a message whose deletion was asked but not confirmed may be either; no Message-ID is
  ever in a mailbox twice, acknowledged or not;
* UIDs are never reused: (mailbox, UIDVALIDITY, UID) -> Message-ID, from store scans,
  APPENDUID answers and FETCH answers, across all cycles, never names two messages;
  UIDNEXT never falls to or below a UID already seen;
* every acknowledged external recipient reached the sink; (Message-ID, recipient) pairs
  accepted by the sink more than once are counted as duplicates, split into those with
  a kill between the two acceptances (the kill fell between the remote 250 and our
  commit of the result: RFC 5321 §6.1 prefers a duplicate to a loss) and those without
  (a defect);
* ``PRAGMA integrity_check`` says ok and ``PRAGMA foreign_key_check`` finds nothing.

Prints a table per cycle and the totals; exit status 1 when any check failed. Bounded:
it stops after --cycles. tests/security/test_fault_kill9.py runs a short version in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import imaplib
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import SMTP, Envelope, Session  # noqa: E402
from dnslib import MX, QTYPE, RR, A, DNSLabel, DNSRecord  # noqa: E402
from dnslib.server import BaseResolver, DNSHandler, DNSServer  # noqa: E402

from auth.passwords import PasswordHasher  # noqa: E402
from delivery.outbound.worker import CLAIM_LEASE  # noqa: E402
from mailserver import config as cfg  # noqa: E402
from mailserver.daemon import open_services  # noqa: E402
from storage.sqlite import SqliteStore  # noqa: E402
from tests.helpers import free_port, throwaway_config_values, write_config  # noqa: E402

PASSWORD = "soak horse battery staple"
LOCAL, REMOTE = "example.test", "remote.test"
ALICE, BOB, CAROL = f"alice@{LOCAL}", f"bob@{LOCAL}", f"carol@{LOCAL}"
#: The sink MX's loopback address (Linux routes all of 127/8 to lo).
SINK_HOST = "127.0.0.2"

#: Load per cycle: concurrent clients of each kind. Enough that group commits, outbound
#: sends and IMAP writes are in flight at any moment of the kill; few enough for 2 cores.
LOCAL_SENDERS = 4
REMOTE_SENDERS = 2
IMAP_CLIENTS = 2
#: The kill falls uniformly in this fraction of the cycle's load time.
KILL_WINDOW = (0.3, 1.0)
#: Seconds to wait for the daemon's listeners, the queue to drain, clients to stop.
START_TIMEOUT = 30.0
DRAIN_TIMEOUT = 60.0
#: Without `queue retry`, mail the killed daemon had claimed waits up to CLAIM_LEASE more.
NO_RETRY_DRAIN_TIMEOUT = DRAIN_TIMEOUT + CLAIM_LEASE.total_seconds()
#: The soak's retry schedule (outbound.retry_schedule): an entry whose next_attempt is
#: later than this after the kill was claimed, not rescheduled, by the killed daemon.
RETRY_SECONDS = 1.0
STOP_TIMEOUT = 15.0
LOGIN_TIMEOUT = 10.0
#: Distinct external recipients (a small set, so recipients repeat across messages).
REMOTE_RCPTS = [f"r{i}@{REMOTE}" for i in range(8)]

_MSGID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
_FETCH_UID = re.compile(rb"UID (\d+)")


def message_id(data: bytes) -> str | None:
    """The first Message-ID field of a message, or None."""
    head = data.split(b"\r\n\r\n", 1)[0]
    m = _MSGID.search(head)
    return m.group(1).decode() if m else None


def make_message(mid: str, frm: str, to: str, rng: random.Random) -> bytes:
    lines = rng.randint(5, 60)
    body = "".join(f"line {i} of {mid} {'x' * rng.randint(0, 60)}\r\n" for i in range(lines))
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: soak {mid}\r\nMessage-ID: {mid}\r\n"
            f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\n{body}").encode()


# -- the outside world: DNS and the sink MX

class _Zone(BaseResolver):
    """remote.test MX 10 sink.remote.test, sink.remote.test A 127.0.0.2; NXDOMAIN otherwise."""

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        if qname == REMOTE and qtype == "MX":
            reply.add_answer(RR(request.q.qname, QTYPE.MX, rdata=MX(DNSLabel(f"sink.{REMOTE}."), 10), ttl=60))
        elif qname == f"sink.{REMOTE}" and qtype == "A":
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(SINK_HOST), ttl=60))
        elif qname not in (REMOTE, f"sink.{REMOTE}"):
            reply.header.rcode = 3
        return reply


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


class Sink:
    """The remote MX: records (Message-ID, recipient, time) for every accepted message."""

    def __init__(self) -> None:
        self.accepted: list[tuple[str, str, float]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        mid = message_id(content) or "<none>"
        now = time.monotonic()
        with self._lock:
            self.accepted += [(mid, rcpt.lower(), now) for rcpt in envelope.rcpt_tos]
        return "250 2.0.0 accepted by the sink"


# -- what the clients saw

@dataclass
class Record:
    """Everything the clients were told, across all cycles."""

    acked_local: set[str] = field(default_factory=set)  # Message-IDs that must be in bob's INBOX
    acked_remote: dict[str, tuple[str, ...]] = field(default_factory=dict)  # Message-ID -> external rcpts
    appended: set[str] = field(default_factory=set)  # APPEND answered OK (carol's INBOX)
    delete_asked: set[str] = field(default_factory=set)  # STORE \Deleted sent (answer or not)
    expunged: set[str] = field(default_factory=set)  # STORE OK, then EXPUNGE OK
    uid_seen: list[tuple[str, int, int, str]] = field(default_factory=list)  # (mailbox, uidvalidity, uid, mid) from IMAP
    temp_failures: Counter[str] = field(default_factory=Counter)  # 4xx / NO answers seen, by reply
    logged_in: int = 0  # clients of this cycle past AUTH / LOGIN
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class CycleResult:
    cycle: int
    load_seconds: float  # load before the kill
    acked_local: int  # acknowledged in this cycle
    acked_remote: int
    appended: int
    found_once: int  # cumulative: acknowledged messages found exactly once
    expected: int  # cumulative: acknowledged messages that must be present
    sink_pairs: int  # cumulative distinct (Message-ID, rcpt) accepted by the sink
    dup_kill: int  # cumulative duplicates at the sink with a kill between
    dup_other: int  # cumulative duplicates at the sink without a kill between
    uids_checked: int  # distinct (mailbox, uidvalidity, uid) known so far
    integrity: str
    drain_seconds: float
    held: int  # queue entries the killed daemon held claimed (still leased when it died)
    lease_left: float  # seconds from the restart until the last of those claims ran out (0 when none)
    problems: list[str]


@dataclass
class Summary:
    cycles: list[CycleResult]
    kills: int
    seconds: float
    sink_accepted: int
    record: Record
    retry: bool = True  # `queue retry --all` after each restart

    @property
    def problems(self) -> list[str]:
        return [f"cycle {c.cycle}: {p}" for c in self.cycles for p in c.problems]


# -- load clients

class _Smtp:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer

    @classmethod
    async def open(cls, port: int) -> _Smtp:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        c = cls(r, w)
        code, _ = await c.reply()
        if code != 220:
            raise ConnectionError(f"greeting {code}")
        return c

    async def reply(self) -> tuple[int, str]:
        while True:
            line = (await asyncio.wait_for(self.r.readline(), 15)).decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                raise ConnectionError("closed")
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), line

    async def cmd(self, line: str) -> tuple[int, str]:
        self.w.write(line.encode() + b"\r\n")
        await self.w.drain()
        return await self.reply()

    async def send(self, mail_from: str, rcpts: list[str], data: bytes) -> tuple[int, str]:
        code, text = await self.cmd(f"MAIL FROM:<{mail_from}>")
        if code != 250:
            return code, text
        for rcpt in rcpts:
            code, text = await self.cmd(f"RCPT TO:<{rcpt}>")
            if code != 250:
                await self.cmd("RSET")
                return code, text
        code, text = await self.cmd("DATA")
        if code != 354:
            return code, text
        self.w.write(data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        await self.w.drain()
        return await self.reply()

    def close(self) -> None:
        self.w.close()


async def smtp_client(kind: str, port: int, n: int, cycle: int, rec: Record, stop: asyncio.Event, rng: random.Random) -> None:
    """Send messages back to back until ``stop`` or the connection dies (the kill)."""
    client: _Smtp | None = None
    try:
        client = await _Smtp.open(port)
        await client.cmd("EHLO soak.example.net")
        if kind == "remote":
            token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
            code, text = await client.cmd(f"AUTH PLAIN {token}")
            if code != 235:
                raise ConnectionError(f"AUTH: {text}")
            with rec.lock:
                rec.logged_in += 1
        i = 0
        while not stop.is_set():
            mid = f"<{kind[0]}{cycle}.{n}.{i}@soak.test>"
            i += 1
            if kind == "local":
                rcpts, frm = [BOB], "zed@elsewhere.example"
            else:
                rcpts = rng.sample(REMOTE_RCPTS, rng.randint(1, 2)) + ([BOB] if rng.random() < 0.3 else [])
                frm = ALICE
            code, text = await client.send(frm, rcpts, make_message(mid, frm, ", ".join(rcpts), rng))
            with rec.lock:
                if code == 250:  # recorded only after the 250
                    if BOB in rcpts:
                        rec.acked_local.add(mid)
                    external = tuple(r.lower() for r in rcpts if r.endswith("@" + REMOTE))
                    if external:
                        rec.acked_remote[mid] = external
                else:
                    rec.temp_failures[f"SMTP {text[:40]}"] += 1
    except (ConnectionError, OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
        return  # the daemon was killed: replies not received count as not acknowledged
    finally:
        if client is not None:
            client.close()


def imap_client(port: int, n: int, cycle: int, rec: Record, stop: threading.Event, rng: random.Random) -> None:
    """APPEND in a loop; every few messages SELECT, SEARCH, FETCH Message-IDs, delete one."""
    try:
        c = imaplib.IMAP4("127.0.0.1", port, timeout=15)
    except OSError:
        return
    try:
        c.login(CAROL, PASSWORD)
        with rec.lock:
            rec.logged_in += 1
        i = 0
        while not stop.is_set():
            mid = f"<a{cycle}.{n}.{i}@soak.test>"
            i += 1
            typ, data = c.append("INBOX", None, None, make_message(mid, "zed@elsewhere.example", CAROL, rng))
            if typ != "OK":
                with rec.lock:
                    rec.temp_failures[f"APPEND {typ}"] += 1
                continue
            m = _APPENDUID.search(data[0] or b"")
            with rec.lock:
                rec.appended.add(mid)
                if m:
                    rec.uid_seen.append(("carol/INBOX", int(m.group(1)), int(m.group(2)), mid))
            if i % 4:
                continue
            typ, _ = c.select("INBOX")
            if typ != "OK":
                continue
            uidvalidity = int((c.response("UIDVALIDITY")[1] or [b"0"])[0] or b"0")
            typ, data = c.uid("SEARCH", "ALL")
            uids = [int(u) for u in (data[0] or b"").split()] if typ == "OK" else []
            if not uids:
                continue
            sample = rng.sample(uids[-50:], min(5, len(uids[-50:])))
            typ, data = c.uid("FETCH", ",".join(map(str, sample)), "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            if typ != "OK":
                continue
            fetched: list[tuple[int, str]] = []
            for part in data:
                if isinstance(part, tuple):
                    u, found = _FETCH_UID.search(part[0]), message_id(part[1])
                    if u and found:
                        fetched.append((int(u.group(1)), found))
            with rec.lock:
                rec.uid_seen += [("carol/INBOX", uidvalidity, uid, found) for uid, found in fetched]
            if not fetched:
                continue
            uid, victim = rng.choice(fetched)
            with rec.lock:
                rec.delete_asked.add(victim)
            typ, _ = c.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
            if typ == "OK":
                typ, _ = c.expunge()
                if typ == "OK":
                    with rec.lock:
                        rec.expunged.add(victim)
    except (OSError, EOFError, imaplib.IMAP4.error, ValueError):
        return
    finally:
        with contextlib.suppress(Exception):
            c.shutdown()


# -- the daemon

class Daemon:
    """``python -m mailserver serve`` as a subprocess, output appended to a log file."""

    def __init__(self, config_path: Path, log_path: Path, ports: list[int]) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.ports = ports
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = dict(os.environ)
        env.pop(cfg.ENV_VAR, None)
        with self.log_path.open("ab") as log:  # noqa: ASYNC230 - a local file, opened once per start
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mailserver", "serve", "--config", str(self.config_path),
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        for port in self.ports:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"daemon exited with {self.proc.returncode}; see {self.log_path}")
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", port)
                    w.close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"port {port} did not open; see {self.log_path}") from None
                    await asyncio.sleep(0.05)

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 10)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await asyncio.wait_for(self.proc.wait(), 10)


# -- the checks

class Checker:
    """The cumulative state the checks compare against."""

    def __init__(self) -> None:
        self.uids: dict[tuple[str, int, int], str] = {}  # (mailbox, uidvalidity, uid) -> Message-ID
        self.max_uid: dict[tuple[str, int], int] = {}
        self.blob_mid: dict[str, str | None] = {}  # content address -> Message-ID (bodies never change)

    def see_uid(self, mailbox: str, uidvalidity: int, uid: int, mid: str, problems: list[str]) -> None:
        key = (mailbox, uidvalidity, uid)
        old = self.uids.setdefault(key, mid)
        if old != mid:
            problems.append(f"UID reused: {mailbox} uidvalidity {uidvalidity} uid {uid} named {old} and now {mid}")
        k = (mailbox, uidvalidity)
        self.max_uid[k] = max(self.max_uid.get(k, 0), uid)

    async def scan(self, store: SqliteStore, address: str, mailbox: str, problems: list[str]) -> Counter[str]:
        """Message-ID -> copies in the account's INBOX; records every UID."""
        account = await store.directory.get_account(address)
        assert account is not None
        folder = await store.mail.get_folder(account.id, "INBOX")
        assert folder is not None
        counts: Counter[str] = Counter()
        for meta in await store.mail.list_messages(folder.id):
            if meta.blob_id not in self.blob_mid:
                self.blob_mid[meta.blob_id] = message_id(await store.mail.get_body(meta.blob_id))
            mid = self.blob_mid[meta.blob_id]
            if mid is None:
                problems.append(f"{mailbox} uid {meta.uid}: a message without Message-ID")
                continue
            counts[mid] += 1
            self.see_uid(mailbox, folder.uidvalidity, meta.uid, mid, problems)
        top = self.max_uid.get((mailbox, folder.uidvalidity), 0)
        if folder.uidnext <= top:
            problems.append(f"{mailbox}: UIDNEXT {folder.uidnext} is not above UID {top} already given")
        return counts


def integrity(db: Path) -> tuple[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        check = ", ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
        fk = len(conn.execute("PRAGMA foreign_key_check").fetchall())
        return check, fk
    finally:
        conn.close()


def sink_duplicates(accepted: list[tuple[str, str, float]], kills: list[float]) -> tuple[int, int, list[str]]:
    """Duplicates at the sink: (with a kill between the acceptances, without, examples without)."""
    times: dict[tuple[str, str], list[float]] = {}
    for mid, rcpt, t in accepted:
        times.setdefault((mid, rcpt), []).append(t)
    with_kill = without = 0
    examples: list[str] = []
    for (mid, rcpt), ts in times.items():
        ts.sort()
        for a, b in zip(ts, ts[1:], strict=False):
            if any(a <= k <= b for k in kills):
                with_kill += 1
            else:
                without += 1
                examples.append(f"{mid} -> {rcpt} twice within one daemon run")
    return with_kill, without, examples


# -- the soak

async def _drain(store: SqliteStore, limit: float) -> float:
    """Seconds until the outbound queue is empty (-1 when still not after ``limit`` seconds)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if not await store.queue.list_queue():
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    return -1.0


async def soak(cycles: int, seconds_per_cycle: float, seed: int, workdir: Path | None = None,
               verbose: bool = False, *, retry: bool = True) -> Summary:
    """Run the soak; returns the figures (see the module docstring). Cleans up after itself
    unless ``workdir`` is given. ``retry``: make the queue due at once after each restart
    (the operator's `queue retry --all`); without it the killed daemon's claims run out."""
    started = time.monotonic()
    rng = random.Random(seed)
    tmp = workdir or Path(tempfile.mkdtemp(prefix="kill9-"))
    tmp.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("smtp", "submission", "imap")}
    dns = DNSServer(_Zone(), address="127.0.0.1", port=0, logger=_Quiet())
    dns.start_thread()
    sink = Sink()
    with socket.socket() as s:
        s.bind((SINK_HOST, 0))
        sink_port = s.getsockname()[1]
    controller = Controller(sink, hostname=SINK_HOST, port=sink_port)
    controller.start()
    values = throwaway_config_values(tmp, ports=ports)
    for name in ("submissions", "imaps", "http"):
        values[f"listeners.{name}.enabled"] = False
    values.update({
        "outbound.enabled": True, "outbound.dns_nameserver": "127.0.0.1",
        "outbound.dns_port": dns.server.server_address[1], "outbound.remote_port": sink_port,
        "outbound.poll_seconds": 0.2, "outbound.retry_schedule": f"{RETRY_SECONDS:g}s", "outbound.timeout_seconds": 10.0,
        "server.shutdown_grace_seconds": 2.0,
    })
    config_path = write_config(tmp / "config.toml", values)
    config = cfg.load(config_path)
    # Fast password hashes (as the tests use): logins cost milliseconds, not the
    # production argon2 cost, so every cycle's load is mail, not hashing.
    store, accounts, _ = await open_services(config, hasher=PasswordHasher(fast=True))
    for address in (ALICE, BOB, CAROL):
        await accounts.add_user(address, address.split("@")[0].title(), PASSWORD)
    await store.close()

    daemon = Daemon(config_path, tmp / "daemon.log", list(ports.values()))
    rec, checker = Record(), Checker()
    kills: list[float] = []
    results: list[CycleResult] = []
    try:
        await daemon.start()
        for cycle in range(1, cycles + 1):
            before = (len(rec.acked_local), len(rec.acked_remote), len(rec.appended))
            rec.logged_in = 0
            stop, imap_stop = asyncio.Event(), threading.Event()
            tasks = [asyncio.create_task(smtp_client("local", ports["smtp"], n, cycle, rec, stop, random.Random(rng.random())))
                     for n in range(LOCAL_SENDERS)]
            tasks += [asyncio.create_task(smtp_client("remote", ports["submission"], n, cycle, rec, stop, random.Random(rng.random())))
                      for n in range(REMOTE_SENDERS)]
            tasks += [asyncio.create_task(asyncio.to_thread(imap_client, ports["imap"], n, cycle, rec, imap_stop,
                                                            random.Random(rng.random())))
                      for n in range(IMAP_CLIENTS)]
            # The kill's moment is counted from when every client is logged in (a login
            # costs an argon2 verification, ~0.2-1 s here), so that all kinds of load are
            # running when it falls.
            deadline = time.monotonic() + LOGIN_TIMEOUT
            # (IMAP clients are threads: poll the count rather than await an event.)
            while rec.logged_in < REMOTE_SENDERS + IMAP_CLIENTS and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            load = rng.uniform(*KILL_WINDOW) * seconds_per_cycle
            await asyncio.sleep(load)
            await daemon.kill9()
            kills.append(time.monotonic())
            killed_at = _utcnow()
            stop.set()
            imap_stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), STOP_TIMEOUT)
            await daemon.start()

            problems: list[str] = []
            store = await SqliteStore.open(config.storage_path)
            try:
                restarted = _utcnow()
                # Claims of the killed daemon end within CLAIM_LEASE of the kill (claimed
                # or renewed before it); the new daemon's own end later, retries sooner.
                ends = [e.next_attempt for e in await store.queue.list_queue()
                        if killed_at + timedelta(seconds=RETRY_SECONDS) < e.next_attempt <= killed_at + CLAIM_LEASE]
                lease_left = max(((end - restarted).total_seconds() for end in ends), default=0.0)
                # The killed daemon's claims are leased (CLAIM_LEASE); the operator's
                # `queue retry --all` makes them due now, as here unless --no-retry.
                if retry:
                    await store.queue.retry_now(restarted)
                timeout = DRAIN_TIMEOUT if retry else NO_RETRY_DRAIN_TIMEOUT
                drain = await _drain(store, timeout)
                if drain < 0:
                    left = await store.queue.list_queue()
                    problems.append(f"outbound queue not drained after {timeout:.0f} s: {len(left)} entries")
                bob = await checker.scan(store, BOB, "bob/INBOX", problems)
                carol = await checker.scan(store, CAROL, "carol/INBOX", problems)
            finally:
                await store.close()
            with rec.lock:
                seen = list(rec.uid_seen)
                rec.uid_seen.clear()
            for mailbox, uidvalidity, uid, mid in seen:
                checker.see_uid(mailbox, uidvalidity, uid, mid, problems)
            for name, counts in (("bob/INBOX", bob), ("carol/INBOX", carol)):
                problems += [f"{name}: {mid} stored {n} times" for mid, n in counts.items() if n > 1]
            found = expected = 0
            for mid in sorted(rec.acked_local):
                expected += 1
                if bob[mid] == 1:
                    found += 1
                else:
                    problems.append(f"bob/INBOX: acknowledged {mid} found {bob[mid]} times")
            for mid in sorted(rec.appended):
                if mid in rec.expunged:
                    if carol[mid]:
                        problems.append(f"carol/INBOX: {mid} is back after a confirmed EXPUNGE")
                    continue
                if mid in rec.delete_asked:
                    continue  # deletion asked, its answer lost to the kill: 0 or 1 copy
                expected += 1
                if carol[mid] == 1:
                    found += 1
                else:
                    problems.append(f"carol/INBOX: appended {mid} found {carol[mid]} times")
            accepted = list(sink.accepted)
            at_sink = {(mid, rcpt) for mid, rcpt, _ in accepted}
            for mid, rcpts in sorted(rec.acked_remote.items()):
                for rcpt in rcpts:
                    expected += 1
                    if (mid, rcpt) in at_sink:
                        found += 1
                    else:
                        problems.append(f"sink: acknowledged {mid} never reached {rcpt}")
            dup_kill, dup_other, examples = sink_duplicates(accepted, kills)
            problems += examples
            check, fk = integrity(config.storage_path)
            if check != "ok":
                problems.append(f"integrity_check: {check}")
            if fk:
                problems.append(f"foreign_key_check: {fk} rows")
            result = CycleResult(
                cycle, load, len(rec.acked_local) - before[0], len(rec.acked_remote) - before[1],
                len(rec.appended) - before[2], found, expected, len(at_sink), dup_kill, dup_other,
                len(checker.uids), check if not fk else f"{check}, fk {fk}", drain, len(ends), max(lease_left, 0.0), problems,
            )
            results.append(result)
            if verbose:
                print(row(result), flush=True)
    finally:
        await daemon.stop()
        controller.stop()
        dns.stop()
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return Summary(results, len(kills), time.monotonic() - started, len(sink.accepted), rec, retry)


def _utcnow() -> datetime:
    return datetime.now(UTC)


HEADER = (f"{'cycle':>5} {'load s':>6} {'smtp':>5} {'subm':>5} {'append':>6} {'found once':>14} "
          f"{'sink pairs':>10} {'dup kill':>8} {'dup other':>9} {'UIDs':>6} {'held':>5} {'lease s':>7} {'drain s':>7}  integrity")


def row(c: CycleResult) -> str:
    return (f"{c.cycle:>5} {c.load_seconds:>6.2f} {c.acked_local:>5} {c.acked_remote:>5} {c.appended:>6} "
            f"{f'{c.found_once}/{c.expected}':>14} {c.sink_pairs:>10} {c.dup_kill:>8} {c.dup_other:>9} "
            f"{c.uids_checked:>6} {c.held:>5} {c.lease_left:>7.1f} {c.drain_seconds:>7.2f}  {c.integrity}")


def report(s: Summary) -> str:
    last = s.cycles[-1] if s.cycles else None
    rec = s.record
    lines = [HEADER, *(row(c) for c in s.cycles), ""]
    ok = sum(c.integrity == "ok" for c in s.cycles)
    drains = sorted(c.drain_seconds for c in s.cycles if c.drain_seconds >= 0)
    waited = sorted(c.drain_seconds for c in s.cycles if c.drain_seconds >= 0 and c.held)
    late = sorted(c.drain_seconds - c.lease_left for c in s.cycles if c.drain_seconds >= 0 and c.held)
    lines += [
        f"cycles {len(s.cycles)}, kills {s.kills}, time {s.seconds:.1f} s",
        f"acknowledged: {len(rec.acked_local)} to the local mailbox over SMTP (250), "
        f"{len(rec.acked_remote)} with external recipients over submission (250), "
        f"{len(rec.appended)} IMAP APPEND (OK); deletes asked {len(rec.delete_asked)}, confirmed {len(rec.expunged)}",
        f"found exactly once: {last.found_once if last else 0} of {last.expected if last else 0} "
        "(local copies, appended messages not deleted, external recipient deliveries)",
        f"sink: {s.sink_accepted} acceptances, {last.sink_pairs if last else 0} distinct (Message-ID, recipient); "
        f"duplicates with a kill between: {last.dup_kill if last else 0}, without: {last.dup_other if last else 0}",
        f"UIDs checked (distinct mailbox/uidvalidity/uid): {last.uids_checked if last else 0}",
        f"integrity_check ok: {ok} of {len(s.cycles)}",
        f"outbound drain after restart ({'queue retry --all' if s.retry else 'no retry'}, "
        f"CLAIM_LEASE {CLAIM_LEASE.total_seconds():.0f} s): {_spread(drains)}; cycles where the killed daemon "
        f"held claims: {len(waited)} ({sum(c.held for c in s.cycles)} entries), their drain {_spread(waited)}, "
        f"drain minus the lease left at the restart {_spread(late)}",
        f"temporary refusals seen by clients: {sum(rec.temp_failures.values())}"
        + (f" ({', '.join(f'{k}: {v}' for k, v in rec.temp_failures.most_common(3))})" if rec.temp_failures else ""),
        f"problems: {len(s.problems)}",
        *s.problems[:20],
    ]
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    """'median m s, max x s' of sorted ``values`` ('-' when empty)."""
    if not values:
        return "-"
    return f"median {values[len(values) // 2]:.1f} s, max {values[-1]:.1f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--cycles", type=int, default=30)
    ap.add_argument("--seconds-per-cycle", type=float, default=4.0, help="load time per cycle; the kill falls in its last 70%%")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-retry", action="store_true",
                    help="do not make the queue due after a restart: the killed daemon's claims run out (CLAIM_LEASE)")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (data, config, daemon.log)")
    ap.add_argument("--verbose", action="store_true", help="print each cycle's row as it ends")
    args = ap.parse_args(argv)
    if args.verbose:
        print(HEADER, flush=True)
    summary = asyncio.run(soak(args.cycles, args.seconds_per_cycle, args.seed, args.keep, args.verbose,
                               retry=not args.no_retry))
    print(report(summary))
    return 1 if summary.problems else 0


if __name__ == "__main__":
    sys.exit(main())
