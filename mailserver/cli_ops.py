"""Operator commands about the running daemon: `status`, `serve --ephemeral`, and the
autoconfig part of `dns DOMAIN` (:func:`autoconfig_dns_lines`).

`status` reads the status file the daemon writes in ``server.data_dir`` at start
(``daemon.json``: pid, start time, bound listeners) and removes at stop, checks that
the process is alive and its ports answer, and reads the queue from the store (which
the CLI may open next to the daemon). Exit status 0 when running, 3 when not (as LSB
``status`` actions do).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailserver import autoconfig
from mailserver import config as cfg
from mailserver.app import App
from mailserver.daemon import STATUS_FILE, Daemon, StartupError, open_services

#: `mailserver status` exit status when no daemon runs (LSB: "program is not running")
EXIT_NOT_RUNNING = 3
#: How long `status` waits for each listener to accept a connection.
PROBE_TIMEOUT = 1.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def _duration(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


async def cmd_status(args: argparse.Namespace) -> int:
    try:
        config = cfg.load(getattr(args, "config", None))
    except cfg.ConfigError as e:
        raise StartupError(str(e)) from None
    path = config.data_dir / STATUS_FILE
    doc: dict[str, Any] = {"running": False, "status_file": str(path)}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        state = None
    except (OSError, ValueError) as e:
        raise StartupError(f"status file {path} unreadable: {e}") from None
    if state is None or not _pid_alive(int(state["pid"])):
        doc["reason"] = "no status file" if state is None else f"stale status file (pid {state['pid']} is gone)"
        _print(args, doc, [f"not running ({doc['reason']}: {path})"])
        return EXIT_NOT_RUNNING
    uptime = time.time() - float(state["started"])
    listeners = {
        name: {"host": host, "port": port, "answers": await asyncio.to_thread(_answers, host, port)}
        for name, (host, port) in state["listeners"].items()
    }
    store, _, _ = await open_services(config)
    try:
        entries = await store.queue.list_queue()
    finally:
        await store.close()
    now = datetime.now(UTC)
    oldest = max(((now - e.created).total_seconds() for e in entries), default=0.0)
    doc.update(running=True, pid=state["pid"], config=state.get("config"), uptime_seconds=round(uptime, 1),
               started=datetime.fromtimestamp(float(state["started"]), UTC).isoformat(timespec="seconds"),
               listeners=listeners, queue={"depth": len(entries), "oldest_age_seconds": round(oldest, 1)})
    lines = [
        f"running: pid {state['pid']}, up {_duration(uptime)} (since {doc['started']})",
        f"config: {state.get('config')}",
        *(f"  {name:<12} {v['host']}:{v['port']}" + ("" if v["answers"] else "  (not answering)")
          for name, v in listeners.items()),
        f"queue: {len(entries)} message(s)" + (f", oldest {_duration(oldest)}" if entries else ""),
    ]
    _print(args, doc, lines)
    return 0


def _print(args: argparse.Namespace, doc: dict[str, Any], lines: list[str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(doc, indent=2))
    else:
        print("\n".join(lines))


def ephemeral_lines(app: App, folder: Path) -> list[str]:
    """What `serve --ephemeral` prints once listening."""
    lines = [f"Ephemeral mail server (data in {folder}, deleted at exit):"]
    lines += [f"  {name:<12} {host}:{port}" for name, (host, port) in app.bound.items()]
    lines += [
        f"  certificate  {app.config.data_dir / 'tls' / 'cert.pem'} (self-signed; trust it in clients)",
        f"  config       {app.config.path} (for `mailserver status --config ...`; SIGHUP reloads it)",
    ]
    return lines


async def serve_ephemeral(args: argparse.Namespace) -> int:
    """`serve --ephemeral`: temporary store, free loopback ports, the demo accounts."""
    from mailserver import logs
    from mailserver.testserver import write_ephemeral_config

    folder = Path(tempfile.mkdtemp(prefix="mailserver-ephemeral-"))
    try:
        config = cfg.load(write_ephemeral_config(folder, domain=args.domain))
        logs.setup(config["server.log_format"], config["server.log_level"])
        daemon = Daemon(config, demo=True)

        def started(app: App) -> None:
            print("\n".join(ephemeral_lines(app, folder)), flush=True)

        await daemon.run(on_started=started)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def autoconfig_dns_lines(config: cfg.Config, domain: str) -> list[str]:
    """Zone-file lines for RFC 6186 SRV and the autoconfig/autodiscover names."""
    return [r.zone_line() for r in autoconfig.dns_records(config, domain)]


def add_commands(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """Register `status` on the CLI's subparsers (``cmd`` is cli.build_parser's helper)."""
    cmd(sub, "status", "is the daemon running: pid, uptime, listeners, queue depth (exit 3 if not)",
        cmd_status, json_out=True)
