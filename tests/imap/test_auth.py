"""IMAP login, TLS and capability behaviour through the running server."""

from __future__ import annotations

import base64
import imaplib
import ssl
from typing import Any

import pytest

from storage.types import Right
from tests.imap.conftest import ALICE, HR, PASSWORD, ImapEnv, Raw

FAILED = b"NO [AUTHENTICATIONFAILED] Authentication failed."


async def test_greeting_advertises_auth_on_loopback(imap: ImapEnv) -> None:
    """Before login on loopback (plaintext allowed) the greeting offers STARTTLS and AUTH=PLAIN."""
    def go() -> bytes:
        r = Raw(imap.port)
        r.close()
        return r.greeting
    greeting = await imap.run(go)
    assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    assert b" STARTTLS" in greeting and b" AUTH=PLAIN" in greeting and b"LOGINDISABLED" not in greeting


@pytest.mark.config(auth__allow_plaintext_on_loopback=False)
async def test_logindisabled_before_tls(imap: ImapEnv) -> None:
    """Without TLS (and plaintext not allowed) CAPABILITY says LOGINDISABLED and LOGIN gets PRIVACYREQUIRED."""
    def go() -> tuple[list[bytes], list[bytes], list[bytes]]:
        r = Raw(imap.port)
        caps = r.cmd("CAPABILITY")
        login = r.cmd(f'LOGIN {ALICE} "{PASSWORD}"')
        assert r.cmd("STARTTLS")[-1].endswith(b"OK Begin TLS negotiation now")
        r.sock = imap.server.client_ssl_context().wrap_socket(r.sock, server_hostname="mail.example.test")
        after = r.cmd("CAPABILITY")
        assert r.cmd(f'LOGIN {ALICE} "{PASSWORD}"')[-1].split()[1] == b"OK"
        r.close()
        return caps, login, after
    caps, login, after = await imap.run(go)
    assert b"LOGINDISABLED" in caps[0] and b"AUTH=PLAIN" not in caps[0]
    assert login[-1].split(b" ", 1)[1].startswith(b"NO [PRIVACYREQUIRED]")
    assert b"LOGINDISABLED" not in after[0] and b"STARTTLS" not in after[0] and b"AUTH=PLAIN" in after[0]


async def test_imaps_implicit_tls_login(imap: ImapEnv) -> None:
    """IMAPS speaks TLS from the first byte and does not offer STARTTLS."""
    def go() -> bytes:
        c = imaplib.IMAP4_SSL("127.0.0.1", imap.imaps_port, ssl_context=imap.server.client_ssl_context())
        typ, _ = c.login(ALICE, PASSWORD)
        assert typ == "OK"
        caps = c.capability()[1][0]
        c.logout()
        return caps
    caps = await imap.run(go)
    assert b"STARTTLS" not in caps and b"IDLE" in caps


@pytest.mark.parametrize("user", [ALICE, HR, "nobody@example.test", "carol@example.test\\hr@example.test"])
async def test_failures_are_uniform(imap: ImapEnv, user: str) -> None:
    """Wrong password, a shared address, an unknown user and a delegate without the grant all get the same NO."""
    password = "wrong" if user == ALICE else PASSWORD
    def go() -> list[bytes]:
        r = Raw(imap.port)
        out = r.cmd(f'LOGIN "{user.replace(chr(92), chr(92) * 2)}" "{password}"')
        r.close()
        return out
    out = await imap.run(go)
    assert out[-1].split(b" ", 1)[1] == FAILED


async def test_unlicensed_and_disabled_users_fail_uniformly(imap: ImapEnv) -> None:
    """An unlicensed user and a disabled user get the same failure as a wrong password."""
    await imap.server.accounts.add_user("dave@example.test", "Dave", PASSWORD, licensed=False)
    await imap.server.accounts.disable("carol@example.test")
    def go() -> list[bytes]:
        r = Raw(imap.port)
        out = [r.cmd(f'LOGIN {u} "{PASSWORD}"')[-1] for u in ("dave@example.test", "carol@example.test")]
        r.close()
        return out
    for line in await imap.run(go):
        assert line.split(b" ", 1)[1] == FAILED


async def test_delegate_login_opens_shared_mailbox(imap: ImapEnv) -> None:
    """alice\\hr (both forms) opens hr's INBOX as the session's own INBOX, without a Shared/ namespace."""
    await imap.deliver(HR, b"From: a@b.test\r\nSubject: for hr\r\n\r\nhi\r\n")
    def go(login: str) -> tuple[bytes, list[Any]]:
        c = imaplib.IMAP4("127.0.0.1", imap.port)
        c.login(login, PASSWORD)
        c.select("INBOX")
        item: Any = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0]
        subject: bytes = item[1]
        ns = c.namespace()[1]
        c.logout()
        return subject, ns
    for login in (f"{ALICE}\\{HR}", f"{ALICE}\\hr"):
        subject, ns = await imap.run(go, login)
        assert subject.strip() == b"Subject: for hr"
        assert ns == [b'(("" "/")) NIL NIL']


async def test_authenticate_plain_with_authzid_and_sasl_ir(imap: ImapEnv) -> None:
    """AUTHENTICATE PLAIN with authzid hr (initial response, and with a continuation) opens hr."""
    await imap.deliver(HR, b"Subject: x\r\n\r\nx\r\n")
    token = base64.b64encode(f"{HR}\0{ALICE}\0{PASSWORD}".encode())
    def go() -> tuple[list[bytes], list[bytes], list[bytes]]:
        r = Raw(imap.port)
        ir = r.cmd(b"AUTHENTICATE PLAIN " + token)
        sel = r.cmd("SELECT INBOX")
        r.close()
        r2 = Raw(imap.port)
        r2.send(b"a AUTHENTICATE PLAIN\r\n")
        assert r2.line() == b"+ "
        r2.send(token + b"\r\n")
        cont = r2.until(b"a")
        r2.close()
        return ir, sel, cont
    ir, sel, cont = await imap.run(go)
    assert ir[-1].split()[1] == b"OK" and cont[-1].split()[1] == b"OK"
    assert b"* 1 EXISTS" in sel


async def test_authenticate_cancel_and_bad_base64(imap: ImapEnv) -> None:
    """A ``*`` response cancels AUTHENTICATE with BAD; the connection stays usable."""
    def go() -> tuple[list[bytes], list[bytes]]:
        r = Raw(imap.port)
        r.send(b"a AUTHENTICATE PLAIN\r\n")
        r.line()
        r.send(b"*\r\n")
        cancel = r.until(b"a")
        ok = r.cmd("NOOP")
        r.close()
        return cancel, ok
    cancel, ok = await imap.run(go)
    assert cancel[-1].startswith(b"a BAD")
    assert ok[-1].split()[1] == b"OK"


async def test_revoked_grant_ends_delegate_session(imap: ImapEnv) -> None:
    """Revoking Full Access ends an open delegate session on its next command."""
    def login() -> Raw:
        r = Raw(imap.port)
        assert r.cmd(f'LOGIN "{ALICE}\\\\hr" "{PASSWORD}"')[-1].split()[1] == b"OK"
        assert r.cmd("SELECT INBOX")[-1].split()[1] == b"OK"
        return r
    r = await imap.run(login)
    await imap.server.accounts.revoke(HR, ALICE, [Right.FULL_ACCESS])
    r.send(b"x NOOP\r\n")
    assert (await imap.run(r.line)).startswith(b"* BYE")


async def test_wrong_state_commands_get_bad(imap: ImapEnv) -> None:
    """SELECT before login and FETCH without a selected mailbox get BAD; the session goes on."""
    def go() -> list[bytes]:
        r = Raw(imap.port)
        out = [r.cmd("SELECT INBOX")[-1]]
        r.cmd(f'LOGIN {ALICE} "{PASSWORD}"')
        out.append(r.cmd("FETCH 1 FLAGS")[-1])
        out.append(r.cmd(f'LOGIN {ALICE} "{PASSWORD}"')[-1])
        out.append(r.cmd("NOOP")[-1])
        r.close()
        return out
    before, nosel, again, ok = await imap.run(go)
    assert before.split()[1] == b"BAD" and nosel.split()[1] == b"BAD" and again.split()[1] == b"BAD"
    assert ok.split()[1] == b"OK"


@pytest.mark.config(imap__max_connections_per_user=2)
async def test_connections_per_user_bounded(imap: ImapEnv) -> None:
    """A third simultaneous login of one user gets NO [LIMIT]; others are unaffected."""
    def go() -> list[bytes]:
        clients = [Raw(imap.port) for _ in range(3)]
        out = [c.cmd(f'LOGIN {ALICE} "{PASSWORD}"')[-1] for c in clients]
        out.append(clients[2].cmd(f'LOGIN bob@example.test "{PASSWORD}"')[-1])
        for c in clients:
            c.close()
        return out
    a, b, c, bob = await imap.run(go)
    assert a.split()[1] == b.split()[1] == b"OK"
    assert c.split(b" ", 1)[1].startswith(b"NO [LIMIT]")
    assert bob.split()[1] == b"OK"


@pytest.mark.config(imap__max_connections_per_address=2)
async def test_connections_per_address_bounded(imap: ImapEnv) -> None:
    """Over the per-address bound a new connection is greeted with BYE."""
    def go() -> bytes:
        keep = [Raw(imap.port) for _ in range(2)]
        third = Raw(imap.port)
        for c in keep + [third]:
            c.close()
        return third.greeting
    assert (await imap.run(go)).startswith(b"* BYE [LIMIT]")


@pytest.mark.config(imap__login_timeout_seconds=1)
async def test_unauthenticated_timeout(imap: ImapEnv) -> None:
    """A silent unauthenticated connection is closed with BYE after the login timeout."""
    def go() -> bytes:
        r = Raw(imap.port)
        line = r.line()
        r.close()
        return line
    assert (await imap.run(go)).startswith(b"* BYE")


async def test_ssl_context_is_used_for_starttls(imap: ImapEnv) -> None:
    """STARTTLS upgrades a plain connection with the server certificate (imaplib.starttls)."""
    def go() -> str:
        c = imaplib.IMAP4("127.0.0.1", imap.port)
        c.starttls(ssl_context=imap.server.client_ssl_context())
        typ, _ = c.login(ALICE, PASSWORD)
        assert isinstance(c.sock, ssl.SSLSocket)
        c.logout()
        return typ
    assert await imap.run(go) == "OK"
