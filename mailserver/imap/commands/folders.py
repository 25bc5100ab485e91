"""SELECT/EXAMINE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST, LSUB, STATUS, APPEND."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from mailserver.imap import mime
from mailserver.imap import parser as p
from mailserver.imap.namespace import SEPARATOR, SHARED_PREFIX, MailboxRef
from mailserver.imap.parser import encode
from mailserver.imap.responses import (
    ALREADYEXISTS,
    CANNOT,
    NONEXISTENT,
    READ_ONLY,
    READ_WRITE,
    TRYCREATE,
    bad,
    keyword_limit,
    no,
    nonexistent,
)
from mailserver.imap.view import SelectedView
from storage.errors import AlreadyExists, Conflict, KeywordLimit, NotFound
from storage.keywords import check_message
from storage.types import Folder

if TYPE_CHECKING:
    from mailserver.imap.session import Session

#: RFC 3501 §7.2.6 system flags; PERMANENTFLAGS adds \* while clients may create
#: keywords (the folder holds fewer than storage.keywords.MAX_KEYWORDS_PER_FOLDER).
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
COMMON_KEYWORDS = ("$Forwarded", "$Junk", "$NotJunk", "$MDNSent")


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Map storage refusals to their IMAP response codes (RFC 5530)."""
    try:
        yield
    except NotFound:
        raise no("No such mailbox", NONEXISTENT) from None
    except AlreadyExists:
        raise no("Mailbox already exists", ALREADYEXISTS) from None
    except Conflict:
        raise no("Cannot do that to this mailbox", CANNOT) from None
    except KeywordLimit as err:
        raise keyword_limit(err) from None


def _ns(s: Session):  # type: ignore[no-untyped-def]
    assert s.namespace is not None
    return s.namespace


async def select(s: Session, cmd: p.Select | p.Examine) -> str:
    """RFC 3501 §6.3.1-2, RFC 7162 §3.1.8 (CONDSTORE parameter, HIGHESTMODSEQ)."""
    s.close_view()  # a failed SELECT leaves no mailbox selected (§6.3.1)
    _, folder = await _ns(s).folder(cmd.mailbox)
    if cmd.condstore:
        s.enable_condstore()
    readonly = isinstance(cmd, p.Examine)
    view = await SelectedView.open(s.app.store.mail, folder, readonly, s.condstore)
    folder = view.folder
    unseen_uid = await s.app.store.mail.first_unseen_uid(folder.id)
    s.send(b"* FLAGS " + encode.flag_list(SYSTEM_FLAGS + COMMON_KEYWORDS) + b"\r\n")
    s.send(b"* %d EXISTS\r\n* 0 RECENT\r\n" % view.exists)
    if unseen_uid is not None:
        seq = view.seq_of(unseen_uid)
        if seq is not None:
            s.send(b"* OK [UNSEEN %d] First unseen\r\n" % seq)
    s.send(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % folder.uidvalidity)
    s.send(b"* OK [UIDNEXT %d] Predicted next UID\r\n" % folder.uidnext)
    if readonly:
        perm = b"()"
    elif await s.app.store.mail.accepts_new_keywords(folder.id):
        perm = encode.flag_list(SYSTEM_FLAGS + COMMON_KEYWORDS + ("\\*",))
    else:  # RFC 3501 §7.1: no \* once no new keyword can be created
        perm = encode.flag_list(SYSTEM_FLAGS + COMMON_KEYWORDS)
    s.send(b"* OK [PERMANENTFLAGS " + perm + b"] Limited\r\n")
    s.send(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % folder.highestmodseq)
    s.select(view)
    return f"[{READ_ONLY if readonly else READ_WRITE}] {'EXAMINE' if readonly else 'SELECT'} completed"


async def create(s: Session, cmd: p.Create) -> str:
    """RFC 3501 §6.3.3: superior names are created too; a trailing separator is dropped."""
    name = cmd.mailbox.rstrip(SEPARATOR)
    if not name:
        raise bad("Invalid mailbox name")
    ref = await _ns(s).resolve(name)
    if ref.folder == "INBOX":
        raise no("INBOX always exists", ALREADYEXISTS)
    mail = s.app.store.mail
    parts = ref.folder.split(SEPARATOR)
    with storage_errors():
        for i in range(1, len(parts)):
            parent = SEPARATOR.join(parts[:i])
            if await mail.get_folder(ref.account.id, parent) is None:
                with contextlib.suppress(AlreadyExists):
                    await mail.create_folder(ref.account.id, parent)
        await mail.create_folder(ref.account.id, ref.folder)
    return "CREATE completed"


async def delete(s: Session, cmd: p.Delete) -> str:
    """RFC 3501 §6.3.4: INBOX cannot be deleted."""
    ref, folder = await _ns(s).folder(cmd.mailbox)
    if ref.folder == "INBOX":
        raise no("INBOX cannot be deleted", CANNOT)
    if s.view is not None and s.view.folder.id == folder.id:
        s.close_view()
    with storage_errors():
        await s.app.store.mail.delete_folder(ref.account.id, ref.folder)
    return "DELETE completed"


async def rename(s: Session, cmd: p.Rename) -> str:
    """RFC 3501 §6.3.5 (renaming INBOX moves its messages and leaves it empty)."""
    src, _ = await _ns(s).folder(cmd.mailbox)
    dst = await _ns(s).resolve(cmd.new_name.rstrip(SEPARATOR))
    if src.account.id != dst.account.id:
        raise no("Cannot move a mailbox to another account", CANNOT)
    with storage_errors():
        await s.app.store.mail.rename_folder(src.account.id, src.folder, dst.folder)
    return "RENAME completed"


async def subscribe(s: Session, cmd: p.Subscribe | p.Unsubscribe) -> str:
    """RFC 3501 §6.3.6-7."""
    ref, _ = await _ns(s).folder(cmd.mailbox)
    with storage_errors():
        await s.app.store.mail.set_subscribed(ref.account.id, ref.folder, isinstance(cmd, p.Subscribe))
    return f"{'SUBSCRIBE' if isinstance(cmd, p.Subscribe) else 'UNSUBSCRIBE'} completed"


# -- LIST ---------------------------------------------------------------------------
class _Entry:
    """One name LIST may show: a folder, or a node without one (\\Noselect / \\NonExistent)."""

    __slots__ = ("name", "folder", "children", "subscribed_child")

    def __init__(self, name: str, folder: Folder | None) -> None:
        self.name = name
        self.folder = folder
        self.children = False
        self.subscribed_child = False


def _pattern(reference: str, pattern: str) -> re.Pattern[str]:
    """RFC 3501 §6.3.8: ``*`` matches anything, ``%`` anything but the separator."""
    full = reference + pattern if reference and not pattern.startswith(SEPARATOR) else pattern
    if full[:5].upper() == "INBOX" and (len(full) == 5 or full[5] in SEPARATOR + "*%"):
        full = "INBOX" + full[5:]
    rx = "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in full)
    return re.compile(rx + r"\Z", re.DOTALL)


async def _entries(s: Session) -> dict[str, _Entry]:
    """Every name of the session's namespaces, with implied parents."""
    ns = _ns(s)
    mail = s.app.store.mail
    entries: dict[str, _Entry] = {}
    for f in await mail.list_folders(ns.principal.mailbox.id):
        entries[f.name] = _Entry(f.name, f)
    for account in await ns.shared_accounts():
        for f in await mail.list_folders(account.id):
            name = ns.display(account, f.name)
            entries[name] = _Entry(name, f)
    for name in list(entries):
        entry = entries[name]
        parts = name.split(SEPARATOR)
        for i in range(len(parts) - 1, 0, -1):
            parent = SEPARATOR.join(parts[:i])
            node = entries.get(parent)
            if node is None:
                node = entries[parent] = _Entry(parent, None)
            node.children = True
            if entry.folder is not None and entry.folder.subscribed:
                node.subscribed_child = True
    return entries


def _attributes(entry: _Entry, extended: bool, subscribed: bool) -> list[str]:
    attrs: list[str] = []
    if entry.folder is None:
        # RFC 5258 §3: a name that is only a hierarchy node
        if extended and not entry.name.startswith(SHARED_PREFIX):
            attrs.append("\\NonExistent")
        attrs.append("\\Noselect")
    attrs.append("\\HasChildren" if entry.children else "\\HasNoChildren")  # RFC 3348
    if entry.folder is not None and entry.folder.special_use is not None:
        attrs.append(str(entry.folder.special_use))  # RFC 6154
    if subscribed and entry.folder is not None and entry.folder.subscribed:
        attrs.append("\\Subscribed")  # RFC 5258 §3.1
    return attrs


async def list_(s: Session, cmd: p.List) -> str:
    """LIST, with LIST-EXTENDED (RFC 5258), SPECIAL-USE (RFC 6154) and LIST-STATUS (RFC 5819)."""
    if not cmd.extended and len(cmd.patterns) == 1 and cmd.patterns[0] == "":
        s.send(b'* LIST (\\Noselect) "/" ""\r\n')  # RFC 3501 §6.3.8: the hierarchy delimiter
        return "LIST completed"
    entries = await _entries(s)
    sel = cmd.selection
    only_subscribed = "SUBSCRIBED" in sel
    recursive = "RECURSIVEMATCH" in sel
    only_special = "SPECIAL-USE" in sel
    show_subscribed = only_subscribed or "SUBSCRIBED" in cmd.returns
    patterns = [_pattern(cmd.reference, pat) for pat in cmd.patterns if pat != ""]
    for name in sorted(entries, key=lambda n: (n != "INBOX", n)):
        entry = entries[name]
        if not any(rx.match(name) for rx in patterns):
            continue
        childinfo = False
        if only_subscribed:
            if not (entry.folder is not None and entry.folder.subscribed):
                if not (recursive and entry.subscribed_child):
                    continue
                childinfo = True
        if only_special and (entry.folder is None or entry.folder.special_use is None):
            continue
        attrs = _attributes(entry, cmd.extended, show_subscribed)
        line = b"* LIST " + encode.flag_list(attrs) + b' "/" ' + encode.mailbox(name)
        if childinfo:
            line += b' ("CHILDINFO" ("SUBSCRIBED"))'  # RFC 5258 §3.5
        s.send(line + b"\r\n")
        if cmd.status_items and entry.folder is not None:
            s.send(_status_line(s, name, entry.folder, cmd.status_items))
    return "LIST completed"


async def lsub(s: Session, cmd: p.Lsub) -> str:
    """RFC 3501 §6.3.9."""
    if cmd.pattern == "":
        s.send(b'* LSUB (\\Noselect) "/" ""\r\n')
        return "LSUB completed"
    entries = await _entries(s)
    rx = _pattern(cmd.reference, cmd.pattern)
    for name in sorted(entries, key=lambda n: (n != "INBOX", n)):
        entry = entries[name]
        if entry.folder is None or not entry.folder.subscribed or not rx.match(name):
            continue
        s.send(b"* LSUB " + encode.flag_list(_attributes(entry, False, False)) + b' "/" ' + encode.mailbox(name) + b"\r\n")
    return "LSUB completed"


# -- STATUS -------------------------------------------------------------------------
def _status_line(s: Session, name: str, folder: Folder, items: tuple[str, ...]) -> bytes:
    values = {
        "MESSAGES": folder.messages,
        "RECENT": 0,
        "UIDNEXT": folder.uidnext,
        "UIDVALIDITY": folder.uidvalidity,
        "UNSEEN": folder.unseen,
        "HIGHESTMODSEQ": folder.highestmodseq,
    }
    out = []
    for item in items:
        if item not in values:
            raise bad(f"Unknown STATUS item {item}")
        out.append(b"%s %d" % (item.encode(), values[item]))
    return b"* STATUS " + encode.mailbox(name) + b" " + encode.plist(out) + b"\r\n"


async def status(s: Session, cmd: p.Status) -> str:
    """RFC 3501 §6.3.10 (and HIGHESTMODSEQ, RFC 7162 §3.1.6)."""
    ref, folder = await _ns(s).folder(cmd.mailbox)
    if "HIGHESTMODSEQ" in cmd.items:
        s.enable_condstore()
    s.send(_status_line(s, ref.name, folder, cmd.items))
    return "STATUS completed"


# -- APPEND -------------------------------------------------------------------------
async def append(s: Session, cmd: p.Append) -> str:
    """RFC 3501 §6.3.11 with APPENDUID (RFC 4315 §3); a missing folder is [TRYCREATE]."""
    ns = _ns(s)
    ref: MailboxRef = await ns.resolve(cmd.mailbox)
    folder = await s.app.store.mail.get_folder(ref.account.id, ref.folder)
    if folder is None:
        raise no("No such mailbox", TRYCREATE)
    loop = asyncio.get_running_loop()
    for message in cmd.messages:
        if not message.data:
            raise no("Empty message")
        if "\\Recent" in (f.capitalize() for f in message.flags):
            raise bad("\\Recent cannot be set")
        # Each message's own keyword bounds before any is stored (RFC 3502 §3:
        # MULTIAPPEND stores all or none); the folder's bound is the store's to check.
        with storage_errors():
            check_message(frozenset(), frozenset(message.flags))
    uids = []
    for message in cmd.messages:
        # MIME parsing of a large message stays off the event loop (STYLE §5).
        index_json = await loop.run_in_executor(None, mime.index_json, message.data)
        with storage_errors():
            meta = await s.app.store.mail.append(
                folder.id, message.data, message.flags, message.date_time, index_json=index_json
            )
        uids.append(meta.uid)
    uid_set = ",".join(str(u) for u in uids)
    return f"[APPENDUID {folder.uidvalidity} {uid_set}] APPEND completed"


__all__ = ["append", "create", "delete", "list_", "lsub", "rename", "select", "status", "subscribe", "nonexistent"]
