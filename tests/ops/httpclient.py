"""A tiny asyncio HTTP/1.1 client for the ops tests (one request per connection)."""

from __future__ import annotations

import asyncio


async def request(port: int, method: str, path: str, body: bytes = b"",
                  headers: dict[str, str] | None = None, host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """Send one request; return (status, lower-cased headers, body)."""
    reader, writer = await asyncio.open_connection(host, port)
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head_bytes, _, payload = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, hdrs, payload
