"""A small HTTP/1.1 listener; the handlers are in :mod:`mailserver.http.routes`.

Only what a health check and simple GET/POST endpoints need: one request per
connection read with bounded sizes, ``Connection: close`` on every response.
"""

from __future__ import annotations

import asyncio
import logging

from mailserver import metrics
from mailserver.app import App
from mailserver.config import Listener
from mailserver.http import access
from mailserver.http.messages import Request, Response
from mailserver.http.routes import ANY_METHOD, route

log = logging.getLogger("mailserver.http")

#: Request line plus headers larger than this get 431; enough for any browser or probe.
MAX_HEAD = 16 * 1024
#: Request bodies (Autodiscover POSTs are a few hundred octets) larger than this get 413.
MAX_BODY = 1024 * 1024
#: A client that has not sent its request in this many seconds is dropped.
READ_TIMEOUT = 30.0

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed",
           408: "Request Timeout", 413: "Content Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}


def _encode(resp: Response, head_only: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Status')}\r\n"
        f"Content-Type: {resp.content_type}\r\nContent-Length: {len(resp.body)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in resp.headers.items())
        + "Connection: close\r\n\r\n"
    ).encode()
    return head if head_only else head + resp.body


async def _read_request(reader: asyncio.StreamReader, peer: str) -> Request | Response:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        return Response(431, b"request head too large\n")
    except asyncio.IncompleteReadError:
        return Response(400, b"incomplete request\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return Response(400, b"malformed request line\n")
    method, target, _ = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            return Response(400, b"malformed header line\n")
        headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        return Response(400, b"bad Content-Length\n")
    if length < 0:
        return Response(400, b"bad Content-Length\n")
    handler = route(target.partition("?")[0])
    if length > (ANY_METHOD.get(handler, MAX_BODY) if handler else MAX_BODY):
        return Response(413, b"request body too large\n")
    body = await reader.readexactly(length) if length else b""
    path, _, query = target.partition("?")
    return Request(method.upper(), path, query, headers, body, peer)


async def _handle(app: App, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = str(writer.get_extra_info("peername", ("?",))[0])
    app.connections.add(writer.transport)
    metrics.connection_opened("http")
    try:
        try:
            req = await asyncio.wait_for(_read_request(reader, peer), READ_TIMEOUT)
        except TimeoutError:
            req = Response(408, b"timeout\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        if isinstance(req, Response):
            writer.write(_encode(req))
        else:
            handler = route(req.path)
            if handler is None:
                resp = Response(404, b"not found\n")
            elif req.method not in ("GET", "HEAD", "POST") and handler not in ANY_METHOD:
                resp = Response(405, b"method not allowed\n")
            else:
                try:
                    resp = await handler(app, req)
                except Exception:
                    log.exception("http %s %s failed", req.method, req.path)
                    resp = Response(500, b"internal error\n")
            log.debug("http %s %s %s -> %d", peer, req.method, req.path, resp.status)
            writer.write(_encode(resp, head_only=req.method == "HEAD"))
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        metrics.connection_closed("http")
        app.connections.discard(writer.transport)
        writer.close()


async def start(app: App, listener: Listener) -> asyncio.Server:
    """Listen for HTTP. Raises StartupError for an unusable ``metrics.allowed_networks``."""
    from mailserver.daemon import StartupError

    try:
        access.networks(app.config)
    except ValueError as e:
        raise StartupError(str(e)) from None
    return await asyncio.start_server(
        lambda r, w: _handle(app, r, w), listener.host, listener.port, limit=MAX_HEAD
    )
