"""HTTP handlers of the DAV tree (``/dav/``), the ``/.well-known/caldav`` and
``/.well-known/carddav`` redirects (RFC 6764 §5) and Internet Free/Busy
(``/freebusy/<address>.vfb``).

Every request is authenticated here with HTTP Basic (RFC 7617) through the daemon's
Authenticator (same uniform failures and throttling as SMTP and IMAP); Radicale then
runs the request in a worker thread with the user as ``REMOTE_USER``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import io
import logging
import secrets
import time
import weakref
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import icalendar
import radicale
import radicale.config

from auth.errors import AuthFailed, AuthThrottled
from auth.login import may_log_in
from mailserver.app import App
from mailserver.dav import context
from mailserver.http.messages import Request, Response
from storage.errors import StorageError
from storage.types import MAILBOX_KINDS, Account, BusyInterval, CollectionKind

log = logging.getLogger("mailserver.dav")

#: Where the DAV tree is mounted on the HTTP listener.
PREFIX = "/dav"
#: Largest DAV request body: an address book or calendar import of a few thousand
#: entries, or an event with attachments, stays well below this.
MAX_BODY = 16 * 1024 * 1024
#: Seconds a successful Basic login is remembered (per process, keyed by an HMAC of the
#: credentials): DAV clients send the password with every request, and hashing it each
#: time (argon2) would cost more than the request. Short, so a password change or a
#: disabled account takes effect quickly.
LOGIN_CACHE_SECONDS = 60.0
#: Most remembered logins; the oldest are dropped first.
LOGIN_CACHE_SIZE = 1024
#: Internet Free/Busy range (Outlook asks for about two months ahead).
FREEBUSY_PAST = timedelta(days=7)
FREEBUSY_FUTURE = timedelta(days=90)

#: Request headers handed to Radicale; X-Forwarded-*, X-Script-Name and the like are
#: dropped so that a client cannot move the tree or pose as a proxy.
_PASSED_HEADERS = (
    "depth", "destination", "overwrite", "if-match", "if-none-match", "user-agent",
    "accept", "accept-encoding", "prefer", "brief", "host", "if-modified-since",
)
_REALM = 'Basic realm="mailserver", charset="UTF-8"'
_CACHE_KEY = secrets.token_bytes(32)


class _LoginCache:
    def __init__(self) -> None:
        self._entries: dict[bytes, tuple[str, float]] = {}

    @staticmethod
    def key(username: str, password: str) -> bytes:
        return hmac.new(_CACHE_KEY, f"{username}\0{password}".encode(), hashlib.sha256).digest()

    def get(self, key: bytes) -> str | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[0]

    def forget(self, key: bytes) -> None:
        self._entries.pop(key, None)

    def put(self, key: bytes, address: str) -> None:
        if len(self._entries) >= LOGIN_CACHE_SIZE:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (address, time.monotonic() + LOGIN_CACHE_SECONDS)


_CACHES: weakref.WeakKeyDictionary[App, _LoginCache] = weakref.WeakKeyDictionary()
_RADICALE: weakref.WeakKeyDictionary[App, Any] = weakref.WeakKeyDictionary()


def _unauthorized() -> Response:
    return Response(401, b"authentication required\n", headers={"WWW-Authenticate": _REALM})


async def authenticate(app: App, request: Request) -> Account | Response:
    """The licensed, enabled user behind the request's Basic credentials, or the error
    response (401 for every failure, 429 while throttled, 503 when the store is
    unavailable). A remembered login is only a shortcut for the password check: the
    account is checked again on every request."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return _unauthorized()
    try:
        username, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return _unauthorized()
    if not sep:
        return _unauthorized()
    cache = _CACHES.setdefault(app, _LoginCache())
    key = cache.key(username, password)
    try:
        address = cache.get(key)
        user = None if address is None else await app.store.directory.get_account(address)
        if user is None or not may_log_in(user):
            # Not remembered, or unlicensed or disabled since: the full check, which then
            # fails like any other login (same answer, same delay, counted by the throttle).
            cache.forget(key)
            principal = await app.authenticator.authenticate(username, password, client_ip=request.peer)
            user = principal.user
            cache.put(key, user.address)
    except AuthFailed:
        return _unauthorized()
    except AuthThrottled:
        return Response(429, b"too many failed logins, try later\n", headers={"Retry-After": "60"})
    except StorageError as err:
        log.error("dav: directory unavailable: %s", err)
        return Response(503, b"store unavailable\n")
    return user


def _radicale(app: App) -> Any:
    application = _RADICALE.get(app)
    if application is None:
        configuration = radicale.config.load([])
        configuration.update({
            "auth": {"type": "remote_user", "delay": "0"},
            "rights": {"type": "mailserver.dav.rights", "permit_delete_collection": "True"},
            "storage": {"type": "mailserver.dav.storage"},
            "web": {"type": "none"},
            "server": {"max_content_length": str(MAX_BODY)},
        }, "mailserver", privileged=True)
        logging.getLogger("radicale").setLevel(logging.WARNING)
        application = radicale.Application(configuration)
        _RADICALE[app] = application
    return application


def _environ(request: Request, user: Account, host: str, port: int) -> dict[str, Any]:
    """A WSGI environ (PEP 3333) for Radicale: the tree's prefix as SCRIPT_NAME."""
    path = request.path[len(PREFIX):] or "/"
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": PREFIX,
        "PATH_INFO": unquote(path, encoding="latin-1"),
        "QUERY_STRING": request.query,
        "SERVER_NAME": host,
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": request.peer,
        "REMOTE_USER": user.address,
        "CONTENT_LENGTH": str(len(request.body)),
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if "content-type" in request.headers:
        environ["CONTENT_TYPE"] = request.headers["content-type"]
    for name in _PASSED_HEADERS:
        if name in request.headers:
            environ["HTTP_" + name.upper().replace("-", "_")] = request.headers[name]
    return environ


def _run_wsgi(application: Any, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Call the WSGI application (in a worker thread) and collect its response."""
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    body = b"".join(application(environ, start_response))
    return int(str(captured["status"]).split(" ", 1)[0]), captured["headers"], body


async def dav(app: App, request: Request) -> Response:
    """Any WebDAV/CalDAV/CardDAV request under :data:`PREFIX`, run by Radicale."""
    user = await authenticate(app, request)
    if isinstance(user, Response):
        return user
    try:
        ctx = await context.build(app.store, user)
    except StorageError as err:
        log.error("dav: store unavailable: %s", err)
        return Response(503, b"store unavailable\n")
    host, _, port = request.headers.get("host", app.config.hostname).partition(":")
    environ = _environ(request, user, host, int(port) if port.isdigit() else 80)
    token = context.CURRENT.set(ctx)
    try:
        status, headers, body = await asyncio.to_thread(_run_wsgi, _radicale(app), environ)
    finally:
        context.CURRENT.reset(token)
    content_type = "text/plain; charset=utf-8"
    out: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower == "content-type":
            content_type = value
        elif lower not in ("content-length", "connection"):
            out[name] = value
    return Response(status, body, content_type, out)


async def well_known(app: App, request: Request) -> Response:
    """RFC 6764 §5: the context path of CalDAV and CardDAV is the DAV tree."""
    return Response(301, b"", headers={"Location": PREFIX + "/"})


async def freebusy(app: App, request: Request) -> Response:
    """``GET /freebusy/<address>.vfb``: VFREEBUSY (RFC 5545 §3.6.4) of a user, shared
    mailbox or room for authenticated internal users (Outlook Internet Free/Busy)."""
    user = await authenticate(app, request)
    if isinstance(user, Response):
        return user
    name = unquote(request.path[len("/freebusy/"):])
    if not name.lower().endswith(".vfb"):
        return Response(404, b"not found\n")
    address = name[:-4].strip().lower()
    try:
        account = await app.store.directory.resolve(address)
        if account is None or account.kind not in MAILBOX_KINDS or not account.enabled:
            return Response(404, b"not found\n")
        now = datetime.now(UTC).replace(microsecond=0)
        start, end = now - FREEBUSY_PAST, now + FREEBUSY_FUTURE
        busy: list[BusyInterval] = []
        for collection in await app.store.calendars.list_collections(account.id):
            if collection.kind is CollectionKind.CALENDAR:
                busy += await app.store.calendars.busy(collection.id, start, end)
    except StorageError as err:
        log.error("freebusy: store unavailable: %s", err)
        return Response(503, b"store unavailable\n")
    body = vfreebusy(account.address, busy, start, end, now)
    return Response(200, body, "text/calendar; charset=utf-8")


def vfreebusy(address: str, busy: list[BusyInterval], start: datetime, end: datetime, now: datetime) -> bytes:
    """A VCALENDAR with one VFREEBUSY: merged busy periods, tentative ones apart
    (FBTYPE=BUSY-TENTATIVE, RFC 5545 §3.2.9)."""
    cal = icalendar.Calendar()
    cal.add("PRODID", "-//mailserver//free busy//EN")
    cal.add("VERSION", "2.0")
    fb = icalendar.FreeBusy()
    fb.add("DTSTAMP", now)
    fb.add("DTSTART", start)
    fb.add("DTEND", end)
    fb.add("ORGANIZER", f"mailto:{address}")
    fb.add("UID", f"freebusy-{address}")
    for tentative in (False, True):
        periods = _merge([(max(b.start, start), min(b.end, end)) for b in busy if b.tentative is tentative])
        for s, e in periods:
            fb.add("FREEBUSY", (s, e), parameters={"FBTYPE": "BUSY-TENTATIVE" if tentative else "BUSY"})
    cal.add_component(fb)
    return cal.to_ical()


def _merge(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for s, e in sorted(spans):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out
