"""`mailserver serve`: start-up, health check, signals, demo, start-up failures."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from auth.login import Principal
from tests.conftest import RunningServer
from tests.helpers import ROOT, free_port, run_cli, throwaway_config_values, write_config

#: how long a test waits for the daemon to log that it started
START_TIMEOUT = 30.0


def start_daemon(conf: Path, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start `mailserver serve` and wait for its 'mailserver started' line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailserver", "serve", "--config", str(conf), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "mailserver started" in line:
            return proc, lines
    proc.kill()
    raise AssertionError("daemon did not start:\n" + "\n".join(lines))


def stop_daemon(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out


def test_serve_answers_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    """First start creates store and self-signed certificate, /healthz answers, SIGTERM exits 0."""
    http = free_port()
    conf = write_config(tmp_path / "c.toml", throwaway_config_values(tmp_path, ports={"http": http}))
    proc, lines = start_daemon(conf)
    try:
        assert (tmp_path / "data" / "mail.sqlite3").exists()
        assert (tmp_path / "data" / "tls" / "cert.pem").exists()
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=10) as resp:
            assert resp.status == 200 and resp.read() == b"ok\n"
    finally:
        code, out = stop_daemon(proc)
    assert code == 0, out
    assert "mailserver stopped" in out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_exit_zero(tmp_path: Path, sig: int) -> None:
    """SIGINT and SIGTERM both stop the daemon cleanly with status 0."""
    conf = write_config(tmp_path / "c.toml", throwaway_config_values(tmp_path))
    proc, _ = start_daemon(conf)
    code, out = stop_daemon(proc, sig)
    assert code == 0, out


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    """A port already in use stops start-up with one line naming the listener and address."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        conf = write_config(tmp_path / "c.toml", throwaway_config_values(tmp_path, ports={"http": port}))
        r = run_cli("serve", config=conf)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("mailserver: error: listener http: cannot listen on 127.0.0.1:") and str(port) in last


def test_unusable_data_folder_is_one_clear_line(tmp_path: Path) -> None:
    """A data folder that cannot be created stops start-up with one line naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    values = throwaway_config_values(tmp_path, **{"server.data_dir": str(blocker / "data"),
                                                  "storage.path": str(blocker / "data" / "m.sqlite3")})
    conf = write_config(tmp_path / "c.toml", values)
    r = run_cli("serve", config=conf)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "data folder" in lines[0] and str(blocker) in lines[0]


def test_demo_is_idempotent(tmp_path: Path) -> None:
    """serve --demo seeds the demo organisation and prints logins; a second start changes nothing."""
    conf = write_config(tmp_path / "c.toml", throwaway_config_values(tmp_path))
    for _ in range(2):
        proc, lines = start_daemon(conf, "--demo")
        code, out = stop_daemon(proc)
        assert code == 0
        text = "\n".join(lines)
        assert "alice@example.test  password: alice-demo-pw" in text
        assert "hr@example.test" in text and "team@example.test" in text and "boardroom@example.test" in text
    users = run_cli("user", "list", "--json", config=conf)
    assert users.stdout.count('"address"') == 2
    shown = run_cli("shared", "show", "hr@example.test", "--json", config=conf).stdout
    assert '"full_access"' in shown and '"send_as"' in shown and '"send_on_behalf"' in shown


async def test_cli_changes_reach_running_daemon(server: RunningServer) -> None:
    """A user added with the CLI beside the running daemon can log in at once; unlicensing blocks it."""
    import asyncio

    from auth.errors import AuthFailed

    conf = server.config.path
    r = await asyncio.to_thread(run_cli, "user", "add", "zoe@example.test", "--password-stdin",
                                config=conf, stdin="pw-zoe\n")
    assert r.returncode == 0, r.stderr
    p = await server.app.authenticator.authenticate("zoe@example.test", "pw-zoe", client_ip="127.0.0.1")
    assert isinstance(p, Principal) and p.user.address == "zoe@example.test"
    r = await asyncio.to_thread(run_cli, "user", "unlicense", "zoe@example.test", config=conf)
    assert r.returncode == 0, r.stderr
    with pytest.raises(AuthFailed):
        await server.app.authenticator.authenticate("zoe@example.test", "pw-zoe", client_ip="127.0.0.1")



def test_missing_certificate_is_one_clear_line(tmp_path: Path) -> None:
    """A configured certificate that does not exist stops start-up with one line naming it."""
    missing = tmp_path / "nowhere" / "cert.pem"
    values = throwaway_config_values(tmp_path, **{"tls.cert_file": str(missing), "tls.key_file": str(missing)})
    conf = write_config(tmp_path / "c.toml", values)
    r = run_cli("serve", config=conf)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last == f"mailserver: error: tls: TLS file not found: {missing}"
