"""`mailserver serve` as operators run it: SIGHUP, `mailserver status`, `serve --ephemeral`."""

from __future__ import annotations

import json
import re
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.cli.test_daemon import START_TIMEOUT, start_daemon, stop_daemon
from tests.helpers import ROOT, free_port, run_cli, throwaway_config_values, write_config


def _wait_for_line(proc: subprocess.Popen[str], needle: str, lines: list[str]) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r}:\n" + "\n".join(lines))


def test_sighup_refuses_broken_config_and_keeps_serving(tmp_path: Path) -> None:
    """SIGHUP with a broken file logs one refusal line and the daemon keeps answering; a good file is applied."""
    http = free_port()
    values = throwaway_config_values(tmp_path, ports={"http": http})
    conf = write_config(tmp_path / "c.toml", values)
    proc, lines = start_daemon(conf)
    try:
        conf.write_text(conf.read_text().replace("[server]", "[server]\nbogus = 1"))
        proc.send_signal(signal.SIGHUP)
        line = _wait_for_line(proc, "config reload", lines)
        assert "config reload refused" in line and "unknown key 'server.bogus'" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=10) as resp:
            assert resp.status == 200
        write_config(conf, {**values, "licences.seats": 3})
        proc.send_signal(signal.SIGHUP)
        assert "config reloaded" in _wait_for_line(proc, "config reload", lines)
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out


def test_status_running_and_stopped(tmp_path: Path) -> None:
    """`status` shows pid, uptime, listeners and queue while running (exit 0), and exit 3 after stop."""
    conf = write_config(tmp_path / "c.toml", throwaway_config_values(tmp_path))
    assert run_cli("status", config=conf).returncode == 3
    proc, _ = start_daemon(conf)
    try:
        res = run_cli("status", "--json", config=conf)
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["running"] and doc["pid"] == proc.pid and doc["queue"]["depth"] == 0
        assert doc["uptime_seconds"] >= 0
        assert doc["listeners"]["smtp"]["answers"] and doc["listeners"]["http"]["port"] > 0
        text = run_cli("status", config=conf).stdout
        assert f"running: pid {proc.pid}" in text and "queue: 0 message(s)" in text
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    res = run_cli("status", config=conf)
    assert res.returncode == 3 and "not running" in res.stdout


def test_status_detects_a_stale_status_file(tmp_path: Path) -> None:
    """A status file left by a killed daemon is reported as stale (exit 3)."""
    conf = write_config(tmp_path / "c.toml", throwaway_config_values(tmp_path))
    proc, _ = start_daemon(conf)
    proc.kill()
    proc.communicate(timeout=30)
    res = run_cli("status", config=conf)
    assert res.returncode == 3 and "stale status file" in res.stdout


def test_serve_ephemeral_prints_ports_and_logins_and_cleans_up() -> None:
    """`serve --ephemeral` needs no config, prints listeners and demo logins, accepts mail, deletes its folder."""
    proc = subprocess.Popen([sys.executable, "-m", "mailserver", "serve", "--ephemeral"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        _wait_for_line(proc, "config ", lines)
        text = "\n".join(lines)
        assert "alice@example.test  password: alice-demo-pw" in text
        folder = Path(re.search(r"data in (\S+),", text).group(1))  # type: ignore[union-attr]
        smtp_port = int(re.search(r"^\s+smtp\s+127\.0\.0\.1:(\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
        assert folder.is_dir()
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as s:
            s.sendmail("x@elsewhere.test", ["bob@example.test"], b"Subject: t\r\n\r\nhello\r\n")
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    assert not folder.exists()


def test_dns_command_prints_srv_and_autoconfig_names(tmp_path: Path) -> None:
    """`mailserver dns DOMAIN` includes the RFC 6186/8314 SRV records and the autoconfig/autodiscover names."""
    values = throwaway_config_values(tmp_path, ports={"imaps": 993, "submissions": 465, "imap": 143, "submission": 587})
    conf = write_config(tmp_path / "c.toml", values)
    res = run_cli("dns", "example.test", config=conf)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "_imaps._tcp.example.test. 3600 IN SRV 0 1 993 mail.example.test." in out
    assert "_submissions._tcp.example.test. 3600 IN SRV 0 1 465 mail.example.test." in out
    assert "_submission._tcp.example.test. 3600 IN SRV 10 1 587 mail.example.test." in out
    assert "autoconfig.example.test. 3600 IN CNAME mail.example.test." in out
    assert "autodiscover.example.test. 3600 IN CNAME mail.example.test." in out
