"""Issue 10 §1: relay and address tricks, over real TCP against the running daemon.

One table of cases. Each case opens a connection to one SMTP listener (the MX listener
"smtp" without AUTH, or a submission listener with or without AUTH), sends one MAIL
FROM and at most one RCPT TO, and pins the reply code and enhanced status code of the
command that decides. A recipient that was accepted is then given a message (DATA), so
that a wrong acceptance shows in the store too; afterwards the outbound queue must
hold exactly the recipients the case names (none, for every trick) and every folder
of every local account exactly the messages the case names.

Decisions pinned here (RFC 5321 unless said otherwise):

* source routes are ignored (§4.1.1.3 "SHOULD ignore the routes"): what counts is the
  mailbox after the colon, so a route through a local domain never makes a relay;
* ``%`` and ``!`` are ordinary local-part characters (§2.3.11: the local part is
  interpreted only by the host of the domain): ``user%elsewhere.example@example.test``
  is an unknown local user, never a route;
* a quoted local part stays one local part: ``"user@elsewhere.example"@example.test``
  is an unknown local user; ``"alice"@example.test`` is alice (RFC 5322 §3.2.4: the
  quotes are not part of the content);
* a domain with a trailing dot is not a Domain (§4.1.2 grammar): 553 5.1.3 (5.1.7 in
  MAIL FROM), never a relay; upper case in a local domain is still the local domain;
* address literals (§4.1.3) are never routed: without AUTH they are another
  destination (554 5.7.1), with AUTH they are refused (550 5.7.1); syntax that is not
  an address literal (``[example.test]``) is malformed;
* over-long local parts (> 64 octets, §4.5.3.1.1), domains (> 253: DNS text limit,
  within §4.5.3.1.2's 255) and labels (> 63, RFC 1035 §2.3.4) get 501 with 5.1.3 in
  RCPT TO and 5.1.7 in MAIL FROM (RFC 3463 §3.2), whatever the domain;
* the null sender is legal on the MX (§4.5.5, bounces) and for authenticated
  submission (delivery reports; the From: header is still checked at DATA); without
  AUTH a submission listener answers 530 5.7.0 to any MAIL (RFC 4954 §6, RFC 6409 §4.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import RunningServer
from tests.smtp.client import RawSmtp, message

#: Local users: "user" exists so that a trick stripped to "user@example.test" would be
#: delivered somewhere visible, and the mailbox check below would catch it.
USERS = ("alice", "bob", "user")
MX_SENDER = "<sender@elsewhere.example>"
AUTH_SENDER = "<alice@example.test>"
LONG_LOCAL = "l" * 65
LONG_LABEL = "d" * 64
LONG_DOMAIN = ".".join(["d" * 63] * 4) + ".example"  # 264 octets, every label legal


@dataclass(frozen=True, slots=True)
class Trick:
    """One case: the raw MAIL/RCPT arguments, the deciding reply, and what may be stored."""

    id: str
    mail: str  # raw argument after "MAIL FROM:"
    rcpt: str | None  # raw argument after "RCPT TO:"; None: MAIL itself is the case
    reply: tuple[int, str]  # code and enhanced status code of the last command sent
    listener: str = "smtp"
    auth: bool = False
    delivered: tuple[str, ...] = ()  # local users whose INBOX gets the message
    queued: tuple[str, ...] = ()  # outbound recipients that get queued


def mx(id: str, rcpt: str, reply: tuple[int, str], *delivered: str) -> Trick:
    return Trick(id, MX_SENDER, rcpt, reply, delivered=delivered)


def mx_mail(id: str, mail: str, reply: tuple[int, str]) -> Trick:
    """A MAIL FROM case on the MX; an accepted sender is followed by RCPT TO:<alice@example.test>,
    which must be delivered to alice."""
    if reply == OK_MAIL:
        return Trick(id, mail, "<alice@example.test>", OK_RCPT, delivered=("alice",))
    return Trick(id, mail, None, reply)


def sub(id: str, rcpt: str, reply: tuple[int, str], *delivered: str, queued: tuple[str, ...] = (),
        mail: str = AUTH_SENDER, listener: str = "submission") -> Trick:
    return Trick(id, mail, rcpt, reply, listener=listener, auth=True, delivered=delivered, queued=queued)


OK_RCPT = (250, "2.1.5")
OK_MAIL = (250, "2.1.0")
USER_UNKNOWN = (550, "5.1.1")
RELAY_DENIED = (554, "5.7.1")
LITERAL_DENIED = (550, "5.7.1")
BAD_RCPT = (553, "5.1.3")
BAD_SENDER = (553, "5.1.7")
LONG_RCPT = (501, "5.1.3")
LONG_SENDER = (501, "5.1.7")
SYNTAX = (501, "5.5.4")
AUTH_REQUIRED = (530, "5.7.0")

TRICKS: tuple[Trick, ...] = (
    # -- the MX listener, no AUTH: every trick refused, nothing relayed
    mx("plain-external", "<user@elsewhere.example>", RELAY_DENIED),
    mx("percent-hack", "<user%elsewhere.example@example.test>", USER_UNKNOWN),
    mx("percent-hack-known-user", "<alice%elsewhere.example@example.test>", USER_UNKNOWN),
    mx("percent-local-domain-last", "<user@elsewhere.example%example.test>", BAD_RCPT),
    mx("source-route", "<@example.test:user@elsewhere.example>", RELAY_DENIED),
    mx("source-route-two-hops", "<@a.example,@example.test:user@elsewhere.example>", RELAY_DENIED),
    mx("source-route-ignored-inbound", "<@elsewhere.example:alice@example.test>", OK_RCPT, "alice"),
    mx("bang-path", "<elsewhere.example!user@example.test>", USER_UNKNOWN),
    mx("bang-path-known-user", "<elsewhere.example!alice@example.test>", USER_UNKNOWN),
    mx("quoted-at", '<"user@elsewhere.example"@example.test>', USER_UNKNOWN),
    mx("quoted-percent", '<"user%elsewhere.example"@example.test>', USER_UNKNOWN),
    mx("quoted-plain-is-the-user", '<"alice"@example.test>', OK_RCPT, "alice"),
    mx("two-at-signs", "<user@elsewhere.example@example.test>", BAD_RCPT),
    mx("ip-literal", "<user@[192.0.2.1]>", RELAY_DENIED),
    mx("ip-literal-loopback", "<user@[127.0.0.1]>", RELAY_DENIED),
    mx("ipv6-literal-loopback", "<user@[IPv6:::1]>", RELAY_DENIED),
    mx("literal-not-an-address", "<alice@[example.test]>", BAD_RCPT),
    mx("mixed-case-local-domain", "<alice@EXAMPLE.TEST>", OK_RCPT, "alice"),
    mx("mixed-case-everything", "<ALICE@Example.Test>", OK_RCPT, "alice"),
    mx("trailing-dot-local-domain", "<alice@EXAMPLE.TEST.>", BAD_RCPT),
    mx("trailing-dot-external", "<user@Elsewhere.Example.>", BAD_RCPT),
    mx("leading-dot-domain", "<alice@.example.test>", BAD_RCPT),
    mx("hyphen-label", "<user@-elsewhere.example>", BAD_RCPT),
    mx("empty-local-part", "<@example.test>", BAD_RCPT),
    mx("empty-path", "<>", BAD_RCPT),
    mx("no-brackets", "alice@example.test", SYNTAX),
    mx("long-local-part-local-domain", f"<{LONG_LOCAL}@example.test>", LONG_RCPT),
    mx("long-local-part-external", f"<{LONG_LOCAL}@elsewhere.example>", LONG_RCPT),
    mx("long-label", f"<user@{LONG_LABEL}.example>", LONG_RCPT),
    mx("long-domain", f"<user@{LONG_DOMAIN}>", LONG_RCPT),
    mx("long-path", f"<{'l' * 64}@{LONG_LABEL[:63]}.{LONG_LABEL[:63]}.{LONG_LABEL[:63]}.ex>", LONG_RCPT),
    mx("local-part-64-is-fine", f"<{'l' * 64}@example.test>", USER_UNKNOWN),
    mx("general-literal", "<user@[x-tag:example]>", BAD_RCPT),
    # -- MAIL FROM on the MX
    mx_mail("null-sender-bounce", "<>", OK_MAIL),
    mx_mail("sender-no-brackets", "sender@elsewhere.example", SYNTAX),
    mx_mail("sender-empty", "", SYNTAX),
    mx_mail("sender-empty-local-part", "<@example.test>", BAD_SENDER),
    mx_mail("sender-trailing-dot", "<sender@elsewhere.example.>", BAD_SENDER),
    mx_mail("sender-hyphen-label", "<sender@elsewhere-.example>", BAD_SENDER),
    mx_mail("sender-long-local-part", f"<{LONG_LOCAL}@elsewhere.example>", LONG_SENDER),
    mx_mail("sender-long-label", f"<sender@{LONG_LABEL}.example>", LONG_SENDER),
    mx_mail("sender-long-domain", f"<sender@{LONG_DOMAIN}>", LONG_SENDER),
    mx_mail("sender-source-route", "<@a.example:sender@elsewhere.example>", OK_MAIL),
    # -- submission listeners without AUTH: nothing before authentication
    Trick("submission-no-auth", "<alice@example.test>", None, AUTH_REQUIRED, listener="submission"),
    Trick("submission-no-auth-null-sender", "<>", None, AUTH_REQUIRED, listener="submission"),
    Trick("submissions-no-auth", "<alice@example.test>", None, AUTH_REQUIRED, listener="submissions"),
    Trick("submissions-no-auth-null-sender", "<>", None, AUTH_REQUIRED, listener="submissions"),
    # -- authenticated submission: the tricks do not escape local routing
    sub("auth-plain-external-is-relayed", "<user@elsewhere.example>", OK_RCPT, queued=("user@elsewhere.example",)),
    sub("auth-percent-hack", "<bob%elsewhere.example@example.test>", USER_UNKNOWN),
    sub("auth-bang-path", "<elsewhere.example!bob@example.test>", USER_UNKNOWN),
    sub("auth-quoted-at", '<"bob@elsewhere.example"@example.test>', USER_UNKNOWN),
    sub("auth-source-route-to-local", "<@elsewhere.example:bob@example.test>", OK_RCPT, "bob"),
    sub("auth-source-route-to-external", "<@example.test:user@elsewhere.example>", OK_RCPT,
        queued=("user@elsewhere.example",)),
    sub("auth-mixed-case-local", "<BOB@Example.TEST>", OK_RCPT, "bob"),
    sub("auth-trailing-dot-local", "<bob@example.test.>", BAD_RCPT),
    sub("auth-ip-literal", "<user@[192.0.2.1]>", LITERAL_DENIED),
    sub("auth-ip-literal-loopback", "<user@[127.0.0.1]>", LITERAL_DENIED),
    sub("auth-ipv6-literal-loopback", "<user@[IPv6:::1]>", LITERAL_DENIED),
    sub("auth-hyphen-label", "<user@-elsewhere.example>", BAD_RCPT),
    sub("auth-long-local-part", f"<{LONG_LOCAL}@elsewhere.example>", LONG_RCPT),
    sub("auth-long-label", f"<user@{LONG_LABEL}.example>", LONG_RCPT),
    sub("auth-long-domain", f"<user@{LONG_DOMAIN}>", LONG_RCPT),
    sub("auth-null-sender", "<bob@example.test>", OK_RCPT, "bob", mail="<>"),
    sub("auth-implicit-tls-percent-hack", "<bob%elsewhere.example@example.test>", USER_UNKNOWN,
        listener="submissions"),
)


async def connect(server: RunningServer, trick: Trick) -> RawSmtp:
    """A session on the case's listener, after EHLO and, for ``auth`` cases, AUTH as alice."""
    tls = server.client_ssl_context() if trick.listener == "submissions" else None
    client = await RawSmtp.connect(server.port(trick.listener), tls=tls)
    await client.ehlo()
    if trick.auth:
        assert (await client.login("alice@example.test"))[0] == 235
    return client


def status(reply: tuple[int, str]) -> tuple[int, str]:
    """(code, enhanced status code) of a parsed reply."""
    return reply[0], reply[1].split(" ", 1)[0]


async def stored(server: RunningServer) -> dict[str, int]:
    """Messages held by each local account, over all its folders (only non-zero counts)."""
    counts: dict[str, int] = {}
    for account in await server.store.directory.list_accounts():
        total = 0
        for folder in await server.store.mail.list_folders(account.id):
            total += len(await server.store.mail.list_messages(folder.id))
        if total:
            counts[account.address] = total
    return counts


@pytest.mark.parametrize("trick", TRICKS, ids=[t.id for t in TRICKS])
async def test_relay_trick(server: RunningServer, trick: Trick) -> None:
    """Each address trick gets its pinned reply; nothing is queued or stored beyond what the case names."""
    for name in USERS:
        await server.accounts.add_user(f"{name}@example.test", name.title(), "correct horse battery staple")
    client = await connect(server, trick)
    try:
        mail = status(await client.cmd(f"MAIL FROM:{trick.mail}"))
        if trick.rcpt is None:
            assert mail == trick.reply
            # No transaction was opened: a recipient now is out of sequence (RFC 5321 §4.1.4).
            assert status(await client.cmd("RCPT TO:<alice@example.test>")) == (503, "5.5.1")
        else:
            assert mail == OK_MAIL
            assert status(await client.cmd(f"RCPT TO:{trick.rcpt}")) == trick.reply
            if trick.reply[0] == 250:
                assert (await client.cmd("DATA"))[0] == 354
                frm = "alice@example.test" if trick.auth else "sender@elsewhere.example"
                await client.send(message(frm=frm, subject=trick.id) + b".\r\n")
                assert status(await client.reply()) == (250, "2.0.0")
            else:
                # No recipient: DATA is out of sequence and nothing can be stored.
                assert status(await client.cmd("DATA")) == (503, "5.5.1")
        assert status(await client.cmd("QUIT")) == (221, "2.0.0")
    finally:
        await client.close()
    queued = sorted(r.address for e in await server.store.queue.list_queue() for r in e.recipients)
    assert queued == sorted(trick.queued)
    assert await stored(server) == {f"{name}@example.test": 1 for name in trick.delivered}
