"""Issue 10 §5: nobody but a licensed, enabled user logs in, and a refusal says nothing.

``IDENTITIES`` lists logins that must be refused: unlicensed and disabled users (with
their real passwords, also acting for a shared mailbox they hold Full Access on), shared
mailbox, room and list addresses (no password; tried with none, with some password and
with a real user's password), aliases and unknown names. Each is tried on every way in
(``PROTOCOLS``: IMAP LOGIN and AUTHENTICATE PLAIN, SMTP AUTH PLAIN and LOGIN, HTTP Basic on
CalDAV and free/busy) against one daemon, and the server's answer must be byte-identical
to its answer to a real user's wrong password (STYLE §6, README "Logins"), and as slow.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import pytest_asyncio

from storage.types import Right
from tests.conftest import RunningServer
from tests.helpers import CertAuthority
from tests.security.test_permission_matrix import running_server

PASSWORD = "refusal password 4"
ALICE = "alice@example.test"  # licensed and enabled: the reference for "wrong password"
CAROL = "carol@example.test"  # unlicensed
DAVE = "dave@example.test"  # disabled
HR = "hr@example.test"  # shared; carol and dave hold Full Access on it
ROOM = "boardroom@example.test"
TEAM = "team@example.test"  # distribution list
#: Every failed login is answered this long after it began (auth.failure_delay_seconds).
FAILURE_DELAY = 0.02


@dataclass(frozen=True, slots=True)
class Identity:
    """A login attempt: SASL authcid (or login name), password, authzid (PLAIN only)."""

    username: str
    password: str
    authzid: str = ""


#: Name -> a login that every protocol must refuse exactly like a wrong password.
IDENTITIES: dict[str, Identity] = {
    "unlicensed user": Identity(CAROL, PASSWORD),
    "disabled user": Identity(DAVE, PASSWORD),
    "unlicensed user acting for shared": Identity(f"{CAROL}\\{HR}", PASSWORD),
    "disabled user acting for shared": Identity(f"{DAVE}\\{HR}", PASSWORD),
    "unlicensed user, authzid shared": Identity(CAROL, PASSWORD, authzid=HR),
    "disabled user, authzid shared": Identity(DAVE, PASSWORD, authzid=HR),
    "shared, no password": Identity(HR, ""),
    "shared, some password": Identity(HR, "letmein"),
    "shared, a user's password": Identity(HR, PASSWORD),
    "room, no password": Identity(ROOM, ""),
    "room, some password": Identity(ROOM, "letmein"),
    "list, no password": Identity(TEAM, ""),
    "list, some password": Identity(TEAM, "letmein"),
    "alias of a user": Identity("alice.smith@example.test", PASSWORD),
    "alias of shared": Identity("jobs@example.test", PASSWORD),
    "unknown address": Identity("nobody@example.test", PASSWORD),
    "real user acting for a room without grant": Identity(f"{ALICE}\\{ROOM}", PASSWORD),
    "real user acting for a list": Identity(f"{ALICE}\\{TEAM}", PASSWORD),
}
WRONG_PASSWORD = Identity(ALICE, "not her password")
RIGHT_PASSWORD = Identity(ALICE, PASSWORD)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority) -> AsyncIterator[RunningServer]:
    """One daemon: alice, unlicensed carol, disabled dave (both Full Access on hr), a room, a list."""
    async with running_server(
        tmp_path_factory.mktemp("refusals"), test_ca,
        auth__max_failures=100_000,  # hundreds of refusals from 127.0.0.1 on purpose
        auth__failure_delay_seconds=FAILURE_DELAY,
    ) as srv:
        a = srv.accounts
        await a.add_user(ALICE, "Alice", PASSWORD)
        await a.add_user(CAROL, "Carol", PASSWORD, licensed=False)
        await a.add_user(DAVE, "Dave", PASSWORD)
        await a.disable(DAVE)
        await a.add_shared(HR, "HR")
        await a.add_room(ROOM, "Board Room")
        await a.add_list(TEAM, "Team")
        await a.add_members(TEAM, [ALICE])
        await a.add_alias("alice.smith@example.test", ALICE)
        await a.add_alias("jobs@example.test", HR)
        for user in (CAROL, DAVE):
            await a.grant(HR, user, [Right.FULL_ACCESS, Right.SEND_AS])
        yield srv


# ----------------------------------------------------------------------------- protocols
#
# Each returns the server's bytes for the attempt (after the greeting and EHLO, which do
# not depend on who logs in) and how long the answer to the credentials took.

Transcript = tuple[bytes, float]


async def _lines(reader: asyncio.StreamReader, until: Callable[[bytes], bool]) -> bytes:
    out = b""
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        out += line
        if not line or until(line):
            return out


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _plain(who: Identity) -> str:
    """The SASL PLAIN message (RFC 4616 §2: authzid NUL authcid NUL passwd), base64."""
    return _b64("\0".join((who.authzid, who.username, who.password)))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _imap(server: RunningServer, command: str) -> Transcript:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port("imap"))
    try:
        await reader.readline()  # greeting
        started = time.monotonic()
        writer.write(f"a1 {command}\r\n".encode())
        answer = await _lines(reader, lambda line: line.startswith(b"a1 "))
        return answer, time.monotonic() - started
    finally:
        writer.close()


async def imap_login(server: RunningServer, who: Identity) -> Transcript:
    return await _imap(server, f"LOGIN {_quote(who.username)} {_quote(who.password)}")


async def imap_authenticate_plain(server: RunningServer, who: Identity) -> Transcript:
    """RFC 4616 with SASL-IR (RFC 4959)."""
    return await _imap(server, f"AUTHENTICATE PLAIN {_plain(who)}")


async def _smtp(server: RunningServer, steps: list[str]) -> Transcript:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port("submission"))
    final = lambda line: len(line) < 4 or line[3:4] != b"-"  # noqa: E731 - last line of a reply
    try:
        await _lines(reader, final)  # greeting
        writer.write(b"EHLO client.example.net\r\n")
        ehlo = await _lines(reader, final)
        assert b"AUTH PLAIN LOGIN" in ehlo, ehlo
        answer = b""
        started = time.monotonic()
        for step in steps:
            started = time.monotonic()
            writer.write(step.encode() + b"\r\n")
            answer += await _lines(reader, final)
        return answer, time.monotonic() - started
    finally:
        writer.close()


async def smtp_auth_plain(server: RunningServer, who: Identity) -> Transcript:
    return await _smtp(server, [f"AUTH PLAIN {_plain(who)}"])


async def smtp_auth_login(server: RunningServer, who: Identity) -> Transcript:
    """Two-step LOGIN, as Outlook sends it."""
    return await _smtp(server, ["AUTH LOGIN", _b64(who.username), _b64(who.password)])


async def _http(server: RunningServer, method: str, path: str, who: Identity) -> Transcript:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port("http"))
    try:
        started = time.monotonic()
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: mail.example.test\r\nDepth: 0\r\n"
            f"Authorization: Basic {_b64(f'{who.username}:{who.password}')}\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        answer = await asyncio.wait_for(reader.read(), 10)
        return answer, time.monotonic() - started
    finally:
        writer.close()


async def http_caldav(server: RunningServer, who: Identity) -> Transcript:
    return await _http(server, "PROPFIND", f"/dav/{ALICE}/calendar/", who)


async def http_freebusy(server: RunningServer, who: Identity) -> Transcript:
    return await _http(server, "GET", f"/freebusy/{ALICE}.vfb", who)


Protocol = Callable[[RunningServer, Identity], Awaitable[Transcript]]
#: Name -> (attempt, whether it carries a SASL authzid, what success starts with).
PROTOCOLS: dict[str, tuple[Protocol, bool, bytes]] = {
    "imap LOGIN": (imap_login, False, b"a1 OK"),
    "imap AUTHENTICATE PLAIN": (imap_authenticate_plain, True, b"a1 OK"),
    "smtp AUTH PLAIN": (smtp_auth_plain, True, b"235 "),
    "smtp AUTH LOGIN": (smtp_auth_login, False, b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 "),
    "http CalDAV Basic": (http_caldav, False, b"HTTP/1.1 207"),
    "http free/busy Basic": (http_freebusy, False, b"HTTP/1.1 200"),
}
#: What the answer to a wrong password looks like (checked, then used as the reference).
WRONG_PASSWORD_ANSWERS = {
    "imap LOGIN": b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
    "imap AUTHENTICATE PLAIN": b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
    "smtp AUTH PLAIN": b"535 5.7.8 Authentication credentials invalid\r\n",
    "smtp AUTH LOGIN": b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n535 5.7.8 Authentication credentials invalid\r\n",
    "http CalDAV Basic": None,
    "http free/busy Basic": None,
}


def _cases() -> list[object]:
    return [
        pytest.param(identity, protocol, id=f"{protocol}: {identity}")
        for protocol, (_, sasl, _) in PROTOCOLS.items()
        for identity, who in IDENTITIES.items()
        if sasl or not who.authzid  # an authzid only travels in SASL PLAIN
    ]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
async def test_real_user_logs_in(server: RunningServer, protocol: str) -> None:
    """The reference works: a licensed, enabled user with her password is let in."""
    attempt, _, success = PROTOCOLS[protocol]
    answer, _ = await attempt(server, RIGHT_PASSWORD)
    assert answer.startswith(success), answer


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
async def test_wrong_password_is_a_plain_refusal(server: RunningServer, protocol: str) -> None:
    """A real user's wrong password gets the generic refusal, after the failure delay."""
    attempt = PROTOCOLS[protocol][0]
    answer, elapsed = await attempt(server, WRONG_PASSWORD)
    expected = WRONG_PASSWORD_ANSWERS[protocol]
    if expected is None:  # HTTP: 401 with the Basic challenge and a body that names nothing
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 401 ") and b"WWW-Authenticate: Basic" in head, answer
        assert body == b"authentication required\n", answer
    else:
        assert answer == expected, answer
    assert elapsed >= FAILURE_DELAY


_REFERENCE: dict[str, bytes] = {}


async def wrong_password_answer(server: RunningServer, protocol: str) -> bytes:
    """The protocol's answer to a real user's wrong password (asked once per module)."""
    if protocol not in _REFERENCE:
        _REFERENCE[protocol] = (await PROTOCOLS[protocol][0](server, WRONG_PASSWORD))[0]
    return _REFERENCE[protocol]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("identity", "protocol"), _cases())
async def test_refused_exactly_like_a_wrong_password(server: RunningServer, identity: str, protocol: str) -> None:
    """``identity`` is refused on ``protocol`` with the bytes and the delay of a wrong password."""
    reference = await wrong_password_answer(server, protocol)
    answer, elapsed = await PROTOCOLS[protocol][0](server, IDENTITIES[identity])
    assert answer == reference
    assert elapsed >= FAILURE_DELAY


_users = itertools.count(1)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("change", ["unlicense", "disable"])
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
async def test_refused_at_once_after_unlicense_or_disable(server: RunningServer, protocol: str, change: str) -> None:
    """A user who just logged in is refused (like a wrong password) once unlicensed or
    disabled, at the very next login: no cached login outlives the change."""
    attempt, _, success = PROTOCOLS[protocol]
    user = Identity(f"user{next(_users)}@example.test", PASSWORD)
    await server.accounts.add_user(user.username, "Soon gone", PASSWORD)
    answer, _ = await attempt(server, user)
    assert answer.startswith(success), answer
    await getattr(server.accounts, change)(user.username)
    answer, elapsed = await attempt(server, user)
    assert answer == await wrong_password_answer(server, protocol)
    assert elapsed >= FAILURE_DELAY
