"""Mailbox and message commands through the running server (wire transcripts)."""

from __future__ import annotations

import asyncio
import time

import pytest

from storage.types import Right
from tests.imap.conftest import ALICE, BOB, CAROL, HR, PASSWORD, ImapEnv, Raw, message


def login(imap: ImapEnv, user: str = ALICE) -> Raw:
    r = Raw(imap.port)
    assert r.cmd(f'LOGIN "{user}" "{PASSWORD}"')[-1].split()[1] == b"OK"
    return r


def status(lines: list[bytes]) -> bytes:
    return lines[-1].split(b" ", 2)[1]


async def test_select_reports_counters(imap: ImapEnv) -> None:
    """SELECT answers FLAGS, EXISTS, UNSEEN, UIDVALIDITY, UIDNEXT, PERMANENTFLAGS, HIGHESTMODSEQ, READ-WRITE."""
    for i in range(3):
        await imap.deliver(ALICE, message(f"m{i}"))
    def go() -> list[bytes]:
        r = login(imap)
        out = r.cmd("SELECT INBOX")
        r.close()
        return out
    out = await imap.run(go)
    text = b"\n".join(out)
    for part in (b"* 3 EXISTS", b"[UNSEEN 1]", b"[UIDVALIDITY ", b"[UIDNEXT 4]", b"[PERMANENTFLAGS (", b"\\*)",
                 b"[HIGHESTMODSEQ ", b"OK [READ-WRITE]"):
        assert part in text


async def test_bad_input_keeps_connection_usable(imap: ImapEnv) -> None:
    """Garbage, an unknown command and a bad sequence set get BAD; the next command works."""
    def go() -> list[bytes]:
        r = login(imap)
        r.cmd("SELECT INBOX")
        out = [r.cmd("FROB")[-1], r.cmd("FETCH x FLAGS")[-1], r.cmd("FETCH 5 FLAGS")[-1]]
        r.send(b"\r\n")
        out.append(r.line())
        out.append(r.cmd("NOOP")[-1])
        r.close()
        return out
    frob, badset, outofrange, empty, ok = await imap.run(go)
    assert frob.split()[1] == badset.split()[1] == outofrange.split()[1] == b"BAD"
    assert empty.startswith(b"* BAD")
    assert ok.split()[1] == b"OK"


async def test_append_too_big_refused_before_literal(imap: ImapEnv) -> None:
    """APPEND of a literal above limits.message_size gets NO [TOOBIG] without '+'; the stream stays in sync."""
    size = imap.server.config["limits.message_size"] + 1
    def go() -> tuple[list[bytes], list[bytes], list[bytes]]:
        r = login(imap)
        big = r.cmd(f"APPEND INBOX {{{size}}}")
        r.send(b"t9 APPEND INBOX {5+}\r\nab\r\nc\r\n")
        small = r.until(b"t9")
        after = r.cmd("NOOP")
        r.close()
        return big, small, after
    big, small, after = await imap.run(go)
    assert big[-1].split(b" ", 1)[1].startswith(b"NO [TOOBIG]")
    assert b"APPENDUID" in small[-1]
    assert status(after) == b"OK"


async def test_append_flags_date_and_appenduid(imap: ImapEnv) -> None:
    """APPEND stores flags and internal date and answers APPENDUID; a missing folder is TRYCREATE."""
    raw = message("appended")
    def go() -> tuple[list[bytes], list[bytes], list[bytes]]:
        r = login(imap)
        r.send(b't1 APPEND Drafts (\\Draft $Forwarded) "17-Jul-1996 02:44:25 -0700" {%d}\r\n' % len(raw))
        assert r.line().startswith(b"+")
        r.send(raw + b"\r\n")
        app = r.until(b"t1")
        r.cmd("SELECT Drafts")
        fetched = r.cmd("FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)")
        missing = r.cmd("APPEND Nope {1+}\r\nx")
        r.close()
        return app, fetched, missing
    app, fetched, missing = await imap.run(go)
    assert b"[APPENDUID " in app[-1] and app[-1].endswith(b" 1] APPEND completed")
    line = fetched[0]
    assert b"\\Draft" in line and b"$Forwarded" in line
    assert b'INTERNALDATE "17-Jul-1996 02:44:25 -0700"' in line and b"RFC822.SIZE %d" % len(raw) in line
    assert missing[-1].split(b" ", 1)[1].startswith(b"NO [TRYCREATE]")


async def test_fetch_sections_and_peek(imap: ImapEnv) -> None:
    """BODY.PEEK leaves \\Seen alone; BODY[] sets it and reports FLAGS; partial and MIME sections work."""
    raw = (b"From: a@b.test\r\nSubject: mp\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
           b"--XX\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--XX\r\nContent-Type: text/html\r\n\r\n<b>2</b>\r\n--XX--\r\n")
    await imap.deliver(ALICE, raw)
    def go() -> list[list[bytes]]:
        r = login(imap)
        r.cmd("SELECT INBOX")
        out = [r.cmd("FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[]<0.4>)"), r.cmd("FETCH 1 FLAGS"),
               r.cmd("FETCH 1 BODY[1]"), r.cmd("FETCH 1 (BODYSTRUCTURE)")]
        r.close()
        return out
    peek, flags, seen, bs = await imap.run(go)
    joined = b"\n".join(peek)
    assert b"BODY[1] {10}" in joined and b"first part" in joined
    assert b"BODY[2.MIME]" in joined and b"BODY[]<0> {4}" in joined
    assert b"FLAGS ()" in flags[0]
    assert b"\\Seen" in b"".join(seen)
    assert b'("TEXT" "PLAIN"' in bs[0] and b'"MIXED"' in bs[0]


async def test_store_silent_and_flags_of_every_message(imap: ImapEnv) -> None:
    """STORE answers FLAGS for every named message, nothing with .SILENT; keywords are kept."""
    for i in range(2):
        await imap.deliver(ALICE, message(f"s{i}"))
    def go() -> tuple[list[bytes], list[bytes], list[bytes]]:
        r = login(imap)
        r.cmd("SELECT INBOX")
        r.cmd("STORE 1 +FLAGS (\\Flagged)")
        loud = r.cmd("STORE 1:2 +FLAGS ($Junk)")
        silent = r.cmd("STORE 1:2 -FLAGS.SILENT ($Junk)")
        check = r.cmd("FETCH 1:2 FLAGS")
        r.close()
        return loud, silent, check
    loud, silent, check = await imap.run(go)
    assert len([x for x in loud if b"FETCH" in x]) == 2
    assert len(silent) == 1
    assert b"\\Flagged" in check[0] and b"$Junk" not in check[0]


async def test_condstore_unchangedsince_and_changedsince(imap: ImapEnv) -> None:
    """STORE UNCHANGEDSINCE refuses newer messages with [MODIFIED]; FETCH CHANGEDSINCE returns only changes."""
    for i in range(3):
        await imap.deliver(ALICE, message(f"c{i}"))
    def go() -> tuple[bytes, list[bytes], list[bytes]]:
        r = login(imap)
        sel = b"\n".join(r.cmd("SELECT INBOX (CONDSTORE)"))
        hms = int(sel.split(b"[HIGHESTMODSEQ ")[1].split(b"]")[0])
        r.cmd("STORE 2 +FLAGS (\\Seen)")
        cond = r.cmd(f"STORE 1:3 (UNCHANGEDSINCE {hms}) +FLAGS (\\Flagged)")
        since = r.cmd(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {hms})")
        r.close()
        return sel, cond, since
    sel, cond, since = await imap.run(go)
    assert b"[MODIFIED 2]" in cond[-1]
    assert all(b"MODSEQ (" in line for line in cond[:-1])
    fetched = [x for x in since if x.startswith(b"* ")]
    assert len(fetched) == 3 and all(b"MODSEQ" in x for x in fetched)


async def test_search_keys_and_esearch(imap: ImapEnv) -> None:
    """SEARCH covers header, body, flag, size, date, UID, OR/NOT keys, and ESEARCH return options."""
    await imap.deliver(ALICE, message("Quarterly report", "numbers inside\r\n"))
    await imap.deliver(ALICE, message("Lunch", "pizza today\r\n", sender="bob@example.test"))
    await imap.deliver(ALICE, message("=?utf-8?q?Caf=C3=A9?=", "espresso\r\n"))
    def go() -> dict[str, bytes]:
        r = login(imap)
        r.cmd("SELECT INBOX")
        r.cmd("STORE 2 +FLAGS (\\Flagged)")
        queries = {
            "subject": "SEARCH SUBJECT report", "from": "SEARCH FROM bob", "body": "SEARCH BODY pizza",
            "text": "SEARCH TEXT espresso", "flagged": "SEARCH FLAGGED", "unflagged": "SEARCH NOT FLAGGED",
            "or": "SEARCH OR SUBJECT lunch SUBJECT report", "uid": "UID SEARCH UID 2:*",
            "header": 'SEARCH HEADER Message-ID "remote.test"', "larger": "SEARCH LARGER 1",
            "sentbefore": "SEARCH SENTBEFORE 1-Jan-2000", "since": "SEARCH SINCE 1-Jan-2000",
            "utf8": "SEARCH CHARSET UTF-8 SUBJECT {5+}\r\nCaf\xc3\xa9".encode("latin-1").decode("latin-1"),
            "esearch": "SEARCH RETURN (MIN MAX COUNT ALL) ALL", "uidesearch": "UID SEARCH RETURN (COUNT) FLAGGED",
            "badcharset": "SEARCH CHARSET KOI8-R ALL", "seq": "SEARCH 2:3 NOT 3",
        }
        out = {}
        for name, q in queries.items():
            lines = r.cmd(q.encode("latin-1"))
            out[name] = lines[0] if len(lines) > 1 else lines[-1]
        r.close()
        return out
    out = await imap.run(go)
    assert out["subject"] == b"* SEARCH 1"
    assert out["from"] == b"* SEARCH 2"
    assert out["body"] == b"* SEARCH 2"
    assert out["text"] == b"* SEARCH 3"
    assert out["flagged"] == b"* SEARCH 2"
    assert out["unflagged"] == b"* SEARCH 1 3"
    assert out["or"] == b"* SEARCH 1 2"
    assert out["uid"] == b"* SEARCH 2 3"
    assert out["header"] == b"* SEARCH 1 2 3"
    assert out["larger"] == b"* SEARCH 1 2 3"
    assert out["sentbefore"] == b"* SEARCH 1 2 3"
    assert out["since"] == b"* SEARCH 1 2 3"
    assert out["utf8"] == b"* SEARCH 3"
    assert out["esearch"].startswith(b'* ESEARCH (TAG "t') and out["esearch"].endswith(b"MIN 1 MAX 3 ALL 1:3 COUNT 3")
    assert out["uidesearch"].endswith(b"UID COUNT 1")
    assert out["badcharset"].split(b" ", 2)[2].startswith(b"[BADCHARSET")
    assert out["seq"] == b"* SEARCH 2"


async def test_copy_move_uidplus(imap: ImapEnv) -> None:
    """COPY answers COPYUID; MOVE sends COPYUID untagged then EXPUNGE; a missing target is TRYCREATE."""
    for i in range(3):
        await imap.deliver(ALICE, message(f"cm{i}"))
    def go() -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
        r = login(imap)
        r.cmd("SELECT INBOX")
        cp = r.cmd("COPY 1:2 Archive")
        mv = r.cmd("UID MOVE 2:3 Trash")
        missing = r.cmd("COPY 1 Nowhere")
        st = r.cmd("STATUS Trash (MESSAGES)")
        r.close()
        return cp, mv, missing, st
    cp, mv, missing, st = await imap.run(go)
    assert b"[COPYUID " in cp[-1] and cp[-1].split(b"]")[0].endswith(b" 1:2 1:2")
    assert mv[0].startswith(b"* OK [COPYUID ") and mv[0].split(b"]")[0].endswith(b" 2:3 1:2")
    assert mv[1:3] == [b"* 3 EXPUNGE", b"* 2 EXPUNGE"]
    assert missing[-1].split(b" ", 1)[1].startswith(b"NO [TRYCREATE]")
    assert st[0] == b"* STATUS Trash (MESSAGES 2)"


async def test_folders_create_rename_delete_list(imap: ImapEnv) -> None:
    """CREATE makes parents, RENAME moves children, RENAME INBOX leaves it empty, DELETE removes; LIST shows it."""
    await imap.deliver(ALICE, message("inbox mail"))
    def go() -> dict[str, list[bytes]]:
        r = login(imap)
        out = {
            "create": r.cmd("CREATE Projects/2024/Q1"),
            "dup": r.cmd("CREATE Projects"),
            "rename": r.cmd("RENAME Projects Work"),
            "list": r.cmd('LIST "" "Work*"'),
            "pct": r.cmd('LIST "" "%"'),
            "inbox": r.cmd("RENAME INBOX Old"),
            "st": r.cmd("STATUS INBOX (MESSAGES)"),
            "old": r.cmd("STATUS Old (MESSAGES)"),
            "delete": r.cmd("DELETE Work/2024/Q1"),
            "delinbox": r.cmd("DELETE INBOX"),
            "gone": r.cmd("SELECT Work/2024/Q1"),
            "delim": r.cmd('LIST "" ""'),
        }
        r.close()
        return out
    out = await imap.run(go)
    assert status(out["create"]) == b"OK"
    assert out["dup"][-1].split(b" ", 1)[1].startswith(b"NO [ALREADYEXISTS]")
    assert [x.rsplit(b" ", 1)[1] for x in out["list"][:-1]] == [b"Work", b"Work/2024", b"Work/2024/Q1"]
    assert b'* LIST (\\HasChildren) "/" Work' in out["pct"]
    assert out["st"][0] == b"* STATUS INBOX (MESSAGES 0)" and out["old"][0] == b"* STATUS Old (MESSAGES 1)"
    assert status(out["delete"]) == b"OK"
    assert out["delinbox"][-1].split(b" ", 1)[1].startswith(b"NO [CANNOT]")
    assert out["gone"][-1].split(b" ", 1)[1].startswith(b"NO [NONEXISTENT]")
    assert out["delim"][0] == b'* LIST (\\Noselect) "/" ""'


async def test_list_extended_special_use_and_status(imap: ImapEnv) -> None:
    """LIST (SPECIAL-USE), RETURN (SUBSCRIBED CHILDREN STATUS), LSUB and SUBSCRIBE work together."""
    def go() -> dict[str, list[bytes]]:
        r = login(imap)
        r.cmd("SUBSCRIBE Sent")
        out = {
            "special": r.cmd('LIST (SPECIAL-USE) "" "%"'),
            "status": r.cmd('LIST "" "Sent" RETURN (SUBSCRIBED STATUS (MESSAGES UIDNEXT))'),
            "lsub": r.cmd('LSUB "" "*"'),
            "subscribed": r.cmd('LIST (SUBSCRIBED) "" "*"'),
        }
        r.close()
        return out
    out = await imap.run(go)
    special = [x for x in out["special"] if x.startswith(b"* LIST")]
    assert [x.rsplit(b" ", 1)[1] for x in special] == [b"Archive", b"Drafts", b"Junk", b"Sent", b"Trash"]
    assert out["status"][0] == b'* LIST (\\HasNoChildren \\Sent \\Subscribed) "/" Sent'
    assert out["status"][1] == b"* STATUS Sent (MESSAGES 0 UIDNEXT 1)"
    assert any(x.endswith(b'"/" Sent') for x in out["lsub"])
    assert b'* LIST (\\HasNoChildren \\Sent \\Subscribed) "/" Sent' in out["subscribed"]
    assert all(b"\\Subscribed" in x for x in out["subscribed"][:-1])


async def test_enable_namespace_id(imap: ImapEnv) -> None:
    """ENABLE CONDSTORE answers ENABLED; NAMESPACE offers Shared/; ID names the server."""
    def go() -> tuple[list[bytes], list[bytes], list[bytes]]:
        r = login(imap)
        out = r.cmd("ENABLE CONDSTORE"), r.cmd("NAMESPACE"), r.cmd('ID ("name" "test")')
        r.close()
        return out
    en, ns, ident = await imap.run(go)
    assert en[0] == b"* ENABLED CONDSTORE"
    assert ns[0] == b'* NAMESPACE (("" "/")) (("Shared/" "/")) NIL'
    assert ident[0].startswith(b'* ID ("name" "mailserver"')


async def test_expunge_not_sent_during_fetch_store_search(imap: ImapEnv) -> None:
    """Another session's EXPUNGE is held back during FETCH/STORE/SEARCH (numbers stay) and sent on NOOP."""
    for i in range(3):
        await imap.deliver(ALICE, message(f"e{i}"))
    def go() -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
        a, b = login(imap), login(imap)
        a.cmd("SELECT INBOX")
        b.cmd("SELECT INBOX")
        b.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
        b.cmd("EXPUNGE")
        fetch = a.cmd("FETCH 3 (UID)")
        search = a.cmd("SEARCH ALL")
        noop = a.cmd("NOOP")
        after = a.cmd("FETCH 2 (UID)")
        a.close()
        b.close()
        return fetch, search, noop, after
    fetch, search, noop, after = await imap.run(go)
    assert not any(b"EXPUNGE" in x for x in fetch + search)
    assert fetch[0] == b"* 3 FETCH (UID 3)"
    assert search[0] == b"* SEARCH 2 3"
    assert b"* 1 EXPUNGE" in noop
    assert after[0] == b"* 2 FETCH (UID 3)"


async def test_flag_changes_and_new_mail_reach_other_sessions(imap: ImapEnv) -> None:
    """A flag change by one session reaches another as FETCH FLAGS; new mail as EXISTS."""
    await imap.deliver(ALICE, message("f0"))
    def setup() -> tuple[Raw, Raw]:
        a, b = login(imap), login(imap)
        a.cmd("SELECT INBOX")
        b.cmd("SELECT INBOX")
        b.cmd("STORE 1 +FLAGS.SILENT (\\Answered)")
        return a, b
    a, b = await imap.run(setup)
    await imap.deliver(ALICE, message("f1"))
    noop = await imap.run(a.cmd, "NOOP")
    assert b"* 1 FETCH (UID 1 FLAGS (\\Answered))" in noop
    assert b"* 2 EXISTS" in noop
    a.close()
    b.close()


async def test_idle_sees_delivery_within_a_second(imap: ImapEnv) -> None:
    """A client in IDLE gets EXISTS within a second of a local delivery; DONE ends IDLE with OK."""
    def start() -> Raw:
        r = login(imap)
        r.cmd("SELECT INBOX")
        r.send(b"i IDLE\r\n")
        assert r.line().startswith(b"+")
        return r
    r = await imap.run(start)
    t0 = time.monotonic()
    await imap.deliver(ALICE, message("idle"))
    line = await imap.run(r.line)
    elapsed = time.monotonic() - t0
    assert line == b"* 1 EXISTS" and elapsed < 1.0
    r.send(b"DONE\r\n")
    done = await imap.run(r.until, b"i")
    assert done[-1] == b"i OK IDLE terminated"
    r.close()


@pytest.mark.config(imap__idle_timeout_seconds=1)
async def test_idle_times_out_with_bye(imap: ImapEnv) -> None:
    """IDLE past imap.idle_timeout_seconds ends with BYE."""
    def go() -> bytes:
        r = login(imap)
        r.send(b"i IDLE\r\n")
        r.line()
        line = r.line()
        r.close()
        return line
    assert (await imap.run(go)).startswith(b"* BYE")


async def test_shared_namespace_requires_grant(imap: ImapEnv) -> None:
    """carol (no grant) gets NONEXISTENT for Shared/hr; alice can select it; revoking closes it on the next command."""
    await imap.deliver(HR, message("hr mail", to=HR))
    def go() -> tuple[list[bytes], list[bytes], list[bytes]]:
        c = login(imap, CAROL)
        carol = c.cmd(f"SELECT Shared/{HR}/INBOX")
        listing = c.cmd('LIST "" "*"')
        c.close()
        a = login(imap)
        alice = a.cmd(f"SELECT Shared/{HR}/INBOX")
        return carol + listing, alice, []
    carol, alice, _ = await imap.run(go)
    assert any(x.split(b" ", 1)[1].startswith(b"NO [NONEXISTENT]") for x in carol if x.startswith(b"t2 "))
    assert not any(b"Shared" in x for x in carol)
    assert b"* 1 EXISTS" in alice


async def test_revoke_closes_selected_shared_folder(imap: ImapEnv) -> None:
    """After Full Access is revoked, the next FETCH on Shared/hr/INBOX fails and the folder is gone from LIST."""
    await imap.deliver(HR, message("hr mail", to=HR))
    def setup() -> Raw:
        a = login(imap)
        assert status(a.cmd(f"SELECT Shared/{HR}/INBOX")) == b"OK"
        return a
    a = await imap.run(setup)
    await imap.server.accounts.revoke(HR, ALICE, [Right.FULL_ACCESS])
    fetch = await imap.run(a.cmd, "FETCH 1 FLAGS")
    listing = await imap.run(a.cmd, 'LIST "" "*"')
    a.close()
    assert any(b"[CLOSED]" in x for x in fetch)
    assert fetch[-1].split(b" ", 1)[1].startswith(b"NO [NOPERM]")
    assert not any(b"Shared" in x for x in listing)


async def test_shared_mailbox_scenario_two_delegates(imap: ImapEnv) -> None:
    """alice and bob both see mail sent to hr; bob deletes it and alice's session sees it vanish."""
    def setup() -> tuple[Raw, Raw]:
        a = login(imap)
        b = Raw(imap.port)
        assert status(b.cmd(f'LOGIN "{BOB}\\\\hr" "{PASSWORD}"')) == b"OK"
        assert status(a.cmd(f"SELECT Shared/{HR}/INBOX")) == b"OK"
        assert status(b.cmd("SELECT INBOX")) == b"OK"
        return a, b
    a, b = await imap.run(setup)
    await imap.deliver(HR, message("for the team", to=HR))
    seen_a = await imap.run(a.cmd, "NOOP")
    seen_b = await imap.run(b.cmd, "NOOP")
    subject = await imap.run(b.cmd, "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"* 1 EXISTS" in seen_a and b"* 1 EXISTS" in seen_b
    assert b"Subject: for the team" in subject
    await imap.run(b.cmd, "STORE 1 +FLAGS.SILENT (\\Deleted)")
    await imap.run(b.cmd, "EXPUNGE")
    gone = await imap.run(a.cmd, "NOOP")
    assert b"* 1 EXPUNGE" in gone
    a.close()
    b.close()
    await asyncio.sleep(0)


async def test_pipelined_appends_answer_in_order(imap: ImapEnv) -> None:
    """Ten APPENDs pipelined with LITERAL+ (run together) are answered in command order with ascending UIDs."""
    def go() -> list[bytes]:
        r = login(imap)
        data = b"".join(b"p%d APPEND INBOX {%d+}\r\n%s\r\n" % (i, len(m), m)
                        for i, m in enumerate(message(f"pipe {i}") for i in range(10)))
        r.send(data + b"p10 APPEND Nope {1+}\r\nx\r\np11 NOOP\r\n")
        lines = r.until(b"p11")
        r.close()
        return lines
    lines = await imap.run(go)
    tagged = [x for x in lines if x.startswith(b"p")]
    assert [x.split()[0] for x in tagged] == [b"p%d" % i for i in range(12)]
    uids = [int(x.split(b"]")[0].rsplit(b" ", 1)[1]) for x in tagged[:10]]
    assert uids == list(range(1, 11))
    assert tagged[10].split(b" ", 1)[1].startswith(b"NO [TRYCREATE]")
