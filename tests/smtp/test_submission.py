"""Submission (587 STARTTLS, 465 implicit TLS) against the running daemon: AUTH, TLS,
Send As / Send on Behalf, lists, relay."""

from __future__ import annotations

import base64
import ssl
from typing import Any

import aiosmtplib
import pytest

from auth.accounts import AccountService
from storage.types import Right
from tests.smtp.client import PASSWORD, RawSmtp, flags, inbox, message, organisation
from tests.smtp.test_data_reader import line_by_line


@pytest.fixture
async def org(server: Any) -> dict[str, Any]:
    return await organisation(server.accounts)


async def submit(server: Any, *, tls: bool = True) -> RawSmtp:
    """A submission connection, STARTTLS done (or not), after EHLO."""
    client = await RawSmtp.connect(server.port("submission"))
    await client.ehlo()
    if tls:
        await client.starttls(server.client_ssl_context())
        await client.ehlo()
    return client


async def test_mail_before_auth_530(server: Any, org: dict[str, Any]) -> None:
    """On submission, MAIL before AUTH gets 530 5.7.0 Authentication required."""
    c = await submit(server)
    code, text = await c.cmd("MAIL FROM:<alice@example.test>")
    assert f"{code} {text}" == "530 5.7.0 Authentication required"
    await c.close()


async def test_starttls_then_auth_plain_and_deliver(server: Any, org: dict[str, Any]) -> None:
    """STARTTLS, EHLO offers AUTH PLAIN LOGIN, AUTH PLAIN succeeds, mail is stored with TLS and user in Received."""
    c = await submit(server)
    assert "AUTH PLAIN LOGIN" in c.lines[-2:] or any(line.endswith("AUTH PLAIN LOGIN") for line in c.lines)
    assert (await c.login("alice@example.test"))[0] == 235
    code, _ = await c.send_mail("alice@example.test", ["bob@example.test"], message())
    assert code == 250
    [stored] = await inbox(server.store, org["bob"])
    assert b"with ESMTPSA" in stored and b"(using TLSv1." in stored
    assert b"(authenticated user alice@example.test)" in stored
    assert b"\r\nMessage-ID: <" in stored and b"\r\nDate: " in stored  # added on submission
    await c.close()


async def test_plaintext_auth_refused_when_loopback_not_allowed(make_config: Any, test_ca: Any) -> None:
    """Without TLS (and loopback plaintext disabled) AUTH is not offered and gets 538 5.7.11."""
    from auth.passwords import PasswordHasher
    from mailserver import config as cfg
    from mailserver.daemon import Daemon

    daemon = Daemon(cfg.load(make_config(**{"auth.allow_plaintext_on_loopback": False})), hasher=PasswordHasher(fast=True))
    app = await daemon.start()
    try:
        c = await RawSmtp.connect(app.bound["submission"][1])
        lines = await c.ehlo()
        assert not any(line.startswith("AUTH") for line in lines)
        code, text = await c.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0x").decode())
        assert (code, text[:6]) == (538, "5.7.11")
        await c.close()
    finally:
        await daemon.stop()


async def test_implicit_tls_offers_and_accepts_auth(server: Any, org: dict[str, Any]) -> None:
    """On the implicit-TLS listener AUTH is advertised and works (aiosmtpd hides it by default)."""
    c = await RawSmtp.connect(server.port("submissions"), tls=server.client_ssl_context())
    lines = await c.ehlo()
    assert "AUTH PLAIN LOGIN" in lines and "STARTTLS" not in lines
    assert (await c.login("alice@example.test"))[0] == 235
    assert (await c.send_mail("alice@example.test", ["bob@example.test"], message()))[0] == 250
    await c.close()


async def test_implicit_tls_data_is_block_read_byte_exact(server: Any, org: dict[str, Any]) -> None:
    """On implicit TLS, DATA goes through the block reader: smuggling sequences stay content, dots are unstuffed."""
    c = await RawSmtp.connect(server.port("submissions"), tls=server.client_ssl_context())
    await c.ehlo()
    assert (await c.login("alice@example.test"))[0] == 235
    raw = (b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: dots\r\n\r\n"
           b"a\n.\nb\r.\r\n..c\r\n.\rd\r\n")
    reference = line_by_line(raw + b".\r\n")  # what a CRLF-only line reader yields
    assert reference is not None
    body = reference[0].split(b"\r\n\r\n", 1)[1]
    assert (await c.cmd("MAIL FROM:<alice@example.test>"))[0] == 250
    assert (await c.cmd("RCPT TO:<bob@example.test>"))[0] == 250
    assert (await c.cmd("DATA"))[0] == 354
    await c.send(raw + b".\r\n")
    assert (await c.reply())[0] == 250
    await c.close()
    [stored] = await inbox(server.store, org["bob"])
    assert stored.endswith(b"\r\n\r\n" + body)  # Date:/Message-ID: may be added to the header, never to the body
    assert b"a\n.\nb\r.\r\n.c\r\n\rd\r\n" in stored


async def test_aiosmtplib_implicit_tls_login(server: Any, org: dict[str, Any]) -> None:
    """A real client library (aiosmtplib) sends over implicit TLS with AUTH LOGIN, verifying the test CA."""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port("submissions"), use_tls=True,
                           tls_context=server.client_ssl_context())
    await smtp.connect()
    await smtp.ehlo()
    await smtp.auth_login("alice@example.test", PASSWORD)
    errors, _ = await smtp.sendmail("alice@example.test", ["bob@example.test"], message())
    assert errors == {}
    await smtp.quit()
    assert len(await inbox(server.store, org["bob"])) == 1


async def test_auth_login_two_step_and_initial_response(server: Any, org: dict[str, Any]) -> None:
    """AUTH LOGIN works in the two-step form and with the username as initial response."""
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    c = await submit(server)
    code, text = await c.cmd("AUTH LOGIN")
    assert (code, base64.b64decode(text)) == (334, b"Username:")
    code, text = await c.cmd(b64("alice@example.test"))
    assert (code, base64.b64decode(text)) == (334, b"Password:")
    assert (await c.cmd(b64(PASSWORD)))[0] == 235
    await c.close()
    c = await submit(server)
    code, _ = await c.cmd("AUTH LOGIN " + b64("alice@example.test"))
    assert code == 334
    assert (await c.cmd(b64(PASSWORD)))[0] == 235
    await c.close()


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice@example.test", "wrong"),
        ("nobody@example.test", PASSWORD),
        ("carol@example.test", PASSWORD),  # unlicensed
        ("dave@example.test", PASSWORD),  # disabled
        ("hr@example.test", PASSWORD),  # shared mailbox
        ("alice@example.test\\support@example.test.invalid", PASSWORD),
    ],
)
async def test_auth_failures_uniform_535(server: Any, org: dict[str, Any], username: str, password: str) -> None:
    """Every kind of failed login gets the same 535 5.7.8 Authentication credentials invalid."""
    c = await submit(server)
    code, text = await c.login(username, password)
    assert f"{code} {text}" == "535 5.7.8 Authentication credentials invalid"
    await c.close()


@pytest.mark.config(auth__max_failures=2)
async def test_auth_throttled_454(server: Any, org: dict[str, Any]) -> None:
    """After max_failures, further attempts (even correct) get 454 4.7.0 until the lockout ends."""
    c = await submit(server)
    for _ in range(2):
        assert (await c.login("alice@example.test", "wrong"))[0] == 535
    code, text = await c.login("alice@example.test")
    assert (code, text[:5]) == (454, "4.7.0")
    await c.close()


async def test_auth_abort_and_bad_base64(server: Any, org: dict[str, Any]) -> None:
    """'*' aborts AUTH with 501 5.7.0; bad base64 gets 501 5.5.2; the session still works."""
    c = await submit(server)
    assert (await c.cmd("AUTH PLAIN"))[0] == 334
    code, text = await c.cmd("*")
    assert (code, text[:5]) == (501, "5.7.0")
    code, text = await c.cmd("AUTH PLAIN !!!notbase64")
    assert (code, text[:5]) == (501, "5.5.2")
    code, text = await c.cmd("AUTH CRAM-MD5")
    assert (code, text[:5]) == (504, "5.5.4")
    assert (await c.login("alice@example.test"))[0] == 235
    await c.close()


async def test_delegate_login_forms(server: Any, org: dict[str, Any]) -> None:
    """alice@example.test\\hr@example.test and authzid=hr log in (alice holds Full Access on hr); without Full Access: 535."""
    for username, authzid in (("alice@example.test\\hr@example.test", ""), ("alice@example.test", "hr@example.test")):
        c = await submit(server)
        assert (await c.login(username, authzid=authzid))[0] == 235
        code, _ = await c.send_mail("hr@example.test", ["bob@example.test"], message(frm="hr@example.test"))
        assert code == 250
        await c.close()
    c = await submit(server)
    assert (await c.login("alice@example.test\\sales@example.test"))[0] == 535
    await c.close()


async def logged_in(server: Any, user: str = "alice@example.test") -> RawSmtp:
    c = await submit(server)
    assert (await c.login(user))[0] == 235
    return c


async def test_own_and_alias_from_accepted(server: Any, org: dict[str, Any]) -> None:
    """From: the user's own address or alias is accepted as is."""
    c = await logged_in(server)
    msg = message(frm="Alice <alice.smith@example.test>", extra="Message-ID: <m1@x>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n")
    assert (await c.send_mail("alice.smith@example.test", ["bob@example.test"], msg))[0] == 250
    [stored] = await inbox(server.store, org["bob"])
    assert stored.endswith(msg)
    await c.close()


async def test_send_as_removes_sender_naming_user(server: Any, org: dict[str, Any]) -> None:
    """Send As: From: hr is accepted and a Sender: naming alice is removed (no trace of the delegate)."""
    await server.accounts.set_shared_settings("hr@example.test", copy_sent_as=True)
    c = await logged_in(server)
    msg = message(frm="HR <hr@example.test>", extra="Sender: Alice <alice@example.test>\r\n")
    assert (await c.send_mail("hr@example.test", ["bob@example.test"], msg))[0] == 250
    [stored] = await inbox(server.store, org["bob"])
    assert b"\r\nSender:" not in stored and b"From: HR <hr@example.test>" in stored
    # copy_sent_as: a \Seen copy in hr's Sent folder, from the same delivery
    [copy] = await inbox(server.store, org["hr"], "Sent")
    assert copy == stored
    assert await flags(server.store, org["hr"], "Sent") == [frozenset({"\\Seen"})]
    await c.close()


async def test_send_on_behalf_sets_sender(server: Any, org: dict[str, Any]) -> None:
    """Send on Behalf: From: sales is accepted, Sender: is set to the user (a forged Sender: replaced)."""
    c = await logged_in(server)
    msg = message(frm="sales@example.test", extra="Sender: someone@elsewhere.example\r\n")
    assert (await c.send_mail("alice@example.test", ["bob@example.test"], msg))[0] == 250
    [stored] = await inbox(server.store, org["bob"])
    assert b"\r\nSender: Alice <alice@example.test>\r\n" in stored
    assert b"someone@elsewhere.example" not in stored
    assert await inbox(server.store, org["sales"], "Sent") == []  # copy_send_on_behalf off by default
    await c.close()


async def test_send_on_behalf_copy_to_sent(server: Any, org: dict[str, Any]) -> None:
    """With copy_send_on_behalf, the shared mailbox's Sent folder gets a \\Seen copy."""
    await server.accounts.set_shared_settings("sales@example.test", copy_send_on_behalf=True)
    c = await logged_in(server)
    assert (await c.send_mail("alice@example.test", ["bob@example.test"], message(frm="sales@example.test")))[0] == 250
    assert len(await inbox(server.store, org["sales"], "Sent")) == 1
    await c.close()


SEND_AS_DENIED = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"


@pytest.mark.parametrize("frm", ["support@example.test", "bob@example.test", "ceo@elsewhere.example"])
async def test_from_without_send_right_refused(server: Any, org: dict[str, Any], frm: str) -> None:
    """Full Access only (support), another user, an external address: From: refused with 550 5.7.60."""
    c = await logged_in(server)
    code, text = await c.send_mail("alice@example.test", ["bob@example.test"], message(frm=frm))
    assert f"{code} {text}" == SEND_AS_DENIED
    assert await inbox(server.store, org["bob"]) == []
    await c.close()


async def test_envelope_sender_checked_at_mail(server: Any, org: dict[str, Any]) -> None:
    """MAIL FROM an address the user may not send as: 550 5.7.60 at MAIL."""
    c = await logged_in(server)
    code, text = await c.cmd("MAIL FROM:<support@example.test>")
    assert f"{code} {text}" == SEND_AS_DENIED
    await c.close()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("To: bob@example.test\r\n", "554 5.6.0 Message has no From: header"),
        ("From: alice@example.test, alice.smith@example.test\r\n", "554 5.6.0 Message has more than one From: address"),
        ("From: alice@example.test\r\nFrom: alice@example.test\r\n", "554 5.6.0 Message has more than one From: address"),
        ("From: <<<not an address\r\n", "554 5.6.0 Message has an unparsable From: header"),
    ],
)
async def test_bad_from_headers(server: Any, org: dict[str, Any], header: str, expected: str) -> None:
    """No From:, several From: addresses, an unparsable From: get a clear 5.6.0 reply."""
    c = await logged_in(server)
    code, text = await c.send_mail("alice@example.test", ["bob@example.test"], f"{header}Subject: x\r\n\r\nbody\r\n".encode())
    assert f"{code} {text}" == expected
    await c.close()


async def test_relay_for_authenticated_queued(server: Any, org: dict[str, Any]) -> None:
    """An authenticated user's mail to another domain is accepted and queued for outbound delivery."""
    c = await logged_in(server)
    code, _ = await c.send_mail("alice@example.test", ["bob@example.test", "Friend@Elsewhere.Example"], message())
    assert code == 250
    entries = await server.store.queue.list_queue()
    assert [r.address for e in entries for r in e.recipients] == ["Friend@elsewhere.example"]
    await c.close()


async def make_lists(accounts: AccountService) -> None:
    """team = {alice, bob, inner}, inner = {bob, erin, outer@elsewhere, team-alias...}, all = {team, inner, frank}."""
    await accounts.add_list("team@example.test", "Team")
    await accounts.add_list("inner@example.test", "Inner")
    await accounts.add_list("all@example.test", "All")
    await accounts.add_members("inner@example.test", ["bob@example.test", "erin@example.test", "partner@elsewhere.example",
                                                      "carol@example.test"])
    await accounts.add_members("team@example.test", ["alice@example.test", "bob@example.test", "inner@example.test",
                                                     "partner@elsewhere.example"])
    await accounts.add_members("all@example.test", ["team@example.test", "inner@example.test", "frank@example.test",
                                                    "alice.smith@example.test"])


async def test_nested_lists_each_recipient_once(server: Any, org: dict[str, Any]) -> None:
    """Nested lists with duplicates: every final recipient once (direct ones too), externals queued once."""
    await make_lists(server.accounts)
    c = await logged_in(server)
    code, _ = await c.send_mail("alice@example.test", ["all@example.test", "bob@example.test", "team@example.test"], message())
    assert code == 250
    for name in ("alice", "bob", "erin", "frank"):
        assert len(await inbox(server.store, org[name])) == 1, name
    assert await inbox(server.store, org["carol"]) == []  # unlicensed member skipped
    entries = await server.store.queue.list_queue()
    assert [r.address for e in entries for r in e.recipients] == ["partner@elsewhere.example"]
    await c.close()


async def test_list_requires_authenticated_sender(server: Any, org: dict[str, Any]) -> None:
    """A list refuses outside (unauthenticated) senders with 550 5.7.133 by default; allowed once turned off
    (from the next transaction on: a transaction sees the directory as of its MAIL FROM)."""
    await make_lists(server.accounts)
    mx = await RawSmtp.connect(server.port("smtp"))
    await mx.ehlo()
    assert (await mx.cmd("MAIL FROM:<x@elsewhere.example>"))[0] == 250
    code, text = await mx.cmd("RCPT TO:<team@example.test>")
    assert f"{code} {text}" == "550 5.7.133 Sender not authenticated for group"
    await server.accounts.set_list_policy("team@example.test", require_sender_authentication=False)
    assert (await mx.cmd("RSET"))[0] == 250
    assert (await mx.cmd("MAIL FROM:<x@elsewhere.example>"))[0] == 250
    code, _ = await mx.cmd("RCPT TO:<team@example.test>")
    assert code == 250
    await mx.close()


async def test_list_allowed_and_blocked_senders(server: Any, org: dict[str, Any]) -> None:
    """allowed_senders refuses others with 550 5.7.124; blocked_senders refuses with 550 5.7.1 Delivery not authorized."""
    await make_lists(server.accounts)
    await server.accounts.set_list_policy("team@example.test", allowed_senders=["bob@example.test"])
    await server.accounts.set_list_policy("inner@example.test", blocked_senders=["alice@example.test"])
    c = await logged_in(server)
    assert (await c.cmd("MAIL FROM:<alice@example.test>"))[0] == 250
    code, text = await c.cmd("RCPT TO:<team@example.test>")
    assert f"{code} {text}" == "550 5.7.124 Sender not in allowed-senders list"
    code, text = await c.cmd("RCPT TO:<inner@example.test>")
    assert f"{code} {text}" == "550 5.7.1 Delivery not authorized"
    await c.close()
    c = await logged_in(server, "bob@example.test")
    assert (await c.cmd("MAIL FROM:<bob@example.test>"))[0] == 250
    assert (await c.cmd("RCPT TO:<team@example.test>"))[0] == 250
    await c.close()


async def test_grant_change_applies_to_next_message(server: Any, org: dict[str, Any]) -> None:
    """Granting Send As on support lets alice send as support on the next message."""
    c = await logged_in(server)
    assert (await c.send_mail("alice@example.test", ["bob@example.test"], message(frm="support@example.test")))[0] == 550
    await server.accounts.grant("support@example.test", "alice@example.test", [Right.SEND_AS])
    assert (await c.send_mail("alice@example.test", ["bob@example.test"], message(frm="support@example.test")))[0] == 250
    await c.close()


async def test_starttls_verifies_with_test_ca(server: Any, org: dict[str, Any]) -> None:
    """aiosmtplib STARTTLS on submission verifies the server certificate against the test CA."""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port("submission"), start_tls=True,
                           tls_context=server.client_ssl_context())
    await smtp.connect()
    await smtp.login("alice@example.test", PASSWORD)
    errors, _ = await smtp.sendmail("alice@example.test", ["bob@example.test"], message())
    assert errors == {}
    await smtp.quit()
    bad = ssl.create_default_context()  # does not trust the test CA
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port("submissions"), use_tls=True,
                           tls_context=bad)
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await smtp.connect()
