"""Who may read the operator endpoints (/metrics): client networks and a bearer token.

``metrics.allowed_networks`` (default loopback only) limits the client address;
``metrics.bearer_token``, when set, must also be sent as ``Authorization: Bearer TOKEN``.
The peer address is the TCP peer: a reverse proxy on the same host looks like loopback,
so do not forward /metrics through one.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress

from mailserver.config import Config
from mailserver.http.messages import Request, Response

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=16)
def _parse(entries: tuple[str, ...]) -> tuple[Network, ...]:
    out: list[Network] = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"metrics.allowed_networks: {entry!r} is not an address or network") from None
    return tuple(out)


def networks(config: Config) -> tuple[Network, ...]:
    """The allowed client networks. Raises ValueError (one line) for a bad entry."""
    return _parse(tuple(config["metrics.allowed_networks"]))


def client_allowed(config: Config, peer: str) -> bool:
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks(config))


def check(config: Config, request: Request) -> Response | None:
    """None when the request may read operator endpoints, else the refusal (403 or 401)."""
    if not client_allowed(config, request.peer):
        return Response(403, b"forbidden\n")
    token = str(config["metrics.bearer_token"])
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # RFC 6750 §2.1; compare in constant time
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return Response(401, b"bearer token required\n", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    return None
