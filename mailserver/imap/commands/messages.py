"""IDLE, CHECK, CLOSE/UNSELECT, EXPUNGE, STORE, COPY/MOVE (RFC 3501 §6.4, RFC 4315,
RFC 6851, RFC 7162 §3.1.3, RFC 2177)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailserver.imap import parser as p
from mailserver.imap.commands.fetch import FETCH_BATCH, batches
from mailserver.imap.responses import READ_ONLY, TRYCREATE, ImapError, bad, keyword_limit, no
from mailserver.imap.view import SelectedView
from storage.errors import Conflict, KeywordLimit
from storage.interfaces import FlagMode

if TYPE_CHECKING:
    from mailserver.imap.session import Session

_MODES: dict[p.StoreMode, FlagMode] = {p.StoreMode.ADD: "add", p.StoreMode.REMOVE: "remove", p.StoreMode.REPLACE: "replace"}


def _view(s: Session) -> SelectedView:
    assert s.view is not None
    return s.view


def _writable(view: SelectedView) -> None:
    if view.readonly:
        raise no("Mailbox is read-only", READ_ONLY)


def _uids(view: SelectedView, seqset: p.SequenceSet, uid: bool) -> list[int]:
    try:
        return view.live(view.resolve(seqset, uid))
    except ValueError:
        raise bad("Invalid message number") from None


def uid_set(uids: list[int]) -> str:
    """A compact sequence set ``1:3,7`` of ascending ``uids``."""
    out: list[str] = []
    i = 0
    while i < len(uids):
        j = i
        while j + 1 < len(uids) and uids[j + 1] == uids[j] + 1:
            j += 1
        out.append(str(uids[i]) if i == j else f"{uids[i]}:{uids[j]}")
        i = j + 1
    return ",".join(out)


async def idle(s: Session, cmd: p.Idle) -> str:
    """RFC 2177."""
    await s.idle()
    return "IDLE terminated"


async def check(s: Session, cmd: p.Check) -> str:
    """RFC 3501 §6.4.1: every change is already durable; updates follow."""
    return "CHECK completed"


async def close(s: Session, cmd: p.Close | p.Unselect) -> str:
    """CLOSE expunges silently (RFC 3501 §6.4.2); UNSELECT does not (RFC 3691)."""
    view = _view(s)
    if isinstance(cmd, p.Close) and not view.readonly:
        await s.app.store.mail.expunge(view.folder.id)
    s.close_view()
    return f"{'CLOSE' if isinstance(cmd, p.Close) else 'UNSELECT'} completed"


async def expunge(s: Session, cmd: p.Expunge) -> str:
    """EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1)."""
    view = _view(s)
    _writable(view)
    uids = None if cmd.uids is None else _uids(view, cmd.uids, True)
    if uids == []:
        return "EXPUNGE completed"
    gone = await s.app.store.mail.expunge(view.folder.id, uids)
    for line in view.forget(gone):
        s.send(line)
    return "EXPUNGE completed"


async def store(s: Session, cmd: p.Store) -> str:
    """[UID] STORE with .SILENT and UNCHANGEDSINCE ([MODIFIED], RFC 7162 §3.1.3)."""
    view = _view(s)
    _writable(view)
    uids = _uids(view, cmd.sequence_set, cmd.uid)
    if cmd.unchanged_since is not None:
        s.enable_condstore()
    if any(f.lower() == "\\recent" for f in cmd.flags):
        raise bad("\\Recent cannot be stored")
    mail = s.app.store.mail
    try:
        changes, refused = await mail.store_flags(
            view.folder.id, uids, _MODES[cmd.mode], cmd.flags, unchanged_since=cmd.unchanged_since
        )
    except Conflict:
        raise bad("Invalid flag") from None
    except KeywordLimit as err:  # RFC 5530 §3; no message was changed
        raise keyword_limit(err) from None
    if changes and view.highestmodseq == changes[0].modseq - 1:
        view.highestmodseq = changes[0].modseq  # nobody else changed the folder in between
    else:
        for c in changes:
            view.reported[c.uid] = c.modseq
    done = {c.uid for c in changes}
    for c in changes:
        seq = view.seq_of(c.uid)
        if seq is None:
            continue
        if not cmd.silent:
            s.send(view.fetch_line(seq, c.uid, c.flags, c.modseq))
        elif s.condstore:  # RFC 7162 §3.1.3: MODSEQ is reported even with .SILENT
            s.send(b"* %d FETCH (UID %d MODSEQ (%d))\r\n" % (seq, c.uid, c.modseq))
    refused_set = set(refused)
    unchanged = [u for u in uids if u not in done and u not in refused_set]
    if not cmd.silent and unchanged:
        # RFC 3501 §6.4.6: the flags of every message named, changed or not
        for chunk in batches(unchanged, FETCH_BATCH):
            want = set(chunk)
            for meta, _ in await mail.fetch_range(view.folder.id, chunk[0], chunk[-1]):
                seq = view.seq_of(meta.uid)
                if meta.uid in want and seq is not None:
                    s.send(view.fetch_line(seq, meta.uid, meta.flags, meta.modseq))
            await s.flush()
    name = ("UID " if cmd.uid else "") + "STORE"
    if refused:
        nums = refused if cmd.uid else [n for n in (view.seq_of(u) for u in refused) if n is not None]
        return f"[MODIFIED {uid_set(sorted(nums))}] Conditional {name} failed"
    return f"{name} completed"


async def copy(s: Session, cmd: p.Copy | p.Move) -> str:
    """[UID] COPY (COPYUID, RFC 4315 §3) and MOVE (RFC 6851 §3)."""
    view = _view(s)
    is_move = isinstance(cmd, p.Move)
    if is_move:
        _writable(view)
    uids = _uids(view, cmd.sequence_set, cmd.uid)
    assert s.namespace is not None
    try:
        _, dst = await s.namespace.folder(cmd.mailbox)
    except ImapError:
        raise no("No such mailbox", TRYCREATE) from None  # RFC 3501 §6.4.7
    name = ("UID " if cmd.uid else "") + ("MOVE" if is_move else "COPY")
    if not uids:
        return f"{name} completed"
    mail = s.app.store.mail
    try:
        if is_move:
            pairs = await mail.move(view.folder.id, uids, dst.id)
        else:
            pairs = await mail.copy(view.folder.id, uids, dst.id)
    except KeywordLimit as err:  # the destination would break a keyword bound; nothing copied
        raise keyword_limit(err) from None
    if not pairs:
        return f"{name} completed"
    code = f"COPYUID {dst.uidvalidity} {uid_set([a for a, _ in pairs])} {uid_set([b for _, b in pairs])}"
    if not is_move:
        return f"[{code}] {name} completed"
    # RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGEs
    s.send(f"* OK [{code}] Moved\r\n".encode())
    for line in view.forget([a for a, _ in pairs]):
        s.send(line)
    return f"{name} completed"
