"""Autoconfig documents and DNS records, generated from a config (no sockets)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mailserver import autoconfig
from mailserver import config as cfg
from tests.helpers import throwaway_config_values, write_config

NS = {"a": autoconfig.AUTODISCOVER_NS, "r": autoconfig.OUTLOOK_RESPONSE_NS}


def _config(tmp_path: Path, **overrides: object) -> cfg.Config:
    values = throwaway_config_values(tmp_path, ports={"imap": 143, "imaps": 993, "submission": 587,
                                                      "submissions": 465, "smtp": 25, "http": 8080})
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return cfg.load(write_config(tmp_path / "c.toml", values))


def _request(address: str, schema: str = autoconfig.OUTLOOK_RESPONSE_NS) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{autoconfig.OUTLOOK_REQUEST_NS}">'
        f"<Request><EMailAddress>{address}</EMailAddress>"
        f"<AcceptableResponseSchema>{schema}</AcceptableResponseSchema></Request></Autodiscover>"
    ).encode()


def test_thunderbird_offers_implicit_tls_first(tmp_path: Path) -> None:
    """config-v1.1.xml lists IMAPS before IMAP+STARTTLS and submissions before submission, with real ports."""
    doc = ET.fromstring(autoconfig.thunderbird_xml(_config(tmp_path), "example.test"))
    assert doc.tag == "clientConfig" and doc.get("version") == "1.1"
    provider = doc.find("emailProvider")
    assert provider is not None and provider.get("id") == "example.test"
    incoming = [(s.findtext("port"), s.findtext("socketType")) for s in provider.findall("incomingServer")]
    outgoing = [(s.findtext("port"), s.findtext("socketType")) for s in provider.findall("outgoingServer")]
    assert incoming == [("993", "SSL"), ("143", "STARTTLS")]
    assert outgoing == [("465", "SSL"), ("587", "STARTTLS")]
    for server in provider.findall("*[@type]"):
        assert server.findtext("hostname") == "mail.example.test"
        assert server.findtext("authentication") == "password-cleartext"
        assert server.findtext("username") == "%EMAILADDRESS%"


def test_thunderbird_leaves_out_disabled_listeners_and_uses_bound_ports(tmp_path: Path) -> None:
    """A disabled imaps listener is not offered; a running daemon's bound port wins over the configured one."""
    config = _config(tmp_path, listeners__imaps__enabled=False)
    doc = ET.fromstring(autoconfig.thunderbird_xml(config, "example.test", {"imap": ("127.0.0.1", 40143)},
                                                   login="alice@example.test"))
    incoming = doc.findall("emailProvider/incomingServer")
    assert [(s.findtext("port"), s.findtext("socketType")) for s in incoming] == [("40143", "STARTTLS")]
    assert incoming[0].findtext("username") == "alice@example.test"


def test_autodiscover_response_has_imap_and_smtp_with_outlook_encryption(tmp_path: Path) -> None:
    """POX response (schema 2006a): one IMAP and one SMTP Protocol, Encryption SSL for implicit TLS."""
    body = autoconfig.autodiscover_xml(_config(tmp_path), "a@example.test", "alice@example.test", "Alice")
    root = ET.fromstring(body)
    assert root.tag == f"{{{autoconfig.AUTODISCOVER_NS}}}Autodiscover"
    assert root.findtext("r:Response/r:User/r:DisplayName", namespaces=NS) == "Alice"
    protocols = root.findall("r:Response/r:Account/r:Protocol", NS)
    got = {p.findtext("r:Type", namespaces=NS): (p.findtext("r:Port", namespaces=NS),
                                                 p.findtext("r:Encryption", namespaces=NS),
                                                 p.findtext("r:LoginName", namespaces=NS)) for p in protocols}
    assert got == {"IMAP": ("993", "SSL", "alice@example.test"), "SMTP": ("465", "SSL", "alice@example.test")}
    assert root.findtext("r:Response/r:Account/r:Action", namespaces=NS) == "settings"


def test_autodiscover_says_tls_for_starttls_only(tmp_path: Path) -> None:
    """With only STARTTLS listeners, Encryption is TLS (Outlook's word for STARTTLS)."""
    config = _config(tmp_path, listeners__imaps__enabled=False, listeners__submissions__enabled=False)
    root = ET.fromstring(autoconfig.autodiscover_xml(config, "a@example.test", "a@example.test"))
    got = {p.findtext("r:Type", namespaces=NS): (p.findtext("r:Port", namespaces=NS), p.findtext("r:Encryption", namespaces=NS))
           for p in root.findall("r:Response/r:Account/r:Protocol", NS)}
    assert got == {"IMAP": ("143", "TLS"), "SMTP": ("587", "TLS")}


def test_autodiscover_request_parsing() -> None:
    """The EMailAddress of Outlook's request is read, lower-cased."""
    assert autoconfig.parse_autodiscover_request(_request("Alice@Example.TEST")) == "alice@example.test"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not xml", 600),
        (_request(""), 600),
        (_request("no-at-sign"), 600),
        (_request("a@example.test", "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"), 601),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Autodiscover><Request>'
         b"<EMailAddress>&a;@example.test</EMailAddress></Request></Autodiscover>", 600),
    ],
)
def test_autodiscover_bad_requests_become_error_codes(body: bytes, code: int) -> None:
    """Malformed requests, DOCTYPEs (no entity expansion) and foreign schemas get [MS-OXDSCLI] error codes."""
    with pytest.raises(autoconfig.AutodiscoverError) as err:
        autoconfig.parse_autodiscover_request(body)
    assert err.value.code == code
    doc = ET.fromstring(autoconfig.autodiscover_error_xml(err.value))
    assert doc.findtext("a:Response/a:Error/a:ErrorCode", namespaces=NS) == str(code)


def test_dns_records_rfc6186(tmp_path: Path) -> None:
    """SRV records for imaps/imap/submissions/submission with implicit TLS preferred, POP3 marked absent."""
    lines = {r.name + " " + r.rtype: r.value for r in autoconfig.dns_records(_config(tmp_path), "Example.test")}
    host = "mail.example.test."
    assert lines["_imaps._tcp.example.test. SRV"] == f"0 1 993 {host}"
    assert lines["_imap._tcp.example.test. SRV"] == f"10 1 143 {host}"
    assert lines["_submissions._tcp.example.test. SRV"] == f"0 1 465 {host}"
    assert lines["_submission._tcp.example.test. SRV"] == f"10 1 587 {host}"
    assert lines["_pop3._tcp.example.test. SRV"] == "0 0 0 ."
    assert lines["autoconfig.example.test. CNAME"] == host
    assert lines["autodiscover.example.test. CNAME"] == host


def test_dns_disabled_service_has_dot_target(tmp_path: Path) -> None:
    """A disabled listener's SRV record says "not offered" with target "." (RFC 2782)."""
    records = autoconfig.dns_records(_config(tmp_path, listeners__imap__enabled=False), "example.test")
    imap = next(r for r in records if r.name == "_imap._tcp.example.test.")
    assert imap.value == "0 0 0 ." and imap.zone_line().startswith("_imap._tcp.example.test. 3600 IN SRV 0 0 0 .")
