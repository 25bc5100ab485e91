"""Arguments of the mailbox commands: SELECT/EXAMINE, CREATE..., LIST, LSUB, STATUS, APPEND.

Each function parses what follows the command name and returns the command
(RFC 3501 §6.3, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 3502 MULTIAPPEND).
"""

from __future__ import annotations

from collections.abc import Callable

from . import commands as c
from .dates import try_date_time
from .flags import xflag_list
from .lexer import Cursor, ParseError

Parser = Callable[[Cursor, str], c.Command]

# RFC 3501 §6.3.10 status-att, plus HIGHESTMODSEQ (RFC 7162 §3.1.6).
STATUS_ITEMS = frozenset({"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ"})
# RFC 5258 §3.1 selection options and §3.2 return options (STATUS: RFC 5819).
# SPECIAL-USE is the RFC 6154 §3 selection option.
LIST_SELECTION = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURNS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})


def one_mailbox(cls: Callable[[str, str], c.Command]) -> Parser:
    """Parser for ``NAME SP mailbox`` commands (CREATE, DELETE, SUBSCRIBE, UNSUBSCRIBE)."""
    def parse(cur: Cursor, tag: str) -> c.Command:
        cur.xsp()
        mailbox = cur.xmailbox()
        cur.xeol()
        return cls(tag, mailbox)

    return parse

def select(cls: type[c.Select] | type[c.Examine]) -> Parser:
    """Parser for SELECT/EXAMINE mailbox [(CONDSTORE)] (RFC 4466 §2.1, RFC 7162 §3.1.8)."""
    def parse(cur: Cursor, tag: str) -> c.Command:
        cur.xsp()
        mailbox = cur.xmailbox()
        condstore = False
        if not cur.at_eol():
            cur.xsp()
            params = cur.xlist(lambda k: k.xatom("select parameter").upper())
            if any(p != "CONDSTORE" for p in params):
                raise ParseError("Unsupported SELECT parameter")  # RFC 4466 §2.1
            condstore = bool(params)
        cur.xeol()
        return cls(tag, mailbox, condstore)

    return parse


def rename(cur: Cursor, tag: str) -> c.Command:
    """RENAME existing-mailbox new-mailbox (RFC 3501 §6.3.5)."""
    cur.xsp()
    old = cur.xmailbox()
    cur.xsp()
    new = cur.xmailbox()
    cur.xeol()
    return c.Rename(tag, old, new)


def xstatus_items(cur: Cursor) -> tuple[str, ...]:
    """A non-empty list of STATUS items, upper-cased."""
    items = tuple(cur.xlist(lambda k: k.xatom("status item").upper()))
    bad = [i for i in items if i not in STATUS_ITEMS]
    if bad or not items:
        raise ParseError(f"Invalid status item {bad[0]}" if bad else "Empty status item list")
    return items


def list_(cur: Cursor, tag: str) -> c.Command:
    """LIST [(selection)] reference (pattern / (patterns)) [RETURN (options)] (RFC 5258 §3)."""
    cur.xsp()
    extended = False
    selection: frozenset[str] = frozenset()
    if cur.peek() == 0x28:  # RFC 5258 §3: list-select-opts
        extended = True
        selection = frozenset(cur.xlist(lambda k: k.xatom("selection option").upper()))
        if selection - LIST_SELECTION:
            raise ParseError(f"Unsupported LIST selection option {sorted(selection - LIST_SELECTION)[0]}")
        if selection == {"RECURSIVEMATCH"}:
            raise ParseError("RECURSIVEMATCH needs another selection option")  # RFC 5258 §3.1
        cur.xsp()
    reference = cur.xmailbox()
    cur.xsp()
    if cur.peek() == 0x28:
        extended = True
        patterns = tuple(cur.xlist(lambda k: k.xlist_mailbox()))
        if not patterns:
            raise ParseError("Empty pattern list")
    else:
        patterns = (cur.xlist_mailbox(),)
    returns: set[str] = set()
    status_items: tuple[str, ...] = ()
    if not cur.at_eol():
        cur.xsp()
        if not cur.try_keyword(b"RETURN"):
            raise ParseError("Expected RETURN")
        extended = True
        cur.xsp()

        def option(k: Cursor) -> str:
            nonlocal status_items
            word = k.xatom("return option").upper()
            if word not in LIST_RETURNS:
                raise ParseError(f"Unsupported LIST return option {word}")
            if word == "STATUS":  # RFC 5819: STATUS (items)
                k.xsp()
                status_items = xstatus_items(k)
            return word

        returns = set(cur.xlist(option))
    cur.xeol()
    return c.List(tag, reference, patterns, selection, frozenset(returns), status_items, extended)


def lsub(cur: Cursor, tag: str) -> c.Command:
    """LSUB reference pattern (RFC 3501 §6.3.9)."""
    cur.xsp()
    reference = cur.xmailbox()
    cur.xsp()
    pattern = cur.xlist_mailbox()
    cur.xeol()
    return c.Lsub(tag, reference, pattern)


def status(cur: Cursor, tag: str) -> c.Command:
    """STATUS mailbox (items) (RFC 3501 §6.3.10)."""
    cur.xsp()
    mailbox = cur.xmailbox()
    cur.xsp()
    items = xstatus_items(cur)
    cur.xeol()
    return c.Status(tag, mailbox, items)


def append(cur: Cursor, tag: str) -> c.Command:
    """APPEND mailbox [flags] [date-time] literal, repeated (RFC 3501 §6.3.11, RFC 3502)."""
    cur.xsp()
    mailbox = cur.xmailbox()
    messages: list[c.AppendMessage] = []
    while not cur.at_eol() or not messages:
        cur.xsp()  # RFC 3502: each message is SP [flag-list SP] [date-time SP] literal
        flags: tuple[str, ...] = ()
        if cur.peek() == 0x28:
            flags = xflag_list(cur)
            cur.xsp()
        date_time = try_date_time(cur)
        if date_time is not None:
            cur.xsp()
        lit = cur.try_literal(allow_binary=True)
        if lit is None:
            raise ParseError("Expected message literal")
        messages.append(c.AppendMessage(flags, date_time, lit[0], lit[1]))
    cur.xeol()
    return c.Append(tag, mailbox, tuple(messages))
