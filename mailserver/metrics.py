"""Prometheus metrics: named metric objects and the small helpers protocol code calls.

The SMTP and IMAP code calls the helpers (``connection_opened``, ``message_accepted``,
``imap_command`` ...); they never fail and cost a dictionary lookup and an addition.
Gauges that describe the store (queue depth and age, licence seats) are read at scrape
time by :func:`refresh`, so a scrape always shows the store as it is.

All metrics live in :data:`REGISTRY` (not prometheus-client's global one): several
daemons started in one process (test suites) then share counters, which is what a
process-wide registry means; tests look at differences.

Label values come from closed sets (listener names, enhanced status codes, IMAP command
names from :data:`IMAP_COMMANDS`) so that a client cannot grow the number of series.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mailserver.app import App

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Latency buckets (seconds): a local commit takes milliseconds, an outbound delivery
#: seconds; 60 s is beyond any reasonable single attempt.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: IMAP command names used as label values; anything else is counted as "OTHER".
IMAP_COMMANDS = frozenset({
    "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "AUTHENTICATE", "LOGIN", "SELECT", "EXAMINE",
    "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB", "NAMESPACE",
    "STATUS", "APPEND", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE",
    "COPY", "MOVE", "UID", "IDLE", "ENABLE", "ID", "GETACL", "SETACL", "DELETEACL",
    "LISTRIGHTS", "MYRIGHTS", "GETQUOTA", "GETQUOTAROOT", "SORT", "THREAD", "ESEARCH",
})

CONNECTIONS = Counter("mailserver_connections", "Client connections accepted, by listener.",
                      ["listener"], registry=REGISTRY)
CONNECTIONS_OPEN = Gauge("mailserver_connections_open", "Client connections open now, by listener.",
                         ["listener"], registry=REGISTRY)
MESSAGES_ACCEPTED = Counter("mailserver_messages_accepted", "Messages accepted (committed) over SMTP, by listener.",
                            ["listener"], registry=REGISTRY)
MESSAGES_REJECTED = Counter("mailserver_messages_rejected",
                            "SMTP refusals of a sender, recipient or message, by listener and enhanced status code.",
                            ["listener", "reason"], registry=REGISTRY)
DELIVERY_SECONDS = Histogram("mailserver_delivery_seconds",
                             "Delivery latency: local = end of DATA to durable commit; outbound = queued to handed over.",
                             ["kind"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
QUEUE_DEPTH = Gauge("mailserver_queue_depth", "Messages waiting in the outbound queue.", registry=REGISTRY)
QUEUE_OLDEST = Gauge("mailserver_queue_oldest_age_seconds",
                     "Age of the oldest message in the outbound queue (0 when empty).", registry=REGISTRY)
IMAP_COMMANDS_TOTAL = Counter("mailserver_imap_commands", "IMAP commands completed, by name and result (OK/NO/BAD).",
                              ["command", "result"], registry=REGISTRY)
IMAP_COMMAND_SECONDS = Histogram("mailserver_imap_command_seconds", "IMAP command latency, by name.",
                                 ["command"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
AUTH_FAILURES = Counter("mailserver_auth_failures", "Failed authentications, by protocol (smtp, imap).",
                        ["protocol"], registry=REGISTRY)
SEATS_USED = Gauge("mailserver_licence_seats_used", "Licence seats in use.", registry=REGISTRY)
SEATS_TOTAL = Gauge("mailserver_licence_seats_total", "Licence seats in the pool (licences.seats).", registry=REGISTRY)
START_TIME = Gauge("mailserver_start_time_seconds", "Unix time the daemon started.", registry=REGISTRY)
RELOADS = Counter("mailserver_config_reloads", "SIGHUP reloads, by result (applied, refused).",
                  ["result"], registry=REGISTRY)


# --------------------------------------------------------------------------- helpers


def connection_opened(listener: str) -> None:
    CONNECTIONS.labels(listener).inc()
    CONNECTIONS_OPEN.labels(listener).inc()


def connection_closed(listener: str) -> None:
    CONNECTIONS_OPEN.labels(listener).dec()


def message_accepted(listener: str, seconds: float | None = None) -> None:
    """A message committed over SMTP; ``seconds`` is the commit latency when measured."""
    MESSAGES_ACCEPTED.labels(listener).inc()
    if seconds is not None:
        DELIVERY_SECONDS.labels("local").observe(seconds)


def message_rejected(listener: str, code: int, enhanced: str | None) -> None:
    """An SMTP 4xx/5xx refusal; the reason label is the enhanced code (or the basic one)."""
    MESSAGES_REJECTED.labels(listener, enhanced or str(code)).inc()


def delivery_attempt(kind: str, seconds: float) -> None:
    """One delivery's latency; ``kind`` is "local" or "outbound"."""
    DELIVERY_SECONDS.labels(kind).observe(seconds)


def imap_command(name: str, result: str, seconds: float) -> None:
    """One completed IMAP command (``result`` OK, NO or BAD)."""
    command = name.upper()
    if command not in IMAP_COMMANDS:
        command = "OTHER"
    IMAP_COMMANDS_TOTAL.labels(command, result.upper()).inc()
    IMAP_COMMAND_SECONDS.labels(command).observe(seconds)


def auth_failed(protocol: str) -> None:
    AUTH_FAILURES.labels(protocol).inc()


def reloaded(applied: bool) -> None:
    RELOADS.labels("applied" if applied else "refused").inc()


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


# --------------------------------------------------------------------------- scrape


async def refresh(app: App) -> None:
    """Read the store-backed gauges (queue, seats) for one scrape. Raises StorageError."""
    entries = await app.store.queue.list_queue()
    QUEUE_DEPTH.set(len(entries))
    now = datetime.now(UTC)
    QUEUE_OLDEST.set(max(((now - e.created).total_seconds() for e in entries), default=0.0))
    status = await app.accounts.licence_status()
    SEATS_USED.set(status.used)
    SEATS_TOTAL.set(status.total)
    START_TIME.set(app.started)


def exposition() -> bytes:
    """The text exposition format of every metric."""
    return generate_latest(REGISTRY)
