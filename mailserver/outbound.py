"""The daemon's side of outbound delivery: config -> plain settings -> worker.

:mod:`delivery.outbound` does not import :mod:`mailserver`; this module turns the
``outbound.*`` config keys into :class:`OutboundSettings` and starts the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from delivery.outbound import bounces
from delivery.outbound.bounces import load_or_create_secret
from delivery.outbound.routes import DnsResolver
from delivery.outbound.settings import OutboundSettings, SettingsError, SmartHost, parse_schedule
from delivery.outbound.worker import OutboundWorker
from mailserver import metrics
from mailserver.config import Config
from storage.interfaces import Store

log = logging.getLogger("mailserver.outbound")

#: File (under server.data_dir) holding the key of list bounce addresses.
BOUNCE_KEY_FILE = "outbound-bounce.key"


class OutboundConfigError(Exception):
    """An outbound setting that cannot be used; str() is one line."""


def outbound_settings(config: Config, *, bounce_secret: bytes = b"") -> OutboundSettings:
    """Build the worker settings from config. Raises OutboundConfigError."""
    try:
        schedule = parse_schedule(config["outbound.retry_schedule"])
    except SettingsError as err:
        raise OutboundConfigError(f"outbound.retry_schedule: {err}") from None
    relay = None
    if config["outbound.smarthost.host"]:
        relay = SmartHost(
            config["outbound.smarthost.host"], config["outbound.smarthost.port"],
            config["outbound.smarthost.tls"], config["outbound.smarthost.username"],
            config["outbound.smarthost.password"],
        )
    warning = float(config["outbound.delay_warning_seconds"])
    return OutboundSettings(
        hostname=config.hostname,
        postmaster=f"postmaster@{config.domain}",
        remote_port=config["outbound.remote_port"],
        smart_host=relay,
        schedule=schedule,
        max_age=timedelta(seconds=config["outbound.max_age_seconds"]),
        delay_warning=timedelta(seconds=warning) if warning > 0 else None,
        max_connections=config["outbound.max_connections"],
        max_per_domain=config["outbound.max_per_domain"],
        timeout=config["outbound.timeout_seconds"],
        poll_interval=config["outbound.poll_seconds"],
        dkim_key_dir=config["outbound.dkim.key_dir"] or None,
        dkim_selector=config["outbound.dkim.selector"],
        list_bounce_local=config["outbound.list_bounce_local"],
        bounce_secret=bounce_secret,
    )


def list_bounce_decoder(config: Config) -> Callable[[str], str | None] | None:
    """For inbound routing: the original sender behind one of our list bounce
    addresses, or None. None (no decoding) while outbound delivery is off, since no
    list mail left with such an address."""
    if not config["outbound.enabled"]:
        return None
    try:
        secret = load_or_create_secret(config.data_dir / BOUNCE_KEY_FILE)
    except OSError as err:
        log.warning("list bounce addresses cannot be read back: %s", err)
        return None

    def original_sender(address: str) -> str | None:
        found = bounces.decode(address, secret=secret, now=datetime.now(UTC))
        return found.sender if found is not None else None

    return original_sender


async def start_worker(config: Config, store: Store) -> OutboundWorker:
    """Start the outbound worker for the daemon. Raises OutboundConfigError."""
    try:
        secret = load_or_create_secret(config.data_dir / BOUNCE_KEY_FILE)
    except OSError as err:
        raise OutboundConfigError(f"cannot create {config.data_dir / BOUNCE_KEY_FILE}: {err.strerror or err}") from None
    settings = outbound_settings(config, bounce_secret=secret)
    resolver = DnsResolver(config["outbound.dns_nameserver"], config["outbound.dns_port"])
    worker = OutboundWorker(
        store, settings, resolver, on_delivered=lambda seconds: metrics.delivery_attempt("outbound", seconds)
    )
    await worker.start()
    return worker
