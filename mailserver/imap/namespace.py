"""Mailbox names as one session sees them (RFC 2342 namespaces).

* Personal namespace ``""``: the folders of the session's mailbox (the user's own, or
  the shared mailbox a delegate login opened).
* Other users' namespace ``Shared/``: ``Shared/<address>/<folder>`` for every shared
  mailbox or room the logged-in user holds Full Access on (not offered in a delegate
  session, which already *is* a shared mailbox). Rights are read on every call, so a
  revoked grant takes effect on the next command.
"""

from __future__ import annotations

from dataclasses import dataclass

from auth.login import Principal, may_log_in
from auth.permissions import can_open
from mailserver.imap.responses import nonexistent
from storage.interfaces import Store
from storage.types import Account, AccountKind, Folder, Right

SEPARATOR = "/"
SHARED_PREFIX = "Shared"


@dataclass(frozen=True, slots=True)
class MailboxRef:
    """A mailbox name resolved: whose account, which folder there, the client's name."""

    account: Account
    folder: str
    name: str

    @property
    def shared(self) -> bool:
        return self.name.startswith(SHARED_PREFIX + SEPARATOR)


class Namespace:
    """Resolves client mailbox names for one logged-in session."""

    def __init__(self, store: Store, principal: Principal) -> None:
        self._store = store
        self.principal = principal

    @property
    def offers_shared(self) -> bool:
        """True when the Shared/ namespace exists for this session."""
        return not self.principal.delegated

    async def shared_accounts(self) -> list[Account]:
        """Mailboxes the user may open through Shared/, by address."""
        if not self.offers_shared:
            return []
        d = self._store.directory
        out = []
        for grant in await d.grants_of(self.principal.user.address):
            if Right.FULL_ACCESS not in grant.rights:
                continue
            account = await d.get_account(grant.mailbox)
            if account is not None and account.enabled and account.kind in (AccountKind.SHARED, AccountKind.ROOM):
                out.append(account)
        return sorted(out, key=lambda a: a.address)

    async def resolve(self, name: str) -> MailboxRef:
        """Map a client name to (account, folder); the folder may not exist yet.

        Raises:
            ImapError NO [NONEXISTENT]: a Shared/ name the user may not open, or a
            namespace node (``Shared``, ``Shared/<address>``) that is not a folder.
        """
        if name == SHARED_PREFIX or name.startswith(SHARED_PREFIX + SEPARATOR):
            if not self.offers_shared:
                raise nonexistent()
            _, _, rest = name.partition(SEPARATOR)
            address, _, folder = rest.partition(SEPARATOR)
            if not folder:
                raise nonexistent()
            account = await self._store.directory.get_account(address.lower())
            if account is None or not await can_open(self._store.directory, self.principal.user, account):
                raise nonexistent()
            if folder.upper() == "INBOX":
                folder = "INBOX"
            return MailboxRef(account, folder, f"{SHARED_PREFIX}/{account.address}/{folder}")
        return MailboxRef(self.principal.mailbox, name, name)

    async def folder(self, name: str) -> tuple[MailboxRef, Folder]:
        """Resolve and load an existing folder.

        Raises:
            ImapError NO [NONEXISTENT].
        """
        ref = await self.resolve(name)
        folder = await self._store.mail.get_folder(ref.account.id, ref.folder)
        if folder is None:
            raise nonexistent()
        return ref, folder

    async def refusal(self) -> str | None:
        """Why this session may no longer act, or None while it may: its user can no
        longer log in (disabled, unlicensed or removed since LOGIN), or a delegate
        session lost Full Access on its mailbox. Read from the store on every call."""
        user = await self._store.directory.get_account_by_id(self.principal.user.id)
        if user is None or not may_log_in(user):
            return "This login is no longer valid"
        if self.principal.delegated and not await can_open(self._store.directory, user, self.principal.mailbox):
            return "Access to this mailbox was revoked"
        return None

    async def can_open_account_id(self, account_id: int) -> bool:
        """True when the user may (still) open the folders of the account with this id
        (False once the account is gone)."""
        if account_id == self.principal.mailbox.id:
            return True  # checked by refusal()
        account = await self._store.directory.get_account_by_id(account_id)
        return account is not None and await can_open(self._store.directory, self.principal.user, account)

    def display(self, account: Account, folder: str) -> str:
        """The client's name for ``folder`` of ``account``."""
        if account.id == self.principal.mailbox.id:
            return folder
        return f"{SHARED_PREFIX}/{account.address}/{folder}"
