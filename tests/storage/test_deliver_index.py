"""MailStore.deliver stores the body's IMAP index in the delivery's own commit (issue 9 §2)."""

from __future__ import annotations

from storage.interfaces import Store
from storage.types import Account, LocalRecipient


async def test_deliver_stores_index_with_body(store: Store, user: Account) -> None:
    """An index given to deliver() comes back from fetch_range(with_index=True); without one it is None."""
    await store.mail.deliver(b"Subject: a\r\n\r\nA\r\n", [LocalRecipient(user.id)], index_json='{"v": "a"}')
    await store.mail.deliver(b"Subject: b\r\n\r\nB\r\n", [LocalRecipient(user.id)])
    inbox = await store.mail.get_folder(user.id, "INBOX")
    assert inbox is not None
    rows = await store.mail.fetch_range(inbox.id, 1, 2, with_index=True)
    assert [index for _, index in rows] == ['{"v": "a"}', None]
