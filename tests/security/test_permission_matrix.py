"""Issue 10 §5: who may do what with a shared mailbox, as ONE table.

``MATRIX`` states, for every combination of grants that delegate ``bob.<row>`` holds on
the shared mailbox hr@example.test, the outcome of every operation (``OPS``): IMAP
delegate logins, the ``Shared/`` namespace, SMTP submission as hr and on behalf of hr,
CalDAV on hr's calendar, and free/busy. The tests are generated from it (rows x
operations) and run over real sockets against one daemon per module: every row has its
own delegate user, so rows do not disturb each other.

Expected outcomes follow mission-semantics §1.1 and §6 (Full Access alone never sends;
Send As and Send on Behalf are independent and neither reads; Send As wins when both are
held; free/busy is open to every internal user) and README "Reading mail: IMAP" (a
revoked grant takes effect on the session's next command: a delegate session gets
``* BYE``, a selected ``Shared/`` folder is closed with ``* OK [CLOSED]`` and
selected-state commands get ``NO [NOPERM]``).
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import enum
import itertools
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from auth.passwords import PasswordHasher
from mailserver import config as cfg
from mailserver.daemon import Daemon
from storage.types import Account, BusyInterval, LocalRecipient, Right
from tests.conftest import RunningServer
from tests.helpers import CertAuthority, throwaway_config_values, write_config
from tests.smtp.client import RawSmtp

PASSWORD = "matrix password 9"
DOMAIN = "example.test"
HR = f"hr@{DOMAIN}"
SINK = f"sink@{DOMAIN}"
SHARED_INBOX = f"Shared/{HR}/INBOX"
#: The seeded event in hr's calendar: its summary must never leak to free/busy readers.
SECRET_SUMMARY = "Salary review (confidential)"
SECRET_HREF = "hr-secret.ics"
SEND_AS_DENIED = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
IMAP_AUTH_FAILED = "NO [AUTHENTICATIONFAILED] Authentication failed."

FA, SA, SOB = Right.FULL_ACCESS, Right.SEND_AS, Right.SEND_ON_BEHALF


class Outcome(enum.Enum):
    """What an operation does; each operation below checks its own evidence of it."""

    OK = "ok"  # allowed, and its effect is there (read data, changed store)
    DENIED = "denied"  # refused; nothing of hr's is shown and nothing is changed
    SEND_AS = "send as"  # accepted; arrives From: hr with no Sender: (mission-semantics §1.2)
    ON_BEHALF = "on behalf"  # accepted; arrives From: hr with Sender: the delegate
    REVOKED = "revoked"  # works in a session, refused by its next command once revoked


OK, NO, AS, OBO, REV = Outcome.OK, Outcome.DENIED, Outcome.SEND_AS, Outcome.ON_BEHALF, Outcome.REVOKED

# fmt: off
#: The operations, in the column order of MATRIX.
OPS = (
    "imap_login_delegate",  # LOGIN bob\hr@example.test: the session *is* hr
    "imap_login_authzid",   # AUTHENTICATE PLAIN, authzid hr@example.test
    "imap_list",            # LIST "" "Shared/*" shows hr's folders
    "imap_status",          # STATUS Shared/hr@example.test/INBOX
    "imap_select",          # SELECT Shared/hr@example.test/INBOX
    "imap_fetch",           # UID FETCH of a message in hr's INBOX
    "imap_store",           # UID STORE +FLAGS on it
    "imap_expunge",         # \Deleted + UID EXPUNGE / EXPUNGE
    "imap_append",          # APPEND into hr's INBOX
    "imap_copy",            # UID COPY from bob's INBOX into hr's INBOX
    "imap_create_delete",   # CREATE / DELETE a folder of hr
    "smtp_from",            # MAIL FROM:<hr>, From: hr
    "smtp_sender",          # MAIL FROM:<bob>, From: hr, Sender: bob
    "smtp_delegate",        # AUTH PLAIN as bob\hr (needs Full Access), then From: hr
    "dav_read",             # PROPFIND, calendar-query REPORT, GET of hr's calendar
    "dav_write",            # PUT and DELETE in hr's calendar
    "freebusy_vfb",         # GET /freebusy/hr@example.test.vfb
    "freebusy_report",      # CalDAV free-busy-query REPORT on hr's calendar
)

#: Row name -> (grants bob.<row> holds on hr, one outcome per OPS column).
#: "revoked": all three granted, then revoked through AccountService mid-session.
MATRIX: dict[str, tuple[frozenset[Right], tuple[Outcome, ...]]] = {
    #                                    login authz list  stat  sel   fetch store expu  appe  copy  mkdir from  sendr deleg dav_r dav_w vfb   fbrep
    "none":    (frozenset(),              (NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   OK,   OK)),
    "fa":      (frozenset({FA}),          (OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   NO,   NO,   NO,   OK,   OK,   OK,   OK)),
    "sa":      (frozenset({SA}),          (NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   AS,   AS,   NO,   NO,   NO,   OK,   OK)),
    "sob":     (frozenset({SOB}),         (NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   OBO,  OBO,  NO,   NO,   NO,   OK,   OK)),
    "fa_sa":   (frozenset({FA, SA}),      (OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   AS,   AS,   AS,   OK,   OK,   OK,   OK)),
    "fa_sob":  (frozenset({FA, SOB}),     (OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OBO,  OBO,  OBO,  OK,   OK,   OK,   OK)),
    "sa_sob":  (frozenset({SA, SOB}),     (NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   NO,   AS,   AS,   NO,   NO,   NO,   OK,   OK)),
    "all":     (frozenset({FA, SA, SOB}), (OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   OK,   AS,   AS,   AS,   OK,   OK,   OK,   OK)),
    "revoked": (frozenset({FA, SA, SOB}), (REV,  REV,  REV,  REV,  REV,  REV,  REV,  REV,  REV,  REV,  REV,  REV,  REV,  REV,  REV,  REV,  OK,   OK)),
}
# fmt: on

#: The row whose outcomes a "revoked" session sees before the revocation.
BEFORE_REVOKE = "all"


def user_of(row: str) -> str:
    return f"bob.{row}@{DOMAIN}"


def test_matrix_is_complete() -> None:
    """Every row states one outcome for every operation, and every operation is implemented."""
    for row, (_, outcomes) in MATRIX.items():
        assert len(outcomes) == len(OPS), row
    assert set(OPS) == set(OPERATIONS)


# ----------------------------------------------------------------------------- daemon


@asynccontextmanager
async def running_server(folder: Path, ca: CertAuthority, **overrides: Any) -> AsyncIterator[RunningServer]:
    """The real daemon (as tests/conftest.py ``server``), for module-scoped fixtures."""
    values = throwaway_config_values(folder, **overrides)
    values.setdefault("tls.cert_file", str(ca.cert_file))
    values.setdefault("tls.key_file", str(ca.key_file))
    config = cfg.load(write_config(folder / "config.toml", values))
    daemon = Daemon(config, hasher=PasswordHasher(fast=True))
    app = await daemon.start()
    try:
        yield RunningServer(daemon, app, ca)
    finally:
        await daemon.stop()


@dataclass
class Env:
    server: RunningServer
    hr: Account
    sink: Account
    users: dict[str, Account]  # by address
    event_start: datetime
    counter: itertools.count[int]

    def unique(self, what: str) -> str:
        return f"{what}-{next(self.counter)}"

    async def seed(self, account: Account, subject: str) -> int:
        """Deliver a message to ``account``'s INBOX; return its UID."""
        result = await self.server.store.mail.deliver(mail(subject), [LocalRecipient(account.id, "INBOX")])
        return result.uids[(account.id, "INBOX")]

    async def seed_hr(self, subject: str) -> int:
        return await self.seed(self.hr, subject)

    async def hr_messages(self, folder: str = "INBOX") -> dict[int, tuple[frozenset[str], str]]:
        """hr's messages in ``folder``: UID -> (flags, Subject)."""
        store = self.server.store.mail
        f = await store.get_folder(self.hr.id, folder)
        assert f is not None
        out = {}
        for m in await store.list_messages(f.id):
            msg = email.message_from_bytes(await store.get_body(m.blob_id), policy=email.policy.default)
            out[m.uid] = (frozenset(m.flags), str(msg["Subject"]))
        return out

    async def hr_subjects(self) -> set[str]:
        return {s for _, s in (await self.hr_messages()).values()}

    async def sink_message(self, subject: str) -> EmailMessage | None:
        store = self.server.store.mail
        f = await store.get_folder(self.sink.id, "INBOX")
        assert f is not None
        for m in await store.list_messages(f.id):
            msg = email.message_from_bytes(await store.get_body(m.blob_id), policy=email.policy.default)
            if msg["Subject"] == subject:
                assert isinstance(msg, EmailMessage)
                return msg
        return None

    async def hr_calendar(self) -> int:
        collection = await self.server.store.calendars.get_collection(self.hr.id, "calendar")
        assert collection is not None
        return collection.id

    async def hr_event_hrefs(self) -> set[str]:
        return {i.href for i in await self.server.store.calendars.list_items(await self.hr_calendar())}

    async def seed_event(self, href: str, summary: str) -> None:
        uid = href.removesuffix(".ics")
        busy = [BusyInterval(self.event_start, self.event_start + timedelta(hours=1), uid)]
        await self.server.store.calendars.put_item(
            await self.hr_calendar(), href, uid, event_ics(uid, self.event_start, summary), busy
        )

    async def revoke_all(self, user: str) -> None:
        await self.server.accounts.revoke(HR, user, [FA, SA, SOB])


def mail(subject: str, frm: str = "Zed <zed@remote.test>", extra: str = "") -> bytes:
    return (
        f"From: {frm}\r\nTo: {HR}\r\nSubject: {subject}\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
        f"Message-ID: <{subject}@remote.test>\r\n{extra}\r\nBody of {subject}.\r\n"
    ).encode()


def event_ics(uid: str, start: datetime, summary: str) -> str:
    end = start + timedelta(hours=1)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//matrix//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
        f"DTEND:{end:%Y%m%dT%H%M%SZ}\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority) -> AsyncIterator[Env]:
    """One daemon for the whole matrix: hr, a sink user, and bob.<row> with the row's grants."""
    # Refused logins are part of the matrix: keep the failure throttle out of the way.
    async with running_server(tmp_path_factory.mktemp("matrix"), test_ca, auth__max_failures=100_000) as server:
        accounts = server.accounts
        hr = await accounts.add_shared(HR, "Human Resources")
        sink = await accounts.add_user(SINK, "Sink", PASSWORD)
        users = {}
        for row, (grants, _) in MATRIX.items():
            users[user_of(row)] = await accounts.add_user(user_of(row), f"Bob {row}", PASSWORD)
            if grants:
                await accounts.grant(HR, user_of(row), grants)
        await server.store.calendars.ensure_default_collections(hr.id)
        start = (datetime.now(UTC) + timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
        e = Env(server, hr, sink, users, start, itertools.count(1))
        await e.seed_event(SECRET_HREF, SECRET_SUMMARY)
        yield e


# ----------------------------------------------------------------------------- clients


class Imap:
    """A line-level async IMAP client (literals stay inline: ``{n}`` then the data lines)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._n = 0

    @classmethod
    async def connect(cls, port: int) -> Imap:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        greeting = await client.line()
        assert greeting is not None and greeting.startswith("* OK"), greeting
        return client

    async def line(self) -> str | None:
        """One line without CRLF; None once the server closed the connection."""
        data = await asyncio.wait_for(self.reader.readline(), 10)
        return data.decode("utf-8", "replace").rstrip("\r\n") if data else None

    async def cmd(self, text: str | bytes) -> list[str]:
        """Send ``tag text``; every line up to the tagged one, or up to the close."""
        self._n += 1
        tag = f"t{self._n}"
        data = text.encode() if isinstance(text, str) else text
        self.writer.write(tag.encode() + b" " + data + b"\r\n")
        await self.writer.drain()
        out = []
        while (line := await self.line()) is not None:
            out.append(line)
            if line.startswith(tag + " "):
                return out
        out.append("<closed>")
        return out

    async def login(self, user: str, password: str = PASSWORD) -> list[str]:
        return await self.cmd(f'LOGIN "{quote(user)}" "{quote(password)}"')

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


def quote(text: str) -> str:
    """An IMAP quoted-string body (RFC 3501 §4.3: backslash and quote are escaped)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def tagged(lines: list[str]) -> str:
    """The tagged line's status and text (``OK [...] ...``), without the tag."""
    return lines[-1].split(" ", 1)[1] if lines and lines[-1] != "<closed>" else "<closed>"


@asynccontextmanager
async def imap_session(env: Env, user: str | None = None) -> AsyncIterator[Imap]:
    """An IMAP connection, logged in as ``user`` (own mailbox) when given."""
    client = await Imap.connect(env.server.port("imap"))
    try:
        if user is not None:
            lines = await client.login(user)
            assert tagged(lines).startswith("OK"), lines
        yield client
    finally:
        await client.close()


async def http(env: Env, method: str, path: str, user: str, body: bytes = b"",
               headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One request to the daemon's HTTP listener with Basic auth: (status, body text)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", env.server.port("http"))
    token = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    head = {"Host": "mail.example.test", "Authorization": f"Basic {token}",
            "Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    writer.write(f"{method} {path} HTTP/1.1\r\n".encode()
                 + "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode() + b"\r\n" + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), payload.decode("utf-8", "replace")


CALENDAR = f"/dav/{HR}/calendar/"
REFUSED_HTTP = (403, 404)


# ----------------------------------------------------------------------------- operations
#
# Each operation: ``session(env, user)`` opens what a client keeps open (a connection,
# or nothing for HTTP, whose every request authenticates anew); ``attempt(env, s, user,
# outcome)`` runs it once and asserts ``outcome``; ``after_revoke(env, s, user)`` runs
# it again in the same session once the grants were revoked and asserts the refusal.


@dataclass
class Session:
    imap: Imap | None = None
    smtp: RawSmtp | None = None
    state: dict[str, Any] | None = None


class Operation:
    @asynccontextmanager
    async def session(self, env: Env, user: str) -> AsyncIterator[Session]:
        yield Session(state={})

    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        raise NotImplementedError

    async def after_revoke(self, env: Env, s: Session, user: str) -> None:
        await self.attempt(env, s, user, NO)


class ImapOwnSession(Operation):
    """Operations inside the user's own IMAP session (the Shared/ namespace)."""

    @asynccontextmanager
    async def session(self, env: Env, user: str) -> AsyncIterator[Session]:
        async with imap_session(env, user) as client:
            yield Session(imap=client, state={})


class DelegateLogin(Operation):
    """LOGIN user\\hr (or AUTHENTICATE PLAIN with authzid hr): the session opens hr's INBOX."""

    def __init__(self, authzid: bool) -> None:
        self.authzid = authzid

    @asynccontextmanager
    async def session(self, env: Env, user: str) -> AsyncIterator[Session]:
        async with imap_session(env) as client:
            yield Session(imap=client, state={})

    async def _login(self, client: Imap, user: str) -> list[str]:
        if self.authzid:
            token = base64.b64encode(f"{HR}\0{user}\0{PASSWORD}".encode()).decode()
            return await client.cmd(f"AUTHENTICATE PLAIN {token}")
        return await client.login(f"{user}\\{HR}")

    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        assert s.imap is not None
        subject = env.unique("delegate-marker")
        uid = await env.seed_hr(subject)
        lines = await self._login(s.imap, user)
        if outcome is NO:
            assert lines == [lines[-1]] and tagged(lines) == IMAP_AUTH_FAILED, lines
            return
        assert tagged(lines).startswith("OK"), lines
        selected = await s.imap.cmd("SELECT INBOX")
        assert tagged(selected).startswith("OK [READ-WRITE]"), selected
        fetched = await s.imap.cmd(f"UID FETCH {uid} (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert any(subject in line for line in fetched), fetched  # hr's INBOX, not the user's

    async def after_revoke(self, env: Env, s: Session, user: str) -> None:
        assert s.imap is not None
        lines = await s.imap.cmd("NOOP")
        assert lines == ["* BYE Access to this mailbox was revoked", "<closed>"], lines
        async with imap_session(env) as fresh:  # and a new login is refused
            relogin = await self._login(fresh, user)
            assert tagged(relogin) == IMAP_AUTH_FAILED, relogin


class ImapList(ImapOwnSession):
    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        assert s.imap is not None
        lines = await s.imap.cmd('LIST "" "Shared/*"')
        assert tagged(lines).startswith("OK"), lines
        shown = [line for line in lines if HR in line]
        if outcome is NO:
            assert shown == [], lines
        else:
            names = [line.rsplit(" ", 1)[1].strip('"') for line in shown if line.startswith("* LIST")]
            assert SHARED_INBOX in names, lines


class ImapStatus(ImapOwnSession):
    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        assert s.imap is not None
        lines = await s.imap.cmd(f'STATUS "{SHARED_INBOX}" (MESSAGES UIDNEXT)')
        if outcome is NO:
            assert lines == [lines[-1]] and tagged(lines) == "NO [NONEXISTENT] No such mailbox", lines
        else:
            count = len(await env.hr_messages())
            assert any(line.startswith("* STATUS") and f"MESSAGES {count}" in line for line in lines), lines
            assert tagged(lines).startswith("OK"), lines


class ImapSelect(ImapOwnSession):
    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        assert s.imap is not None
        lines = await s.imap.cmd(f'SELECT "{SHARED_INBOX}"')
        if outcome is NO:
            assert lines == [lines[-1]] and tagged(lines) == "NO [NONEXISTENT] No such mailbox", lines
        else:
            count = len(await env.hr_messages())
            assert f"* {count} EXISTS" in lines and tagged(lines).startswith("OK [READ-WRITE]"), lines

    async def after_revoke(self, env: Env, s: Session, user: str) -> None:
        assert s.imap is not None
        lines = await s.imap.cmd(f'SELECT "{SHARED_INBOX}"')
        assert lines[0].startswith("* OK [CLOSED]"), lines
        assert tagged(lines) == "NO [NONEXISTENT] No such mailbox", lines
        assert not any("EXISTS" in line for line in lines), lines


class SelectedHr(ImapOwnSession):
    """Commands on a message of hr's INBOX, which the session must SELECT first."""

    async def select(self, env: Env, s: Session, outcome: Outcome) -> bool:
        assert s.imap is not None
        lines = await s.imap.cmd(f'SELECT "{SHARED_INBOX}"')
        if outcome is NO:
            assert tagged(lines) == "NO [NONEXISTENT] No such mailbox", lines
            return False
        assert tagged(lines).startswith("OK [READ-WRITE]"), lines
        return True

    @staticmethod
    def refused_selected(lines: list[str]) -> None:
        """A selected-state command refused because nothing (or nothing of hr) is selected."""
        assert tagged(lines).startswith(("BAD", "NO")), lines

    @staticmethod
    def revoked(lines: list[str]) -> None:
        """README: the selected folder is closed and the command gets NO [NOPERM]."""
        assert lines[0].startswith("* OK [CLOSED]"), lines
        assert tagged(lines).startswith("NO [NOPERM]"), lines


class ImapFetch(SelectedHr):
    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        assert s.imap is not None and s.state is not None
        subject = env.unique("fetch")
        uid = await env.seed_hr(subject)
        s.state["uid"] = uid
        selected = await self.select(env, s, outcome)
        lines = await s.imap.cmd(f"UID FETCH {uid} (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        if not selected:
            self.refused_selected(lines)
            assert not any(subject in line for line in lines), lines
        else:
            assert any(subject in line for line in lines) and tagged(lines).startswith("OK"), lines

    async def after_revoke(self, env: Env, s: Session, user: str) -> None:
        assert s.imap is not None and s.state is not None
        subject = env.unique("fetch-after")
        uid = await env.seed_hr(subject)
        lines = await s.imap.cmd(f"UID FETCH {s.state['uid']},{uid} (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.revoked(lines)
        assert not any("fetch" in line for line in lines[1:-1]), lines


class ImapStore(SelectedHr):
    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        assert s.imap is not None and s.state is not None
        uid = await env.seed_hr(env.unique("store"))
        s.state["uid"] = uid
        selected = await self.select(env, s, outcome)
        lines = await s.imap.cmd(f"UID STORE {uid} +FLAGS (\\Flagged)")
        flags = (await env.hr_messages())[uid][0]
        if not selected:
            self.refused_selected(lines)
            assert "\\Flagged" not in flags
        else:
            assert tagged(lines).startswith("OK") and "\\Flagged" in flags, lines

    async def after_revoke(self, env: Env, s: Session, user: str) -> None:
        assert s.imap is not None and s.state is not None
        uid = s.state["uid"]
        lines = await s.imap.cmd(f"UID STORE {uid} +FLAGS (\\Answered)")
        self.revoked(lines)
        assert "\\Answered" not in (await env.hr_messages())[uid][0]


class ImapExpunge(SelectedHr):
    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        assert s.imap is not None and s.state is not None
        first = await env.seed_hr(env.unique("expunge"))
        second = await env.seed_hr(env.unique("expunge"))
        s.state["second"] = second
        selected = await self.select(env, s, outcome)
        marked = await s.imap.cmd(f"UID STORE {first},{second} +FLAGS.SILENT (\\Deleted)")
        lines = await s.imap.cmd(f"UID EXPUNGE {first}")
        left = await env.hr_messages()
        if not selected:
            self.refused_selected(marked)
            self.refused_selected(lines)
            assert first in left and "\\Deleted" not in left[first][0]
        else:
            assert tagged(lines).startswith("OK") and first not in left and second in left, lines

    async def after_revoke(self, env: Env, s: Session, user: str) -> None:
        assert s.imap is not None and s.state is not None
        lines = await s.imap.cmd("EXPUNGE")
        self.revoked(lines)
        assert s.state["second"] in await env.hr_messages()  # still there, \Deleted and all


class ImapAppend(ImapOwnSession):
    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        assert s.imap is not None
        subject = env.unique("append")
        raw = mail(subject)
        lines = await s.imap.cmd(f'APPEND "{SHARED_INBOX}" {{{len(raw)}+}}\r\n'.encode() + raw)
        if outcome is NO:
            assert tagged(lines) == "NO [NONEXISTENT] No such mailbox", lines
            assert subject not in await env.hr_subjects()
        else:
            assert tagged(lines).startswith("OK [APPENDUID"), lines
            assert subject in await env.hr_subjects()


class ImapCopy(ImapOwnSession):
    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        assert s.imap is not None and s.state is not None
        subject = env.unique("copy")
        uid = await env.seed(env.users[user], subject)
        if not s.state.get("selected"):
            assert tagged(await s.imap.cmd("SELECT INBOX")).startswith("OK")
            s.state["selected"] = True
        else:
            await s.imap.cmd("NOOP")
        lines = await s.imap.cmd(f'UID COPY {uid} "{SHARED_INBOX}"')
        if outcome is NO:
            assert tagged(lines).startswith("NO"), lines
            assert subject not in await env.hr_subjects()
        else:
            assert tagged(lines).startswith("OK [COPYUID"), lines
            assert subject in await env.hr_subjects()


class ImapCreateDelete(ImapOwnSession):
    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        assert s.imap is not None
        name = env.unique("Folder")
        created = await s.imap.cmd(f'CREATE "Shared/{HR}/{name}"')
        exists = await env.server.store.mail.get_folder(env.hr.id, name) is not None
        if outcome is NO:
            assert tagged(created).startswith("NO") and not exists, created
            archive = await s.imap.cmd(f'DELETE "Shared/{HR}/Archive"')
            assert tagged(archive).startswith("NO"), archive
            assert await env.server.store.mail.get_folder(env.hr.id, "Archive") is not None
            return
        assert tagged(created).startswith("OK") and exists, created
        deleted = await s.imap.cmd(f'DELETE "Shared/{HR}/{name}"')
        assert tagged(deleted).startswith("OK"), deleted
        assert await env.server.store.mail.get_folder(env.hr.id, name) is None


class SmtpSend(Operation):
    """Submission as the user (AUTH PLAIN on the submission listener), sending as hr."""

    def __init__(self, with_sender: bool, delegate: bool = False) -> None:
        self.with_sender = with_sender
        self.delegate = delegate  # log in as user\hr: a delegate session that *is* hr

    @asynccontextmanager
    async def session(self, env: Env, user: str) -> AsyncIterator[Session]:
        client = await RawSmtp.connect(env.server.port("submission"))
        try:
            await client.ehlo()
            code, text = await client.login(f"{user}\\{HR}" if self.delegate else user, PASSWORD)
            assert code == 235 or (self.delegate and code == 535), text
            yield Session(smtp=client, state={"auth": f"{code} {text}"})
        finally:
            await client.close()

    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        assert s.smtp is not None and s.state is not None
        if not s.state["auth"].startswith("235"):  # no Full Access: the delegate login is refused
            assert outcome is NO and s.state["auth"] == "535 5.7.8 Authentication credentials invalid"
            return
        subject = env.unique("smtp")
        extra = f"Sender: Bob <{user}>\r\n" if self.with_sender else ""
        message = mail(subject, frm=f"Human Resources <{HR}>", extra=extra).replace(
            f"To: {HR}".encode(), f"To: {SINK}".encode())
        envelope_from = user if self.with_sender else HR
        code, text = await s.smtp.send_mail(envelope_from, [SINK], message)
        delivered = await env.sink_message(subject)
        if outcome is NO:
            assert f"{code} {text}" == SEND_AS_DENIED, (code, text)
            assert delivered is None
            await s.smtp.cmd("RSET")
            return
        assert code == 250, (code, text)
        assert delivered is not None and delivered["From"].addresses[0].addr_spec == HR
        senders = delivered.get_all("Sender") or []
        if outcome is AS:
            assert senders == [], senders  # Send As: no trace of the delegate
        else:
            assert outcome is OBO
            assert [a.addr_spec for h in senders for a in h.addresses] == [user], senders


class DavRead(Operation):
    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        propfind = await http(env, "PROPFIND", CALENDAR, user, b"", {"Depth": "1"})
        query = (
            b'<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            b'<D:prop><C:calendar-data/></D:prop><C:filter><C:comp-filter name="VCALENDAR"/></C:filter>'
            b"</C:calendar-query>"
        )
        report = await http(env, "REPORT", CALENDAR, user, query,
                            {"Depth": "1", "Content-Type": "application/xml"})
        get = await http(env, "GET", CALENDAR + SECRET_HREF, user)
        answers = (propfind, report, get)
        if outcome is NO:
            assert all(status in REFUSED_HTTP for status, _ in answers), answers
            assert not any(SECRET_SUMMARY in body or SECRET_HREF in body for _, body in answers), answers
            return
        assert propfind[0] == 207 and SECRET_HREF in propfind[1], propfind
        assert report[0] == 207 and SECRET_SUMMARY in report[1], report
        assert get[0] == 200 and SECRET_SUMMARY in get[1], get


class DavWrite(Operation):
    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        href = env.unique("dav-write") + ".ics"
        victim = env.unique("dav-victim") + ".ics"
        await env.seed_event(victim, "Victim")
        put = await http(env, "PUT", CALENDAR + href, user,
                         event_ics(href[:-4], env.event_start + timedelta(days=1), "Written").encode(),
                         {"Content-Type": "text/calendar; charset=utf-8"})
        delete = await http(env, "DELETE", CALENDAR + victim, user)
        hrefs = await env.hr_event_hrefs()
        if outcome is NO:
            assert put[0] in REFUSED_HTTP and delete[0] in REFUSED_HTTP, (put, delete)
            assert href not in hrefs and victim in hrefs
        else:
            assert put[0] in (201, 204) and delete[0] in (200, 204), (put, delete)
            assert href in hrefs and victim not in hrefs


def _periods(text: str) -> str:
    return text.replace("\r\n ", "")  # unfold (RFC 5545 §3.1)


class FreeBusyVfb(Operation):
    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        status, body = await http(env, "GET", f"/freebusy/{HR}.vfb", user)
        if outcome is NO:
            assert status in (401, 403, 404), (status, body)
            return
        assert status == 200 and "BEGIN:VFREEBUSY" in body, (status, body)
        assert f"{env.event_start:%Y%m%dT%H%M%SZ}" in _periods(body), body
        assert SECRET_SUMMARY not in body


class FreeBusyReport(Operation):
    async def attempt(self, env: Env, s: Session, user: str, outcome: Outcome) -> None:
        start, end = env.event_start - timedelta(days=1), env.event_start + timedelta(days=1)
        query = (
            '<?xml version="1.0"?><C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f'<C:time-range start="{start:%Y%m%dT%H%M%SZ}" end="{end:%Y%m%dT%H%M%SZ}"/>'
            "</C:free-busy-query>"
        ).encode()
        status, body = await http(env, "REPORT", CALENDAR, user, query,
                                  {"Depth": "1", "Content-Type": "application/xml"})
        if outcome is NO:
            assert status in REFUSED_HTTP, (status, body)
            return
        assert status == 200 and "BEGIN:VFREEBUSY" in body, (status, body)
        assert f"{env.event_start:%Y%m%dT%H%M%SZ}" in _periods(body), body
        assert SECRET_SUMMARY not in body and "SUMMARY" not in body


OPERATIONS: dict[str, Operation] = {
    "imap_login_delegate": DelegateLogin(authzid=False),
    "imap_login_authzid": DelegateLogin(authzid=True),
    "imap_list": ImapList(),
    "imap_status": ImapStatus(),
    "imap_select": ImapSelect(),
    "imap_fetch": ImapFetch(),
    "imap_store": ImapStore(),
    "imap_expunge": ImapExpunge(),
    "imap_append": ImapAppend(),
    "imap_copy": ImapCopy(),
    "imap_create_delete": ImapCreateDelete(),
    "smtp_from": SmtpSend(with_sender=False),
    "smtp_sender": SmtpSend(with_sender=True),
    "smtp_delegate": SmtpSend(with_sender=False, delegate=True),
    "dav_read": DavRead(),
    "dav_write": DavWrite(),
    "freebusy_vfb": FreeBusyVfb(),
    "freebusy_report": FreeBusyReport(),
}


def _cases() -> list[Any]:
    return [
        pytest.param(row, op, outcomes[i], id=f"{row}-{op}")
        for row, (_, outcomes) in MATRIX.items()
        for i, op in enumerate(OPS)
    ]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("row", "op", "outcome"), _cases())
async def test_permission(env: Env, row: str, op: str, outcome: Outcome) -> None:
    """The outcome of operation ``op`` for a delegate holding row ``row``'s grants on hr is MATRIX's."""
    operation = OPERATIONS[op]
    user = user_of(row)
    if row != "revoked":
        async with operation.session(env, user) as s:
            await operation.attempt(env, s, user, outcome)
        return
    grants, before = MATRIX[BEFORE_REVOKE][0], MATRIX[BEFORE_REVOKE][1][OPS.index(op)]
    await env.server.accounts.grant(HR, user, grants)
    async with operation.session(env, user) as s:
        await operation.attempt(env, s, user, before)
        await env.revoke_all(user)
        if outcome is REV:
            await operation.after_revoke(env, s, user)
        else:
            await operation.attempt(env, s, user, outcome)

