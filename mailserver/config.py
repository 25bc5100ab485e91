"""Configuration: one schema (key, type, default, help) validates config.toml,
builds the frozen :class:`Config`, and generates the configuration reference.

A missing required key, a value of the wrong type, or a key the schema does not know
is a :class:`ConfigError` whose message is one line naming the file, the key and the
problem. Relative paths resolve against the folder of the config file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_VAR = "MAILSERVER_CONFIG"
DEFAULT_PATH = Path("config.toml")


class ConfigError(Exception):
    """A config file that cannot be used; str() is one line for the operator."""


class _Required:
    def __repr__(self) -> str:
        return "(required)"


REQUIRED: Any = _Required()


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key.

    ``type`` is one of "str", "int", "float", "bool", "path", "str_list" or a tuple of
    allowed strings (a choice). ``default`` is REQUIRED for keys that must be present.
    """

    name: str  # dotted: section.key or section.sub.key
    type: str | tuple[str, ...]
    default: Any
    help: str
    minimum: float | None = None


LISTENERS: dict[str, tuple[int, str]] = {
    "smtp": (3025, "SMTP inbound (MX role): mail for local domains, no AUTH needed; STARTTLS offered"),
    "submission": (3587, "SMTP submission with STARTTLS (RFC 6409); AUTH required before MAIL"),
    "submissions": (3465, "SMTP submission over implicit TLS (RFC 8314)"),
    "imap": (3143, "IMAP with STARTTLS"),
    "imaps": (3993, "IMAP over implicit TLS"),
    "http": (8080, "HTTP: health check (/healthz), later autoconfig, CalDAV and metrics"),
}


def _listener_keys() -> list[Key]:
    keys: list[Key] = []
    for name, (port, what) in LISTENERS.items():
        keys += [
            Key(f"listeners.{name}.enabled", "bool", True, f"Start the {name} listener: {what}."),
            Key(f"listeners.{name}.host", "str", "127.0.0.1", f"Address the {name} listener binds to."),
            Key(f"listeners.{name}.port", "int", port, f"TCP port of the {name} listener (0 = any free port).", 0),
        ]
    return keys


SCHEMA: tuple[Key, ...] = (
    Key("server.hostname", "str", REQUIRED, "Name of this server: SMTP greeting, Received: headers, self-signed certificate."),
    Key("server.domain", "str", REQUIRED, "Primary local domain, created in the store on first start. More with `mailserver domain add`."),
    Key("server.postmaster", "str", "", "Mailbox that receives mail for `Postmaster` and postmaster@ every local domain without its own account (RFC 5321 §4.5.1). Empty: postmaster@<server.domain>, created as a shared mailbox on first start if missing (grant Full Access to whoever reads it)."),
    Key("server.data_dir", "path", "data", "Folder for the database and generated TLS files (relative to this file)."),
    Key("server.log_format", ("text", "json"), "text", "Log lines on stderr: plain text or one JSON object per line."),
    Key("server.log_level", ("debug", "info", "warning", "error"), "info", "Lowest level that is logged."),
    Key("server.shutdown_grace_seconds", "float", 10.0, "On SIGTERM/SIGINT, how long in-flight sessions may finish before they are cut.", 0),
    Key("storage.backend", ("sqlite", "postgres"), "sqlite", "Storage engine. sqlite is the embedded default; postgres lets several daemons share one database."),
    Key("storage.path", "path", "data/mail.sqlite3", "SQLite database file (relative to this file)."),
    Key("storage.dsn", "str", "", "PostgreSQL connection (backend = \"postgres\"): postgresql://user:password@host:port/database. libpq's PGPASSWORD and ~/.pgpass work too."),
    Key("tls.cert_file", "path", "", "PEM certificate chain. Empty: a self-signed certificate for server.hostname is created under data_dir/tls/."),
    Key("tls.key_file", "path", "", "PEM private key matching tls.cert_file. Empty with cert_file empty: generated."),
    Key("limits.message_size", "int", 26_214_400, "Largest message accepted, in octets (SMTP SIZE, IMAP APPEND).", 1024),
    Key("limits.max_recipients", "int", 1000, "Most RCPT TO per SMTP transaction; more get 452 4.5.3.", 1),
    Key("limits.max_line_length", "int", 4096, "Longest SMTP line in octets, CRLF excluded (RFC 5321 allows 998; real mail sometimes exceeds it).", 1000),
    Key("limits.max_header_size", "int", 102_400, "Largest header section of a message, in octets.", 1024),
    Key("limits.max_hops", "int", 100, "Received: headers allowed before 554 5.4.6 Routing loop detected (RFC 5321 §6.3).", 1),
    Key("smtp.idle_timeout_seconds", "float", 300.0, "SMTP: seconds the server waits for the next command, or for more message data, before 421 4.4.2 and close (RFC 5321 §4.5.3.2.7: at least 5 minutes).", 0.1),
    Key("smtp.command_timeout_seconds", "float", 60.0, "SMTP: a command line must be complete this many seconds after its first byte (a client writes a line at once; this cuts byte-at-a-time clients).", 0.1),
    Key("smtp.data_timeout_seconds", "float", 300.0, "SMTP: seconds a message may take on top of its size divided by smtp.min_data_rate (a total DATA deadline that grows with the data received).", 0.1),
    Key("smtp.min_data_rate", "int", 500, "SMTP: octets per second of message data a client must keep up, on average, once smtp.data_timeout_seconds are used up.", 1),
    Key("smtp.session_timeout_seconds", "float", 1800.0, "SMTP: longest a connection may stay open, whatever it does, before 421 4.4.2 (bounds clients that keep busy with slow but complete commands; senders reconnect).", 0.1),
    Key("smtp.max_connections_per_address", "int", 50, "SMTP: most simultaneous connections from one client IP address (IPv6: per /64), all SMTP listeners together; more get 421 4.7.0.", 1),
    Key("imap.login_timeout_seconds", "float", 60.0, "IMAP: seconds a connection may stay unauthenticated and silent before it is closed.", 1),
    Key("imap.autologout_seconds", "float", 1800.0, "IMAP: seconds an authenticated connection may stay silent (RFC 3501 §5.4 asks for at least 30 minutes).", 1),
    Key("imap.idle_timeout_seconds", "float", 1800.0, "IMAP: longest IDLE without any client traffic before the server says BYE (RFC 2177: 29-30 minutes).", 1),
    Key("imap.max_connections_per_user", "int", 20, "IMAP: most simultaneous logged-in sessions of one user; more logins get NO [LIMIT].", 1),
    Key("imap.max_connections_per_address", "int", 50, "IMAP: most simultaneous connections from one client IP address; more are greeted with BYE.", 1),
    Key("licences.seats", "int", 25, "Licence seats in the pool: how many users may be licensed (and so log in).", 0),
    Key("auth.allow_plaintext_on_loopback", "bool", True, "Offer AUTH/LOGIN without TLS to clients connecting from 127.0.0.0/8 or ::1 (handy for tests)."),
    Key("auth.failure_delay_seconds", "float", 1.0, "Every failed authentication is answered after this delay, whatever the reason.", 0),
    Key("auth.max_failures", "int", 10, "Failures from one client address, or against one account, before further attempts are refused.", 1),
    Key("auth.failure_window_seconds", "float", 300.0, "Window in which failures are counted.", 1),
    Key("auth.lockout_seconds", "float", 300.0, "How long attempts are refused after max_failures.", 0),
    Key("metrics.allowed_networks", "str_list", ["127.0.0.0/8", "::1/128"], "Client addresses or networks (CIDR) that may read /metrics on the http listener; others get 403."),
    Key("metrics.bearer_token", "str", "", "When set, /metrics also requires `Authorization: Bearer TOKEN`. Empty: no token."),
    *_listener_keys(),
    Key("outbound.enabled", "bool", False, "Run the outbound delivery worker: send queued mail for other domains (MX lookup, retries, bounces, DKIM)."),
    Key("outbound.dns_nameserver", "str", "", "DNS server (IP address) for MX/A/AAAA lookups of outbound mail. Empty: the system resolver."),
    Key("outbound.dns_port", "int", 53, "Port of outbound.dns_nameserver.", 1),
    Key("outbound.remote_port", "int", 25, "TCP port of remote mail hosts (25 on the Internet; tests and staging point it at loopback servers).", 1),
    Key("outbound.smarthost.host", "str", "", "Relay all outbound mail through this host instead of the recipients' MX hosts. Empty: deliver directly."),
    Key("outbound.smarthost.port", "int", 587, "Port of the smart host.", 1),
    Key("outbound.smarthost.tls", ("starttls", "implicit", "none"), "starttls", "TLS to the smart host (certificate verified): STARTTLS, implicit TLS, or none."),
    Key("outbound.smarthost.username", "str", "", "AUTH user name at the smart host. Empty: no AUTH."),
    Key("outbound.smarthost.password", "str", "", "AUTH password at the smart host."),
    Key("outbound.retry_schedule", "str", "5m 10m 20m 40m 1h 2h 4h", "Waits between delivery attempts after 4xx replies, timeouts and connection failures (s, m, h, d); the last one repeats."),
    Key("outbound.max_age_seconds", "float", 432_000.0, "Give up (and bounce to the sender) when a message has been queued this long (default 5 days).", 60),
    Key("outbound.delay_warning_seconds", "float", 14_400.0, "Send the sender one delay warning when a message is still queued after this long (0: never).", 0),
    Key("outbound.max_connections", "int", 20, "Most outbound SMTP connections at once.", 1),
    Key("outbound.max_per_domain", "int", 4, "Most outbound SMTP connections at once to one destination domain.", 1),
    Key("outbound.timeout_seconds", "float", 300.0, "Timeout of each outbound SMTP command (RFC 5321 §4.5.3.2 suggests minutes).", 1),
    Key("outbound.poll_seconds", "float", 5.0, "How often the worker looks for due queue entries (retries, mail queued by another daemon or the CLI); mail this daemon queues leaves at once.", 0.01),
    Key("outbound.dkim.key_dir", "path", "data/dkim", "DKIM private keys, <key_dir>/<domain>/<selector>.pem (`mailserver dkim generate`). Mail is signed for its From: domain when a key exists."),
    Key("outbound.dkim.selector", "str", "mail", "DKIM selector used for signing and by `mailserver dkim generate`."),
    Key("outbound.list_bounce_local", "str", "{list}-bounces", "Local part of a distribution list's bounce address ({list}: the list's local part), the envelope sender for external members."),
)

_BY_NAME: dict[str, Key] = {k.name: k for k in SCHEMA}


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    enabled: bool
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Config:
    """The validated configuration. ``values`` holds every schema key (dotted name)."""

    path: Path
    values: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def hostname(self) -> str:
        return str(self.values["server.hostname"])

    @property
    def domain(self) -> str:
        return str(self.values["server.domain"]).lower()

    @property
    def postmaster(self) -> str:
        """The postmaster's mailbox (server.postmaster, or postmaster@<server.domain>)."""
        return str(self.values["server.postmaster"]).strip().lower() or f"postmaster@{self.domain}"

    @property
    def data_dir(self) -> Path:
        return Path(self.values["server.data_dir"])

    @property
    def storage_path(self) -> Path:
        return Path(self.values["storage.path"])

    @property
    def seats(self) -> int:
        return int(self.values["licences.seats"])

    def listener(self, name: str) -> Listener:
        return Listener(
            name,
            bool(self.values[f"listeners.{name}.enabled"]),
            str(self.values[f"listeners.{name}.host"]),
            int(self.values[f"listeners.{name}.port"]),
        )

    @property
    def listeners(self) -> list[Listener]:
        return [self.listener(n) for n in LISTENERS]

    def replace(self, **changes: Any) -> Config:
        """A copy with dotted keys changed (tests and --ephemeral use this)."""
        values = dict(self.values)
        for dotted, value in changes.items():
            key = dotted.replace("__", ".")
            if key not in _BY_NAME:
                raise ConfigError(f"{self.path}: unknown key {key!r}")
            values[key] = value
        return Config(self.path, values)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--config wins, then $MAILSERVER_CONFIG, then ./config.toml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return DEFAULT_PATH


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in table.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and not any(key.name == name for key in SCHEMA):
            sub = _flatten(v, name + ".")
            if not sub:
                flat[name] = v
            flat.update(sub)
        else:
            flat[name] = v
    return flat


def _type_name(t: str | tuple[str, ...]) -> str:
    if isinstance(t, tuple):
        return "one of " + ", ".join(repr(c) for c in t)
    return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
            "path": "a path string", "str_list": "a list of strings"}[t]


def _check(key: Key, value: Any, base: Path, where: str) -> Any:
    t = key.type
    ok: bool
    if isinstance(t, tuple):
        ok = isinstance(value, str) and value in t
    elif t == "bool":
        ok = isinstance(value, bool)
    elif t == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif t in ("str", "path"):
        ok = isinstance(value, str)
    elif t == "str_list":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:  # pragma: no cover - schema bug
        raise AssertionError(t)
    if not ok:
        raise ConfigError(f"{where}: key {key.name!r} must be {_type_name(t)}, got {value!r}")
    if key.minimum is not None and value < key.minimum:
        raise ConfigError(f"{where}: key {key.name!r} must be at least {key.minimum:g}, got {value!r}")
    if t == "path" and value:
        p = Path(value).expanduser()
        value = p if p.is_absolute() else (base / p)
    return value


def parse(text: str, path: Path) -> Config:
    """Validate TOML text as if read from ``path``. Raises ConfigError."""
    where = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from None
    flat = _flatten(raw)
    for name in flat:
        if name not in _BY_NAME:
            raise ConfigError(f"{where}: unknown key {name!r}")
    base = path.resolve().parent
    values: dict[str, Any] = {}
    for key in SCHEMA:
        if key.name in flat:
            values[key.name] = _check(key, flat[key.name], base, where)
        elif key.default is REQUIRED:
            raise ConfigError(f"{where}: missing required key {key.name!r} ({key.help})")
        else:
            values[key.name] = _check(key, key.default, base, where)
    if not values["server.domain"] or "@" in values["server.domain"]:
        raise ConfigError(f"{where}: key 'server.domain' must be a domain name, got {values['server.domain']!r}")
    return Config(path, values)


def load(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the config file chosen by :func:`config_path`. Raises ConfigError."""
    path = config_path(explicit)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (use --config PATH or ${ENV_VAR})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file: {e}") from None
    return parse(text, path)


def reference_markdown() -> str:
    """The configuration reference table, generated from the schema (used in README)."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for k in SCHEMA:
        t = "|".join(k.type) if isinstance(k.type, tuple) else k.type
        d = "required" if k.default is REQUIRED else f"`{k.default!r}`".replace("'", '"')
        lines.append(f"| `{k.name}` | {t} | {d} | {k.help} |")
    return "\n".join(lines)
