"""MailStore.search_index: SEARCH FROM/TO/CC/BCC/SUBJECT answered by the store from the
bodies' index (issue 4 §7), on every backend."""

from __future__ import annotations

import json

import pytest

from storage.errors import StorageError
from storage.interfaces import Store
from storage.types import Account, LocalRecipient


def index(**fields: str) -> str:
    """An index JSON carrying only what search_index reads: the "h" member."""
    doc: dict[str, object] = {"v": 1}
    if fields:
        doc["h"] = fields
    return json.dumps(doc, ensure_ascii=False)


async def folder_with(store: Store, user: Account, indexes: list[str | None]) -> int:
    folder = await store.mail.get_folder(user.id, "INBOX")
    assert folder is not None
    for i, ix in enumerate(indexes):
        await store.mail.append(folder.id, b"Subject: %d\r\n\r\nbody\r\n" % i, index_json=ix)
    return folder.id


async def test_matches_decoded_value_by_casefold(store: Store, user: Account) -> None:
    """A needle matches a field's value as str.casefold substrings, other fields and messages not."""
    fid = await folder_with(store, user, [
        index(subject="Quarterly INVOICE", **{"from": "Ann <ann@x.test>"}),
        index(subject="Straße works", to="invoice@x.test"),
        index(subject="lunch"),
    ])
    assert await store.mail.search_index(fid, "subject", "invoice") == ([1], [])
    assert await store.mail.search_index(fid, "to", "INVOICE") == ([2], [])
    assert await store.mail.search_index(fid, "subject", "STRASSE") == ([2], [])
    assert await store.mail.search_index(fid, "from", "ann@") == ([1], [])
    assert await store.mail.search_index(fid, "cc", "ann") == ([], [])


async def test_empty_needle_means_field_present(store: Store, user: Account) -> None:
    """An empty needle matches exactly the messages whose index has the field."""
    fid = await folder_with(store, user, [index(cc="a@x.test"), index(), index(subject="s")])
    assert await store.mail.search_index(fid, "cc", "") == ([1], [])


async def test_unindexed_bodies_are_left_to_the_caller(store: Store, user: Account) -> None:
    """Messages without an index come back as unknown, and count once set_index gives them one."""
    fid = await folder_with(store, user, [None, index(subject="hello")])
    assert await store.mail.search_index(fid, "subject", "hello") == ([2], [1])
    rows = await store.mail.fetch_range(fid, 1, 1)
    await store.mail.set_index([(rows[0][0].blob_id, index(subject="Hello again"))])
    assert await store.mail.search_index(fid, "subject", "hello") == ([1, 2], [])


async def test_delivered_and_copied_messages_are_searchable(store: Store, user: Account, user2: Account) -> None:
    """An index stored by deliver() serves every recipient's folder, and copies share it."""
    await store.mail.deliver(b"Subject: x\r\n\r\nx\r\n", [LocalRecipient(user.id), LocalRecipient(user2.id)],
                             index_json=index(subject="Board meeting"))
    for account in (user, user2):
        folder = await store.mail.get_folder(account.id, "INBOX")
        assert folder is not None
        assert await store.mail.search_index(folder.id, "subject", "MEETING") == ([1], [])
    inbox = await store.mail.get_folder(user.id, "INBOX")
    archive = await store.mail.get_folder(user.id, "Archive")
    assert inbox is not None and archive is not None
    await store.mail.copy(inbox.id, [1], archive.id)
    assert await store.mail.search_index(archive.id, "subject", "board") == ([1], [])


async def test_unknown_field_is_refused(store: Store, user: Account) -> None:
    """Only from, to, cc, bcc and subject are indexed; another name raises StorageError."""
    fid = await folder_with(store, user, [index(subject="a")])
    with pytest.raises(StorageError):
        await store.mail.search_index(fid, "date", "a")
