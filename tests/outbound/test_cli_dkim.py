"""Operator commands (queue, dkim, dns) and DKIM signatures that verify."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest

from delivery.outbound import dkim
from delivery.outbound.dsn import header_section
from mailserver import cli
from mailserver import config as cfg
from storage.sqlite import SqliteStore
from storage.types import AccountKind

MESSAGE = (
    b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: signed\r\n"
    b"Sender: Bob <bob@example.test>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <s1@example.test>\r\n\r\nbody\r\n"
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_dkim_generate_and_signature_verifies(tmp_path: Path) -> None:
    """A generated key signs outbound mail (Sender: included) and the signature verifies against the printed record."""
    path = dkim.generate_key(tmp_path, "Example.test", "s1")
    assert path == tmp_path / "example.test" / "s1.pem" and oct(path.stat().st_mode)[-3:] == "600"
    record = dkim.txt_record(path, "example.test", "s1")
    assert record.startswith("s1._domainkey.example.test. IN TXT (")
    value = "".join(part for part in record.split('"')[1::2])
    signed = dkim.DkimSigner(tmp_path, "s1").sign(MESSAGE)
    assert signed.startswith(b"DKIM-Signature:") and signed.endswith(MESSAGE)
    sig = header_section(signed).split(b"\r\nFrom:")[0].lower()
    assert b"sender" in sig and b"d=example.test" in sig and b"s=s1" in sig

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.example.test."
        return value.encode()

    assert dkimpy.verify(signed, dnsfunc=dnsfunc)
    tampered = signed.replace(b"Subject: signed", b"Subject: changed")
    assert not dkimpy.verify(tampered, dnsfunc=dnsfunc)


def test_no_key_means_no_signature(tmp_path: Path) -> None:
    """Mail from a domain without a key goes out unsigned, unchanged."""
    assert dkim.DkimSigner(tmp_path, "mail").sign(MESSAGE) == MESSAGE


def test_generate_refuses_to_replace_a_key(tmp_path: Path) -> None:
    """A second generate for the same domain and selector is refused (the published key would break)."""
    dkim.generate_key(tmp_path, "example.test", "mail")
    with pytest.raises(dkim.DkimError, match="already exists"):
        dkim.generate_key(tmp_path, "example.test", "mail")


def test_cli_dkim_and_dns(make_config: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`dkim generate` prints the TXT record; `dns` lists MX, SPF, DKIM, DMARC and SRV records."""
    conf = str(make_config())
    code, out, _ = run(capsys, "dkim", "generate", "example.test", "--config", conf)
    assert code == 0 and "mail._domainkey.example.test. IN TXT" in out
    code, _, err = run(capsys, "dkim", "generate", "example.test", "--config", conf)
    assert code == 1 and "already exists" in err
    code, out, _ = run(capsys, "dns", "example.test", "--config", conf)
    assert code == 0
    for needle in ("IN MX 10 mail.example.test.", '"v=spf1 mx -all"', "mail._domainkey.example.test. IN TXT",
                   "_dmarc.example.test. IN TXT", "_submission._tcp.example.test."):
        assert needle in out, needle


def test_cli_queue_commands(make_config: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`queue list/show/retry/remove` read and change the queue the daemon works on."""
    conf = make_config()
    config = cfg.load(conf)

    async def seed() -> int:
        store = await SqliteStore.open(config.storage_path)
        try:
            await store.directory.add_domain("example.test")
            alice = await store.directory.create_account("alice@example.test", AccountKind.USER)
            res = await store.mail.deliver(b"Subject: x\r\n\r\ny\r\n", [], mail_from=alice.address,
                                           remote_recipients=["bob@remote.test"])
            assert res.queue_id is not None
            return res.queue_id
        finally:
            await store.close()

    qid = asyncio.run(seed())
    code, out, _ = run(capsys, "queue", "list", "--json", "--config", str(conf))
    [doc] = json.loads(out)
    assert code == 0 and doc["id"] == qid and doc["recipients"][0]["status"] == "pending"
    code, out, _ = run(capsys, "queue", "show", str(qid), "--config", str(conf))
    assert code == 0 and "<bob@remote.test> pending" in out
    code, out, _ = run(capsys, "queue", "retry", "--all", "--config", str(conf))
    assert code == 0 and out.startswith("1 queue entry due now")
    code, _, err = run(capsys, "queue", "retry", "--config", str(conf))
    assert code == 1 and "ID or --all" in err
    code, out, _ = run(capsys, "queue", "remove", str(qid), "--config", str(conf))
    assert code == 0 and "removed" in out
    code, _, err = run(capsys, "queue", "show", str(qid), "--config", str(conf))
    assert code == 1 and f"no queue entry {qid}" in err
    code, out, _ = run(capsys, "queue", "list", "--config", str(conf))
    assert out.strip() == "the queue is empty"
