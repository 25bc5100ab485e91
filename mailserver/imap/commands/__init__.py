"""Command handlers, one module per group; :data:`HANDLERS` maps command class to handler.

A handler is ``async def handler(session, command) -> str``: it writes untagged
responses with ``session.send`` and returns the text of the tagged OK (response code
included), or raises :class:`~mailserver.imap.responses.ImapError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mailserver.imap import parser as p
from mailserver.imap.commands import any_state, fetch, folders, messages, search

Handler = Callable[[Any, Any], Awaitable[str | None]]

HANDLERS: dict[type[p.Command], Handler] = {
    p.Capability: any_state.capability,
    p.Noop: any_state.noop,
    p.Logout: any_state.logout,
    p.Id: any_state.id_,
    p.StartTLS: any_state.starttls,
    p.Login: any_state.login,
    p.Authenticate: any_state.authenticate,
    p.Enable: any_state.enable,
    p.Namespace: any_state.namespace,
    p.Select: folders.select,
    p.Examine: folders.select,
    p.Create: folders.create,
    p.Delete: folders.delete,
    p.Rename: folders.rename,
    p.Subscribe: folders.subscribe,
    p.Unsubscribe: folders.subscribe,
    p.List: folders.list_,
    p.Lsub: folders.lsub,
    p.Status: folders.status,
    p.Append: folders.append,
    p.Idle: messages.idle,
    p.Check: messages.check,
    p.Close: messages.close,
    p.Unselect: messages.close,
    p.Expunge: messages.expunge,
    p.Store: messages.store,
    p.Copy: messages.copy,
    p.Move: messages.copy,
    p.Fetch: fetch.fetch,
    p.Search: search.search,
}
