"""Connection states and which commands each allows (RFC 3501 §3, §6).

The one table of the session's state machine: :data:`ALLOWED` maps each command
class to the states it may be issued in; :func:`check` answers BAD otherwise.
"""

from __future__ import annotations

import enum

from mailserver.imap import parser as p
from mailserver.imap.responses import bad


class State(enum.Enum):
    """RFC 3501 §3."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
_PRE = frozenset({State.NOT_AUTHENTICATED})
_AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
_SEL = frozenset({State.SELECTED})

#: command class -> states in which it is valid
ALLOWED: dict[type[p.Command], frozenset[State]] = {
    # RFC 3501 §6.1: any state
    p.Capability: _ANY, p.Noop: _ANY, p.Logout: _ANY, p.Id: _ANY,
    # §6.2: not authenticated
    p.StartTLS: _PRE, p.Login: _PRE, p.Authenticate: _PRE,
    # §6.3: authenticated (also valid in selected state)
    p.Select: _AUTH, p.Examine: _AUTH, p.Create: _AUTH, p.Delete: _AUTH, p.Rename: _AUTH,
    p.Subscribe: _AUTH, p.Unsubscribe: _AUTH, p.List: _AUTH, p.Lsub: _AUTH,
    p.Status: _AUTH, p.Append: _AUTH, p.Namespace: _AUTH, p.Idle: _AUTH,
    # RFC 5161 §3.1: ENABLE only in authenticated state (before SELECT)
    p.Enable: frozenset({State.AUTHENTICATED}),
    # §6.4: selected
    p.Check: _SEL, p.Close: _SEL, p.Unselect: _SEL, p.Expunge: _SEL, p.Search: _SEL,
    p.Fetch: _SEL, p.Store: _SEL, p.Copy: _SEL, p.Move: _SEL,
}


def check(command: p.Command, state: State) -> None:
    """Raise BAD when ``command`` is not valid in ``state``."""
    allowed = ALLOWED.get(type(command))
    if allowed is None:
        raise bad("Command not supported")
    if state not in allowed:
        if state is State.NOT_AUTHENTICATED:
            raise bad("Log in first")
        if State.SELECTED in allowed:
            raise bad("No mailbox selected")
        if allowed == _PRE:
            raise bad("Already authenticated")
        raise bad("Not valid in this state")
