"""AccountService: operator actions and the one-line reasons it gives for refusals."""

from __future__ import annotations

import asyncio

import pytest

from auth.accounts import AccountService, ListPolicy, SharedSettings
from auth.errors import AccountError
from storage.types import AccountKind, Right
from tests.auth.conftest import SEATS


async def test_add_user_creates_licensed_user(service: AccountService) -> None:
    """add_user normalises the address, stores a hash (not the password) and takes a seat."""
    user = await service.add_user("Alice@Example.TEST", "Alice", "pw-alice")
    assert user.address == "alice@example.test" and user.kind is AccountKind.USER
    assert user.licensed and user.enabled and user.display_name == "Alice"
    assert user.password_hash and user.password_hash.startswith("$argon2")
    assert await service.licence_status() == (SEATS, 1, SEATS - 1)


async def test_add_user_outside_local_domains_names_the_domain(service: AccountService) -> None:
    """An address in a non-local domain is refused with the domain named."""
    with pytest.raises(AccountError, match=r"^example\.org is not a local domain"):
        await service.add_user("bob@example.org", password="x")


async def test_address_taken_by_account_or_alias(service: AccountService) -> None:
    """Adding an address that is an account or an alias is refused, saying by what."""
    await service.add_user("alice@example.test", password="pw")
    await service.add_shared("hr@example.test", "HR")
    await service.add_alias("people@example.test", "hr@example.test")
    with pytest.raises(AccountError, match=r"address alice@example\.test is already taken by a user"):
        await service.add_user("ALICE@example.test")
    with pytest.raises(AccountError, match=r"already taken by a shared mailbox"):
        await service.add_list("hr@example.test")
    with pytest.raises(AccountError, match=r"people@example\.test is already taken: it is an alias of hr@example\.test"):
        await service.add_room("people@example.test")


async def test_invalid_address_is_refused_with_reason(service: AccountService) -> None:
    """A malformed address becomes an AccountError carrying the parser's reason."""
    with pytest.raises(AccountError, match=r"invalid address: .*exactly one '@'"):
        await service.add_user("alice")


async def test_seat_pool_is_enforced(service: AccountService) -> None:
    """Licences beyond the pool are refused with 'no licence seat free: N of N in use'; freeing one allows it."""
    for i in range(SEATS):
        await service.add_user(f"u{i}@example.test", password="pw")
    msg = rf"^no licence seat free: {SEATS} of {SEATS} in use$"
    with pytest.raises(AccountError, match=msg):
        await service.add_user("extra@example.test", password="pw")
    extra = await service.add_user("extra@example.test", password="pw", licensed=False)
    assert not extra.licensed
    with pytest.raises(AccountError, match=msg):
        await service.license("extra@example.test")
    assert await service.licence_status() == (SEATS, SEATS, 0)
    await service.unlicense("u0@example.test")
    assert (await service.license("extra@example.test")).licensed
    assert await service.licence_status() == (SEATS, SEATS, 0)


async def test_license_is_idempotent_and_frees_on_remove(service: AccountService) -> None:
    """Licensing a licensed user takes no second seat; removing a user frees its seat."""
    await service.add_user("alice@example.test", password="pw")
    await service.license("alice@example.test")
    assert (await service.licence_status()).used == 1
    await service.remove("alice@example.test")
    assert (await service.licence_status()).used == 0


async def test_licence_only_for_users(service: AccountService) -> None:
    """Shared mailboxes take no licence, and asking for one says why."""
    await service.add_shared("hr@example.test")
    with pytest.raises(AccountError, match=r"hr@example\.test is a shared mailbox: only users take a licence"):
        await service.license("hr@example.test")
    assert (await service.licence_status()).used == 0


async def test_shrunken_pool_reports_zero_free(directory: object, service: AccountService) -> None:
    """When the configured pool is smaller than the seats in use, free is 0, not negative."""
    for i in range(SEATS):
        await service.add_user(f"u{i}@example.test", password="pw")
    smaller = AccountService(service.directory, service.hasher, seats=1)
    assert await smaller.licence_status() == (1, SEATS, 0)
    with pytest.raises(AccountError, match=rf"no licence seat free: {SEATS} of 1 in use"):
        await smaller.add_user("late@example.test")


async def test_grant_refusals_say_why(service: AccountService) -> None:
    """Granting to a non-user, to an unknown address, on a user mailbox, Full Access on a list, or nothing, is refused."""
    await service.add_user("alice@example.test", password="pw")
    await service.add_user("bob@example.test", password="pw")
    await service.add_shared("hr@example.test")
    await service.add_list("all@example.test")
    with pytest.raises(AccountError, match=r"cannot grant rights to hr@example\.test: it is a shared mailbox, and only users hold rights"):
        await service.grant("hr@example.test", "hr@example.test", [Right.FULL_ACCESS])
    with pytest.raises(AccountError, match=r"cannot grant rights to ghost@example\.test: there is no such user"):
        await service.grant("hr@example.test", "ghost@example.test", [Right.SEND_AS])
    with pytest.raises(AccountError, match=r"cannot grant rights on bob@example\.test: it is a user's own mailbox"):
        await service.grant("bob@example.test", "alice@example.test", [Right.FULL_ACCESS])
    with pytest.raises(AccountError, match=r"no shared mailbox, room or list nope@example\.test"):
        await service.grant("nope@example.test", "alice@example.test", [Right.SEND_AS])
    with pytest.raises(AccountError, match=r"Full Access cannot be granted on all@example\.test: a distribution list has no mailbox"):
        await service.grant("all@example.test", "alice@example.test", [Right.FULL_ACCESS])
    with pytest.raises(AccountError, match="name at least one right"):
        await service.grant("hr@example.test", "alice@example.test", [])


async def test_grant_and_revoke_return_held_rights(service: AccountService) -> None:
    """grant adds to what is held, revoke removes, and both report the result."""
    await service.add_user("alice@example.test", password="pw")
    await service.add_shared("hr@example.test")
    assert await service.grant("HR@example.test", "alice@example.test", [Right.FULL_ACCESS]) == {Right.FULL_ACCESS}
    held = await service.grant("hr@example.test", "alice@example.test", [Right.SEND_AS, Right.SEND_ON_BEHALF])
    assert held == {Right.FULL_ACCESS, Right.SEND_AS, Right.SEND_ON_BEHALF}
    assert await service.revoke("hr@example.test", "alice@example.test", [Right.SEND_AS]) == {
        Right.FULL_ACCESS,
        Right.SEND_ON_BEHALF,
    }
    details = await service.describe("hr@example.test")
    assert [(g.user, g.rights) for g in details.grants_on] == [
        ("alice@example.test", frozenset({Right.FULL_ACCESS, Right.SEND_ON_BEHALF}))
    ]


async def test_list_cannot_contain_itself(service: AccountService) -> None:
    """A list as its own member, through an alias, or through nested lists is refused with why."""
    await service.add_list("all@example.test")
    await service.add_list("team@example.test")
    await service.add_alias("everyone@example.test", "all@example.test")
    with pytest.raises(AccountError, match=r"a list cannot contain itself: all@example\.test"):
        await service.add_members("all@example.test", ["all@example.test"])
    with pytest.raises(AccountError, match=r"a list cannot contain itself: everyone@example\.test is all@example\.test"):
        await service.add_members("all@example.test", ["everyone@example.test"])
    await service.add_members("all@example.test", ["team@example.test"])
    with pytest.raises(
        AccountError,
        match=r"adding all@example\.test to team@example\.test would make team@example\.test contain itself",
    ):
        await service.add_members("team@example.test", ["all@example.test"])
    assert await service.members("team@example.test") == []


async def test_member_refusals(service: AccountService) -> None:
    """Unknown local members, duplicates, non-members and non-lists are refused; external members are fine."""
    await service.add_user("alice@example.test", password="pw")
    await service.add_list("all@example.test")
    with pytest.raises(AccountError, match=r"no account or alias ghost@example\.test in the local domain example\.test"):
        await service.add_members("all@example.test", ["ghost@example.test"])
    added = await service.add_members("all@example.test", ["Alice@example.test", "partner@Elsewhere.ORG"])
    assert added == ["alice@example.test", "partner@elsewhere.org"]
    with pytest.raises(AccountError, match=r"alice@example\.test is already a member of all@example\.test"):
        await service.add_members("all@example.test", ["alice@example.test"])
    with pytest.raises(AccountError, match=r"bob@example\.test is not a member of all@example\.test"):
        await service.remove_members("all@example.test", ["bob@example.test"])
    with pytest.raises(AccountError, match=r"alice@example\.test is a user, not a distribution list"):
        await service.add_members("alice@example.test", ["partner@elsewhere.org"])
    await service.remove_members("all@example.test", ["partner@elsewhere.org"])
    assert await service.members("all@example.test") == ["alice@example.test"]


async def test_aliases(service: AccountService) -> None:
    """Aliases need a local domain and an existing target; an alias of an alias points at the account."""
    await service.add_user("alice@example.test", password="pw")
    with pytest.raises(AccountError, match=r"cannot add alias a@example\.test: no account ghost@example\.test"):
        await service.add_alias("a@example.test", "ghost@example.test")
    with pytest.raises(AccountError, match=r"example\.org is not a local domain"):
        await service.add_alias("a@example.org", "alice@example.test")
    assert (await service.add_alias("a@example.test", "alice@example.test")).target == "alice@example.test"
    assert (await service.add_alias("al@example.test", "a@example.test")).target == "alice@example.test"
    with pytest.raises(AccountError, match=r"alice@example\.test is an account, not an alias"):
        await service.remove_alias("alice@example.test")
    await service.remove_alias("a@example.test")
    with pytest.raises(AccountError, match=r"no alias a@example\.test"):
        await service.remove_alias("a@example.test")
    with pytest.raises(AccountError, match=r"al@example\.test is an alias of alice@example\.test, not an account"):
        await service.remove("al@example.test")


async def test_domains(service: AccountService) -> None:
    """Domains are normalised, duplicates and in-use removals are refused with why."""
    assert await service.add_domain("Other.TEST") == "other.test"
    with pytest.raises(AccountError, match=r"domain other\.test already exists"):
        await service.add_domain("other.test")
    await service.add_shared("x@other.test")
    with pytest.raises(AccountError, match=r"domain other\.test still has 1 account\(s\) \(e\.g\. x@other\.test\): remove them first"):
        await service.remove_domain("other.test")
    await service.remove("x@other.test")
    await service.remove_domain("other.test")
    assert await service.list_domains() == ["example.test"]
    with pytest.raises(AccountError, match=r"no domain other\.test"):
        await service.remove_domain("other.test")


async def test_user_only_actions_refuse_other_kinds(service: AccountService) -> None:
    """Passwords and enable/disable are for users; unknown accounts are named."""
    await service.add_room("room1@example.test", "Room 1", capacity=8)
    with pytest.raises(AccountError, match=r"room1@example\.test is a room: only users have a password"):
        await service.set_password("room1@example.test", "pw")
    with pytest.raises(AccountError, match=r"room1@example\.test is a room: only users can be enabled or disabled"):
        await service.disable("room1@example.test")
    with pytest.raises(AccountError, match=r"no account ghost@example\.test"):
        await service.enable("ghost@example.test")
    with pytest.raises(AccountError, match="password refused: the password is empty"):
        await service.add_user("alice@example.test", password="")


async def test_enable_disable_and_password(service: AccountService) -> None:
    """disable/enable flip the flag; set_password replaces the stored hash."""
    user = await service.add_user("alice@example.test")
    assert user.password_hash is None
    await service.disable("alice@example.test")
    assert not (await service.get("alice@example.test")).enabled
    await service.enable("alice@example.test")
    assert (await service.get("alice@example.test")).enabled
    await service.set_password("alice@example.test", "new pw")
    stored = (await service.get("alice@example.test")).password_hash
    assert stored is not None and (await service.hasher.verify("new pw", stored)).ok


async def test_room_capacity(service: AccountService) -> None:
    """Rooms keep a capacity in 1..MAX; nonsense is refused."""
    await service.add_room("room1@example.test", capacity=12)
    assert (await service.room_settings("room1@example.test")).capacity == 12
    with pytest.raises(AccountError, match="room capacity must be between 1 and"):
        await service.add_room("room2@example.test", capacity=0)
    await service.add_room("room3@example.test")
    assert (await service.room_settings("room3@example.test")).capacity is None


async def test_list_policy_defaults_and_changes(service: AccountService) -> None:
    """A new list requires authenticated senders; allowed/blocked sender lists are normalised and replaced whole."""
    await service.add_list("all@example.test")
    assert await service.list_policy("all@example.test") == ListPolicy(True, (), ())
    policy = await service.set_list_policy(
        "all@example.test",
        require_sender_authentication=False,
        allowed_senders=["Boss@Partner.ORG", "boss@partner.org"],
    )
    assert policy == ListPolicy(False, ("boss@partner.org",), ())
    policy = await service.set_list_policy("all@example.test", blocked_senders=["spam@bad.example"], allowed_senders=[])
    assert policy == ListPolicy(False, (), ("spam@bad.example",))
    assert ListPolicy.of(await service.get("all@example.test")) == policy
    with pytest.raises(AccountError, match="invalid address"):
        await service.set_list_policy("all@example.test", allowed_senders=["not an address"])


async def test_shared_settings_defaults_and_changes(service: AccountService) -> None:
    """Copy-to-Sent flags default to False and are only set on shared mailboxes."""
    await service.add_shared("hr@example.test")
    await service.add_list("all@example.test")
    assert await service.shared_settings("hr@example.test") == SharedSettings(False, False)
    assert await service.set_shared_settings("hr@example.test", copy_sent_as=True) == SharedSettings(True, False)
    assert SharedSettings.of(await service.get("hr@example.test")).copy_sent_as
    with pytest.raises(AccountError, match=r"all@example\.test is a distribution list, not a shared mailbox"):
        await service.set_shared_settings("all@example.test", copy_send_on_behalf=True)


async def test_concurrent_licences_never_exceed_the_pool(service: AccountService) -> None:
    """Two licences racing for the last seat: one wins, the other gets the seat message from the store's check."""
    for i in range(SEATS - 1):
        await service.add_user(f"u{i}@example.test", password="pw")
    await service.add_user("x@example.test", licensed=False)
    await service.add_user("y@example.test", licensed=False)
    results = await asyncio.gather(
        service.license("x@example.test"), service.license("y@example.test"), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], AccountError)
    assert str(errors[0]) == f"no licence seat free: {SEATS} of {SEATS} in use"
    assert await service.licence_status() == (SEATS, SEATS, 0)


@pytest.mark.parametrize("name", ["Eve\r\nBcc: all@example.test", "Tab\there", "Null\x00", "C1\x85x", "x" * 201])
async def test_display_names_with_control_characters_or_too_long_are_refused(service: AccountService, name: str) -> None:
    """A display name with CR/LF (header injection wherever it is written), other control characters or over 200 characters is refused for every kind and on rename."""
    for create in (
        lambda: service.add_user("eve@example.test", name, "pw-1234567890"),
        lambda: service.add_shared("hr@example.test", name),
        lambda: service.add_room("room@example.test", name),
        lambda: service.add_list("team@example.test", name),
    ):
        with pytest.raises(AccountError, match="display name"):
            await create()
    await service.add_user("ok@example.test", "  Ok Name  ", "pw-1234567890")
    assert (await service.get("ok@example.test")).display_name == "Ok Name"
    with pytest.raises(AccountError, match="display name"):
        await service.set_display_name("ok@example.test", name)
    assert (await service.get("ok@example.test")).display_name == "Ok Name"
