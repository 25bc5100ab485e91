"""The daemon: one asyncio process hosting every listener.

Start-up order: data folder, store (created and migrated on first start), primary
domain, TLS (self-signed certificate when none is configured), services, optional demo
organisation, listeners. Any failure is a :class:`StartupError` with one line for the
operator. Shutdown: stop accepting, let in-flight work finish within
``server.shutdown_grace_seconds``, close connections, close the store.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from auth.accounts import AccountService
from auth.errors import AccountError
from auth.login import Authenticator, AuthPolicy
from auth.passwords import PasswordHasher
from mailserver import tls
from mailserver.app import App
from mailserver.config import Config, Listener
from mailserver.reload import ReloadResult
from mailserver.reload import reload as reload_config
from storage import StorageError, open_store
from storage.interfaces import Store

log = logging.getLogger("mailserver")

ListenerFactory = Callable[[App, Listener], Awaitable[asyncio.Server]]

#: listener name -> "module:function" of its factory
LISTENER_FACTORIES: dict[str, str] = {
    "smtp": "mailserver.smtp.listeners:start_smtp",
    "submission": "mailserver.smtp.listeners:start_submission",
    "submissions": "mailserver.smtp.listeners:start_submissions",
    "imap": "mailserver.imap.server:start_imap",
    "imaps": "mailserver.imap.server:start_imaps",
    "http": "mailserver.http:start",
}


class StartupError(Exception):
    """The daemon cannot start; str() is one line for the operator."""


def _factory(name: str) -> ListenerFactory | None:
    """The listener's start function, or None when this build does not have it yet."""
    module_name, _, func = LISTENER_FACTORIES[name].partition(":")
    if importlib.util.find_spec(module_name.rsplit(".", 1)[0]) is None:
        return None
    try:
        if importlib.util.find_spec(module_name) is None:
            return None
    except ModuleNotFoundError:
        return None
    module = importlib.import_module(module_name)
    factory: ListenerFactory = getattr(module, func)
    return factory


def listener_available(name: str) -> bool:
    """True when this build has the code of listener ``name``."""
    return _factory(name) is not None


#: Written in data_dir when the daemon has started, removed when it stops; read by
#: `mailserver status` (pid, start time, bound listeners, config file).
STATUS_FILE = "daemon.json"


def auth_policy(config: Config) -> AuthPolicy:
    return AuthPolicy(
        failure_delay=config["auth.failure_delay_seconds"],
        max_failures=config["auth.max_failures"],
        failure_window=config["auth.failure_window_seconds"],
        lockout=config["auth.lockout_seconds"],
    )


def _check_data_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StartupError(f"data folder {path} cannot be created: {e.strerror}") from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise StartupError(f"data folder {path} is not readable and writable by this user")


async def open_services(config: Config, hasher: PasswordHasher | None = None) -> tuple[Store, AccountService, PasswordHasher]:
    """Open the store and the account service (shared by the CLI and the daemon)."""
    _check_data_dir(config.data_dir)
    if config["storage.backend"] == "sqlite":
        _check_data_dir(config.storage_path.parent)
    try:
        store = await open_store(
            config["storage.backend"], path=config.storage_path, dsn=config["storage.dsn"] or None
        )
    except StorageError as e:
        raise StartupError(f"store: {e}") from None
    hasher = hasher or PasswordHasher()
    accounts = AccountService(store.directory, hasher, config.seats)
    try:
        if config.domain not in await store.directory.list_domains():
            await store.directory.add_domain(config.domain)
    except StorageError as e:
        await store.close()
        raise StartupError(f"store: {e}") from None
    return store, accounts, hasher


async def _ensure_postmaster(config: Config, accounts: AccountService) -> None:
    """RFC 5321 §4.5.1: mail to postmaster must be deliverable. With server.postmaster
    empty, create postmaster@<server.domain> as a shared mailbox when nothing answers
    to that address yet (an operator's own user, alias or list there wins)."""
    if str(config["server.postmaster"]).strip():
        return
    try:
        if await accounts.directory.resolve(config.postmaster) is None:
            await accounts.add_shared(config.postmaster, "Postmaster")
            log.info("created the shared mailbox %s for mail to postmaster (RFC 5321 §4.5.1)", config.postmaster)
    except (AccountError, StorageError) as e:
        raise StartupError(f"postmaster: {e}") from None


class Daemon:
    """Runs the listeners named in the config. Use ``await start()`` then ``await stop()``,
    or :meth:`run` for the signal-driven main loop."""

    def __init__(self, config: Config, *, hasher: PasswordHasher | None = None, demo: bool = False) -> None:
        self.config = config
        self._hasher = hasher
        self._demo = demo
        self.app: App | None = None
        self._servers: list[tuple[str, asyncio.Server]] = []
        self._outbound: Any = None  # delivery.outbound.worker.OutboundWorker when outbound.enabled

    async def start(self) -> App:
        config = self.config
        store, accounts, hasher = await open_services(config, self._hasher)
        try:
            try:
                cert, key, generated = tls.ensure_certificate(config)
                ctx = tls.server_context(cert, key)
            except (tls.TLSError, OSError) as e:
                raise StartupError(f"tls: {e}") from None
            if generated:
                log.info("generated a self-signed certificate for %s in %s", config.hostname, cert)
            authenticator = Authenticator(store.directory, hasher, auth_policy(config))
            app = App(config, store, hasher, authenticator, accounts, ctx, log)
            self.app = app
            if self._demo:
                from mailserver.demo import seed_demo

                try:
                    lines = await seed_demo(accounts, config.domain)
                except AccountError as e:
                    raise StartupError(f"demo: {e}") from None
                print("\n".join(lines), flush=True)
            await _ensure_postmaster(config, accounts)
            await self._start_listeners(app)
            if config["outbound.enabled"]:
                from mailserver.outbound import OutboundConfigError, start_worker

                try:
                    self._outbound = await start_worker(config, store)
                except OutboundConfigError as e:
                    raise StartupError(str(e)) from None
        except BaseException:
            await self._close_servers()
            await store.close()
            raise
        self._write_status(app)
        log.info(
            "mailserver started: %s",
            ", ".join(f"{n} {h}:{p}" for n, (h, p) in app.bound.items()) or "no listeners",
        )
        return app

    async def _start_listeners(self, app: App) -> None:
        for listener in self.config.listeners:
            if not listener.enabled:
                continue
            factory = _factory(listener.name)
            if factory is None:
                log.warning("listener %s: not part of this version yet, skipped", listener.name)
                continue
            try:
                server = await factory(app, listener)
            except OSError as e:
                raise StartupError(
                    f"listener {listener.name}: cannot listen on {listener.host}:{listener.port}: "
                    f"{e.strerror or e}"
                ) from None
            self._servers.append((listener.name, server))
            host, port = server.sockets[0].getsockname()[:2]
            app.bound[listener.name] = (str(host), int(port))

    def _write_status(self, app: App) -> None:
        path = self.config.data_dir / STATUS_FILE
        doc = {"pid": os.getpid(), "started": app.started, "config": str(self.config.path.resolve()),
               "listeners": {n: [h, p] for n, (h, p) in app.bound.items()}}
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(doc), encoding="utf-8")
            tmp.replace(path)
        except OSError as e:
            log.warning("status file %s not written: %s", path, e.strerror)

    def _remove_status(self) -> None:
        path = self.config.data_dir / STATUS_FILE
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass

    def reload(self, *, configure_logging: Callable[[str, str], object] | None = None) -> ReloadResult:
        """SIGHUP: re-read config and certificate (see :mod:`mailserver.reload`)."""
        if self.app is None:
            return ReloadResult(False, "not running")
        result = reload_config(self.app, configure_logging=configure_logging)
        if result.config is not None:
            self.config = result.config
        return result

    def port(self, name: str) -> int:
        assert self.app is not None
        return self.app.bound[name][1]

    async def _close_servers(self) -> None:
        for _, server in self._servers:
            server.close()
        self._servers.clear()

    async def stop(self) -> None:
        """Stop accepting, wait for in-flight work (bounded), close connections and store."""
        app = self.app
        if app is None:
            return
        app.shutting_down = True
        await self._close_servers()
        grace = float(self.config["server.shutdown_grace_seconds"])
        if not await app.inflight.wait_idle(grace):
            log.warning("shutdown: %d operations still running after %.1fs, cutting them", app.inflight.count, grace)
        for transport in list(app.connections):
            transport.close()
        await asyncio.sleep(0)
        if self._outbound is not None:  # before the store closes; bounded by the grace period
            await self._outbound.stop(grace)
            self._outbound = None
        await app.store.close()
        self._remove_status()
        self.app = None
        log.info("mailserver stopped")

    async def run(self, on_started: Callable[[App], object] | None = None) -> None:
        """Start, serve until SIGTERM or SIGINT, then stop; SIGHUP reloads.
        ``on_started(app)`` runs once every listener is bound."""
        from mailserver import logs

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.reload(configure_logging=logs.setup))
        app = await self.start()
        if on_started is not None:
            on_started(app)
        await stop.wait()
        log.info("signal received, shutting down")
        await self.stop()
