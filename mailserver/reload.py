"""SIGHUP: re-read the config file and the TLS certificate without dropping anything.

The new file is validated in full first (schema, certificate and key load, metrics
networks); if anything is wrong the reload is refused with one log line and the
running configuration stays as it was. Otherwise the keys in :data:`LIVE_KEYS` take
effect at once and every other changed key is logged as needing a restart (the
running daemon keeps its old value, so what it reports stays true).

Certificates: listeners keep the TLS context they were started with (the "front"
context); a reload points its SNI callback, which OpenSSL calls on every handshake
with or without SNI, at a freshly loaded context. Connections already open keep
their session; new handshakes present the new certificate. Files are re-read even
when their names did not change (a renewed certificate in place).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from mailserver import config as cfg
from mailserver import metrics, tls
from mailserver.app import App
from mailserver.http import access

log = logging.getLogger("mailserver")

#: Keys a reload applies to the running daemon; any other change needs a restart
#: (listener addresses, storage, data folder, hostname and domain, limits and auth
#: settings that the protocol handlers read when they start).
LIVE_KEYS = frozenset({
    "tls.cert_file",
    "tls.key_file",
    "server.log_format",
    "server.log_level",
    "server.shutdown_grace_seconds",
    "licences.seats",
    "metrics.allowed_networks",
    "metrics.bearer_token",
})


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload did. ``error`` is set (and nothing changed) when it was refused."""

    applied: bool
    error: str | None = None
    changed: tuple[str, ...] = ()
    needs_restart: tuple[str, ...] = ()
    config: cfg.Config | None = field(default=None, repr=False)


def use_context(front: ssl.SSLContext, current: ssl.SSLContext) -> None:
    """Make every new handshake on ``front`` use ``current``'s certificate and key."""

    def pick(sslobj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        sslobj.context = current

    front.sni_callback = pick


def reload(app: App, *, configure_logging: Callable[[str, str], object] | None = None) -> ReloadResult:
    """Re-read ``app.config.path`` and apply it to ``app``; never raises for a bad file.

    ``configure_logging(format, level)`` is called when those keys change (the daemon
    run by ``mailserver serve`` owns the process's logging; an embedded one does not).
    """
    old = app.config
    try:
        new = cfg.load(old.path)
        cert, key, generated = tls.ensure_certificate(new)
        context = tls.server_context(cert, key)
        access.networks(new)
    except (cfg.ConfigError, tls.TLSError, OSError, ValueError) as e:
        log.error("config reload refused: %s; the running configuration stays active", e)
        metrics.reloaded(False)
        return ReloadResult(False, str(e))
    if generated:
        log.info("generated a self-signed certificate for %s in %s", new.hostname, cert)
    changed = tuple(k for k in new.values if new[k] != old[k])
    needs_restart = tuple(k for k in changed if k not in LIVE_KEYS)
    for k in needs_restart:
        log.warning("config reload: %s changed (%r -> %r): takes effect after a restart; still using %r",
                    k, old[k], new[k], old[k])
    effective = old.replace(**{k: new[k] for k in changed if k in LIVE_KEYS})
    use_context(app.ssl_context, context)
    app.accounts.seats = effective.seats
    if configure_logging is not None and any(k.startswith("server.log_") for k in changed):
        configure_logging(effective["server.log_format"], effective["server.log_level"])
    app.config = effective
    metrics.reloaded(True)
    live = [k for k in changed if k in LIVE_KEYS]
    log.info("config reloaded from %s: TLS certificate %s re-read%s", old.path, cert,
             f"; applied {', '.join(live)}" if live else "")
    return ReloadResult(True, None, changed, needs_restart, effective)
