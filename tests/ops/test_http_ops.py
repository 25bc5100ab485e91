"""The http listener's operator and client endpoints on the real daemon."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import aiosmtplib
import pytest

from mailserver import autoconfig
from tests.conftest import RunningServer
from tests.ops.httpclient import request

NS = {"r": autoconfig.OUTLOOK_RESPONSE_NS, "a": autoconfig.AUTODISCOVER_NS}


def _autodiscover_body(address: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{autoconfig.OUTLOOK_REQUEST_NS}">'
        f"<Request><EMailAddress>{address}</EMailAddress><AcceptableResponseSchema>"
        f"{autoconfig.OUTLOOK_RESPONSE_NS}</AcceptableResponseSchema></Request></Autodiscover>"
    ).encode()


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    series = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_readyz_when_listeners_bound_and_store_answers(server: RunningServer) -> None:
    """/readyz answers 200 once started, and 503 while shutting down."""
    port = server.port("http")
    assert (await request(port, "GET", "/readyz"))[0] == 200
    server.app.shutting_down = True
    try:
        status, _, body = await request(port, "GET", "/readyz")
        assert status == 503 and b"shutting down" in body
    finally:
        server.app.shutting_down = False


async def test_readyz_reports_an_unavailable_store(server: RunningServer) -> None:
    """/readyz is 503 when the store does not answer (closed here)."""
    await server.store.close()
    status, _, body = await request(server.port("http"), "GET", "/readyz")
    assert status == 503 and body == b"store unavailable\n"


async def test_metrics_exposition_counts_and_store_gauges(server: RunningServer) -> None:
    """/metrics serves Prometheus text with seats, queue and connection series from loopback."""
    await server.accounts.add_user("alice@example.test", "Alice", "pw")
    status, headers, body = await request(server.port("http"), "GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain; version=")
    assert _metric(text, "mailserver_licence_seats_used") == 1.0
    assert _metric(text, "mailserver_licence_seats_total") == float(server.config.seats)
    assert _metric(text, "mailserver_queue_depth") == 0.0
    assert _metric(text, "mailserver_connections_total", listener="http") >= 1.0
    for name in ("mailserver_imap_commands_total", "mailserver_auth_failures_total",
                 "mailserver_messages_rejected_total", "mailserver_delivery_seconds"):
        assert f"# TYPE {name.removesuffix('_total')}" in text


async def test_metrics_count_smtp_messages_and_rejections(server: RunningServer) -> None:
    """An accepted message and a refused recipient show up in the SMTP counters."""
    await server.accounts.add_user("alice@example.test", "Alice", "pw")
    http = server.port("http")
    before = (await request(http, "GET", "/metrics"))[2].decode()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port("smtp"), start_tls=False) as smtp:
        await smtp.sendmail("x@elsewhere.test", ["alice@example.test"], b"Subject: hi\r\n\r\nbody\r\n")
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await smtp.sendmail("x@elsewhere.test", ["nobody@example.test"], b"Subject: hi\r\n\r\nbody\r\n")
    after = (await request(http, "GET", "/metrics"))[2].decode()
    accepted = "mailserver_messages_accepted_total"
    assert _metric(after, accepted, listener="smtp") == _metric(before, accepted, listener="smtp") + 1
    conns = "mailserver_connections_total"
    assert _metric(after, conns, listener="smtp") == _metric(before, conns, listener="smtp") + 1
    rejected = "mailserver_messages_rejected_total"
    assert _metric(after, rejected, listener="smtp", reason="5.1.1") == _metric(before, rejected, listener="smtp", reason="5.1.1") + 1


@pytest.mark.config(metrics__allowed_networks=["10.0.0.0/8"])
async def test_metrics_refused_outside_allowed_networks(server: RunningServer) -> None:
    """A client outside metrics.allowed_networks gets 403 (loopback is not listed here)."""
    status, _, _ = await request(server.port("http"), "GET", "/metrics")
    assert status == 403


@pytest.mark.config(metrics__bearer_token="s3cret")
async def test_metrics_bearer_token(server: RunningServer) -> None:
    """With metrics.bearer_token set, /metrics needs `Authorization: Bearer` with that token."""
    port = server.port("http")
    status, headers, _ = await request(port, "GET", "/metrics")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert (await request(port, "GET", "/metrics", headers={"Authorization": "Bearer wrong"}))[0] == 401
    assert (await request(port, "GET", "/metrics", headers={"Authorization": "Bearer s3cret"}))[0] == 200


@pytest.mark.parametrize("path", ["/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml"])
async def test_thunderbird_autoconfig_over_http(server: RunningServer, path: str) -> None:
    """Both autoconfig URLs answer with the bound ports; an alias gets its user's login name."""
    await server.accounts.add_user("alice@example.test", "Alice", "pw")
    await server.accounts.add_alias("a.smith@example.test", "alice@example.test")
    status, headers, body = await request(server.port("http"), "GET", f"{path}?emailaddress=a.smith%40example.test")
    assert status == 200 and headers["content-type"].startswith("application/xml")
    doc = ET.fromstring(body)
    first = doc.find("emailProvider/incomingServer")
    assert first is not None
    assert first.findtext("port") == str(server.port("imaps")) and first.findtext("socketType") == "SSL"
    assert first.findtext("username") == "alice@example.test"


async def test_thunderbird_autoconfig_unknown_domain_is_404(server: RunningServer) -> None:
    """A domain that is not local gets 404, a malformed address 400."""
    port = server.port("http")
    assert (await request(port, "GET", "/mail/config-v1.1.xml?emailaddress=a@elsewhere.test"))[0] == 404
    assert (await request(port, "GET", "/mail/config-v1.1.xml?emailaddress=nonsense"))[0] == 400


@pytest.mark.parametrize("path", ["/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"])
async def test_outlook_autodiscover_over_http(server: RunningServer, path: str) -> None:
    """POST with EMailAddress returns IMAP and SMTP settings with the user's name and bound ports."""
    await server.accounts.add_user("alice@example.test", "Alice Example", "pw")
    status, _, body = await request(server.port("http"), "POST", path, _autodiscover_body("Alice@example.test"),
                                    {"Content-Type": "text/xml"})
    assert status == 200
    root = ET.fromstring(body)
    assert root.findtext("r:Response/r:User/r:DisplayName", namespaces=NS) == "Alice Example"
    ports = {p.findtext("r:Type", namespaces=NS): p.findtext("r:Port", namespaces=NS)
             for p in root.findall("r:Response/r:Account/r:Protocol", NS)}
    assert ports == {"IMAP": str(server.port("imaps")), "SMTP": str(server.port("submissions"))}


async def test_outlook_autodiscover_errors(server: RunningServer) -> None:
    """A foreign domain gets ErrorCode 500, a GET 600."""
    port = server.port("http")
    _, _, body = await request(port, "POST", "/autodiscover/autodiscover.xml", _autodiscover_body("a@elsewhere.test"))
    assert ET.fromstring(body).findtext("a:Response/a:Error/a:ErrorCode", namespaces=NS) == "500"
    _, _, body = await request(port, "GET", "/autodiscover/autodiscover.xml")
    assert ET.fromstring(body).findtext("a:Response/a:Error/a:ErrorCode", namespaces=NS) == "600"


async def test_metrics_count_imap_commands_and_auth_failures(server: RunningServer) -> None:
    """IMAP commands are counted by name and result, a failed LOGIN also as an auth failure."""
    import asyncio

    await server.accounts.add_user("alice@example.test", "Alice", "pw")
    http = server.port("http")
    before = (await request(http, "GET", "/metrics"))[2].decode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port("imap"))
    await reader.readline()
    for line in (b"a LOGIN alice@example.test wrong", b"b NOOP", b"c LOGOUT"):
        writer.write(line + b"\r\n")
        while not (await reader.readline()).startswith(line.split(b" ")[0] + b" "):
            pass
    writer.close()
    after = (await request(http, "GET", "/metrics"))[2].decode()

    def delta(name: str, **labels: str) -> float:
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    assert delta("mailserver_imap_commands_total", command="LOGIN", result="NO") == 1
    assert delta("mailserver_imap_commands_total", command="NOOP", result="OK") == 1
    assert delta("mailserver_auth_failures_total", protocol="imap") == 1
    assert delta("mailserver_connections_total", listener="imap") == 1
    assert delta("mailserver_imap_command_seconds_count", command="NOOP") == 1
