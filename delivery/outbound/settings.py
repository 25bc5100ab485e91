"""Plain settings of the outbound worker, built by the daemon from config."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal

TlsMode = Literal["implicit", "starttls", "none"]

#: Default retry schedule (issue 6: "minutes at first, growing"); the last step repeats
#: until the message is older than ``max_age``.
DEFAULT_SCHEDULE = "5m 10m 20m 40m 1h 2h 4h"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_STEP = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


class SettingsError(ValueError):
    """A setting that cannot be used; str() is one line naming it."""


def parse_schedule(text: str) -> tuple[timedelta, ...]:
    """Parse "5m 10m 1h" (units s, m, h, d; bare numbers are seconds; commas allowed).

    Raises SettingsError for an empty schedule, a malformed step or a zero step.
    """
    steps: list[timedelta] = []
    for token in text.replace(",", " ").split():
        m = _STEP.fullmatch(token.strip().lower())
        if m is None:
            raise SettingsError(f"retry schedule step {token!r} is not a duration like 30s, 5m, 2h or 1d")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
        if seconds <= 0:
            raise SettingsError(f"retry schedule step {token!r} must be longer than zero")
        steps.append(timedelta(seconds=seconds))
    if not steps:
        raise SettingsError("the retry schedule is empty")
    return tuple(steps)


@dataclass(frozen=True, slots=True)
class SmartHost:
    """A relay that takes all outbound mail instead of the recipients' MX hosts."""

    host: str
    port: int = 587
    tls: TlsMode = "starttls"
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    """Everything the worker needs to know from config."""

    hostname: str  # EHLO name and Reporting-MTA of DSNs
    postmaster: str  # From: of DSNs, e.g. postmaster@example.test
    remote_port: int = 25  # RFC 5321 §4.5.4 port 25; tests point it at loopback servers
    smart_host: SmartHost | None = None
    schedule: tuple[timedelta, ...] = parse_schedule(DEFAULT_SCHEDULE)
    max_age: timedelta = timedelta(days=5)
    delay_warning: timedelta | None = timedelta(hours=4)
    max_connections: int = 20
    max_per_domain: int = 4
    timeout: float = 300.0  # RFC 5321 §4.5.3.2: a few minutes per command
    poll_interval: float = 5.0
    dkim_key_dir: Path | None = None
    dkim_selector: str = "mail"
    list_bounce_local: str = "{list}-bounces"  # local part form of a list's bounce address
    bounce_secret: bytes = field(default=b"", repr=False)

    def retry_delay(self, attempts: int) -> timedelta:
        """The wait after run number ``attempts`` (1-based); the last step repeats."""
        index = min(max(attempts, 1), len(self.schedule)) - 1
        return self.schedule[index]
