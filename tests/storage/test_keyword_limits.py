"""Contract: keyword bounds (storage.keywords) on every backend, refused atomically.

MAX_KEYWORDS_PER_MESSAGE keywords per message, MAX_KEYWORD_LENGTH octets per keyword,
MAX_KEYWORDS_PER_FOLDER distinct keywords per folder; only changes that add keywords
are refused, with KeywordLimit, and then nothing is changed.
"""

from __future__ import annotations

import sqlite3

import pytest

from storage.errors import KeywordLimit
from storage.interfaces import Store
from storage.keywords import MAX_KEYWORD_LENGTH, MAX_KEYWORDS_PER_FOLDER, MAX_KEYWORDS_PER_MESSAGE
from storage.types import Account, AccountKind, LocalRecipient
from tests.storage.conftest import DOMAIN, Backend
from tests.storage.test_contract import inbox_id

PER_MESSAGE = MAX_KEYWORDS_PER_MESSAGE
#: Messages that together carry MAX_KEYWORDS_PER_FOLDER distinct keywords.
FILL_MESSAGES = -(-MAX_KEYWORDS_PER_FOLDER // PER_MESSAGE)


def kws(start: int, count: int, prefix: str = "k") -> list[str]:
    return [f"{prefix}{i}" for i in range(start, start + count)]


async def fill(store: Store, folder_id: int) -> list[int]:
    """Append FILL_MESSAGES messages carrying exactly MAX_KEYWORDS_PER_FOLDER distinct
    keywords (k0, k1, ...) between them; return their UIDs."""
    uids = []
    left = MAX_KEYWORDS_PER_FOLDER
    for n in range(FILL_MESSAGES):
        meta = await store.mail.append(folder_id, f"fill {n}".encode())
        take = min(PER_MESSAGE, left)
        await store.mail.store_flags(folder_id, [meta.uid], "add", kws(n * PER_MESSAGE, take))
        left -= take
        uids.append(meta.uid)
    assert not await store.mail.accepts_new_keywords(folder_id)
    return uids


async def snapshot(store: Store, folder_id: int) -> tuple[object, ...]:
    """Everything a refused change must leave as it was."""
    folder = await store.mail.get_folder_by_id(folder_id)
    assert folder is not None
    msgs = await store.mail.list_messages(folder_id)
    return folder.uidnext, folder.highestmodseq, folder.messages, tuple(msgs)


async def test_store_up_to_the_message_bound_then_refused_for_all(store: Store, user: Account) -> None:
    """STORE reaching MAX_KEYWORDS_PER_MESSAGE works; one more is KeywordLimit and no message of the call changes."""
    m = store.mail
    fid = await inbox_id(store, user)
    one = await m.append(fid, b"one")
    two = await m.append(fid, b"two")
    changes, _ = await m.store_flags(fid, [one.uid], "add", kws(0, PER_MESSAGE))
    assert len(changes[0].flags) == PER_MESSAGE
    before = await snapshot(store, fid)
    with pytest.raises(KeywordLimit) as info:
        # message two would get 1 keyword (fine), message one 101: neither changes
        await m.store_flags(fid, [two.uid, one.uid], "add", ["extra"])
    assert info.value.scope == "message" and info.value.limit == PER_MESSAGE
    with pytest.raises(KeywordLimit):
        await m.store_flags(fid, [two.uid], "replace", kws(0, PER_MESSAGE + 1))
    assert await snapshot(store, fid) == before


async def test_system_flags_and_removals_are_never_refused(store: Store, user: Account) -> None:
    """A message at the bound still takes system flags, loses keywords, and takes a replacement of the bound's size."""
    m = store.mail
    fid = await inbox_id(store, user)
    meta = await m.append(fid, b"full", kws(0, PER_MESSAGE))
    (c,), _ = await m.store_flags(fid, [meta.uid], "add", ["\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "\\Draft"])
    assert len(c.flags) == PER_MESSAGE + 5
    (c,), _ = await m.store_flags(fid, [meta.uid], "remove", ["k0"])
    assert "k0" not in c.flags
    (c,), _ = await m.store_flags(fid, [meta.uid], "add", ["k0"])
    (c,), _ = await m.store_flags(fid, [meta.uid], "replace", kws(1000, PER_MESSAGE) + ["\\Seen"])
    assert c.flags == {"\\Seen", *kws(1000, PER_MESSAGE)}


async def test_keyword_length_bound_counts_octets(store: Store, user: Account) -> None:
    """A keyword of MAX_KEYWORD_LENGTH UTF-8 octets is kept; one octet more is KeywordLimit ("length")."""
    m = store.mail
    fid = await inbox_id(store, user)
    meta = await m.append(fid, b"x")
    longest = "k" * MAX_KEYWORD_LENGTH
    wide = "\u00e9" * (MAX_KEYWORD_LENGTH // 2)  # two octets each
    await m.store_flags(fid, [meta.uid], "add", [longest, wide])
    before = await snapshot(store, fid)
    for too_long in (longest + "k", wide + "e"):
        with pytest.raises(KeywordLimit) as info:
            await m.store_flags(fid, [meta.uid], "add", [too_long])
        assert info.value.scope == "length" and info.value.limit == MAX_KEYWORD_LENGTH
    assert await snapshot(store, fid) == before


async def test_append_and_deliver_refuse_too_many_keywords(store: Store, user: Account, user2: Account) -> None:
    """APPEND and deliver with more than the message bound, or a too long keyword, store nothing at all."""
    m = store.mail
    fid = await inbox_id(store, user)
    before = await snapshot(store, fid)
    for flags in (kws(0, PER_MESSAGE + 1), ["k" * (MAX_KEYWORD_LENGTH + 1)]):
        with pytest.raises(KeywordLimit):
            await m.append(fid, b"too many", flags)
        with pytest.raises(KeywordLimit):
            await m.deliver(b"too many", [LocalRecipient(user2.id), LocalRecipient(user.id, flags=frozenset(flags))])
    assert await snapshot(store, fid) == before
    assert await m.list_messages(await inbox_id(store, user2)) == []
    assert (await m.append(fid, b"ok", kws(0, PER_MESSAGE))).flags == set(kws(0, PER_MESSAGE))


async def test_folder_bound_refuses_new_keywords_only(store: Store, user: Account) -> None:
    """At MAX_KEYWORDS_PER_FOLDER distinct keywords a new keyword is refused (STORE, APPEND); keywords in use still work."""
    m = store.mail
    fid = await inbox_id(store, user)
    other = await inbox_id(store, user, "Archive")
    uids = await fill(store, fid)
    spare = await m.append(fid, b"spare")
    before = await snapshot(store, fid)
    with pytest.raises(KeywordLimit) as info:
        await m.store_flags(fid, [spare.uid], "add", ["brand-new"])
    assert info.value.scope == "folder" and info.value.limit == MAX_KEYWORDS_PER_FOLDER
    with pytest.raises(KeywordLimit):
        await m.store_flags(fid, [spare.uid], "add", ["k0", "brand-new"])
    with pytest.raises(KeywordLimit):
        await m.append(fid, b"new", ["brand-new"])
    assert await snapshot(store, fid) == before
    # keywords already in the folder, and other folders, are not affected
    await m.store_flags(fid, [spare.uid], "add", ["k0", "k999"])
    await m.append(fid, b"old keywords", ["k1", "\\Seen"])
    await m.append(other, b"elsewhere", ["brand-new"])
    assert await m.accepts_new_keywords(other)
    # removing keywords makes room again, and SELECT's answer follows
    await m.store_flags(fid, [uids[0]], "remove", kws(0, 2))
    assert not await m.accepts_new_keywords(fid)  # k0, k1 are still on other messages
    await m.store_flags(fid, [uids[0]], "remove", kws(2, 3))
    assert await m.accepts_new_keywords(fid)
    (c,), _ = await m.store_flags(fid, [spare.uid], "add", ["brand-new"])
    assert "brand-new" in c.flags


async def test_copy_and_move_respect_the_destination_bound(store: Store, user: Account) -> None:
    """COPY/MOVE bringing a new keyword into a full folder is KeywordLimit: nothing copied, the source kept."""
    m = store.mail
    src = await inbox_id(store, user, "Archive")
    dst = await inbox_id(store, user)
    await fill(store, dst)
    new = await m.append(src, b"new keyword", ["brand-new", "k5"])
    known = await m.append(src, b"known keywords", ["k5", "k6", "\\Seen"])
    before_dst, before_src = await snapshot(store, dst), await snapshot(store, src)
    for op in (m.copy, m.move):
        with pytest.raises(KeywordLimit):
            await op(src, [known.uid, new.uid], dst)
    assert await snapshot(store, dst) == before_dst and await snapshot(store, src) == before_src
    assert len(await m.copy(src, [known.uid], dst)) == 1
    assert len(await m.move(src, [known.uid], dst)) == 1


async def test_expunge_and_folder_delete_free_room(store: Store, user: Account) -> None:
    """Expunging the messages that carry keywords makes room; a new folder of the same name starts empty."""
    m = store.mail
    fid = (await m.create_folder(user.id, "Lots")).id
    uids = await fill(store, fid)
    await m.store_flags(fid, uids[:1], "add", ["\\Deleted"])
    await m.expunge(fid)
    assert await m.accepts_new_keywords(fid)
    await m.append(fid, b"new", ["brand-new"])
    await m.delete_folder(user.id, "Lots")
    again = await m.create_folder(user.id, "Lots")
    assert await m.accepts_new_keywords(again.id)


async def test_rename_inbox_takes_the_keywords_along(store: Store, user: Account) -> None:
    """Renaming INBOX moves its keywords with its messages: the new folder is full, INBOX has room."""
    m = store.mail
    inbox = await inbox_id(store, user)
    await fill(store, inbox)
    await m.rename_folder(user.id, "INBOX", "Old")
    old = await inbox_id(store, user, "Old")
    assert not await m.accepts_new_keywords(old)
    assert await m.accepts_new_keywords(inbox)
    extra = await m.append(old, b"x")
    with pytest.raises(KeywordLimit):
        await m.store_flags(old, [extra.uid], "add", ["brand-new"])
    await m.append(inbox, b"y", ["brand-new"])


async def test_delivery_is_never_refused_for_a_full_folder(store: Store, user: Account) -> None:
    """Local delivery with a keyword new to a full folder is stored (and recorded); clients still cannot add new ones."""
    m = store.mail
    fid = await inbox_id(store, user)
    await fill(store, fid)
    result = await m.deliver(b"mail", [LocalRecipient(user.id, flags=frozenset({"$Junk", "\\Seen"}))])
    uid = result.uids[(user.id, "INBOX")]
    assert {x.uid: x.flags for x in await m.list_messages(fid)}[uid] == {"$Junk", "\\Seen"}
    spare = await m.append(fid, b"spare", ["$Junk"])  # now in use: allowed
    with pytest.raises(KeywordLimit):
        await m.store_flags(fid, [spare.uid], "add", ["brand-new"])


async def _rewind_keyword_migration(store: Store) -> None:
    """Make the database look as before the folder_keywords migration step."""
    path = getattr(store, "path", None)
    if path is not None:
        with sqlite3.connect(path) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("DROP TABLE folder_keywords")
            conn.execute(f"PRAGMA user_version = {version - 1}")
        conn.close()
        return
    import asyncpg

    conn = await asyncpg.connect(store.dsn)  # type: ignore[attr-defined]
    try:
        await conn.execute("DROP TABLE folder_keywords")
        await conn.execute("UPDATE schema_version SET version = version - 1")
    finally:
        await conn.close()


async def test_migration_fills_the_registry_from_existing_flags(backend: Backend) -> None:
    """A store from before the bounds gets its folders' keywords from the messages: the folder bound holds at once."""
    store = await backend.open()
    try:
        await store.directory.add_domain(DOMAIN)
        user = await store.directory.create_account(f"old@{DOMAIN}", AccountKind.USER, "Old")
        fid = await inbox_id(store, user)
        await fill(store, fid)
        spare = await store.mail.append(fid, b"spare", ["\\Seen"])
    finally:
        await store.close()
    await _rewind_keyword_migration(store)
    store = await backend.open()
    try:
        assert not await store.mail.accepts_new_keywords(fid)
        with pytest.raises(KeywordLimit):
            await store.mail.store_flags(fid, [spare.uid], "add", ["brand-new"])
        (c,), _ = await store.mail.store_flags(fid, [spare.uid], "add", ["k7"])
        assert c.flags == {"\\Seen", "k7"}  # the system flag is no keyword
    finally:
        await store.close()
