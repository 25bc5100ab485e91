"""HTTP handlers: liveness, readiness, metrics, Thunderbird autoconfig, Outlook Autodiscover."""

from __future__ import annotations

import logging

from mailserver import autoconfig, metrics
from mailserver.app import App
from mailserver.http import access
from mailserver.http.messages import Handler, Request, Response
from storage.errors import StorageError
from storage.types import AccountKind

log = logging.getLogger("mailserver.http")

XML = "application/xml; charset=utf-8"


async def healthz(app: App, request: Request) -> Response:
    """Liveness: the process answers."""
    return Response(200, b"ok\n")


async def readyz(app: App, request: Request) -> Response:
    """Readiness: not shutting down, every listener this build has is bound, and the
    store answers a cheap read. 503 with the reason otherwise."""
    from mailserver.daemon import listener_available

    if app.shutting_down:
        return Response(503, b"shutting down\n")
    missing = [
        lst.name for lst in app.config.listeners
        if lst.enabled and lst.name not in app.bound and listener_available(lst.name)
    ]
    if missing:
        return Response(503, f"listeners not bound: {', '.join(missing)}\n".encode())
    try:
        await app.store.directory.version()
    except Exception as e:  # any failure of the store means "not ready", never a 500
        log.warning("readyz: store unavailable: %s", e)
        return Response(503, b"store unavailable\n")
    return Response(200, b"ready\n")


async def metrics_handler(app: App, request: Request) -> Response:
    """Prometheus text exposition, for allowed clients only (see access)."""
    refused = access.check(app.config, request)
    if refused is not None:
        return refused
    try:
        await metrics.refresh(app)
    except StorageError as e:  # counters are still worth serving
        log.warning("metrics: store gauges not refreshed: %s", e)
    return Response(200, metrics.exposition(), metrics.CONTENT_TYPE)


async def _local_domains(app: App) -> set[str]:
    return {d.lower() for d in await app.store.directory.list_domains()}


async def _login_for(app: App, address: str) -> tuple[str | None, str]:
    """(login name, display name) for an address: the user behind an alias logs in
    with the user's address; anything else is left to the client (None)."""
    account = await app.store.directory.resolve(address)
    if account is not None and account.kind == AccountKind.USER:
        return account.address, account.display_name
    return None, ""


async def thunderbird(app: App, request: Request) -> Response:
    """``config-v1.1.xml`` for the domain of ``?emailaddress=`` (else of the Host name,
    else the primary domain); 404 for a domain that is not local."""
    address = (request.param("emailaddress") or "").strip().lower()
    login: str | None = None
    domains = await _local_domains(app)
    if address:
        if not autoconfig.valid_address(address):
            return Response(400, b"emailaddress is not an address\n")
        domain = address.rsplit("@", 1)[1]
        if domain in domains:
            login, _ = await _login_for(app, address)
    else:
        host = request.headers.get("host", "").rsplit(":", 1)[0].lower()
        domain = host.removeprefix("autoconfig.") if host.removeprefix("autoconfig.") in domains else app.config.domain
    if domain not in domains:
        return Response(404, b"not a local domain\n")
    return Response(200, autoconfig.thunderbird_xml(app.config, domain, app.bound, login), XML)


async def autodiscover(app: App, request: Request) -> Response:
    """Outlook POX Autodiscover: settings for a local address, else an Error document."""
    try:
        if request.method != "POST":
            raise autoconfig.AutodiscoverError(*autoconfig.E600_INVALID_REQUEST)
        address = autoconfig.parse_autodiscover_request(request.body)
        if address.rsplit("@", 1)[1] not in await _local_domains(app):
            raise autoconfig.AutodiscoverError(*autoconfig.E500_ADDRESS_NOT_FOUND)
    except autoconfig.AutodiscoverError as err:
        return Response(200, autoconfig.autodiscover_error_xml(err), XML)
    login, name = await _login_for(app, address)
    body = autoconfig.autodiscover_xml(app.config, address, login or address, name, app.bound)
    return Response(200, body, XML)


ROUTES: dict[str, Handler] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/metrics": metrics_handler,
    "/mail/config-v1.1.xml": thunderbird,
    "/.well-known/autoconfig/mail/config-v1.1.xml": thunderbird,
}

#: Outlook spells the path in either case (and some clients in others)
ROUTES_ANY_CASE: dict[str, Handler] = {"/autodiscover/autodiscover.xml": autodiscover}


def _dav(name: str) -> Handler:
    """A handler of :mod:`mailserver.dav.http`, imported on first use (it imports this package)."""

    async def handler(app: App, request: Request) -> Response:
        from mailserver.dav import http as dav

        return await getattr(dav, name)(app, request)

    return handler


# Issue 5: CalDAV/CardDAV tree (every WebDAV method, large bodies), its RFC 6764
# well-known redirects, Internet Free/Busy.
_DAV_TREE = _dav("dav")
ROUTES.update({"/.well-known/caldav": _dav("well_known"), "/.well-known/carddav": _dav("well_known"), "/dav": _DAV_TREE})
#: path prefix -> handler, tried after the exact routes
PREFIX_ROUTES: dict[str, Handler] = {"/dav/": _DAV_TREE, "/freebusy/": _dav("freebusy")}
#: handlers that take every method, with their largest request body (mailserver.dav.http.MAX_BODY)
ANY_METHOD: dict[Handler, int] = {_DAV_TREE: 16 * 1024 * 1024}


def route(path: str) -> Handler | None:
    """The handler for ``path``, or None (404)."""
    found = ROUTES.get(path) or ROUTES_ANY_CASE.get(path.lower())
    return found or next((h for prefix, h in PREFIX_ROUTES.items() if path.startswith(prefix)), None)
