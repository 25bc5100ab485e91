"""Table-driven command tests: wire bytes -> typed command, also fed split at every byte."""

from __future__ import annotations

import datetime as dt

import pytest

from mailserver.imap.parser import (
    Append,
    AppendMessage,
    Authenticate,
    Capability,
    Check,
    Close,
    Copy,
    Create,
    DateRelation,
    Delete,
    Enable,
    Examine,
    Expunge,
    Fetch,
    FetchAttr,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    NeedsContinuation,
    Noop,
    Rename,
    Search,
    SearchAll,
    SearchAnd,
    SearchBody,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchSequence,
    SearchSize,
    SearchText,
    Section,
    Select,
    SequenceSet,
    StartTLS,
    Status,
    Store,
    StoreMode,
    Subscribe,
    Unselect,
    Unsubscribe,
)
from mailserver.imap.parser.commands import Command

from .test_parser_support import events_every_split

S = SequenceSet
TZ2 = dt.timezone(dt.timedelta(hours=2))
TZM7 = dt.timezone(dt.timedelta(hours=-7))
FLAGS, UID, MODSEQ = FetchAttr("FLAGS"), FetchAttr("UID"), FetchAttr("MODSEQ")

CASES: list[tuple[bytes, Command]] = [
    # -- any state
    (b"a1 CAPABILITY\r\n", Capability("a1")),
    (b"a1 capability\n", Capability("a1")),
    (b"a.b-c_1 NOOP\r\n", Noop("a.b-c_1")),
    (b"x] LOGOUT\r\n", Logout("x]")),
    (b"a ID NIL\r\n", Id("a", None)),
    (b'a ID ("name" "Thunderbird" "version" NIL)\r\n',
     Id("a", (("name", "Thunderbird"), ("version", None)))),
    (b"a ID ()\r\n", Id("a", ())),
    # -- not authenticated
    (b"a STARTTLS\r\n", StartTLS("a")),
    (b"a LOGIN alice@example.test secret\r\n", Login("a", "alice@example.test", "secret")),
    (b'a LOGIN "alice@example.test\\\\hr" "p a\\"ss"\r\n',
     Login("a", "alice@example.test\\hr", 'p a"ss')),
    (b"a LOGIN {5}\r\nalice {6+}\r\np\xc3\xa4ss!\r\n", Login("a", "alice", "päss!")),
    (b"a AUTHENTICATE plain\r\n", Authenticate("a", "PLAIN", None)),
    (b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
     Authenticate("a", "PLAIN", b"\x00alice\x00secret")),
    (b"a AUTHENTICATE PLAIN =\r\n", Authenticate("a", "PLAIN", b"")),
    # -- authenticated
    (b"a SELECT INBOX\r\n", Select("a", "INBOX")),
    (b"a SELECT inbox\r\n", Select("a", "INBOX")),
    (b'a SELECT "Sent Items" (CONDSTORE)\r\n', Select("a", "Sent Items", condstore=True)),
    (b"a EXAMINE &U,BTFw-\r\n", Examine("a", "台北")),
    (b"a CREATE Archive/2024\r\n", Create("a", "Archive/2024")),
    (b"a DELETE {4}\r\nJunk\r\n", Delete("a", "Junk")),
    (b"a RENAME INBOX Old-Inbox\r\n", Rename("a", "INBOX", "Old-Inbox")),
    (b"a RENAME \"A &- B\" &AOk-t&AOk-\r\n", Rename("a", "A & B", "été")),
    (b"a SUBSCRIBE Trash\r\n", Subscribe("a", "Trash")),
    (b"a UNSUBSCRIBE Trash\r\n", Unsubscribe("a", "Trash")),
    (b'a LIST "" *\r\n', List("a", "", ("*",))),
    (b'a LIST "" ""\r\n', List("a", "", ("",))),
    (b"a LIST Shared/ %\r\n", List("a", "Shared/", ("%",))),
    (b'a LIST "" INBOX.%]x\r\n', List("a", "", ("INBOX.%]x",))),
    (b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" (INBOX "Sent*")\r\n',
     List("a", "", ("INBOX", "Sent*"), frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}), extended=True)),
    (b'a LIST "" % RETURN (SUBSCRIBED CHILDREN SPECIAL-USE)\r\n',
     List("a", "", ("%",), returns=frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE"}),
          extended=True)),
    (b'a LIST () "" % RETURN (STATUS (MESSAGES UNSEEN))\r\n',
     List("a", "", ("%",), returns=frozenset({"STATUS"}), status_items=("MESSAGES", "UNSEEN"),
          extended=True)),
    (b'a LIST (REMOTE) "" *\r\n', List("a", "", ("*",), frozenset({"REMOTE"}), extended=True)),
    (b'a LSUB "" *\r\n', Lsub("a", "", "*")),
    (b"a STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)\r\n",
     Status("a", "INBOX", ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN",
                           "HIGHESTMODSEQ"))),
    (b"a APPEND Drafts {5}\r\nHello\r\n",
     Append("a", "Drafts", (AppendMessage((), None, b"Hello"),))),
    (b'a APPEND Sent (\\Seen $Forwarded) "17-Jul-1996 02:44:25 -0700" {5+}\r\nHi\r\n!\r\n',
     Append("a", "Sent", (AppendMessage(("\\Seen", "$Forwarded"),
                                        dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=TZM7),
                                        b"Hi\r\n!"),))),
    (b'a APPEND INBOX " 7-Jul-2020 10:00:00 +0200" {0}\r\n\r\n',
     Append("a", "INBOX", (AppendMessage((), dt.datetime(2020, 7, 7, 10, tzinfo=TZ2), b""),))),
    (b"a APPEND INBOX () ~{3}\r\n\x00\x01\x02\r\n",
     Append("a", "INBOX", (AppendMessage((), None, b"\x00\x01\x02", binary=True),))),
    (b"a APPEND INBOX (\\Seen) {1+}\r\nA (\\Draft) {1+}\r\nB\r\n",
     Append("a", "INBOX", (AppendMessage(("\\Seen",), None, b"A"),
                           AppendMessage(("\\Draft",), None, b"B")))),
    (b"a ENABLE CONDSTORE utf8=accept\r\n", Enable("a", ("CONDSTORE", "UTF8=ACCEPT"))),
    (b"a NAMESPACE\r\n", Namespace("a")),
    (b"a IDLE\r\n", Idle("a")),
    # -- selected
    (b"a CHECK\r\n", Check("a")),
    (b"a CLOSE\r\n", Close("a")),
    (b"a UNSELECT\r\n", Unselect("a")),
    (b"a EXPUNGE\r\n", Expunge("a")),
    (b"a UID EXPUNGE 3:5,9\r\n", Expunge("a", S(((3, 5), (9, 9))))),
    (b"a COPY 2:4 Archive\r\n", Copy("a", S(((2, 4),)), "Archive")),
    (b'a UID COPY 1,3:* "Sent Items"\r\n', Copy("a", S(((1, 1), (3, None))), "Sent Items", True)),
    (b"a MOVE *:5 Trash\r\n", Move("a", S(((None, 5),)), "Trash")),
    (b"a uid move 7 Trash\r\n", Move("a", S(((7, 7),)), "Trash", True)),
    (b"a STORE 1:* +FLAGS (\\Deleted)\r\n",
     Store("a", S(((1, None),)), StoreMode.ADD, False, ("\\Deleted",))),
    (b"a STORE 1 -FLAGS.SILENT \\seen \\FLAGGED\r\n",
     Store("a", S(((1, 1),)), StoreMode.REMOVE, True, ("\\Seen", "\\Flagged"))),
    (b"a UID STORE 5 FLAGS ()\r\n", Store("a", S(((5, 5),)), StoreMode.REPLACE, False, (), True)),
    (b"a STORE 2 (UNCHANGEDSINCE 12) FLAGS.SILENT ($Junk)\r\n",
     Store("a", S(((2, 2),)), StoreMode.REPLACE, True, ("$Junk",), unchanged_since=12)),
    (b"a FETCH 1 ALL\r\n",
     Fetch("a", S(((1, 1),)), tuple(FetchAttr(n) for n in
                                    ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE")))),
    (b"a FETCH 1 fast\r\n",
     Fetch("a", S(((1, 1),)), tuple(FetchAttr(n) for n in
                                    ("FLAGS", "INTERNALDATE", "RFC822.SIZE")))),
    (b"a FETCH 1:2 FULL\r\n",
     Fetch("a", S(((1, 2),)), tuple(FetchAttr(n) for n in
                                    ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY")))),
    (b"a FETCH 1:* (UID FLAGS ENVELOPE RFC822.SIZE)\r\n",
     Fetch("a", S(((1, None),)), (UID, FLAGS, FetchAttr("ENVELOPE"), FetchAttr("RFC822.SIZE")))),
    (b"a FETCH 3 (RFC822 RFC822.HEADER RFC822.TEXT INTERNALDATE BODYSTRUCTURE BODY)\r\n",
     Fetch("a", S(((3, 3),)), tuple(FetchAttr(n) for n in (
         "RFC822", "RFC822.HEADER", "RFC822.TEXT", "INTERNALDATE", "BODYSTRUCTURE", "BODY")))),
    (b"a FETCH 1 BODY[]\r\n", Fetch("a", S(((1, 1),)), (FetchAttr("BODY", Section()),))),
    (b"a FETCH 1 (BODY.PEEK[HEADER] BODY[TEXT]<0.2048>)\r\n",
     Fetch("a", S(((1, 1),)), (FetchAttr("BODY", Section((), "HEADER"), peek=True),
                               FetchAttr("BODY", Section((), "TEXT"), (0, 2048))))),
    (b"a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From To \"Subject\")])\r\n",
     Fetch("a", S(((1, 1),)), (FetchAttr("BODY", Section((), "HEADER.FIELDS",
                                                         ("From", "To", "Subject")), peek=True),))),
    (b"a FETCH 1 BODY[HEADER.FIELDS.NOT (X-Spam)]\r\n",
     Fetch("a", S(((1, 1),)), (FetchAttr("BODY", Section((), "HEADER.FIELDS.NOT", ("X-Spam",))),))),
    (b"a FETCH 1 (BODY[1.2.3] BODY[2.MIME] BODY[1.HEADER] BODY[4.2.TEXT]<10.5>)\r\n",
     Fetch("a", S(((1, 1),)), (FetchAttr("BODY", Section((1, 2, 3))),
                               FetchAttr("BODY", Section((2,), "MIME")),
                               FetchAttr("BODY", Section((1,), "HEADER")),
                               FetchAttr("BODY", Section((4, 2), "TEXT"), (10, 5))))),
    (b"a UID FETCH 100:* (FLAGS)\r\n", Fetch("a", S(((100, None),)), (FLAGS, UID), uid=True)),
    (b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n",
     Fetch("a", S(((1, None),)), (FLAGS, UID, MODSEQ), uid=True, changed_since=12345)),
    (b"a FETCH 1 (MODSEQ UID)\r\n", Fetch("a", S(((1, 1),)), (MODSEQ, UID))),
    (b"a SEARCH ALL\r\n", Search("a", SearchAll())),
    (b"a UID SEARCH UNSEEN\r\n", Search("a", SearchFlag("\\Seen", False), uid=True)),
    (b"a SEARCH CHARSET UTF-8 SUBJECT {5}\r\n\xc3\xa9t\xc3\xa9\r\n",
     Search("a", SearchHeader("Subject", "été"), charset="UTF-8")),
    (b'a SEARCH charset "us-ascii" TEXT hello\r\n', Search("a", SearchText("hello"), "US-ASCII")),
    (b"a SEARCH ANSWERED UNANSWERED DELETED UNDELETED DRAFT UNDRAFT FLAGGED UNFLAGGED "
     b"SEEN UNSEEN RECENT OLD NEW\r\n",
     Search("a", SearchAnd((
         SearchFlag("\\Answered"), SearchFlag("\\Answered", False),
         SearchFlag("\\Deleted"), SearchFlag("\\Deleted", False),
         SearchFlag("\\Draft"), SearchFlag("\\Draft", False),
         SearchFlag("\\Flagged"), SearchFlag("\\Flagged", False),
         SearchFlag("\\Seen"), SearchFlag("\\Seen", False),
         SearchFlag("\\Recent"), SearchFlag("\\Recent", False),
         SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False))))))),
    (b'a SEARCH KEYWORD $Junk UNKEYWORD $Forwarded FROM bob TO "a b" CC c BCC d BODY e\r\n',
     Search("a", SearchAnd((SearchFlag("$Junk"), SearchFlag("$Forwarded", False),
                            SearchHeader("From", "bob"), SearchHeader("To", "a b"),
                            SearchHeader("Cc", "c"), SearchHeader("Bcc", "d"),
                            SearchBody("e"))))),
    (b'a SEARCH HEADER Message-ID "<x@y>" HEADER X-Flag ""\r\n',
     Search("a", SearchAnd((SearchHeader("Message-ID", "<x@y>"), SearchHeader("X-Flag", ""))))),
    (b'a SEARCH BEFORE 1-Feb-2024 ON "01-feb-2024" SINCE 31-Dec-1999\r\n',
     Search("a", SearchAnd((SearchDate(DateRelation.BEFORE, dt.date(2024, 2, 1)),
                            SearchDate(DateRelation.ON, dt.date(2024, 2, 1)),
                            SearchDate(DateRelation.SINCE, dt.date(1999, 12, 31)))))),
    (b"a SEARCH SENTBEFORE 1-Jan-2020 SENTON 2-Jan-2020 SENTSINCE 3-Jan-2020\r\n",
     Search("a", SearchAnd((SearchDate(DateRelation.BEFORE, dt.date(2020, 1, 1), True),
                            SearchDate(DateRelation.ON, dt.date(2020, 1, 2), True),
                            SearchDate(DateRelation.SINCE, dt.date(2020, 1, 3), True))))),
    (b"a SEARCH LARGER 1000 SMALLER 5000\r\n",
     Search("a", SearchAnd((SearchSize(True, 1000), SearchSize(False, 5000))))),
    (b"a SEARCH 1:5,7 UID 10:*\r\n",
     Search("a", SearchAnd((SearchSequence(S(((1, 5), (7, 7)))),
                            SearchSequence(S(((10, None),)), uid=True))))),
    (b"a SEARCH NOT (OR SEEN (FLAGGED DRAFT)) OR NOT FROM x OR TO y CC z\r\n",
     Search("a", SearchAnd((
         SearchNot(SearchAnd((SearchOr(SearchFlag("\\Seen"),
                                       SearchAnd((SearchFlag("\\Flagged"),
                                                  SearchFlag("\\Draft")))),))),
         SearchOr(SearchNot(SearchHeader("From", "x")),
                  SearchOr(SearchHeader("To", "y"), SearchHeader("Cc", "z"))))))),
    (b"a SEARCH MODSEQ 620162338\r\n", Search("a", SearchModSeq(620162338))),
    (b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338\r\n',
     Search("a", SearchModSeq(620162338, "/flags/\\draft", "all"))),
    (b"a SEARCH RETURN (MIN MAX COUNT) UNSEEN\r\n",
     Search("a", SearchFlag("\\Seen", False), returns=frozenset({"MIN", "MAX", "COUNT"}))),
    (b"a UID SEARCH RETURN () CHARSET UTF-8 ALL\r\n",
     Search("a", SearchAll(), "UTF-8", True, frozenset({"ALL"}))),
]


@pytest.mark.parametrize(("wire", "expected"), CASES, ids=[c[0][:48].decode("latin-1")
                                                          for c in CASES])
def test_command_parses_to_typed_object(wire: bytes, expected: Command) -> None:
    """Each wire command yields exactly its typed command, however the bytes are split."""
    events = [e for e in events_every_split(wire) if not isinstance(e, NeedsContinuation)]
    assert events == [expected]


def test_pipelined_commands_come_out_in_order() -> None:
    """Several commands in one read come out one by one, in order."""
    wire = b"".join(w for w, _ in CASES[:10])
    events = [e for e in events_every_split(wire) if not isinstance(e, NeedsContinuation)]
    assert events == [e for _, e in CASES[:10]]


def test_fetch_response_names() -> None:
    """FetchAttr.response_name drops PEEK and keeps only the partial origin (RFC 3501 §7.4.2)."""
    attr = FetchAttr("BODY", Section((1,), "HEADER.FIELDS", ("From", "To")), (0, 10), peek=True)
    assert attr.response_name() == "BODY[1.HEADER.FIELDS (From To)]<0>"
    assert FetchAttr("BODY", Section()).response_name() == "BODY[]"
    assert FetchAttr("RFC822.SIZE").response_name() == "RFC822.SIZE"
