"""Authenticator: login forms, uniform failures, throttling, rehash on success."""

from __future__ import annotations

from typing import Any

import pytest
from passlib.hash import bcrypt

from auth.accounts import AccountService
from auth.errors import AuthFailed, AuthThrottled
from auth.login import Authenticator, AuthPolicy, LoginName, Principal, parse_login
from auth.passwords import PasswordHasher, VerifyResult
from storage.interfaces import Directory
from storage.types import Right
from tests.auth.conftest import FakeClock

DELAY = 1.5
POLICY = AuthPolicy(failure_delay=DELAY, max_failures=3, failure_window=60.0, lockout=120.0)
IP = "192.0.2.10"


class CountingHasher(PasswordHasher):
    """Counts real password checks (to prove throttled attempts never check one)."""

    def __init__(self) -> None:
        super().__init__(fast=True)
        self.verifies = 0

    async def verify(self, password: str, stored_hash: str | None) -> VerifyResult:
        self.verifies += 1
        return await super().verify(password, stored_hash)


@pytest.fixture
async def org(service: AccountService) -> AccountService:
    s = AccountService(service.directory, service.hasher, seats=10)
    await s.add_user("alice@example.test", "Alice", "alice-pw")
    await s.add_user("bob@example.test", "Bob", "bob-pw")
    await s.add_user("carol@example.test", "Carol", "carol-pw", licensed=False)
    await s.add_user("dave@example.test", "Dave", "dave-pw")
    await s.disable("dave@example.test")
    await s.add_user("erin@example.test", "Erin")  # no password yet
    await s.add_shared("hr@example.test", "HR")
    await s.add_alias("people@example.test", "hr@example.test")
    await s.add_shared("sales@example.test", "Sales")
    await s.add_room("room@example.test", "Room")
    await s.add_list("all@example.test", "All")
    await s.grant("hr@example.test", "alice@example.test", [Right.FULL_ACCESS])
    await s.grant("room@example.test", "alice@example.test", [Right.FULL_ACCESS])
    await s.grant("sales@example.test", "alice@example.test", [Right.SEND_AS, Right.SEND_ON_BEHALF])
    await s.grant("all@example.test", "alice@example.test", [Right.SEND_AS])
    return s


@pytest.fixture
def auth(org: AccountService, clock: FakeClock) -> Authenticator:
    return Authenticator(org.directory, org.hasher, POLICY, clock=clock, sleep=clock.sleep)


async def login(auth: Authenticator, username: str, password: str, **kw: Any) -> Principal:
    kw.setdefault("client_ip", IP)
    return await auth.authenticate(username, password, **kw)


async def test_plain_login(auth: Authenticator, clock: FakeClock) -> None:
    """A licensed, enabled user with the right password acts as itself, with no delay."""
    p = await login(auth, "Alice@Example.TEST", "alice-pw")
    assert p.user.address == "alice@example.test" and p.mailbox == p.user and not p.delegated
    assert clock.sleeps == []


FAILING = [
    ("unknown user", "ghost@example.test", "x", {}),
    ("wrong password", "alice@example.test", "wrong", {}),
    ("password case", "alice@example.test", "ALICE-PW", {}),
    ("shared address", "hr@example.test", "alice-pw", {}),
    ("room address", "room@example.test", "alice-pw", {}),
    ("list address", "all@example.test", "alice-pw", {}),
    ("alias of a user", "people@example.test", "alice-pw", {}),
    ("unlicensed user", "carol@example.test", "carol-pw", {}),
    ("disabled user", "dave@example.test", "dave-pw", {}),
    ("user without password", "erin@example.test", "", {}),
    ("malformed name", "not an address", "x", {}),
    ("delegate without full access", "alice@example.test\\sales@example.test", "alice-pw", {}),
    ("delegate to a user", "alice@example.test\\bob@example.test", "alice-pw", {}),
    ("delegate to a list", "alice@example.test\\all", "alice-pw", {}),
    ("delegate to unknown", "alice@example.test\\ghost", "alice-pw", {}),
    ("delegate, wrong password", "alice@example.test\\hr", "wrong", {}),
    ("bob delegating to hr", "bob@example.test\\hr", "bob-pw", {}),
    ("authzid without full access", "alice@example.test", "alice-pw", {"authzid": "sales@example.test"}),
    ("authzid and name disagree", "alice@example.test\\hr", "alice-pw", {"authzid": "room@example.test"}),
    ("two separators", "alice@example.test\\hr\\room", "alice-pw", {}),
]


@pytest.mark.parametrize(("why", "username", "password", "kw"), FAILING, ids=[f[0] for f in FAILING])
async def test_every_failure_is_uniform(
    auth: Authenticator, clock: FakeClock, why: str, username: str, password: str, kw: dict[str, Any]
) -> None:
    """Each failing kind raises the same AuthFailed text exactly failure_delay after the start."""
    start = clock()
    with pytest.raises(AuthFailed) as info:
        await login(auth, username, password, **kw)
    assert str(info.value) == "authentication failed"
    assert type(info.value) is AuthFailed
    assert clock() - start == pytest.approx(DELAY)


class SlowDirectory:
    """Wraps a directory so each account lookup takes `cost` seconds of the fake clock."""

    def __init__(self, inner: Directory, clock: FakeClock, cost: float) -> None:
        self._inner, self._clock, self._cost = inner, clock, cost

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def get_account(self, address: str) -> Any:
        self._clock.advance(self._cost)
        return await self._inner.get_account(address)


async def test_delay_is_measured_from_the_start(org: AccountService, clock: FakeClock) -> None:
    """Time spent checking counts towards the delay: the sleep is only the remainder."""
    slow: Any = SlowDirectory(org.directory, clock, 0.4)
    auth = Authenticator(slow, org.hasher, POLICY, clock=clock, sleep=clock.sleep)
    start = clock()
    with pytest.raises(AuthFailed):
        await login(auth, "alice@example.test", "wrong")
    assert clock.sleeps == [pytest.approx(DELAY - 0.4)]
    assert clock() - start == pytest.approx(DELAY)
    very_slow: Any = SlowDirectory(org.directory, clock, DELAY + 1)
    auth = Authenticator(very_slow, org.hasher, POLICY, clock=clock, sleep=clock.sleep)
    with pytest.raises(AuthFailed):
        await login(auth, "ghost@example.test", "x")
    assert len(clock.sleeps) == 1  # already past the delay: no extra sleep


@pytest.mark.parametrize(
    ("username", "kw", "mailbox"),
    [
        ("alice@example.test\\hr@example.test", {}, "hr@example.test"),
        ("alice@example.test\\hr", {}, "hr@example.test"),
        ("ALICE@example.test\\HR", {}, "hr@example.test"),
        ("alice@example.test\\people", {}, "hr@example.test"),
        ("alice@example.test\\room", {}, "room@example.test"),
        ("alice@example.test", {"authzid": "hr@example.test"}, "hr@example.test"),
        ("alice@example.test", {"authzid": "hr"}, "hr@example.test"),
        ("alice@example.test\\hr", {"authzid": "hr@example.test"}, "hr@example.test"),
        ("alice@example.test", {"authzid": "alice@example.test"}, "alice@example.test"),
        ("alice@example.test", {"authzid": ""}, "alice@example.test"),
        ("alice@example.test\\alice", {}, "alice@example.test"),
    ],
)
async def test_delegate_forms(auth: Authenticator, username: str, kw: dict[str, Any], mailbox: str) -> None:
    """Backslash forms (full or bare target, alias of the target) and SASL authzid open the shared mailbox/room."""
    p = await login(auth, username, "alice-pw", **kw)
    assert p.user.address == "alice@example.test"
    assert p.mailbox.address == mailbox
    assert p.delegated is (mailbox != "alice@example.test")


def test_parse_login() -> None:
    """parse_login splits user and target and applies the user's domain to a bare target."""
    assert parse_login("A@x.test\\HR") == LoginName("a@x.test", "hr@x.test")
    assert parse_login("a@x.test").target is None
    assert parse_login("a@x.test", "a@x.test").target is None


async def test_licence_removal_blocks_login_at_once(org: AccountService, auth: Authenticator) -> None:
    """After unlicense and disable, the same credentials fail on the next attempt."""
    await login(auth, "bob@example.test", "bob-pw")
    await org.unlicense("bob@example.test")
    with pytest.raises(AuthFailed):
        await login(auth, "bob@example.test", "bob-pw")
    await org.license("bob@example.test")
    await login(auth, "bob@example.test", "bob-pw")


async def test_ip_throttling_and_lockout_expiry(org: AccountService, clock: FakeClock) -> None:
    """max_failures from one IP lock it (even for right passwords, without checking them) until lockout passes."""
    hasher = CountingHasher()
    auth = Authenticator(org.directory, hasher, POLICY, clock=clock, sleep=clock.sleep)
    await org.set_password("alice@example.test", "alice-pw")  # hash under this hasher's policy
    for name in ("ghost1@example.test", "ghost2@example.test", "ghost3@example.test"):
        with pytest.raises(AuthFailed):
            await login(auth, name, "x")
    checks = hasher.verifies
    start = clock()
    with pytest.raises(AuthThrottled) as info:
        await login(auth, "alice@example.test", "alice-pw")
    assert hasher.verifies == checks  # the password was not checked
    assert clock() - start == pytest.approx(DELAY)  # throttled answers take the same time
    assert 0 < info.value.retry_after <= POLICY.lockout
    # another client address is not affected
    await login(auth, "alice@example.test", "alice-pw", client_ip="198.51.100.7")
    clock.advance(POLICY.lockout)
    p = await login(auth, "alice@example.test", "alice-pw")
    assert p.user.address == "alice@example.test"


async def test_account_name_throttling_across_ips(auth: Authenticator, clock: FakeClock) -> None:
    """Failures against one account name from many IPs lock that name only."""
    for i in range(POLICY.max_failures):
        with pytest.raises(AuthFailed):
            await login(auth, "alice@example.test", "wrong", client_ip=f"203.0.113.{i}")
    with pytest.raises(AuthThrottled):
        await login(auth, "alice@example.test", "alice-pw", client_ip="203.0.113.200")
    with pytest.raises(AuthThrottled):  # the delegate form counts against alice too
        await login(auth, "ALICE@example.test\\hr", "alice-pw", client_ip="203.0.113.201")
    await login(auth, "bob@example.test", "bob-pw", client_ip="203.0.113.200")
    clock.advance(POLICY.lockout + 0.1)
    await login(auth, "alice@example.test", "alice-pw", client_ip="203.0.113.200")


async def test_failures_outside_the_window_do_not_add_up(auth: Authenticator, clock: FakeClock) -> None:
    """Failures spread wider than failure_window never reach max_failures."""
    for _ in range(POLICY.max_failures * 2):
        with pytest.raises(AuthFailed):
            await login(auth, "alice@example.test", "wrong")
        clock.advance(POLICY.failure_window / (POLICY.max_failures - 1) + 1)
    await login(auth, "alice@example.test", "alice-pw")


async def test_success_clears_the_account_count_not_the_ip_count(auth: Authenticator) -> None:
    """A success forgets the name's failures but keeps the IP's, so a valid login cannot wash away guesses."""
    for _ in range(POLICY.max_failures - 1):
        with pytest.raises(AuthFailed):
            await login(auth, "alice@example.test", "wrong", client_ip="203.0.113.1")
    await login(auth, "alice@example.test", "alice-pw", client_ip="203.0.113.1")
    # the IP has max_failures-1 failures left on its count: one more locks it
    with pytest.raises(AuthFailed):
        await login(auth, "ghost@example.test", "x", client_ip="203.0.113.1")
    with pytest.raises(AuthThrottled):
        await login(auth, "bob@example.test", "bob-pw", client_ip="203.0.113.1")
    # alice's own count was cleared: failures from elsewhere start from zero
    for i in range(POLICY.max_failures - 1):
        with pytest.raises(AuthFailed):
            await login(auth, "alice@example.test", "wrong", client_ip=f"198.51.100.{i}")
    await login(auth, "alice@example.test", "alice-pw", client_ip="198.51.100.99")


async def test_rehash_on_success(org: AccountService, auth: Authenticator) -> None:
    """An imported bcrypt hash logs in and is replaced by an argon2 hash of the current policy."""
    directory = org.directory
    await directory.set_password_hash("bob@example.test", bcrypt.using(rounds=4).hash("imported"))
    await login(auth, "bob@example.test", "imported")
    stored = (await directory.get_account("bob@example.test"))
    assert stored is not None and stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert not org.hasher.needs_update(stored.password_hash)
    await login(auth, "bob@example.test", "imported")
    assert (await directory.get_account("bob@example.test")) == stored  # no second rewrite


async def test_failed_login_does_not_rehash(org: AccountService, auth: Authenticator) -> None:
    """A wrong password against an old hash leaves the stored hash alone."""
    old = bcrypt.using(rounds=4).hash("imported")
    await org.directory.set_password_hash("bob@example.test", old)
    with pytest.raises(AuthFailed):
        await login(auth, "bob@example.test", "nope")
    stored = await org.directory.get_account("bob@example.test")
    assert stored is not None and stored.password_hash == old
