"""A throwaway mail server for other projects' tests (GreenMail-like), and the machinery
behind the pytest plugin (:mod:`mailserver.pytest_plugin`) and ``serve --ephemeral``.

:class:`TestMailServer` runs the real daemon (:class:`mailserver.daemon.Daemon`) on its
own event loop in a background thread, with its store, config and self-signed
certificate in a temporary folder and every listener on a free loopback port. Its
methods are plain blocking calls, so synchronous tests (``smtplib``, ``imaplib``) and
asyncio tests (``aiosmtplib``; use the ``*_async`` variants) can both use it.

Accounts come from a short declarative :class:`AccountSpec`.
"""

from __future__ import annotations

import asyncio
import email.policy
import shutil
import ssl
import tempfile
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal, TypeVar

from auth.accounts import AccountService
from auth.passwords import PasswordHasher
from mailserver import config as cfg
from mailserver.app import App
from mailserver.daemon import Daemon
from storage.types import Right

T = TypeVar("T")

#: A test waits this long for start-up, shutdown or a store call before failing.
CALL_TIMEOUT = 60.0
#: Seats for a test server: more than any test declares, so licences never get in the way.
TEST_SEATS = 10_000
#: Listeners a test server starts (the MX listener smtp, submission, IMAP and HTTP).
CLIENT_LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "http")


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """Accounts to create, declaratively.

    * ``users``: address -> password (licensed users who log in).
    * ``shared``: shared mailbox -> {user: rights}, rights from ``full_access``,
      ``send_as``, ``send_on_behalf``.
    * ``lists``: list address -> members (local or external addresses, or lists).
    * ``rooms``: room address -> capacity (or None).
    * ``aliases``: alias -> target address.

    Domains of these addresses are made local as needed.
    """

    users: Mapping[str, str] = field(default_factory=dict)
    shared: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)
    lists: Mapping[str, Sequence[str]] = field(default_factory=dict)
    rooms: Mapping[str, int | None] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, users: Mapping[str, str] | None = None,
           shared: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
           lists: Mapping[str, Sequence[str]] | None = None,
           rooms: Mapping[str, int | None] | Iterable[str] | None = None,
           aliases: Mapping[str, str] | None = None) -> AccountSpec:
        """Build a spec; ``rooms`` may also be a list of addresses. Raises ValueError for
        an unknown right name."""
        room_map: dict[str, int | None] = (
            dict(rooms) if isinstance(rooms, Mapping) else {r: None for r in rooms or ()}
        )
        spec = cls(dict(users or {}), dict(shared or {}), dict(lists or {}), room_map, dict(aliases or {}))
        for grants in spec.shared.values():
            for rights in grants.values():
                for r in rights:
                    if r not in {x.value for x in Right}:
                        raise ValueError(f"unknown right {r!r}: use full_access, send_as or send_on_behalf")
        return spec

    def addresses(self) -> list[str]:
        return [*self.users, *self.shared, *self.lists, *self.rooms, *self.aliases]


async def apply_spec(accounts: AccountService, spec: AccountSpec) -> None:
    """Create what ``spec`` declares (domains first, then accounts, grants, members)."""
    existing = set(await accounts.directory.list_domains())
    for domain in dict.fromkeys(a.rsplit("@", 1)[-1].lower() for a in spec.addresses()):
        if domain not in existing:
            await accounts.add_domain(domain)
    for address, password in spec.users.items():
        await accounts.add_user(address, address.split("@", 1)[0].title(), password, licensed=True)
    for address in spec.shared:
        await accounts.add_shared(address, address.split("@", 1)[0].title())
    for address, capacity in spec.rooms.items():
        await accounts.add_room(address, address.split("@", 1)[0].title(), capacity=capacity)
    for address in spec.lists:
        await accounts.add_list(address, address.split("@", 1)[0].title())
    for address, members in spec.lists.items():
        if members:
            await accounts.add_members(address, list(members))
    for address, grants in spec.shared.items():
        for user, rights in grants.items():
            await accounts.grant(address, user, [Right(r) for r in rights])
    for alias, target in spec.aliases.items():
        await accounts.add_alias(alias, target)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_ephemeral_config(folder: Path, *, hostname: str = "localhost", domain: str = "example.test",
                           ports: Mapping[str, int] | None = None, **overrides: Any) -> Path:
    """Write a config file for a throwaway daemon in ``folder`` and return its path:
    data under ``folder``, listeners on loopback (port 0 = any free port unless given
    in ``ports``), fast auth failures. ``overrides`` are dotted keys (``__`` for dots)."""
    values: dict[str, Any] = {
        "server.hostname": hostname,
        "server.domain": domain,
        "server.data_dir": str(folder / "data"),
        "server.shutdown_grace_seconds": 2.0,
        "storage.path": str(folder / "data" / "mail.sqlite3"),
        "licences.seats": TEST_SEATS,
        "auth.failure_delay_seconds": 0.0,
    }
    for name in cfg.LISTENERS:
        values[f"listeners.{name}.host"] = "127.0.0.1"
        values[f"listeners.{name}.port"] = (ports or {}).get(name, 0)
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    sections: dict[str, list[str]] = {}
    for dotted, v in values.items():
        section, _, key = dotted.rpartition(".")
        sections.setdefault(section, []).append(f"{key} = {_toml(v)}")
    text = "\n".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items())
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    cfg.load(path)  # refuse a bad override here, with the config's own message
    return path


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """How a client reaches one listener. ``security`` is "ssl" (implicit TLS),
    "starttls" or "none" (the MX listener offers STARTTLS but does not require it)."""

    host: str
    port: int
    security: Literal["ssl", "starttls", "none"]


def _parse(body: bytes) -> EmailMessage:
    msg = BytesParser(policy=email.policy.default).parsebytes(body)
    assert isinstance(msg, EmailMessage)
    return msg


class TestMailServer:
    """The real daemon on a private event loop thread. Use as a context manager or
    call :meth:`start` and :meth:`stop`."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, spec: AccountSpec | None = None, *, folder: Path | None = None,
                 hostname: str = "localhost", domain: str = "example.test", **config: Any) -> None:
        self.spec = spec or AccountSpec()
        self._own_folder = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="mailserver-")) if folder is None else folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path = write_ephemeral_config(self.folder, hostname=hostname, domain=domain, **config)
        self.daemon = Daemon(cfg.load(self.config_path), hasher=PasswordHasher(fast=True))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> TestMailServer:
        """Start the daemon and create the spec's accounts. Raises StartupError."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="mailserver-test", daemon=True)
        self._thread.start()
        try:
            self.call(self._astart())
        except BaseException:
            self.stop()
            raise
        return self

    async def _astart(self) -> None:
        app = await self.daemon.start()
        await apply_spec(app.accounts, self.spec)

    def stop(self) -> None:
        """Stop the daemon, the loop thread, and remove the temporary folder."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            if self.daemon.app is not None:
                self.call(self.daemon.stop())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CALL_TIMEOUT)
            loop.close()
        self._loop = self._thread = None
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> TestMailServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the test mail server is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        """Run ``coro`` on the server's loop (store and account calls) and return its result."""
        return self._submit(coro).result(timeout)

    async def call_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """:meth:`call` for asyncio tests: awaits without blocking the caller's loop."""
        return await asyncio.wrap_future(self._submit(coro))

    # ------------------------------------------------------------------ where to connect

    @property
    def app(self) -> App:
        if self.daemon.app is None:
            raise RuntimeError("the test mail server is not running")
        return self.daemon.app

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def hostname(self) -> str:
        """server.hostname; the certificate is valid for it, for localhost and 127.0.0.1."""
        return self.app.config.hostname

    @property
    def domain(self) -> str:
        return self.app.config.domain

    @property
    def ports(self) -> dict[str, int]:
        """Listener name -> bound port."""
        return {name: port for name, (_, port) in self.app.bound.items()}

    def settings(self, listener: str) -> ConnectionSettings:
        security: Literal["ssl", "starttls", "none"] = (
            "ssl" if listener in ("submissions", "imaps")
            else "starttls" if listener in ("submission", "imap") else "none"
        )
        return ConnectionSettings(self.host, self.ports[listener], security)

    @property
    def smtp(self) -> ConnectionSettings:
        """Inbound SMTP (MX role): no login needed for mail to local addresses."""
        return self.settings("smtp")

    @property
    def submission(self) -> ConnectionSettings:
        """Submission with STARTTLS and AUTH (plaintext AUTH also works from loopback)."""
        return self.settings("submission")

    @property
    def imap(self) -> ConnectionSettings:
        return self.settings("imap")

    @property
    def imaps(self) -> ConnectionSettings:
        return self.settings("imaps")

    @property
    def cert_file(self) -> Path:
        return self.app.config.data_dir / "tls" / "cert.pem"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.cert_file))

    @property
    def users(self) -> dict[str, str]:
        """Declared users: address -> password."""
        return dict(self.spec.users)

    # ------------------------------------------------------------------ mail

    async def _messages(self, address: str, folder: str) -> list[EmailMessage]:
        store = self.app.store
        account = await store.directory.resolve(address.strip().lower())
        if account is None:
            raise LookupError(f"no account {address}")
        f = await store.mail.get_folder(account.id, folder)
        if f is None:
            raise LookupError(f"{address} has no folder {folder}")
        return [_parse(await store.mail.get_body(m.blob_id)) for m in await store.mail.list_messages(f.id)]

    def messages(self, address: str, folder: str = "INBOX") -> list[EmailMessage]:
        """Messages in a mailbox folder (oldest first) as EmailMessage (policy default)."""
        return self.call(self._messages(address, folder))

    async def _wait(self, address: str, count: int, seconds: float, folder: str) -> list[EmailMessage]:
        changed = asyncio.Event()

        def on_change(folder_id: int) -> None:
            changed.set()

        mail = self.app.store.mail
        mail.add_listener(on_change)  # woken after each commit: no polling
        found: list[EmailMessage] = []
        try:
            async with asyncio.timeout(seconds):
                while True:
                    changed.clear()
                    found = await self._messages(address, folder)
                    if len(found) >= count:
                        return found
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{address}: {len(found)} message(s) in {folder} after {seconds:g}s, expected {count}"
            ) from None
        finally:
            mail.remove_listener(on_change)

    def wait_for_messages(self, address: str, count: int = 1, timeout: float = 10.0,
                          folder: str = "INBOX") -> list[EmailMessage]:
        """Block until ``address``'s folder holds at least ``count`` messages; return them
        all. Raises TimeoutError naming how many arrived."""
        return self._submit(self._wait(address, count, timeout, folder)).result(timeout + CALL_TIMEOUT)

    async def wait_for_messages_async(
        self, address: str, count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 - same signature as the blocking form
        folder: str = "INBOX",
    ) -> list[EmailMessage]:
        """:meth:`wait_for_messages` for asyncio tests."""
        return await self.call_async(self._wait(address, count, timeout, folder))

    def add_accounts(self, spec: AccountSpec) -> None:
        """Create more accounts while running."""
        self.call(apply_spec(self.app.accounts, spec))

    def reload(self) -> bool:
        """Re-read the config file (as SIGHUP would); True when applied."""
        return self.call(self._reload())

    async def _reload(self) -> bool:
        return self.daemon.reload().applied
