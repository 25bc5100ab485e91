"""Interop with Python client libraries: IMAPClient and imap-tools (issue 4 §6)."""

from __future__ import annotations

import pytest

from tests.imap.conftest import ALICE, HR, PASSWORD, ImapEnv, message

imapclient = pytest.importorskip("imapclient")
imap_tools = pytest.importorskip("imap_tools")


async def test_imapclient_session(imap: ImapEnv) -> None:
    """IMAPClient over implicit TLS: folders, special-use, append, fetch, flags, move, idle_check, delegate login."""
    await imap.deliver(ALICE, message("first"))
    ctx = imap.server.client_ssl_context()

    def go() -> dict[str, object]:
        out: dict[str, object] = {}
        c = imapclient.IMAPClient("127.0.0.1", port=imap.imaps_port, ssl=True, ssl_context=ctx)
        c.login(ALICE, PASSWORD)
        out["caps"] = c.capabilities()
        out["sent"] = c.find_special_folder(imapclient.imapclient.SENT)
        out["ns"] = c.namespace()
        c.create_folder("Projekte/Übersicht")
        out["folders"] = [f[2] for f in c.list_folders()]
        c.append("INBOX", message("second"), flags=[imapclient.imapclient.SEEN])
        c.select_folder("INBOX")
        msgs = c.search(["UNSEEN"])
        out["unseen"] = msgs
        data = c.fetch(c.search("ALL"), ["ENVELOPE", "FLAGS", "RFC822.SIZE"])
        out["subjects"] = [d[b"ENVELOPE"].subject for d in data.values()]
        c.add_flags(msgs, [imapclient.imapclient.FLAGGED])
        out["flags"] = c.get_flags(msgs)
        out["move"] = c.move(msgs, "Archive")
        c.idle()
        out["idle"] = c.idle_check(timeout=0.2)
        c.idle_done()
        c.logout()
        d = imapclient.IMAPClient("127.0.0.1", port=imap.imaps_port, ssl=True, ssl_context=ctx)
        d.login(f"{ALICE}\\{HR}", PASSWORD)
        out["delegate"] = d.select_folder("INBOX")[b"EXISTS"]
        d.logout()
        return out

    out = await imap.run(go)
    assert b"MOVE" in out["caps"] and b"CONDSTORE" in out["caps"]  # type: ignore[operator]
    assert out["sent"] == "Sent"
    assert "Projekte/Übersicht" in out["folders"]  # type: ignore[operator]
    assert out["subjects"] == [b"first", b"second"]
    assert out["unseen"] == [1]
    assert out["flags"] == {1: (b"\\Flagged",)}
    assert out["delegate"] == 0


async def test_imap_tools_session(imap: ImapEnv) -> None:
    """imap-tools over STARTTLS: fetch with criteria, flag, move, delete."""
    for subject in ("alpha", "beta", "gamma"):
        await imap.deliver(ALICE, message(subject))
    ctx = imap.server.client_ssl_context()

    def go() -> dict[str, object]:
        from imap_tools import AND, MailBoxStartTls, MailMessageFlags

        out: dict[str, object] = {}
        with MailBoxStartTls("127.0.0.1", port=imap.port, ssl_context=ctx).login(ALICE, PASSWORD) as mb:
            out["subjects"] = [m.subject for m in mb.fetch(mark_seen=False)]
            uids = [m.uid for m in mb.fetch(AND(subject="beta")) if m.uid]
            out["beta"] = uids
            mb.flag(uids, MailMessageFlags.FLAGGED, True)
            out["flagged"] = [m.subject for m in mb.fetch(AND(flagged=True))]
            mb.move(uids, "Archive")
            mb.delete([m.uid for m in mb.fetch(AND(subject="alpha")) if m.uid])
            out["left"] = [m.subject for m in mb.fetch()]
        return out

    out = await imap.run(go)
    assert out["subjects"] == ["alpha", "beta", "gamma"]
    assert out["flagged"] == ["beta"]
    assert out["left"] == ["gamma"]
