"""Crash durability: kill -9 the daemon during a burst; every message that got 250 is stored."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mailserver import config as cfg
from mailserver.daemon import open_services
from tests.helpers import ROOT, free_port, throwaway_config_values, write_config
from tests.smtp.client import RawSmtp, inbox, message

#: Concurrent client connections during the burst, and how long the burst runs before
#: the kill: enough that group commits are in flight when the process dies.
CONNECTIONS = 8
BURST_SECONDS = 1.5


async def _wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


async def _sender(port: int, n: int, acked: list[str], stop: asyncio.Event) -> None:
    """Send messages one after another; record the token of each that got 250."""
    try:
        client = await RawSmtp.connect(port)
        await client.ehlo()
        i = 0
        while not stop.is_set():
            token = f"c{n}-m{i}"
            i += 1
            code, _ = await client.send_mail("x@elsewhere.example", ["bob@example.test"], message(subject=token))
            if code == 250:
                acked.append(token)
    except (ConnectionError, OSError, asyncio.IncompleteReadError, TimeoutError):
        return  # the daemon was killed: replies not received do not count


@pytest.mark.slow
async def test_kill_9_mid_burst_loses_no_acknowledged_message(tmp_path: Path, test_ca: Any) -> None:
    """kill -9 during a burst of deliveries; after restart every 250-acknowledged message is in the store."""
    port = free_port()
    values = throwaway_config_values(tmp_path, ports={"smtp": port})
    for name in ("submission", "submissions", "imap", "imaps", "http"):
        values[f"listeners.{name}.enabled"] = False
    values["tls.cert_file"] = str(test_ca.cert_file)
    values["tls.key_file"] = str(test_ca.key_file)
    config_path = write_config(tmp_path / "config.toml", values)
    config = cfg.load(config_path)
    store, accounts, _ = await open_services(config)
    await accounts.add_user("bob@example.test", "Bob", "pw")
    await store.close()

    env = dict(os.environ)
    env.pop(cfg.ENV_VAR, None)
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log_file:  # noqa: ASYNC230 - a local file, opened once
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mailserver", "serve", "--config", str(config_path),
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    acked: list[str] = []
    try:
        try:
            await _wait_port(port, time.monotonic() + 30)
        except TimeoutError as err:
            raise AssertionError(f"{err}; daemon output:\n{log_path.read_text(errors='replace')}") from None
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_sender(port, n, acked, stop)) for n in range(CONNECTIONS)]
        await asyncio.sleep(BURST_SECONDS)
        proc.send_signal(signal.SIGKILL)  # mid-burst: transactions are being committed
        await asyncio.wait_for(proc.wait(), 10)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 10)
    assert len(acked) > 20, "the burst delivered too little to test anything"
    print(f"acknowledged before kill: {len(acked)}")

    store, _, _ = await open_services(config)  # recovery as on restart
    try:
        bob = await store.directory.get_account("bob@example.test")
        assert bob is not None
        bodies = await inbox(store, bob)
        subjects = {line.split(b": ", 1)[1].decode() for b in bodies for line in b.split(b"\r\n") if line.startswith(b"Subject: ")}
        missing = [t for t in acked if t not in subjects]
        assert missing == [], f"{len(missing)} acknowledged messages lost of {len(acked)}"
        assert len(bodies) == len(subjects)  # no duplicate or half-written entries
    finally:
        await store.close()
