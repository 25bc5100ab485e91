"""SEARCH of FROM/TO/CC/BCC/SUBJECT through the store's search index, and FETCH ENVELOPE
decoded alone from the stored index (issue 4 §7 fast paths): same answers as the slow paths."""

from __future__ import annotations

from mailserver.imap import mime
from storage.types import LocalRecipient
from tests.imap.conftest import ALICE, ImapEnv, message
from tests.imap.test_mailbox import login

SAMPLES = [
    message("Plain subject"),
    message("=?utf-8?q?Stra=C3=9Fe?= works", sender="ann@remote.test"),
    message("Caf\xe9 8-bit".encode().decode("latin-1"), extra="Cc: Bob <bob@x.test>\r\n"),
    b"X-Nothing: at all\r\n\r\nno header fields IMAP knows\r\n",
]


def test_envelope_wire_equals_full_decode() -> None:
    """envelope_wire() gives exactly load().envelope_wire, and None where load() gives None."""
    for raw in SAMPLES:
        text = mime.index_json(raw)
        index = mime.load(text)
        assert index is not None and mime.envelope_wire(text) == index.envelope_wire
    for other in (None, '{"v":0,"n":1,"e":"x"}', '{"v":1,"n":1}', "garbage", '{"v":1,"n":1,"e":"\\u12"}'):
        assert mime.envelope_wire(other) is None


async def test_indexed_search_keys(imap: ImapEnv) -> None:
    """Indexed keys alone, negated, OR-ed and with flag keys agree with the messages (casefold, empty needle)."""
    alice = await imap.server.store.directory.get_account(ALICE)
    assert alice is not None
    for raw in SAMPLES:  # indexed at delivery, as SMTP stores them
        await imap.server.store.mail.deliver(raw, [LocalRecipient(alice.id)], index_json=mime.index_json(raw))
    await imap.deliver(ALICE, message("Late plain", sender="ann@remote.test"))  # no index: checked by IMAP

    def go() -> dict[str, bytes]:
        r = login(imap)
        r.cmd("SELECT INBOX")
        r.cmd("STORE 2 +FLAGS (\\Flagged)")
        queries = {
            "casefold": "SEARCH SUBJECT STRASSE", "plain": "UID SEARCH SUBJECT plain",
            "not": "SEARCH NOT SUBJECT plain", "or": "SEARCH OR FROM ann CC bob",
            "flag": "SEARCH FROM ann FLAGGED", "empty": 'SEARCH CC ""', "nosubject": 'SEARCH NOT SUBJECT ""',
            "count": "SEARCH RETURN (COUNT) FROM remote.test", "set": "SEARCH 1:2 FROM remote",
        }
        out = {name: r.cmd(q.encode())[0] for name, q in queries.items()}
        r.close()
        return out

    out = await imap.run(go)
    assert out["casefold"] == b"* SEARCH 2"
    assert out["plain"] == b"* SEARCH 1 5"
    assert out["not"] == b"* SEARCH 2 3 4"
    assert out["or"] == b"* SEARCH 2 3 5"
    assert out["flag"] == b"* SEARCH 2"
    assert out["empty"] == b"* SEARCH 3"
    assert out["nosubject"] == b"* SEARCH 4"
    assert out["count"].endswith(b"COUNT 4")
    assert out["set"] == b"* SEARCH 1 2"


async def test_fetch_envelope_fast_and_slow_paths_agree(imap: ImapEnv) -> None:
    """FETCH ENVELOPE alone and ENVELOPE with BODYSTRUCTURE give the same ENVELOPE, indexed or not."""
    alice = await imap.server.store.directory.get_account(ALICE)
    assert alice is not None
    for raw in SAMPLES:
        await imap.server.store.mail.deliver(raw, [LocalRecipient(alice.id)], index_json=mime.index_json(raw))
    await imap.deliver(ALICE, SAMPLES[1])

    def go() -> tuple[bytes, bytes]:
        r = login(imap)
        r.cmd("SELECT INBOX")
        alone = b"\r\n".join(r.cmd(b"FETCH 1:* (UID ENVELOPE)"))
        full = b"\r\n".join(r.cmd(b"FETCH 1:* (UID ENVELOPE BODYSTRUCTURE)"))
        r.close()
        return alone, full

    alone, full = await imap.run(go)
    for seq, raw in enumerate([*SAMPLES, SAMPLES[1]], start=1):
        index = mime.load(mime.index_json(raw))
        assert index is not None
        expected = b"* %d FETCH (UID %d ENVELOPE %s" % (seq, seq, index.envelope_wire)
        assert expected + b")\r\n" in alone + b"\r\n"
        assert expected + b" BODYSTRUCTURE (" in full
