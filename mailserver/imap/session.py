"""One IMAP connection: reads commands, enforces the state table, runs handlers,
delivers pending untagged updates, and handles the I/O-bound parts of AUTHENTICATE,
IDLE and STARTTLS.

Parsing is the sans-IO :mod:`mailserver.imap.parser`; which command is valid when is
:mod:`mailserver.imap.states`; what each command does is in
:mod:`mailserver.imap.commands`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
from typing import TYPE_CHECKING

from auth.login import Principal
from mailserver import metrics
from mailserver.app import App
from mailserver.imap import parser as p
from mailserver.imap import states
from mailserver.imap.namespace import Namespace
from mailserver.imap.responses import (
    AUTHENTICATIONFAILED,
    CLOSED,
    NOPERM,
    SERVERBUG,
    TOOBIG,
    ImapError,
    bad,
    no,
    storage_failure,
)
from mailserver.imap.states import State
from mailserver.imap.view import MailboxGone, SelectedView
from storage.errors import StorageError

if TYPE_CHECKING:
    from mailserver.imap.server import Registry

log = logging.getLogger("mailserver.imap")

#: RFC 3501 §6.2.3 / DoS bound: literals before login are small (a LOGIN password);
#: 8 KiB covers any real credential and keeps unauthenticated memory small.
PRE_AUTH_MAX_LITERAL = 8192
#: Read size for the socket.
READ_CHUNK = 65536
#: Bytes buffered before a long response (FETCH) waits for the socket to drain.
DRAIN_THRESHOLD = 256 * 1024
#: RFC 2177 advises servers to keep IDLE clients alive; a line every 2 minutes keeps
#: NAT mappings open (Dovecot's imap_idle_notify_interval default).
IDLE_KEEPALIVE_SECONDS = 120.0

#: Most pipelined APPENDs run together, and their total size: enough to share disk
#: syncs, small enough to bound memory (the reader holds them already anyway).
MAX_APPEND_BATCH = 64
MAX_APPEND_BATCH_BYTES = 32 * 1024 * 1024

#: Commands during which EXPUNGE must not be sent (RFC 3501 §7.4.1).
NO_EXPUNGE_DURING = (p.Fetch, p.Store, p.Search)


def _too_big(size: int, limit: int) -> str:
    """The text refusing a literal of ``size`` octets."""
    if size >= p.UNREADABLE_SIZE:
        return f"Literal of more than {p.MAX_SIZE_DIGITS} digits is over the limit of {limit}"
    return f"Literal of {size} octets is over the limit of {limit}"


class Closed(Exception):
    """The client went away or the session ended (LOGOUT, BYE)."""


def _drop_buffered(reader: asyncio.StreamReader) -> int:
    """Discard what ``reader`` has received but nobody has read yet; return its size.

    asyncio has no public call for this: the bytes sit in ``StreamReader._buffer``.
    Fails closed (RuntimeError, which ends the connection) if that ever changes.
    """
    buffer = getattr(reader, "_buffer", None)
    if not isinstance(buffer, bytearray):
        raise RuntimeError("cannot discard the stream's buffer before STARTTLS")
    size = len(buffer)
    buffer.clear()
    return size


class Session:
    """State and I/O of one client connection."""

    def __init__(
        self,
        app: App,
        registry: Registry,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tls: bool,
        starttls_offered: bool,
    ) -> None:
        self.app = app
        self.registry = registry
        self.reader = reader
        self.writer = writer
        self.tls = tls
        self.starttls_offered = starttls_offered
        peer = writer.get_extra_info("peername")
        self.client_ip: str = str(peer[0]) if peer else "unknown"
        self.state = State.NOT_AUTHENTICATED
        self.principal: Principal | None = None
        self.namespace: Namespace | None = None
        self.view: SelectedView | None = None
        self.condstore = False  # RFC 7162 §3.1: enabled by ENABLE or a CONDSTORE-enabling command
        self.dirty = asyncio.Event()  # set by the registry when the selected folder changed
        self.commands = p.CommandReader(max_literal=PRE_AUTH_MAX_LITERAL)
        self._read_task: asyncio.Task[bytes] | None = None
        self._held: p.Event | None = None  # read ahead while batching APPENDs
        self._pending_out = 0

    # -- output
    def send(self, data: bytes) -> None:
        """Queue bytes for the client (untagged lines, continuation, tagged line)."""
        self.writer.write(data)
        self._pending_out += len(data)

    async def flush(self, force: bool = False) -> None:
        """Wait for the socket when enough is buffered (``force``: always)."""
        if force or self._pending_out >= DRAIN_THRESHOLD:
            self._pending_out = 0
            await self.writer.drain()

    # -- capabilities
    @property
    def plaintext_ok(self) -> bool:
        """LOGIN/AUTHENTICATE allowed now: over TLS, or on loopback when configured."""
        if self.tls:
            return True
        if not self.app.config["auth.allow_plaintext_on_loopback"]:
            return False
        try:
            return ipaddress.ip_address(self.client_ip).is_loopback
        except ValueError:
            return False

    def capabilities(self) -> list[str]:
        """RFC 3501 §7.2.1: exactly what works in the current state."""
        caps = ["IMAP4rev1", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE", "UIDPLUS",
                "MOVE", "UNSELECT", "CHILDREN", "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE",
                "ESEARCH", "CONDSTORE", f"APPENDLIMIT={int(self.app.config['limits.message_size'])}"]
        if self.state is State.NOT_AUTHENTICATED:
            if self.starttls_offered and not self.tls:
                caps.append("STARTTLS")
            if self.plaintext_ok:
                caps.append("AUTH=PLAIN")
            else:
                caps.append("LOGINDISABLED")  # RFC 3501 §6.2.3
        return caps

    # -- the loop
    async def run(self) -> None:
        """Serve the connection until LOGOUT, BYE or the client goes away."""
        self.send(b"* OK [CAPABILITY " + " ".join(self.capabilities()).encode() + b"] IMAP4rev1 ready\r\n")
        try:
            await self.flush(True)
            while True:
                event = self._held if self._held is not None else self.commands.next_event()
                self._held = None
                if event is p.NEED_DATA:
                    self.commands.feed(await self._receive(self._timeout()))
                    continue
                if isinstance(event, p.Append) and self.state is not State.NOT_AUTHENTICATED:
                    await self._append_batch(event)
                else:
                    await self._on_event(event)
                if not self.commands.in_command:
                    await self.flush(True)
        except Closed:
            pass
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            if self._read_task is not None:
                self._read_task.cancel()
            await self.leave()

    def _timeout(self) -> float:
        key = "imap.login_timeout_seconds" if self.state is State.NOT_AUTHENTICATED else "imap.autologout_seconds"
        return float(self.app.config[key])

    async def _receive(self, wait: float) -> bytes:
        """Next chunk from the client. Raises Closed on EOF or after ``wait`` seconds (with BYE)."""
        if self._read_task is None:
            self._read_task = asyncio.ensure_future(self.reader.read(READ_CHUNK))
        done, _ = await asyncio.wait({self._read_task}, timeout=wait)
        if not done:
            await self.bye("Autologout; idle for too long")  # RFC 3501 §5.4
        task, self._read_task = self._read_task, None
        data = task.result()
        if not data:
            raise Closed()
        return data

    async def bye(self, text: str) -> None:
        """Send ``* BYE`` and end the session (raises Closed)."""
        try:
            self.send(f"* BYE {text}\r\n".encode())
            await self.flush(True)
        except (ConnectionError, ssl.SSLError):
            pass
        raise Closed()

    async def _on_event(self, event: p.Event) -> None:
        match event:
            case p.NeedsContinuation():
                self.send(b"+ Ready for literal data\r\n")
                await self.flush(True)
            case p.LiteralTooBig(tag=tag, size=size, synchronizing=sync):
                text = _too_big(size, self.commands.max_literal)
                if sync:  # the client waits for "+" and sends nothing more (RFC 3501 §7.5)
                    self.send(no(text, TOOBIG).response(tag or "*"))  # RFC 7889 §4
                else:
                    # RFC 7888 §4: the octets follow anyway. Smaller refused {n+}
                    # literals are read and dropped by the reader, but skipping more
                    # than we would ever accept (up to 10**20) would hold the
                    # connection for nothing, so close it.
                    self.send(f"{tag or '*'} BAD [{TOOBIG}] {text}\r\n".encode())
                    await self.bye("Non-synchronizing literal refused")
            case p.BadCommand(tag=tag, text=text):
                self.send(f"{tag or '*'} BAD {text}\r\n".encode())
            case p.CommandRejected(tag=tag, code=code, text=text):
                self.send(no(text, code).response(tag))
            case p.Command():
                async with self.app.inflight.hold():
                    await self.execute(event)

    async def _append_batch(self, first: p.Append) -> None:
        """Run APPENDs the client pipelined (already complete in the buffer) at once.

        Their storage commits overlap, so the writer's group commit makes one disk sync
        serve several messages (issue 4 §7); responses still go out in command order.
        """
        batch = [first]
        size = len(first.messages[0].data) if first.messages else 0
        while len(batch) < MAX_APPEND_BATCH and size < MAX_APPEND_BATCH_BYTES:
            nxt = self.commands.next_event()
            if not isinstance(nxt, p.Append):
                self._held = nxt
                break
            batch.append(nxt)
            size += sum(len(m.data) for m in nxt.messages)
        if len(batch) == 1:
            await self._on_event(first)
            return
        async with self.app.inflight.hold():
            lines = await asyncio.gather(*(self._append_one(cmd) for cmd in batch))
            await self.send_updates(None)
        for line in lines:
            self.send(line)

    async def _append_one(self, cmd: p.Append) -> bytes:
        from mailserver.imap.commands.folders import append

        try:
            states.check(cmd, self.state)
            return f"{cmd.tag} OK {await append(self, cmd)}\r\n".encode()
        except ImapError as err:
            return err.response(cmd.tag)
        except StorageError as err:
            log.warning("imap APPEND: storage error: %s", err)
            return storage_failure(err).response(cmd.tag)

    async def execute(self, cmd: p.Command) -> None:
        """Run one command and write its untagged updates and tagged response."""
        from mailserver.imap.commands import HANDLERS

        started, result = time.perf_counter(), "NO"
        try:
            states.check(cmd, self.state)
            await self._check_access(cmd)
            text = await HANDLERS[type(cmd)](self, cmd)
            if text is None:  # the handler answered itself (STARTTLS)
                result = "OK"
                return
            await self.send_updates(cmd)
            self.send(f"{cmd.tag} OK {text}\r\n".encode())
            result = "OK"
        except ImapError as err:
            result = err.status
            if err.code == AUTHENTICATIONFAILED:
                metrics.auth_failed("imap")
            await self._updates_after_error(cmd)
            self.send(err.response(cmd.tag))
        except Closed:
            raise
        except MailboxGone:
            await self.bye("Selected mailbox was deleted")
        except StorageError as err:
            log.warning("imap %s: storage error: %s", type(cmd).__name__, err)
            self.send(storage_failure(err).response(cmd.tag))
        except (ConnectionError, ssl.SSLError):
            raise
        except Exception:
            log.exception("imap %s failed", type(cmd).__name__)
            self.send(no("Internal error", SERVERBUG).response(cmd.tag))
        finally:
            metrics.imap_command(type(cmd).__name__, result, time.perf_counter() - started)

    async def _updates_after_error(self, cmd: p.Command) -> None:
        try:
            await self.send_updates(cmd)
        except (ImapError, StorageError):
            pass

    async def _check_access(self, cmd: p.Command) -> None:
        """Re-check the login and rights on every command: disabling or unlicensing the
        user, or revoking a grant, counts at once (BYE, or [CLOSED] for a Shared/ folder)."""
        if self.namespace is None:
            return
        refusal = await self.namespace.refusal()
        if refusal is not None:
            await self.bye(refusal)
        if self.view is not None and not await self.namespace.can_open_account_id(self.view.folder.account_id):
            self.close_view()
            self.send(f"* OK [{CLOSED}] Access to the selected mailbox was revoked\r\n".encode())
            if states.ALLOWED.get(type(cmd)) == frozenset({State.SELECTED}):
                raise no("Access to this mailbox was revoked", NOPERM)

    async def send_updates(self, cmd: p.Command | None) -> None:
        """Untagged EXISTS / EXPUNGE / FETCH for changes by others (RFC 3501 §5.5, §7)."""
        view = self.view
        if view is None:
            return
        if not self.dirty.is_set() and not isinstance(cmd, (p.Noop, p.Check, p.Idle)) and cmd is not None:
            return
        self.dirty.clear()
        allow_expunge = not isinstance(cmd, NO_EXPUNGE_DURING)
        for line in await view.updates(self.app.store.mail, allow_expunge=allow_expunge):
            self.send(line)

    def enable_condstore(self) -> None:
        """RFC 7162 §3.1: from now on FETCH responses carry MODSEQ."""
        self.condstore = True
        if self.view is not None:
            self.view.condstore = True

    # -- selection
    def select(self, view: SelectedView) -> None:
        self.close_view()
        self.view = view
        self.state = State.SELECTED
        self.dirty.clear()
        self.registry.watch(self, view.folder.id)

    def close_view(self) -> None:
        if self.view is not None:
            self.registry.unwatch(self, self.view.folder.id)
        self.view = None
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    def login(self, principal: Principal) -> None:
        """Enter the authenticated state (limits already checked)."""
        self.principal = principal
        self.namespace = Namespace(self.app.store, principal)
        self.state = State.AUTHENTICATED
        self.commands.max_literal = int(self.app.config["limits.message_size"])

    async def leave(self) -> None:
        self.close_view()
        self.registry.leave(self)
        self.state = State.LOGOUT
        try:
            self.writer.close()
        except (ConnectionError, RuntimeError):
            pass

    # -- I/O for multi-step commands
    async def read_raw_line(self) -> bytes:
        """One raw client line (AUTHENTICATE response, IDLE's DONE)."""
        while True:
            line = self.commands.read_line_raw()
            if isinstance(line, bytes):
                return line
            if isinstance(line, p.BadCommand):
                return b"*"
            self.commands.feed(await self._receive(self._timeout()))

    async def start_tls(self) -> None:
        """Upgrade to TLS after ``OK`` was sent (RFC 3501 §6.2.1, RFC 9051 §6.2.1).

        Every byte the client sent before the handshake is dropped, wherever it waits:
        in the command reader and in the stream's own buffer (read from the socket
        beyond our last 64 KiB read). Such bytes came in the clear, so a man in the
        middle could have injected them to run as if sent over TLS (CVE-2011-0411 style).
        """
        await self.flush(True)
        self.commands = p.CommandReader(max_literal=PRE_AUTH_MAX_LITERAL)
        if self._read_task is not None:  # not while a command runs; kept for safety
            self._read_task.cancel()
            self._read_task = None
        _drop_buffered(self.reader)
        old = self.writer.transport
        await self.writer.start_tls(self.app.ssl_context)
        self.app.connections.discard(old)
        self.app.connections.add(self.writer.transport)
        self.tls = True

    async def idle(self) -> None:
        """RFC 2177: stream updates until DONE; BYE after the IDLE timeout."""
        self.send(b"+ idling\r\n")
        await self.flush(True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(self.app.config["imap.idle_timeout_seconds"])
        while True:
            line = self.commands.read_line_raw()
            if isinstance(line, bytes):
                if line.strip().upper() == b"DONE":
                    return
                raise bad("Expected DONE")
            if isinstance(line, p.BadCommand):
                raise bad("Expected DONE")
            if self.view is not None:
                await self.send_updates(p.Idle(""))
                await self.flush(True)
            if self._read_task is None:
                self._read_task = asyncio.ensure_future(self.reader.read(READ_CHUNK))
            wake = asyncio.ensure_future(self.dirty.wait())
            left = deadline - loop.time()
            if left <= 0:
                wake.cancel()
                await self.bye("IDLE timed out")
            done, _ = await asyncio.wait(
                {self._read_task, wake}, timeout=min(left, IDLE_KEEPALIVE_SECONDS),
                return_when=asyncio.FIRST_COMPLETED,
            )
            wake.cancel()
            if self._read_task in done:
                self.commands.feed(await self._receive(0))
            elif not done:
                if loop.time() >= deadline:
                    await self.bye("IDLE timed out")  # RFC 2177: the client re-issues IDLE in time
                refusal = await self.namespace.refusal() if self.namespace is not None else None
                if refusal is not None:
                    await self.bye(refusal)  # disabled, unlicensed or revoked while idling
                self.send(b"* OK Still here\r\n")
                await self.flush(True)
