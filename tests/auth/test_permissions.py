"""The permission table: who opens which mailbox and sends as which address."""

from __future__ import annotations

import pytest

from auth.accounts import AccountService
from auth.permissions import SendPermission, can_open, send_decision, send_permission
from storage.types import Right

OWN, SEND_AS, SOBO, DENIED = (
    SendPermission.OWN,
    SendPermission.SEND_AS,
    SendPermission.SEND_ON_BEHALF,
    SendPermission.DENIED,
)


@pytest.fixture
async def org(service: AccountService) -> AccountService:
    s = service
    await s.add_user("alice@example.test", "Alice", "pw")
    await s.add_user("bob@example.test", "Bob", "pw")
    await s.add_alias("a.smith@example.test", "alice@example.test")
    for name in ("sa", "sobo", "both", "full", "none"):
        await s.add_shared(f"{name}@example.test")
    await s.add_alias("sa-alias@example.test", "sa@example.test")
    await s.add_room("room@example.test")
    await s.add_list("all@example.test")
    await s.grant("sa@example.test", "alice@example.test", [Right.SEND_AS])
    await s.grant("sobo@example.test", "alice@example.test", [Right.SEND_ON_BEHALF])
    await s.grant("both@example.test", "alice@example.test", [Right.SEND_AS, Right.SEND_ON_BEHALF, Right.FULL_ACCESS])
    await s.grant("full@example.test", "alice@example.test", [Right.FULL_ACCESS])
    await s.grant("room@example.test", "alice@example.test", [Right.FULL_ACCESS])
    await s.grant("all@example.test", "alice@example.test", [Right.SEND_ON_BEHALF])
    return s


@pytest.mark.parametrize(
    ("from_address", "expected"),
    [
        ("alice@example.test", OWN),
        ("ALICE@Example.Test", OWN),
        ("a.smith@example.test", OWN),
        ("sa@example.test", SEND_AS),
        ("sa-alias@example.test", SEND_AS),
        ("sobo@example.test", SOBO),
        ("both@example.test", SEND_AS),
        ("full@example.test", DENIED),
        ("none@example.test", DENIED),
        ("room@example.test", DENIED),
        ("all@example.test", SOBO),
        ("bob@example.test", DENIED),
        ("ghost@example.test", DENIED),
        ("someone@elsewhere.org", DENIED),
        ("not an address", DENIED),
        ("", DENIED),
    ],
)
async def test_send_permission_table(org: AccountService, from_address: str, expected: SendPermission) -> None:
    """Own address/alias: OWN; Send As wins over Send on Behalf; Full Access alone, none, others: DENIED."""
    alice = await org.get("alice@example.test")
    assert await send_permission(org.directory, alice, from_address) is expected


async def test_send_decision_names_the_owner(org: AccountService) -> None:
    """The decision carries the account the address belongs to (alias resolved), None for external."""
    alice = await org.get("alice@example.test")
    decision = await send_decision(org.directory, alice, "sa-alias@example.test")
    assert decision.permission is SEND_AS and decision.owner is not None
    assert decision.owner.address == "sa@example.test"
    assert (await send_decision(org.directory, alice, "x@elsewhere.org")).owner is None
    assert not DENIED.allowed and SOBO.allowed


async def test_grants_are_per_user(org: AccountService) -> None:
    """Bob holds no grants, so every shared address is DENIED for him."""
    bob = await org.get("bob@example.test")
    for name in ("sa", "sobo", "both", "full"):
        assert await send_permission(org.directory, bob, f"{name}@example.test") is DENIED


async def test_non_user_never_sends(org: AccountService) -> None:
    """A shared mailbox as the 'user' is never allowed to send, even from itself."""
    shared = await org.get("sa@example.test")
    assert await send_permission(org.directory, shared, "sa@example.test") is DENIED


@pytest.mark.parametrize(
    ("user", "mailbox", "expected"),
    [
        ("alice", "alice", True),
        ("alice", "full", True),
        ("alice", "both", True),
        ("alice", "room", True),
        ("alice", "sa", False),
        ("alice", "sobo", False),
        ("alice", "none", False),
        ("alice", "bob", False),
        ("alice", "all", False),
        ("bob", "full", False),
        ("full", "full", False),
    ],
)
async def test_can_open_table(org: AccountService, user: str, mailbox: str, expected: bool) -> None:
    """Own mailbox or Full Access on a shared mailbox/room opens; Send rights, other users, lists do not."""
    u = await org.get(f"{user}@example.test")
    m = await org.get(f"{mailbox}@example.test")
    assert await can_open(org.directory, u, m) is expected
