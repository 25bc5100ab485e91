"""Shared test helpers: temporary configs, a test CA, the in-process daemon."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trustme

from mailserver import config as cfg

ROOT = Path(__file__).resolve().parent.parent
HOSTNAME = "mail.example.test"
DOMAIN = "example.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, Path):
        v = str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(v)


def write_config(path: Path, values: Mapping[str, Any]) -> Path:
    """Write a config file from dotted keys (sections created as needed)."""
    sections: dict[str, dict[str, Any]] = {}
    for dotted, v in values.items():
        section, _, key = dotted.rpartition(".")
        sections.setdefault(section, {})[key] = v
    lines = []
    for section, kv in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in kv.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def throwaway_config_values(tmp: Path, *, ports: Mapping[str, int] | None = None, **overrides: Any) -> dict[str, Any]:
    """Values for a throwaway daemon: data under ``tmp``, every listener on a free
    loopback port (or the ones given; 0 = let the OS pick), no failure delay."""
    values: dict[str, Any] = {
        "server.hostname": HOSTNAME,
        "server.domain": DOMAIN,
        "server.data_dir": str(tmp / "data"),
        "server.shutdown_grace_seconds": 5.0,
        "storage.backend": "sqlite",
        "storage.path": str(tmp / "data" / "mail.sqlite3"),
        "auth.failure_delay_seconds": 0.05,
    }
    for name in cfg.LISTENERS:
        values[f"listeners.{name}.port"] = (ports or {}).get(name, 0)
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return values


class CertAuthority:
    """A trustme CA and a server certificate for the test hostname and loopback."""

    def __init__(self, folder: Path) -> None:
        self.ca = trustme.CA()
        cert = self.ca.issue_cert(HOSTNAME, "localhost", "127.0.0.1", "::1")
        folder.mkdir(parents=True, exist_ok=True)
        self.cert_file = folder / "server.pem"
        self.key_file = folder / "server.key"
        self.ca_file = folder / "ca.pem"
        cert.private_key_pem.write_to_path(str(self.key_file))
        cert.cert_chain_pems[0].write_to_path(str(self.cert_file))
        for extra in cert.cert_chain_pems[1:]:
            with open(self.cert_file, "ab") as f:
                f.write(extra.bytes())
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


def run_cli(*args: str, config: Path, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m mailserver ARGS --config CONFIG` as an operator would."""
    env = dict(os.environ)
    env.pop(cfg.ENV_VAR, None)
    return subprocess.run(
        [sys.executable, "-m", "mailserver", *args, "--config", str(config)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def unavailable(reason: str) -> None:
    """A test's outside requirement (a real client, PostgreSQL, the shared samples) is
    missing: skip on a developer's machine, but fail under CI (CI=true), whose .ci/run
    installs everything, so that a broken install can never pass as skipped tests."""
    import pytest

    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI installs it: see .ci/run)", pytrace=False)
    pytest.skip(reason)
