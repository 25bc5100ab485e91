"""Local delivery stores the IMAP index of the stored message in the same commit,
parsed once (on a worker thread above INDEX_ON_LOOP_BYTES)."""

from __future__ import annotations

from typing import Any

import pytest

from delivery.local import INDEX_ON_LOOP_BYTES
from delivery.mime_index import build_index
from tests.smtp.client import RawSmtp, message


@pytest.mark.parametrize("size", [1024, INDEX_ON_LOOP_BYTES * 2], ids=["small", "large"])
async def test_delivery_stores_the_index_of_the_stored_bytes(server: Any, size: int) -> None:
    """The stored index equals build_index() of the stored body (Return-Path and Received included)."""
    bob = await server.accounts.add_user("bob@example.test", "Bob", "pw")
    part = (b"z" * 76 + b"\r\n") * (size // 78 // 2)
    body = (
        b"--b\r\nContent-Type: text/plain\r\n\r\n" + part
        + b"--b\r\nContent-Type: application/octet-stream\r\n\r\n" + part + b"--b--\r\n"
    ).decode()
    msg = message(frm="x@elsewhere.example", subject="indexed",
                  extra="MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n", body=body)
    mx = await RawSmtp.connect(server.port("smtp"))
    await mx.ehlo()
    assert (await mx.send_mail("x@elsewhere.example", ["bob@example.test"], msg))[0] == 250
    await mx.close()
    inbox = await server.store.mail.get_folder(bob.id, "INBOX")
    [(meta, index)] = await server.store.mail.fetch_range(inbox.id, 1, 1, with_index=True)
    stored = await server.store.mail.get_body(meta.blob_id)
    assert len(stored) > size // 2
    assert index is not None and index == build_index(stored).to_json()
    assert "multipart" in index.lower() or "MIXED" in index
