"""Request and response values of the HTTP listener (no I/O here)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from mailserver.app import App


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    peer: str

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name`` (percent-decoded), or None."""
        values = parse_qs(self.query, keep_blank_values=True).get(name)
        return values[0] if values else None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[App, Request], Awaitable[Response]]
