"""Command handlers, one module per group; :data:`HANDLERS` maps command class to handler.

A handler is ``async def handler(session, command) -> str``: it writes untagged
responses with ``session.send`` and returns the text of the tagged OK (response code
included), or raises :class:`~mailserver.imap.responses.ImapError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mailserver.imap import parser as p
from mailserver.imap.commands import any_state, folders
from mailserver.imap.commands import fetch as fetch_cmd
from mailserver.imap.commands import messages as message_cmds
from mailserver.imap.commands import search as search_cmd

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
    p.Idle: message_cmds.idle,
    p.Check: message_cmds.check,
    p.Close: message_cmds.close,
    p.Unselect: message_cmds.close,
    p.Expunge: message_cmds.expunge,
    p.Store: message_cmds.store,
    p.Copy: message_cmds.copy,
    p.Move: message_cmds.copy,
    p.Fetch: fetch_cmd.fetch,
    p.Search: search_cmd.search,
}
