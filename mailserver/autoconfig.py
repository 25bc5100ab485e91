"""Client auto-configuration, generated from the running config (sans-IO).

* Thunderbird autoconfig ``config-v1.1.xml`` (thunderbird/autoconfig docs/file-format).
* Outlook Autodiscover "POX": request schema
  ``http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006``,
  response schema ``.../outlook/responseschema/2006a`` ([MS-OXDSCLI]).
* RFC 6186 SRV records (with RFC 8314's ``_submissions._tcp``) and the autoconfig /
  autodiscover host names, for ``mailserver dns DOMAIN``.

Everything here turns a :class:`~mailserver.config.Config` (and the ports the daemon
actually bound) into bytes or text; the HTTP routes live in :mod:`mailserver.http`.
Implicit TLS listeners are offered first (RFC 8314 §3: implicit TLS is preferred),
STARTTLS ones second; the MX listener (``smtp``) is never offered to clients.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from mailserver.config import Config

#: Outlook's request and response namespaces ([MS-OXDSCLI] §2.2.3, §2.2.4)
AUTODISCOVER_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
OUTLOOK_RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"

#: TTL of the generated DNS records: one hour, the usual default for service records.
DNS_TTL = 3600

#: (protocol, listener, socket type) in the order clients should prefer them.
CLIENT_LISTENERS: tuple[tuple[Literal["imap", "smtp"], str, Literal["SSL", "STARTTLS"]], ...] = (
    ("imap", "imaps", "SSL"),  # RFC 8314 §3.2: implicit TLS preferred
    ("imap", "imap", "STARTTLS"),
    ("smtp", "submissions", "SSL"),  # RFC 8314 §3.3
    ("smtp", "submission", "STARTTLS"),  # RFC 6409
)

_ADDRESS = re.compile(r"^[^@\s<>\"]{1,64}@[A-Za-z0-9.-]{1,253}$")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One client-facing listener as clients should be told about it."""

    protocol: Literal["imap", "smtp"]
    listener: str
    hostname: str
    port: int
    socket_type: Literal["SSL", "STARTTLS"]

    @property
    def outlook_encryption(self) -> str:
        """[MS-OXDSCLI] §2.2.4.1.1.2.4.14: ``SSL`` = implicit TLS, ``TLS`` = STARTTLS."""
        return "SSL" if self.socket_type == "SSL" else "TLS"


def endpoints(config: Config, bound: Mapping[str, tuple[str, int]] | None = None) -> list[Endpoint]:
    """Enabled client listeners, preferred first. Ports are the bound ones when given
    (a running daemon, possibly on port 0), else the configured ones."""
    out: list[Endpoint] = []
    for protocol, name, socket_type in CLIENT_LISTENERS:
        listener = config.listener(name)
        if not listener.enabled:
            continue
        port = bound[name][1] if bound and name in bound else listener.port
        out.append(Endpoint(protocol, name, config.hostname, port, socket_type))
    return out


def valid_address(text: str) -> bool:
    """A plausible ``local@domain`` (autoconfig takes it from a query string)."""
    return bool(_ADDRESS.match(text))


# --------------------------------------------------------------------------- Thunderbird


def thunderbird_xml(config: Config, domain: str, bound: Mapping[str, tuple[str, int]] | None = None,
                    login: str | None = None) -> bytes:
    """``clientConfig`` version 1.1 for ``domain``. ``login`` is the login name when it is
    known (the real address behind an alias), else ``%EMAILADDRESS%`` (the client fills it in)."""
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    ET.SubElement(provider, "domain").text = domain
    ET.SubElement(provider, "displayName").text = f"{domain} mail"
    ET.SubElement(provider, "displayShortName").text = domain
    for ep in endpoints(config, bound):
        tag = "incomingServer" if ep.protocol == "imap" else "outgoingServer"
        server = ET.SubElement(provider, tag, type=ep.protocol)
        ET.SubElement(server, "hostname").text = ep.hostname
        ET.SubElement(server, "port").text = str(ep.port)
        ET.SubElement(server, "socketType").text = ep.socket_type
        # AUTH PLAIN/LOGIN over TLS only (issue 3, issue 4)
        ET.SubElement(server, "authentication").text = "password-cleartext"
        ET.SubElement(server, "username").text = login or "%EMAILADDRESS%"
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


# --------------------------------------------------------------------------- Outlook


class AutodiscoverError(Exception):
    """A request we answer with an Autodiscover ``<Error>`` ([MS-OXDSCLI] §2.2.4.2)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


#: [MS-OXDSCLI] error codes
E500_ADDRESS_NOT_FOUND = (500, "The e-mail address cannot be found.")
E600_INVALID_REQUEST = (600, "Invalid Request")
E601_PROVIDER_UNAVAILABLE = (601, "The requested schema is not available.")


def parse_autodiscover_request(body: bytes) -> str:
    """The ``EMailAddress`` of an Outlook POX request, lower-cased.

    Raises AutodiscoverError (600) for anything that is not such a request, and (601)
    when ``AcceptableResponseSchema`` names a schema other than Outlook's 2006a.
    Documents with a DOCTYPE are refused before parsing (no entity expansion).
    """
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise AutodiscoverError(*E600_INVALID_REQUEST)
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise AutodiscoverError(*E600_INVALID_REQUEST) from None
    address = schema = None
    for el in root.iter():
        local = el.tag.rsplit("}", 1)[-1]
        if local == "EMailAddress":
            address = (el.text or "").strip()
        elif local == "AcceptableResponseSchema":
            schema = (el.text or "").strip()
    if not address or not valid_address(address):
        raise AutodiscoverError(*E600_INVALID_REQUEST)
    if schema and schema != OUTLOOK_RESPONSE_NS:
        raise AutodiscoverError(*E601_PROVIDER_UNAVAILABLE)
    return address.lower()


def _doc(response: ET.Element) -> bytes:
    root = ET.Element("Autodiscover", xmlns=AUTODISCOVER_NS)
    root.append(response)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def autodiscover_xml(config: Config, address: str, login: str, display_name: str = "",
                     bound: Mapping[str, tuple[str, int]] | None = None) -> bytes:
    """The POX response with one IMAP and one SMTP ``Protocol`` block (the preferred
    endpoint of each; Outlook uses the first block of a type)."""
    response = ET.Element("Response", xmlns=OUTLOOK_RESPONSE_NS)
    user = ET.SubElement(response, "User")
    ET.SubElement(user, "DisplayName").text = display_name or address
    account = ET.SubElement(response, "Account")
    ET.SubElement(account, "AccountType").text = "email"
    ET.SubElement(account, "Action").text = "settings"
    seen: set[str] = set()
    for ep in endpoints(config, bound):
        if ep.protocol in seen:
            continue
        seen.add(ep.protocol)
        proto = ET.SubElement(account, "Protocol")
        ET.SubElement(proto, "Type").text = ep.protocol.upper()
        ET.SubElement(proto, "Server").text = ep.hostname
        ET.SubElement(proto, "Port").text = str(ep.port)
        ET.SubElement(proto, "LoginName").text = login
        ET.SubElement(proto, "DomainRequired").text = "off"
        ET.SubElement(proto, "SPA").text = "off"
        # "If present, the Encryption element overrides the SSL element" ([MS-OXDSCLI])
        ET.SubElement(proto, "SSL").text = "on"
        ET.SubElement(proto, "Encryption").text = ep.outlook_encryption
        ET.SubElement(proto, "AuthRequired").text = "on"
        if ep.protocol == "smtp":
            ET.SubElement(proto, "UsePOPAuth").text = "off"
            ET.SubElement(proto, "SMTPLast").text = "off"
    return _doc(response)


def autodiscover_error_xml(err: AutodiscoverError) -> bytes:
    """An ``<Error>`` response ([MS-OXDSCLI] §2.2.4.2)."""
    response = ET.Element("Response")
    error = ET.SubElement(response, "Error")
    ET.SubElement(error, "ErrorCode").text = str(err.code)
    ET.SubElement(error, "Message").text = err.message
    ET.SubElement(error, "DebugData")
    return _doc(response)


# --------------------------------------------------------------------------- DNS


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One resource record in zone-file terms (names are absolute, with the final dot)."""

    name: str
    rtype: str
    value: str
    comment: str = ""

    def zone_line(self, ttl: int = DNS_TTL) -> str:
        line = f"{self.name} {ttl} IN {self.rtype} {self.value}"
        return f"{line}  ; {self.comment}" if self.comment else line


def dns_records(config: Config, domain: str) -> list[DnsRecord]:
    """RFC 6186 / RFC 8314 SRV records for ``domain`` and the autoconfig/autodiscover
    names, from the configured listeners and ``server.hostname``.

    Disabled services, and POP3 which this server does not offer, get the target "."
    (RFC 2782: the service is decidedly not available at this domain). Implicit TLS
    records get priority 0 and STARTTLS ones priority 10, so clients prefer implicit
    TLS (RFC 8314 §5.1).
    """
    domain = domain.rstrip(".").lower()
    host = config.hostname.rstrip(".") + "."
    records: list[DnsRecord] = []
    services = (
        ("_imaps", "imaps", 0, "IMAP over implicit TLS (RFC 8314)"),
        ("_imap", "imap", 10, "IMAP with STARTTLS (RFC 6186)"),
        ("_submissions", "submissions", 0, "submission over implicit TLS (RFC 8314)"),
        ("_submission", "submission", 10, "submission with STARTTLS (RFC 6186, RFC 6409)"),
    )
    for label, listener_name, priority, what in services:
        listener = config.listener(listener_name)
        if listener.enabled:
            value = f"{priority} 1 {listener.port} {host}"
        else:
            value = "0 0 0 ."
            what += ": not offered"
        records.append(DnsRecord(f"{label}._tcp.{domain}.", "SRV", value, what))
    for label in ("_pop3s", "_pop3"):  # RFC 6186 §3.3 names POP3; target "." says it is not offered
        records.append(DnsRecord(f"{label}._tcp.{domain}.", "SRV", "0 0 0 .", "POP3: not offered"))
    records += [
        DnsRecord(f"autoconfig.{domain}.", "CNAME", host,
                  "Thunderbird: http(s)://autoconfig.DOMAIN/mail/config-v1.1.xml (the http listener)"),
        DnsRecord(f"autodiscover.{domain}.", "CNAME", host,
                  "Outlook: https://autodiscover.DOMAIN/autodiscover/autodiscover.xml (HTTPS proxy in front of the http listener)"),
        DnsRecord(f"_autodiscover._tcp.{domain}.", "SRV", f"0 1 443 {host}",
                  "Outlook's SRV fallback: needs HTTPS on port 443"),
    ]
    return records
