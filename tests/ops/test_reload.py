"""SIGHUP reload: config and TLS certificate, refused when invalid, restart-only keys kept."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer
from tests.helpers import CertAuthority

#: a certificate of another CA: clients of the test CA cannot verify it
OTHER_CA_FOLDER = "other-ca"


async def _peer_cert(port: int, ctx: ssl.SSLContext) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="mail.example.test")
    try:
        await reader.readline()  # the greeting
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert der is not None
        return bytes(der)
    finally:
        writer.close()


def _der(cert_file: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert_file.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")


async def test_reload_swaps_certificate_for_new_connections_only(
    server: RunningServer, make_config: Any, tmp_path: Path
) -> None:
    """After a reload new TLS handshakes present the new certificate; an open TLS session keeps working."""
    port = server.port("submissions")
    old_ctx = server.client_ssl_context()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=old_ctx, server_hostname="mail.example.test")
    assert (await reader.readline()).startswith(b"220")
    assert writer.get_extra_info("ssl_object").getpeercert(binary_form=True) == _der(server.ca.cert_file)

    other = CertAuthority(tmp_path / OTHER_CA_FOLDER)
    make_config(tls__cert_file=str(other.cert_file), tls__key_file=str(other.key_file))
    result = server.daemon.reload()
    assert result.applied and result.needs_restart == ()
    assert set(result.changed) == {"tls.cert_file", "tls.key_file"}

    assert await _peer_cert(port, other.client_context()) == _der(other.cert_file)
    writer.write(b"NOOP\r\n")  # the session opened before the reload still answers
    assert (await reader.readline()).startswith(b"250")
    writer.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        await _peer_cert(port, old_ctx)


async def test_reload_refuses_an_invalid_config(server: RunningServer, make_config: Any,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A broken file is refused with one error line; the running config and certificate stay."""
    before = server.app.config
    server.config.path.write_text(server.config.path.read_text() + "\n[nonsense]\nkey = 1\n")
    with caplog.at_level(logging.ERROR, logger="mailserver"):
        result = server.daemon.reload()
    assert not result.applied and "unknown key 'nonsense.key'" in (result.error or "")
    assert any("config reload refused" in r.getMessage() and "stays active" in r.getMessage() for r in caplog.records)
    assert server.app.config is before
    assert await _peer_cert(server.port("submissions"), server.client_ssl_context()) == _der(server.ca.cert_file)


async def test_reload_refuses_a_missing_certificate(server: RunningServer, make_config: Any, tmp_path: Path) -> None:
    """A config naming certificate files that do not exist is refused as a whole."""
    make_config(tls__cert_file=str(tmp_path / "missing.pem"), tls__key_file=str(tmp_path / "missing.key"), licences__seats=3)
    result = server.daemon.reload()
    assert not result.applied and "missing.pem" in (result.error or "")
    assert server.accounts.seats != 3


async def test_reload_applies_live_keys_and_keeps_restart_only_ones(
    server: RunningServer, make_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """licences.seats applies at once; a listener port change is logged as needing a restart and not applied."""
    old_port = server.config["listeners.imap.port"]
    make_config(licences__seats=7, listeners__imap__port=1, metrics__bearer_token="t")
    with caplog.at_level(logging.WARNING, logger="mailserver"):
        result = server.daemon.reload()
    assert result.applied and result.needs_restart == ("listeners.imap.port",)
    assert server.accounts.seats == 7 and server.config["metrics.bearer_token"] == "t"
    assert server.config["listeners.imap.port"] == old_port
    assert any("listeners.imap.port changed" in r.getMessage() and "after a restart" in r.getMessage()
               for r in caplog.records)
