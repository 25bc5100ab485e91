"""Two in-process daemons on one PostgreSQL database, and clients to talk to them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auth.passwords import PasswordHasher
from mailserver import config as cfg
from mailserver.app import App
from mailserver.daemon import Daemon
from tests.imap.conftest import Raw
from tests.smtp.client import PASSWORD, RawSmtp

ALICE = "alice@example.test"
BOB = "bob@example.test"


@dataclass
class Pair:
    a: App
    b: App

    @staticmethod
    def port(app: App, listener: str) -> int:
        return app.bound[listener][1]


async def start_pair(make_config: Any, tmp_path: Path, pg_dsn: str, **extra: Any) -> tuple[list[Daemon], Pair]:
    daemons: list[Daemon] = []
    apps: list[App] = []
    for name in ("a", "b"):
        config = cfg.load(make_config(
            storage__backend="postgres", storage__dsn=pg_dsn, server__data_dir=str(tmp_path / name), **extra,
        ))
        daemon = Daemon(config, hasher=PasswordHasher(fast=True))
        apps.append(await daemon.start())
        daemons.append(daemon)
    return daemons, Pair(apps[0], apps[1])


def imap_login(port: int, user: str = ALICE) -> Raw:
    r = Raw(port)
    assert r.cmd(f'LOGIN {user} "{PASSWORD}"')[-1].split()[1] == b"OK"
    return r


async def smtp_send(port: int, rcpt: str, subject: str) -> None:
    client = await RawSmtp.connect(port)
    try:
        await client.ehlo()
        data = (f"From: zed@remote.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
                f"Message-ID: <{subject}@remote.test>\r\n\r\nbody\r\n").encode()
        code, text = await client.send_mail("zed@remote.test", [rcpt], data)
        assert code == 250, text
    finally:
        await client.close()
