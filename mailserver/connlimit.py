"""Counting open connections per client address, shared by the SMTP and IMAP listeners.

One :class:`AddressLimiter` per service and daemon (SMTP counts its three listeners
together, IMAP its two): a connection is admitted while its address has fewer than
``limit`` open ones, and released when it closes.

Addresses are grouped the way an attacker gets them: an IPv4 address is one key, an
IPv6 address counts with its whole /64 (one customer network; RFC 6177 §2 hands out at
least a /64, so the host bits are free to vary), and an IPv4-mapped IPv6 address
(``::ffff:192.0.2.1`` on a dual-stack socket) counts as its IPv4 address.
"""

from __future__ import annotations

import ipaddress

#: Prefix length an IPv6 client is counted by (see the module docstring).
IPV6_PREFIX = 64


def address_key(ip: str) -> str:
    """The key ``ip`` is counted under: the IPv4 address, or the IPv6 /64 network.

    A string that is not an IP address (a Unix socket peer, "unknown") is its own key.
    """
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, IPV6_PREFIX), strict=False))
    return str(addr)


class AddressLimiter:
    """Open connections per client address, at most ``limit`` each.

    Invariant: :meth:`count` of a key equals the admitted connections not yet released;
    keys at zero are forgotten, so memory follows the connections that are open.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def admit(self, ip: str) -> bool:
        """Count a new connection from ``ip``; False (and not counted) when its address
        already has ``limit`` open connections."""
        key = address_key(ip)
        count = self._open.get(key, 0)
        if count >= self.limit:
            return False
        self._open[key] = count + 1
        return True

    def release(self, ip: str) -> None:
        """Forget one admitted connection from ``ip`` (call once per successful admit)."""
        key = address_key(ip)
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)

    def count(self, ip: str) -> int:
        """Open connections counted for the address of ``ip``."""
        return self._open.get(address_key(ip), 0)

    def __len__(self) -> int:
        """Addresses with at least one open connection."""
        return len(self._open)
