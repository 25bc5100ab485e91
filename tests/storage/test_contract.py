"""Contract suite: every storage backend must pass these unchanged (see conftest.BACKENDS)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

import pytest

from storage.errors import AlreadyExists, Conflict, NotFound, SeatsExhausted, StorageError
from storage.interfaces import Store
from storage.types import (
    DEFAULT_FOLDERS,
    Account,
    AccountKind,
    Alias,
    LocalRecipient,
    Right,
)
from tests.storage.conftest import DOMAIN, Backend

A = Right.FULL_ACCESS
S = Right.SEND_AS
B = Right.SEND_ON_BEHALF


async def inbox_id(store: Store, account: Account, name: str = "INBOX") -> int:
    folder = await store.mail.get_folder(account.id, name)
    assert folder is not None
    return folder.id


# -- domains


async def test_domains_add_list_remove(store: Store) -> None:
    """Domains are lower-cased, listed sorted, duplicates refused, removable when empty."""
    await store.directory.add_domain("Other.TEST")
    assert await store.directory.list_domains() == [DOMAIN, "other.test"]
    with pytest.raises(AlreadyExists):
        await store.directory.add_domain("other.test")
    await store.directory.remove_domain("other.test")
    assert await store.directory.list_domains() == [DOMAIN]
    with pytest.raises(NotFound):
        await store.directory.remove_domain("other.test")


async def test_remove_domain_with_accounts_is_conflict(store: Store, user: Account) -> None:
    """A domain with accounts cannot be removed."""
    with pytest.raises(Conflict):
        await store.directory.remove_domain(DOMAIN)


# -- accounts


@pytest.mark.parametrize("kind", [AccountKind.USER, AccountKind.SHARED, AccountKind.ROOM])
async def test_mailbox_kinds_get_default_folders(store: Store, kind: AccountKind) -> None:
    """User, shared and room accounts get DEFAULT_FOLDERS, subscribed, with special-use."""
    acc = await store.directory.create_account(f"X{kind}@Example.Test", kind, "X")
    assert acc.address == f"x{kind}@{DOMAIN}"
    assert acc.kind == kind and acc.enabled and not acc.licensed
    folders = await store.mail.list_folders(acc.id)
    assert [f.name for f in folders][0] == "INBOX"
    assert {(f.name, f.special_use) for f in folders} == set(DEFAULT_FOLDERS)
    assert all(f.subscribed for f in folders)
    assert sorted(f.name for f in folders[1:]) == [f.name for f in folders[1:]]


async def test_list_account_has_no_folders(store: Store) -> None:
    """A distribution list has no folders."""
    acc = await store.directory.create_account(f"team@{DOMAIN}", AccountKind.LIST, "Team")
    assert await store.mail.list_folders(acc.id) == []


async def test_create_account_refusals(store: Store, user: Account) -> None:
    """Duplicate address, unknown domain, licence or password on a non-user are refused."""
    d = store.directory
    with pytest.raises(AlreadyExists):
        await d.create_account(f"ALICE@{DOMAIN}", AccountKind.SHARED)
    with pytest.raises(NotFound):
        await d.create_account("x@nowhere.test", AccountKind.USER)
    with pytest.raises(Conflict):
        await d.create_account(f"s@{DOMAIN}", AccountKind.SHARED, licensed=True)
    with pytest.raises(Conflict):
        await d.create_account(f"r@{DOMAIN}", AccountKind.ROOM, password_hash="$x$")
    with pytest.raises(StorageError):
        await d.create_account("no-at-sign", AccountKind.USER)
    assert [a.address for a in await d.list_accounts()] == [user.address]


async def test_account_lookup_and_settings(store: Store) -> None:
    """get_account is case-insensitive; settings round-trip as JSON and merge with None deleting."""
    d = store.directory
    acc = await d.create_account(
        f"Room1@{DOMAIN}", AccountKind.ROOM, "Room 1", settings={"capacity": 8, "auto": True}
    )
    assert await d.get_account(f"ROOM1@{DOMAIN}") == acc
    assert await d.get_account_by_id(acc.id) == acc
    assert acc.settings == {"capacity": 8, "auto": True}
    updated = await d.update_settings(acc.address, {"capacity": 10, "auto": None, "x": [1]})
    assert updated.settings == {"capacity": 10, "x": [1]}
    assert (await d.get_account(acc.address)).settings == {"capacity": 10, "x": [1]}  # type: ignore[union-attr]
    await d.set_display_name(acc.address, "Big room")
    assert (await d.get_account(acc.address)).display_name == "Big room"  # type: ignore[union-attr]
    assert await d.get_account(f"nobody@{DOMAIN}") is None
    assert await d.get_account_by_id(99999) is None
    with pytest.raises(NotFound):
        await d.update_settings(f"nobody@{DOMAIN}", {})


async def test_list_accounts_by_kind_sorted(store: Store) -> None:
    """list_accounts orders by address and filters by kind."""
    d = store.directory
    await d.create_account(f"zed@{DOMAIN}", AccountKind.USER)
    await d.create_account(f"amy@{DOMAIN}", AccountKind.USER)
    await d.create_account(f"sales@{DOMAIN}", AccountKind.SHARED)
    assert [a.address for a in await d.list_accounts()] == [
        f"amy@{DOMAIN}", f"sales@{DOMAIN}", f"zed@{DOMAIN}"
    ]
    assert [a.address for a in await d.list_accounts(AccountKind.SHARED)] == [f"sales@{DOMAIN}"]


async def test_password_and_enabled(store: Store, user: Account) -> None:
    """Password hashes are for users only; enabled toggles; unknown accounts are NotFound."""
    d = store.directory
    shared = await d.create_account(f"sales@{DOMAIN}", AccountKind.SHARED)
    await d.set_password_hash(user.address, "$argon2$abc")
    assert (await d.get_account(user.address)).password_hash == "$argon2$abc"  # type: ignore[union-attr]
    with pytest.raises(Conflict):
        await d.set_password_hash(shared.address, "$argon2$abc")
    await d.set_enabled(user.address, False)
    assert not (await d.get_account(user.address)).enabled  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        await d.set_enabled(f"nobody@{DOMAIN}", True)
    with pytest.raises(NotFound):
        await d.set_password_hash(f"nobody@{DOMAIN}", None)


async def test_remove_account_removes_everything(store: Store, user: Account) -> None:
    """Removing an account drops its folders, messages, aliases, grants and memberships."""
    d = store.directory
    shared = await d.create_account(f"sales@{DOMAIN}", AccountKind.SHARED)
    lst = await d.create_account(f"team@{DOMAIN}", AccountKind.LIST)
    await d.add_alias(f"al@{DOMAIN}", user.address)
    await d.grant(shared.address, user.address, [A])
    await d.add_members(lst.address, [user.address, f"al@{DOMAIN}", "ext@remote.test"])
    res = await store.mail.deliver(b"only alice", [LocalRecipient(user.id)])
    await d.remove_account(user.address)
    assert await d.get_account(user.address) is None
    assert await store.mail.list_folders(user.id) == []
    assert await d.list_aliases() == []
    assert await d.grants_on(shared.address) == []
    assert await d.members(lst.address) == ["ext@remote.test"]
    with pytest.raises(NotFound):
        await store.mail.get_body(res.blob_id)
    with pytest.raises(NotFound):
        await d.remove_account(user.address)


# -- licences


async def test_licences_and_seats(store: Store, user: Account, user2: Account) -> None:
    """set_licensed counts seats; beyond max_seats is SeatsExhausted; unlicensing frees one."""
    d = store.directory
    shared = await d.create_account(f"sales@{DOMAIN}", AccountKind.SHARED)
    await d.set_licensed(user.address, True, max_seats=1)
    assert await d.count_licensed() == 1
    await d.set_licensed(user.address, True, max_seats=1)  # already licensed: no new seat
    with pytest.raises(SeatsExhausted):
        await d.set_licensed(user2.address, True, max_seats=1)
    with pytest.raises(SeatsExhausted):
        await d.create_account(f"carol@{DOMAIN}", AccountKind.USER, licensed=True, max_seats=1)
    assert await d.get_account(f"carol@{DOMAIN}") is None
    with pytest.raises(Conflict):
        await d.set_licensed(shared.address, True, max_seats=10)
    with pytest.raises(NotFound):
        await d.set_licensed(f"nobody@{DOMAIN}", True, max_seats=10)
    await d.set_licensed(user.address, False, max_seats=1)
    await d.set_licensed(user2.address, True, max_seats=1)
    assert (await d.get_account(user2.address)).licensed  # type: ignore[union-attr]
    assert not (await d.get_account(user.address)).licensed  # type: ignore[union-attr]
    assert await d.count_licensed() == 1


async def test_concurrent_licensing_never_exceeds_seats(store: Store) -> None:
    """Twenty concurrent set_licensed calls on a 5-seat pool license exactly five."""
    d = store.directory
    users = [await d.create_account(f"u{i}@{DOMAIN}", AccountKind.USER) for i in range(20)]
    results = await asyncio.gather(
        *(d.set_licensed(u.address, True, max_seats=5) for u in users), return_exceptions=True
    )
    assert sum(r is None for r in results) == 5
    assert all(isinstance(r, SeatsExhausted) for r in results if r is not None)
    assert await d.count_licensed() == 5


# -- aliases


async def test_aliases(store: Store, user: Account) -> None:
    """Aliases resolve one step; may not shadow addresses or aliases; need a local domain."""
    d = store.directory
    await d.add_alias(f"Ali@{DOMAIN}", user.address)
    assert await d.list_aliases() == [Alias(f"ali@{DOMAIN}", user.address)]
    assert await d.list_aliases(user.address) == [Alias(f"ali@{DOMAIN}", user.address)]
    assert (await d.resolve(f"ALI@{DOMAIN}")) == user
    assert (await d.resolve(user.address)) == user
    assert await d.get_account(f"ali@{DOMAIN}") is None  # get_account does not follow aliases
    assert await d.resolve(f"nobody@{DOMAIN}") is None
    with pytest.raises(AlreadyExists):
        await d.add_alias(f"ali@{DOMAIN}", user.address)
    with pytest.raises(AlreadyExists):
        await d.add_alias(user.address, user.address)
    with pytest.raises(AlreadyExists):
        await d.create_account(f"ali@{DOMAIN}", AccountKind.USER)
    with pytest.raises(NotFound):
        await d.add_alias(f"x@{DOMAIN}", f"nobody@{DOMAIN}")
    with pytest.raises(NotFound):
        await d.add_alias("x@elsewhere.test", user.address)
    await d.remove_alias(f"ali@{DOMAIN}")
    assert await d.list_aliases() == []
    with pytest.raises(NotFound):
        await d.remove_alias(f"ali@{DOMAIN}")


# -- grants


async def test_grants(store: Store, user: Account, user2: Account) -> None:
    """Rights are a set per (mailbox, user); revoking all removes the grant."""
    d = store.directory
    shared = await d.create_account(f"sales@{DOMAIN}", AccountKind.SHARED)
    assert await d.grant(shared.address, user.address, [A]) == {A}
    assert await d.grant(shared.address, user.address, [S, A]) == {A, S}
    assert await d.grant(shared.address, user2.address, [B]) == {B}
    assert await d.rights(f"SALES@{DOMAIN}", user.address) == {A, S}
    on = await d.grants_on(shared.address)
    assert [(g.user, g.rights) for g in on] == [(user.address, {A, S}), (user2.address, {B})]
    of = await d.grants_of(user.address)
    assert [(g.mailbox, g.rights) for g in of] == [(shared.address, {A, S})]
    assert await d.revoke(shared.address, user.address, [A]) == {S}
    assert await d.revoke(shared.address, user.address, [S, B]) == frozenset()
    assert await d.grants_of(user.address) == []
    assert await d.rights(shared.address, user.address) == frozenset()
    assert await d.rights(f"nobody@{DOMAIN}", user.address) == frozenset()


async def test_grant_conflicts(store: Store, user: Account, user2: Account) -> None:
    """Granting on a user mailbox or to a non-user is a Conflict; unknown names NotFound."""
    d = store.directory
    shared = await d.create_account(f"sales@{DOMAIN}", AccountKind.SHARED)
    room = await d.create_account(f"room@{DOMAIN}", AccountKind.ROOM)
    lst = await d.create_account(f"team@{DOMAIN}", AccountKind.LIST)
    with pytest.raises(Conflict):
        await d.grant(user2.address, user.address, [A])
    with pytest.raises(Conflict):
        await d.grant(shared.address, room.address, [A])
    with pytest.raises(Conflict):
        await d.grant(shared.address, lst.address, [S])
    with pytest.raises(NotFound):
        await d.grant(shared.address, f"nobody@{DOMAIN}", [A])
    with pytest.raises(NotFound):
        await d.grant(f"nobody@{DOMAIN}", user.address, [A])
    with pytest.raises(NotFound):
        await d.revoke(f"nobody@{DOMAIN}", user.address, [A])
    assert await d.grant(room.address, user.address, [A]) == {A}
    assert await d.grant(lst.address, user.address, [S]) == {S}


# -- list members


async def test_list_members(store: Store, user: Account) -> None:
    """Members are any addresses, lower-cased, in order added; duplicates and unknowns refused."""
    d = store.directory
    lst = await d.create_account(f"team@{DOMAIN}", AccountKind.LIST)
    await d.add_members(lst.address, ["Ext@Remote.Test", user.address])
    assert await d.members(lst.address) == ["ext@remote.test", user.address]
    assert await d.lists_containing(user.address) == [lst.address]
    with pytest.raises(AlreadyExists):
        await d.add_members(lst.address, [user.address])
    with pytest.raises(NotFound):
        await d.add_members(f"nolist@{DOMAIN}", [user.address])
    with pytest.raises(Conflict):
        await d.add_members(user.address, ["x@remote.test"])
    with pytest.raises(NotFound):
        await d.remove_members(lst.address, ["notamember@remote.test"])
    await d.remove_members(lst.address, ["EXT@remote.test"])
    assert await d.members(lst.address) == [user.address]


async def test_list_cannot_contain_itself(store: Store) -> None:
    """Adding a list to itself (directly or via its alias) is a Conflict that says why."""
    d = store.directory
    lst = await d.create_account(f"team@{DOMAIN}", AccountKind.LIST)
    await d.add_alias(f"crew@{DOMAIN}", lst.address)
    with pytest.raises(Conflict, match="itself"):
        await d.add_members(lst.address, [lst.address])
    with pytest.raises(Conflict, match="itself"):
        await d.add_members(lst.address, [f"crew@{DOMAIN}"])
    assert await d.members(lst.address) == []


async def test_list_indirect_cycle_refused(store: Store) -> None:
    """la > lb > lc: adding la to lc is a Conflict naming the loop; nothing is added."""
    d = store.directory
    la = await d.create_account(f"la@{DOMAIN}", AccountKind.LIST)
    lb = await d.create_account(f"lb@{DOMAIN}", AccountKind.LIST)
    lc = await d.create_account(f"lc@{DOMAIN}", AccountKind.LIST)
    await d.add_members(la.address, [lb.address])
    await d.add_members(lb.address, [lc.address])
    with pytest.raises(Conflict, match="loop"):
        await d.add_members(lc.address, ["x@remote.test", la.address])
    assert await d.members(lc.address) == []
    await d.add_members(la.address, [lc.address])  # a diamond is not a cycle
    assert await d.members(la.address) == [lb.address, lc.address]


# -- version


async def test_version_changes_with_directory_changes(store: Store) -> None:
    """version() changes after every directory change and not after reads or mail changes."""
    d = store.directory
    v0 = await d.version()
    acc = await d.create_account(f"x@{DOMAIN}", AccountKind.USER)
    v1 = await d.version()
    assert v1 != v0
    await d.list_accounts()
    await store.mail.deliver(b"m", [LocalRecipient(acc.id)])
    assert await d.version() == v1
    await d.set_enabled(acc.address, False)
    v2 = await d.version()
    assert v2 not in (v0, v1)
    with pytest.raises(NotFound):
        await d.set_enabled(f"nobody@{DOMAIN}", False)
    assert await d.version() == v2  # a refused change changes nothing


# -- folders


async def test_folder_create_get_delete(store: Store, user: Account) -> None:
    """Folders are created, found (inbox in any case), and deleted; INBOX cannot be."""
    m = store.mail
    f = await m.create_folder(user.id, "Projects/2024")
    assert f.name == "Projects/2024" and f.uidnext == 1 and f.messages == 0
    assert (await m.get_folder(user.id, "Projects/2024")) == f
    assert (await m.get_folder(user.id, "inbox")).name == "INBOX"  # type: ignore[union-attr]
    with pytest.raises(AlreadyExists):
        await m.create_folder(user.id, "Projects/2024")
    with pytest.raises(AlreadyExists):
        await m.create_folder(user.id, "Inbox")
    await m.delete_folder(user.id, "Projects/2024")
    assert await m.get_folder(user.id, "Projects/2024") is None
    with pytest.raises(NotFound):
        await m.delete_folder(user.id, "Projects/2024")
    with pytest.raises(Conflict):
        await m.delete_folder(user.id, "inbox")


async def test_uidvalidity_fresh_and_never_reused(store: Store, user: Account) -> None:
    """Every new folder gets a larger UIDVALIDITY, even when re-created with the same name."""
    m = store.mail
    seen = {f.uidvalidity for f in await m.list_folders(user.id)}
    f1 = await m.create_folder(user.id, "X")
    await m.delete_folder(user.id, "X")
    f2 = await m.create_folder(user.id, "X")
    assert f1.uidvalidity not in seen
    assert f2.uidvalidity > f1.uidvalidity > max(seen)
    assert 0 < f2.uidvalidity < 2**32


async def test_rename_folder_with_children(store: Store, user: Account) -> None:
    """Renaming moves the folder and its children and keeps UIDVALIDITY and messages."""
    m = store.mail
    a = await m.create_folder(user.id, "A")
    await m.create_folder(user.id, "A/B")
    await m.create_folder(user.id, "AB")
    await m.append(a.id, b"msg")
    await m.rename_folder(user.id, "A", "Z")
    names = [f.name for f in await m.list_folders(user.id)]
    assert "Z" in names and "Z/B" in names and "AB" in names and "A" not in names
    z = await m.get_folder(user.id, "Z")
    assert z is not None and z.id == a.id and z.uidvalidity == a.uidvalidity and z.messages == 1
    with pytest.raises(AlreadyExists):
        await m.rename_folder(user.id, "Z", "AB")
    with pytest.raises(NotFound):
        await m.rename_folder(user.id, "nope", "other")
    with pytest.raises(AlreadyExists):
        await m.rename_folder(user.id, "Z", "inbox")


async def test_rename_inbox_moves_messages(store: Store, user: Account) -> None:
    """RFC 3501 §6.3.5: renaming INBOX moves its messages to the new folder; INBOX stays, empty."""
    m = store.mail
    inbox = await m.get_folder(user.id, "INBOX")
    assert inbox is not None
    await m.append(inbox.id, b"one")
    await m.append(inbox.id, b"two", flags=["\\Seen"])
    await m.rename_folder(user.id, "INBOX", "Old mail")
    new = await m.get_folder(user.id, "Old mail")
    after = await m.get_folder(user.id, "INBOX")
    assert new is not None and after is not None
    assert after.id == inbox.id and after.messages == 0 and after.unseen == 0
    assert new.messages == 2 and new.unseen == 1 and new.uidvalidity != inbox.uidvalidity
    assert [x.uid for x in await m.list_messages(new.id)] == [1, 2]
    assert (await m.append(inbox.id, b"three")).uid == 3  # INBOX UIDs are never reused


async def test_subscribe(store: Store, user: Account) -> None:
    """set_subscribed toggles the flag; unknown folder is NotFound."""
    m = store.mail
    await m.create_folder(user.id, "News")
    assert not (await m.get_folder(user.id, "News")).subscribed  # type: ignore[union-attr]
    await m.set_subscribed(user.id, "News", True)
    assert (await m.get_folder(user.id, "News")).subscribed  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        await m.set_subscribed(user.id, "Nope", True)


# -- messages


async def test_append_and_body(store: Store, user: Account) -> None:
    """append stores the body content-addressed and returns its metadata."""
    m = store.mail
    fid = await inbox_id(store, user)
    when = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    meta = await m.append(fid, b"Subject: hi\r\n\r\nbody\r\n", ["\\seen", "$Label"], when)
    assert meta.uid == 1 and meta.size == len(b"Subject: hi\r\n\r\nbody\r\n")
    assert meta.flags == {"\\Seen", "$Label"}
    assert meta.internal_date == when
    assert meta.blob_id == hashlib.sha256(b"Subject: hi\r\n\r\nbody\r\n").hexdigest()
    assert await m.get_body(meta.blob_id) == b"Subject: hi\r\n\r\nbody\r\n"
    assert await m.list_messages(fid) == [meta]
    with pytest.raises(NotFound):
        await m.get_body("0" * 64)
    with pytest.raises(NotFound):
        await m.append(999999, b"x")


async def test_uids_increase_and_are_never_reused(store: Store, user: Account) -> None:
    """UIDs strictly increase and are not given again after expunge."""
    m = store.mail
    fid = await inbox_id(store, user)
    uids = [(await m.append(fid, f"m{i}".encode())).uid for i in range(3)]
    assert uids == [1, 2, 3]
    await m.store_flags(fid, [3], "add", ["\\Deleted"])
    assert await m.expunge(fid) == [3]
    assert (await m.append(fid, b"m4")).uid == 4
    f = await m.get_folder(user.id, "INBOX")
    assert f is not None and f.uidnext == 5 and f.messages == 3


async def test_counts_and_unseen(store: Store, user: Account) -> None:
    """Folder message and unseen counts follow appends, flag changes and expunges."""
    m = store.mail
    fid = await inbox_id(store, user)
    for i in range(4):
        await m.append(fid, f"m{i}".encode(), ["\\Seen"] if i == 0 else [])
    f = await m.get_folder(user.id, "INBOX")
    assert f is not None and (f.messages, f.unseen) == (4, 3)
    await m.store_flags(fid, [2, 3], "add", ["\\Seen", "\\Deleted"])
    f = await m.get_folder(user.id, "INBOX")
    assert f is not None and (f.messages, f.unseen) == (4, 1)
    await m.expunge(fid)
    f = await m.get_folder(user.id, "INBOX")
    assert f is not None and (f.messages, f.unseen) == (2, 1)
    listed = {x.name: x for x in await m.list_folders(user.id)}
    assert (listed["INBOX"].messages, listed["INBOX"].unseen) == (2, 1)


async def test_store_flags_modes_and_modseq(store: Store, user: Account) -> None:
    """add/remove/replace change flags; each change gets the new HIGHESTMODSEQ (RFC 7162)."""
    m = store.mail
    fid = await inbox_id(store, user)
    m1 = await m.append(fid, b"1")
    m2 = await m.append(fid, b"2", ["\\Flagged"])
    assert m2.modseq > m1.modseq
    changes, refused = await m.store_flags(fid, [1, 2], "add", ["\\Flagged"])
    assert refused == [] and [c.uid for c in changes] == [1]  # 2 already had it
    assert changes[0].flags == {"\\Flagged"} and changes[0].modseq > m2.modseq
    folder = await m.get_folder(user.id, "INBOX")
    assert folder is not None and folder.highestmodseq == changes[0].modseq
    after = {x.uid: x for x in await m.list_messages(fid)}
    assert after[2].modseq == m2.modseq  # unchanged message keeps its modseq
    changes, _ = await m.store_flags(fid, [1, 2], "replace", ["$A", "\\SEEN"])
    assert {c.uid: c.flags for c in changes} == {1: {"$A", "\\Seen"}, 2: {"$A", "\\Seen"}}
    changes, _ = await m.store_flags(fid, [1, 2, 77], "remove", ["$a", "$A"])
    assert {c.uid: c.flags for c in changes} == {1: {"\\Seen"}, 2: {"\\Seen"}}
    since = await m.list_messages(fid, changed_since=changes[0].modseq - 1)
    assert [x.uid for x in since] == [1, 2]
    assert await m.list_messages(fid, changed_since=changes[0].modseq) == []


async def test_store_flags_unchanged_since(store: Store, user: Account) -> None:
    """RFC 7162 §3.1.3: messages changed after UNCHANGEDSINCE are refused, others applied."""
    m = store.mail
    fid = await inbox_id(store, user)
    await m.append(fid, b"1")
    await m.append(fid, b"2")
    (c,), _ = await m.store_flags(fid, [2], "add", ["\\Answered"])
    base = c.modseq - 1
    changes, refused = await m.store_flags(
        fid, [1, 2], "add", ["\\Flagged"], unchanged_since=base
    )
    assert [x.uid for x in changes] == [1] and refused == [2]
    flags = {x.uid: x.flags for x in await m.list_messages(fid)}
    assert flags == {1: {"\\Flagged"}, 2: {"\\Answered"}}


async def test_expunge_only_deleted_and_subset(store: Store, user: Account) -> None:
    """expunge removes only \\Deleted messages, restricted to the given UIDs."""
    m = store.mail
    fid = await inbox_id(store, user)
    for i in range(4):
        await m.append(fid, f"m{i}".encode())
    await m.store_flags(fid, [1, 2, 4], "add", ["\\Deleted"])
    before = (await m.get_folder(user.id, "INBOX")).highestmodseq  # type: ignore[union-attr]
    assert await m.expunge(fid, [2, 3, 4]) == [2, 4]
    assert [x.uid for x in await m.list_messages(fid)] == [1, 3]
    assert (await m.get_folder(user.id, "INBOX")).highestmodseq > before  # type: ignore[union-attr]
    assert await m.expunge(fid) == [1]
    assert await m.expunge(fid) == []


async def test_blob_deleted_with_last_reference(store: Store, user: Account) -> None:
    """A body shared by two folders lives until the last reference is expunged."""
    m = store.mail
    fid = await inbox_id(store, user)
    arch = await inbox_id(store, user, "Archive")
    meta = await m.append(fid, b"shared body")
    await m.copy(fid, [meta.uid], arch)
    await m.store_flags(fid, [meta.uid], "add", ["\\Deleted"])
    await m.expunge(fid)
    assert await m.get_body(meta.blob_id) == b"shared body"
    await m.delete_folder(user.id, "Archive")
    with pytest.raises(NotFound):
        await m.get_body(meta.blob_id)


async def test_copy(store: Store, user: Account) -> None:
    """COPY gives new UIDs in the target, keeps flags and dates, shares the body."""
    m = store.mail
    src = await inbox_id(store, user)
    dst = await inbox_id(store, user, "Archive")
    a = await m.append(dst, b"already there")
    m1 = await m.append(src, b"1", ["\\Seen"])
    m2 = await m.append(src, b"2")
    pairs = await m.copy(src, [m2.uid, m1.uid, 99], dst)
    assert pairs == [(1, a.uid + 1), (2, a.uid + 2)]
    copied = {x.uid: x for x in await m.list_messages(dst)}
    assert copied[2].flags == {"\\Seen"} and copied[2].blob_id == m1.blob_id
    assert copied[2].internal_date == m1.internal_date and copied[2].size == 1
    assert copied[2].modseq > a.modseq
    assert len(await m.list_messages(src)) == 2
    assert await m.copy(src, [42], dst) == []


async def test_move(store: Store, user: Account) -> None:
    """MOVE copies then removes the sources in one step (RFC 6851)."""
    m = store.mail
    src = await inbox_id(store, user)
    dst = await inbox_id(store, user, "Archive")
    for i in range(3):
        await m.append(src, f"m{i}".encode())
    pairs = await m.move(src, [1, 3], dst)
    assert pairs == [(1, 1), (3, 2)]
    assert [x.uid for x in await m.list_messages(src)] == [2]
    assert [x.uid for x in await m.list_messages(dst)] == [1, 2]
    s = await m.get_folder(user.id, "INBOX")
    d = await m.get_folder(user.id, "Archive")
    assert s is not None and d is not None and (s.messages, d.messages) == (1, 2)
    with pytest.raises(NotFound):
        await m.move(src, [2], 999999)
    assert [x.uid for x in await m.list_messages(src)] == [2]


# -- delivery


async def test_deliver_to_several_stores_body_once(store: Store, user: Account, user2: Account) -> None:
    """One delivery to many recipients stores one body and gives each folder a UID."""
    m = store.mail
    body = b"Subject: all\r\n\r\nhello\r\n"
    res = await m.deliver(
        body,
        [LocalRecipient(user.id), LocalRecipient(user2.id, "Archive", frozenset({"\\Flagged"})),
         LocalRecipient(user2.id, "No such folder")],
        mail_from="x@remote.test",
    )
    assert res.uids == {(user.id, "INBOX"): 1, (user2.id, "Archive"): 1, (user2.id, "INBOX"): 1}
    assert res.blob_id == hashlib.sha256(body).hexdigest() and res.queue_id is None
    a = await m.list_messages(await inbox_id(store, user))
    b = await m.list_messages(await inbox_id(store, user2, "Archive"))
    assert a[0].blob_id == b[0].blob_id == res.blob_id
    assert b[0].flags == {"\\Flagged"}
    assert await m.get_body(res.blob_id) == body


async def test_deliver_with_remote_recipients_queues(store: Store, user: Account) -> None:
    """Remote recipients become one pending queue entry in the same commit."""
    res = await store.mail.deliver(
        b"x", [LocalRecipient(user.id)], mail_from=user.address,
        remote_recipients=["a@remote.test", "b@remote.test"],
    )
    assert res.queue_id is not None
    entry = await store.queue.get_queue_entry(res.queue_id)
    assert entry is not None and entry.blob_id == res.blob_id and entry.mail_from == user.address
    assert [(r.address, r.status, r.attempts) for r in entry.recipients] == [
        ("a@remote.test", "pending", 0), ("b@remote.test", "pending", 0)
    ]
    assert await store.queue.list_queue() == [entry]
    assert await store.queue.get_queue_entry(res.queue_id + 100) is None
    # A queued body stays while the queue references it, even with no folder entry.
    fid = await inbox_id(store, user)
    await store.mail.store_flags(fid, [1], "add", ["\\Deleted"])
    await store.mail.expunge(fid)
    assert await store.mail.get_body(res.blob_id) == b"x"


async def test_deliver_is_atomic(store: Store, user: Account) -> None:
    """A failing recipient (a list has no mailbox, or no such account) aborts the delivery."""
    lst = await store.directory.create_account(f"team@{DOMAIN}", AccountKind.LIST)
    for bad in (lst.id, 999999):
        with pytest.raises(NotFound):
            await store.mail.deliver(
                b"never", [LocalRecipient(user.id), LocalRecipient(bad)],
                remote_recipients=["x@remote.test"],
            )
    inbox = await store.mail.get_folder(user.id, "INBOX")
    assert inbox is not None and inbox.messages == 0 and inbox.uidnext == 1
    assert await store.queue.list_queue() == []
    with pytest.raises(NotFound):
        await store.mail.get_body(hashlib.sha256(b"never").hexdigest())


async def test_concurrent_deliveries(store: Store, user: Account) -> None:
    """50 concurrent deliveries (one failing) all commit, with distinct UIDs 1..49."""
    async def one(i: int) -> int:
        rcpts = [LocalRecipient(user.id)] + ([LocalRecipient(424242)] if i == 7 else [])
        res = await store.mail.deliver(f"msg {i}".encode(), rcpts)
        return res.uids[(user.id, "INBOX")]

    results = await asyncio.gather(*(one(i) for i in range(50)), return_exceptions=True)
    assert isinstance(results[7], NotFound)
    uids = sorted(r for r in results if isinstance(r, int))
    assert uids == list(range(1, 50))
    msgs = await store.mail.list_messages(await inbox_id(store, user))
    assert [x.uid for x in msgs] == uids
    bodies = {await store.mail.get_body(x.blob_id) for x in msgs}
    assert bodies == {f"msg {i}".encode() for i in range(50) if i != 7}


# -- listeners


async def test_listener_called_after_commit(backend: Backend, store: Store, user: Account) -> None:
    """Listeners get the folder id on the loop, after the change is visible to another store."""
    other = await backend.open()
    seen: list[tuple[int, int]] = []
    checks: list[asyncio.Task[None]] = []

    def listener(folder_id: int) -> None:
        async def check() -> None:
            f = await other.mail.get_folder(user.id, "INBOX")
            assert f is not None
            seen.append((folder_id, f.messages))

        asyncio.get_running_loop()  # raises unless called on the event loop
        checks.append(asyncio.ensure_future(check()))

    try:
        store.mail.add_listener(listener)
        fid = await inbox_id(store, user)
        await store.mail.deliver(b"x", [LocalRecipient(user.id)])
        await asyncio.gather(*checks)
        assert seen == [(fid, 1)]
        store.mail.remove_listener(listener)
        await store.mail.append(fid, b"y")
        assert len(checks) == 1
    finally:
        await other.close()


async def test_listener_not_called_for_failed_change(store: Store, user: Account) -> None:
    """A delivery that fails notifies nobody."""
    calls: list[int] = []
    store.mail.add_listener(calls.append)
    with pytest.raises(NotFound):
        await store.mail.deliver(b"x", [LocalRecipient(user.id), LocalRecipient(31337)])
    assert calls == []
    await store.mail.deliver(b"x", [LocalRecipient(user.id)])
    assert calls == [await inbox_id(store, user)]


# -- persistence and sharing


async def test_data_persists_after_reopen(backend: Backend, store: Store, user: Account) -> None:
    """Accounts, grants, messages and flags survive close and reopen."""
    shared = await store.directory.create_account(f"sales@{DOMAIN}", AccountKind.SHARED)
    await store.directory.grant(shared.address, user.address, [S])
    res = await store.mail.deliver(b"keep me", [LocalRecipient(user.id)])
    fid = await inbox_id(store, user)
    await store.mail.store_flags(fid, [1], "add", ["\\Seen"])
    await store.close()
    again = await backend.open()
    try:
        assert await again.directory.get_account(user.address) == user
        assert await again.directory.rights(shared.address, user.address) == {S}
        msgs = await again.mail.list_messages(fid)
        assert [(x.uid, x.flags) for x in msgs] == [(1, {"\\Seen"})]
        assert await again.mail.get_body(res.blob_id) == b"keep me"
    finally:
        await again.close()


async def test_second_store_sees_changes(backend: Backend, store: Store) -> None:
    """Two stores on one database (CLI beside the daemon) see each other's changes."""
    cli = await backend.open()
    try:
        v = await store.directory.version()
        acc = await cli.directory.create_account(f"new@{DOMAIN}", AccountKind.USER)
        assert await store.directory.version() != v
        assert await store.directory.get_account(acc.address) == acc
        await store.mail.deliver(b"hi", [LocalRecipient(acc.id)])
        f = await cli.mail.get_folder(acc.id, "INBOX")
        assert f is not None and f.messages == 1
    finally:
        await cli.close()


async def test_deliver_remote_only_and_refusals(store: Store, user: Account) -> None:
    """A remote-only delivery just queues; no recipients or a bad flag is refused, writing nothing."""
    res = await store.mail.deliver(b"out", [], mail_from=user.address,
                                   remote_recipients=["x@remote.test", "x@remote.test"])
    assert res.uids == {} and res.queue_id is not None
    entry = await store.queue.get_queue_entry(res.queue_id)
    assert entry is not None and [r.address for r in entry.recipients] == ["x@remote.test"]
    with pytest.raises(Conflict):
        await store.mail.deliver(b"nowhere", [])
    with pytest.raises(Conflict):
        await store.mail.deliver(b"bad", [LocalRecipient(user.id, flags=frozenset({"two words"}))])
    assert len(await store.queue.list_queue()) == 1
    inbox = await store.mail.get_folder(user.id, "INBOX")
    assert inbox is not None and inbox.messages == 0
