"""Route resolution for outbound mail, RFC 5321 §5.1, over an injected resolver.

:class:`Resolver` is the only thing that talks DNS; :class:`DnsResolver` implements it
with dnspython's asyncio resolver (nameserver and port configurable, so tests and
staging setups point it at a DNS server on loopback).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dns.asyncresolver
import dns.exception
import dns.resolver

#: Seconds one DNS query may take in all (retries across nameservers included).
DNS_LIFETIME_SECONDS = 10.0


class DnsError(Exception):
    """A lookup failed. ``permanent`` is True only for NXDOMAIN (the name does not exist)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Resolver(Protocol):
    """The DNS questions outbound delivery asks."""

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs, exchange without the trailing dot ("" for
        the root). Empty when the name exists but has no MX. Raises DnsError."""

    async def addresses(self, host: str) -> list[str]:
        """IPv4 then IPv6 addresses of ``host``; empty when it has none. Raises DnsError."""


class DnsResolver:
    """:class:`Resolver` on dnspython. ``nameserver`` "" uses the system's resolv.conf."""

    def __init__(self, nameserver: str = "", port: int = 53, lifetime: float = DNS_LIFETIME_SECONDS) -> None:
        if nameserver:
            self._r = dns.asyncresolver.Resolver(configure=False)
            self._r.nameservers = [nameserver]
            self._r.port = port
        else:
            self._r = dns.asyncresolver.Resolver()
        self._r.lifetime = lifetime

    async def _query(self, name: str, rdtype: str) -> list[Any]:
        try:
            answer = await self._r.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise DnsError(f"{name}: no such domain", permanent=True) from None
        except dns.resolver.NoAnswer:
            return []
        except dns.resolver.NoNameservers as err:
            raise DnsError(f"{name} {rdtype}: no nameserver answered ({err})", permanent=False) from None
        except dns.exception.Timeout:
            raise DnsError(f"{name} {rdtype}: DNS timeout", permanent=False) from None
        except dns.exception.DNSException as err:
            raise DnsError(f"{name} {rdtype}: {err}", permanent=False) from None
        return list(answer)

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        records = await self._query(domain, "MX")
        return [(int(r.preference), r.exchange.to_text(omit_final_dot=True)) for r in records]

    async def addresses(self, host: str) -> list[str]:
        found: list[str] = []
        errors: list[DnsError] = []
        for rdtype in ("A", "AAAA"):
            try:
                found += [r.to_text() for r in await self._query(host, rdtype)]
            except DnsError as err:
                errors.append(err)
        if not found and errors:
            raise errors[0]
        return found


@dataclass(frozen=True, slots=True)
class RouteError(Exception):
    """No route to the domain: a permanent one (null MX, no such domain) fails the
    recipients at once; a temporary one is retried later."""

    permanent: bool
    status: str  # enhanced status code for the DSN, RFC 3463
    text: str

    def __str__(self) -> str:
        return f"{self.status} {self.text}"


@dataclass(frozen=True, slots=True)
class MailHost:
    """One host to try, in order: its name and the preference it was listed with."""

    name: str
    preference: int
    implicit: bool = False  # RFC 5321 §5.1 implicit MX: the domain itself, no MX record


async def resolve_route(
    domain: str,
    resolver: Resolver,
    *,
    shuffle: Callable[[list[MailHost]], None] = random.shuffle,
) -> list[MailHost]:
    """The hosts to try for ``domain``, most preferred first (RFC 5321 §5.1).

    Equal preferences are shuffled (RFC 5321 §5.1 "SHOULD ... randomize"). No MX
    records: the domain itself is the implicit MX. Raises RouteError: permanent for a
    null MX (RFC 7505 §3, status 5.1.10) or a domain that does not exist (5.1.2);
    temporary for DNS failures (4.4.3).
    """
    try:
        records = await resolver.mx(domain)
    except DnsError as err:
        if err.permanent:
            raise RouteError(True, "5.1.2", f"domain {domain} does not exist") from None
        raise RouteError(False, "4.4.3", f"DNS lookup of {domain} failed: {err}") from None
    # RFC 7505 §3: a single MX with the root as exchange says the domain takes no mail.
    if len(records) == 1 and records[0][1] in ("", "."):
        raise RouteError(True, "5.1.10", f"domain {domain} accepts no mail (null MX)")
    hosts = [MailHost(name, pref) for pref, name in records if name not in ("", ".")]
    if not records:
        # RFC 5321 §5.1: no MX: the domain is treated as its own MX with preference 0.
        return [MailHost(domain, 0, implicit=True)]
    groups: dict[int, list[MailHost]] = {}
    for host in hosts:
        groups.setdefault(host.preference, []).append(host)
    ordered: list[MailHost] = []
    for pref in sorted(groups):
        group = groups[pref]
        shuffle(group)
        ordered += group
    return ordered


def no_shuffle(hosts: Sequence[MailHost]) -> None:
    """A ``shuffle`` that keeps DNS order (for deterministic tests)."""
