"""Outbound fixtures: a real DNS server (dnslib) and real SMTP servers (aiosmtpd) on
loopback addresses, a store, a fake clock, and a worker wired to all of them."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from dnslib import AAAA, MX, QTYPE, RR, A, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer

from delivery.outbound.routes import DnsResolver, no_shuffle
from delivery.outbound.settings import OutboundSettings
from delivery.outbound.worker import OutboundWorker
from storage.interfaces import Store
from storage.sqlite import SqliteStore
from storage.types import Account, AccountKind

LOCAL = "example.test"
REMOTE = "remote.test"

#: Loopback addresses of the fake remote MX hosts (Linux routes all of 127/8 to lo).
MX1, MX2, DEAD = "127.0.0.2", "127.0.0.3", "127.0.0.9"


class Zone(BaseResolver):
    """Answers MX/A/AAAA from a dict; unknown names get NXDOMAIN."""

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[str, Any]]] = {}
        self.queries: list[tuple[str, str]] = []

    def add(self, name: str, rtype: str, value: Any) -> None:
        self.records.setdefault(name.lower().rstrip("."), []).append((rtype, value))

    def clear(self) -> None:
        self.records.clear()

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        self.queries.append((qname, qtype))
        if qname not in self.records:
            reply.header.rcode = 3  # NXDOMAIN
            return reply
        for rtype, value in self.records[qname]:
            if rtype != qtype:
                continue
            if rtype == "MX":
                pref, host = value
                rdata: Any = MX(DNSLabel(host + "." if host else "."), pref)
            elif rtype == "A":
                rdata = A(value)
            else:
                rdata = AAAA(value)
            reply.add_answer(RR(request.q.qname, getattr(QTYPE, rtype), rdata=rdata, ttl=60))
        return reply


class _QuietLogger:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


@pytest.fixture(scope="session")
def dns_zone() -> Iterator[tuple[Zone, int]]:
    """A real UDP DNS server on 127.0.0.1 (any free port) serving :class:`Zone`."""
    zone = Zone()
    server = DNSServer(zone, address="127.0.0.1", port=0, logger=_QuietLogger())
    server.start_thread()
    port = server.server.server_address[1]
    yield zone, port
    server.stop()


@pytest.fixture
def zone(dns_zone: tuple[Zone, int]) -> Zone:
    """The zone, emptied for this test."""
    dns_zone[0].clear()
    dns_zone[0].queries.clear()
    return dns_zone[0]


@pytest.fixture
def resolver(dns_zone: tuple[Zone, int]) -> DnsResolver:
    return DnsResolver("127.0.0.1", dns_zone[1], lifetime=2.0)


@dataclass
class Received:
    host: str
    mail_from: str
    rcpts: list[str]
    data: bytes


@dataclass
class Script:
    """What the fake MX answers: per-recipient RCPT replies (address -> list of replies,
    used one per attempt, then 250), and DATA replies likewise. ``hold`` makes the reply
    to a command ("DATA", "QUIT") wait until its event is set (at most HOLD_SECONDS);
    ``seen`` has every command that reached its handler; ``cut_quit`` drops the
    connection instead of answering QUIT."""

    rcpt: dict[str, list[str]] = field(default_factory=dict)
    data: list[str] = field(default_factory=list)
    hold: dict[str, threading.Event] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    cut_quit: bool = False


#: Longest a held reply waits for its event (a failed test must not hang the MX thread).
HOLD_SECONDS = 10.0


async def _held(script: Script, command: str) -> None:
    script.seen.add(command)
    gate = script.hold.get(command)
    if gate is not None:
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, HOLD_SECONDS)


class RemoteHandler:
    def __init__(self, host: str, inbox: list[Received], script: Script) -> None:
        self.host = host
        self.inbox = inbox
        self.script = script

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        queued = self.script.rcpt.get(address.lower())
        if queued:
            return queued.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await _held(self.script, "DATA")
        if self.script.data:
            return self.script.data.pop(0)
        assert isinstance(envelope.content, bytes)
        self.inbox.append(Received(self.host, envelope.mail_from or "", list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 queued as remote"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await _held(self.script, "QUIT")
        if self.script.cut_quit and server.transport is not None:
            server.transport.abort()
        return "221 2.0.0 Bye"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Remotes:
    """The fake remote MX hosts: every address listens on the same ``port``."""

    port: int
    inbox: list[Received]
    script: Script

    def got(self, rcpt: str) -> list[Received]:
        return [m for m in self.inbox if rcpt in m.rcpts]


@pytest.fixture
def remotes() -> Iterator[Remotes]:
    """aiosmtpd servers on 127.0.0.2 and 127.0.0.3 (same port), sharing one inbox and script."""
    port = _free_port(MX1)
    inbox: list[Received] = []
    script = Script()
    controllers = []
    for host in (MX1, MX2):
        c = Controller(RemoteHandler(host, inbox, script), hostname=host, port=port)
        c.start()
        controllers.append(c)
    try:
        yield Remotes(port, inbox, script)
    finally:
        for c in controllers:
            c.stop()


class Clock:
    """A settable clock for the worker (retries and expiry without waiting)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(seconds=1)  # after anything queued in the test

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db" / "mail.sqlite3"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    s = await SqliteStore.open(db_path)
    await s.directory.add_domain(LOCAL)
    yield s
    await s.close()


@pytest.fixture
async def alice(store: Store) -> Account:
    return await store.directory.create_account(f"alice@{LOCAL}", AccountKind.USER, "Alice")


def make_settings(remotes: Remotes, **changes: Any) -> OutboundSettings:
    base: dict[str, Any] = dict(
        hostname="mx.example.test", postmaster=f"postmaster@{LOCAL}", remote_port=remotes.port,
        timeout=5.0, poll_interval=0.05, bounce_secret=b"k" * 32,
    )
    base.update(changes)
    return OutboundSettings(**base)


@pytest.fixture
def make_worker(store: Store, resolver: DnsResolver, remotes: Remotes, clock: Clock) -> Any:
    """make_worker(store=..., **settings changes) -> OutboundWorker on the fake world."""

    def make(on: Store | None = None, **changes: Any) -> OutboundWorker:
        return OutboundWorker(on or store, make_settings(remotes, **changes), resolver,
                              clock=clock, shuffle=no_shuffle)

    return make


def standard_zone(zone: Zone) -> None:
    """remote.test: MX 10 mx1 (127.0.0.2), MX 20 mx2 (127.0.0.3)."""
    zone.add(REMOTE, "MX", (10, f"mx1.{REMOTE}"))
    zone.add(REMOTE, "MX", (20, f"mx2.{REMOTE}"))
    zone.add(f"mx1.{REMOTE}", "A", MX1)
    zone.add(f"mx2.{REMOTE}", "A", MX2)
