"""Command grammar: a framed command buffer -> typed command (RFC 3501 §6, §9).

:func:`parse_command` is the only entry point; one small function per
command, registered in :data:`COMMANDS` by name.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from . import commands as c
from . import mailboxes as m
from .events import BadCommand, CommandRejected
from .fetch import parse_fetch
from .flags import xflags_loose
from .lexer import MAX_MODSEQ, Cursor, ParseError, RejectError, is_astring_char
from .search import parse_search
from .sequence import xsequence_set

# RFC 2971 §3.3: at most 30 field-value pairs in ID.
ID_MAX_PAIRS = 30

Parser = Callable[[Cursor, str], c.Command]


def _tag_char(b: int) -> bool:
    # tag = 1*<any ASTRING-CHAR except "+">
    return is_astring_char(b) and b != 0x2B


def read_tag(buf: bytes) -> str | None:
    """The command's tag if the line starts with a valid one followed by SP, else None."""
    i = 0
    while i < len(buf) and _tag_char(buf[i]):
        i += 1
    if i == 0 or not buf.startswith(b" ", i):
        return None
    return buf[:i].decode("ascii")


def parse_command(buf: bytes) -> c.Command | BadCommand | CommandRejected:
    """Parse one framed command (CRLF-terminated lines with literals inline).

    Never raises for client input: garbage gives :class:`BadCommand`.
    """
    tag = read_tag(buf)
    if tag is None:
        return BadCommand(None, "Invalid tag")
    cur = Cursor(buf, len(tag) + 1)
    try:
        name = cur.xatom("command name").upper()
        uid = name == "UID"
        if uid:
            cur.xsp()
            name = cur.xatom("command name after UID").upper()
            parser = UID_COMMANDS.get(name)
            if parser is None:
                return BadCommand(tag, f"Unknown UID command {name}")
            return parser(cur, tag)
        parser = COMMANDS.get(name)
        if parser is None:
            return BadCommand(tag, f"Unknown command {name}")
        return parser(cur, tag)
    except ParseError as exc:
        return BadCommand(tag, f"{exc}")
    except RejectError as exc:
        return CommandRejected(tag, exc.code, exc.text)


def _no_args(cls: type[c.Command]) -> Parser:
    def parse(cur: Cursor, tag: str) -> c.Command:
        cur.xeol()
        return cls(tag)

    return parse


def _login_userid(cur: Cursor) -> str:
    """The LOGIN userid: an astring, leniently also an atom holding ``\\``.

    Python's imaplib sends the user name unquoted, so a delegate login
    ``alice@example.test\\hr`` arrives as an atom with a backslash (an atom-special,
    RFC 3501 §9); accepting it is unambiguous because the next octet is SP.
    """
    if cur.peek() in (0x22, 0x7B):
        return cur.xtext("user name")
    raw = cur._run(lambda b: is_astring_char(b) or b == 0x5C)
    if not raw:
        raise ParseError("Expected user name")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("Invalid UTF-8 in user name") from None


def _login(cur: Cursor, tag: str) -> c.Command:
    cur.xsp()
    userid = _login_userid(cur)
    cur.xsp()
    password = cur.xtext("password")
    cur.xeol()
    return c.Login(tag, userid, password)


def decode_sasl(data: bytes) -> bytes:
    """Decode a base64 SASL response; ``=`` is the empty response (RFC 4959 §3).

    Raises:
        ParseError: if ``data`` is not strict base64.
    """
    if data == b"=":
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("Invalid base64 in SASL response") from None


def _authenticate(cur: Cursor, tag: str) -> c.Command:
    cur.xsp()
    mechanism = cur.xatom("SASL mechanism").upper()
    initial = None
    if not cur.at_eol():
        cur.xsp()
        start = cur.pos
        cur.xatom("initial response")  # base64 and "=" are all atom chars
        initial = decode_sasl(cur.buf[start : cur.pos])
    cur.xeol()
    return c.Authenticate(tag, mechanism, initial)


def _enable(cur: Cursor, tag: str) -> c.Command:
    caps: list[str] = []
    while not cur.at_eol() or not caps:
        cur.xsp()
        caps.append(cur.xatom("capability").upper())
    cur.xeol()
    return c.Enable(tag, tuple(caps))


def _id_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("Invalid UTF-8 in ID") from None


def _id(cur: Cursor, tag: str) -> c.Command:
    cur.xsp()
    if cur.try_keyword(b"NIL"):
        cur.xeol()
        return c.Id(tag, None)
    cur.xbyte(b"(", "( or NIL")
    pairs: list[tuple[str, str | None]] = []
    while not cur.try_byte(b")"):
        if pairs:
            cur.xsp()
        field = _id_text(cur.xstring())
        cur.xsp()
        value = cur.xnstring()
        pairs.append((field, None if value is None else _id_text(value)))
        if len(pairs) > ID_MAX_PAIRS:
            raise ParseError("Too many ID fields")
    cur.xeol()
    return c.Id(tag, tuple(pairs))


def _expunge(cur: Cursor, tag: str) -> c.Command:
    cur.xeol()
    return c.Expunge(tag)


def _uid_expunge(cur: Cursor, tag: str) -> c.Command:
    cur.xsp()
    uids = xsequence_set(cur)
    cur.xeol()
    return c.Expunge(tag, uids)


def _store(uid: bool) -> Parser:
    def parse(cur: Cursor, tag: str) -> c.Command:
        cur.xsp()
        seqset = xsequence_set(cur)
        cur.xsp()
        unchanged_since = None
        if cur.peek() == 0x28:  # RFC 7162 §3.1.3: (UNCHANGEDSINCE mod-sequence-valzer)
            cur.xbyte(b"(", "(")
            if not cur.try_keyword(b"UNCHANGEDSINCE"):
                raise ParseError("Unsupported STORE modifier")
            cur.xsp()
            unchanged_since = cur.xnumber("mod-sequence", MAX_MODSEQ)
            cur.xbyte(b")", ")")
            cur.xsp()
        item = cur.xatom("store item").upper()
        silent = item.endswith(".SILENT")
        base = item.removesuffix(".SILENT")
        try:
            mode = c.StoreMode(base)
        except ValueError:
            raise ParseError(f"Invalid store item {item}") from None
        cur.xsp()
        flags = xflags_loose(cur)
        cur.xeol()
        return c.Store(tag, seqset, mode, silent, flags, uid, unchanged_since)

    return parse


def _copy_move(cls: type[c.Copy] | type[c.Move], uid: bool) -> Parser:
    def parse(cur: Cursor, tag: str) -> c.Command:
        cur.xsp()
        seqset = xsequence_set(cur)
        cur.xsp()
        mailbox = cur.xmailbox()
        cur.xeol()
        return cls(tag, seqset, mailbox, uid)

    return parse


COMMANDS: dict[str, Parser] = {
    "CAPABILITY": _no_args(c.Capability), "NOOP": _no_args(c.Noop),
    "LOGOUT": _no_args(c.Logout), "STARTTLS": _no_args(c.StartTLS),
    "LOGIN": _login, "AUTHENTICATE": _authenticate, "ID": _id,
    "SELECT": m.select(c.Select), "EXAMINE": m.select(c.Examine),
    "CREATE": m.one_mailbox(c.Create), "DELETE": m.one_mailbox(c.Delete),
    "RENAME": m.rename, "SUBSCRIBE": m.one_mailbox(c.Subscribe),
    "UNSUBSCRIBE": m.one_mailbox(c.Unsubscribe), "LIST": m.list_, "LSUB": m.lsub,
    "STATUS": m.status, "APPEND": m.append, "ENABLE": _enable,
    "NAMESPACE": _no_args(c.Namespace), "IDLE": _no_args(c.Idle),
    "CHECK": _no_args(c.Check), "CLOSE": _no_args(c.Close),
    "UNSELECT": _no_args(c.Unselect), "EXPUNGE": _expunge,
    "SEARCH": lambda cur, tag: parse_search(cur, tag, uid=False),
    "FETCH": lambda cur, tag: parse_fetch(cur, tag, uid=False),
    "STORE": _store(uid=False), "COPY": _copy_move(c.Copy, uid=False),
    "MOVE": _copy_move(c.Move, uid=False),
}
UID_COMMANDS: dict[str, Parser] = {
    "FETCH": lambda cur, tag: parse_fetch(cur, tag, uid=True),
    "SEARCH": lambda cur, tag: parse_search(cur, tag, uid=True),
    "STORE": _store(uid=True), "COPY": _copy_move(c.Copy, uid=True),
    "MOVE": _copy_move(c.Move, uid=True), "EXPUNGE": _uid_expunge,
}
