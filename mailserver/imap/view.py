"""The selected mailbox as one session sees it (RFC 3501 §2.3.1.2, §5.5, §7).

Sequence numbers are positions in :attr:`SelectedView.uids`. The view changes only
when the session reports a change: new messages (``EXISTS``), removed messages
(``EXPUNGE``, only where :meth:`SelectedView.updates` is told it may) and flag changes
(``FETCH (FLAGS ...)``). So a message never changes its number under a running
FETCH, STORE or SEARCH, whatever other sessions do.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from mailserver.imap import parser as p
from mailserver.imap.parser import encode
from storage.interfaces import MailStore
from storage.types import Folder


class MailboxGone(Exception):
    """The selected folder was deleted (or renamed away) by another session."""


@dataclass
class SelectedView:
    """Sequence numbers <-> UIDs of the selected folder, and what is not yet reported.

    Invariants: ``uids`` ascends; every UID in ``expunged`` is in ``uids`` (removed from
    storage, not yet announced); ``highestmodseq`` is at most the folder's, so changes
    after it are never missed (a change may be seen twice, which is harmless).
    """

    folder: Folder
    readonly: bool
    uids: list[int]
    highestmodseq: int
    condstore: bool = False
    expunged: set[int] = field(default_factory=set)
    #: uid -> modseq this session already showed (its own STORE), not shown again
    reported: dict[int, int] = field(default_factory=dict)

    @classmethod
    async def open(cls, mail: MailStore, folder: Folder, readonly: bool, condstore: bool) -> SelectedView:
        """Load the view: counters first, then UIDs, so no change is lost in between."""
        fresh = await mail.get_folder_by_id(folder.id)
        if fresh is None:
            raise MailboxGone()
        uids = await mail.list_uids(folder.id)
        return cls(fresh, readonly, uids, fresh.highestmodseq, condstore)

    # -- numbering
    @property
    def exists(self) -> int:
        """The message count the client knows."""
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        """The sequence number of ``uid``, or None when not in the view."""
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def resolve(self, seqset: p.SequenceSet, uid: bool) -> list[int]:
        """The UIDs a set names, ascending (RFC 3501 §6.4.8 for UID sets).

        Raises:
            ValueError: a message number above the count the client knows (§9 seq-number).
        """
        if not self.uids:
            if not uid and any(b is not None for r in seqset.ranges for b in r):
                raise ValueError("no messages")
            return []
        if not uid:
            if seqset.exceeds(len(self.uids)):
                raise ValueError("message number out of range")
            return [u for lo, hi in seqset.normalized(len(self.uids)) for u in self.uids[lo - 1 : hi]]
        out: list[int] = []
        for lo, hi in seqset.normalized(self.uids[-1]):
            a = bisect.bisect_left(self.uids, lo)
            b = bisect.bisect_right(self.uids, hi)
            out.extend(self.uids[a:b])
        return out

    def live(self, uids: list[int]) -> list[int]:
        """``uids`` without those already known to be expunged."""
        return [u for u in uids if u not in self.expunged] if self.expunged else uids

    # -- updates
    def fetch_line(self, seq: int, uid: int, flags: frozenset[str], modseq: int) -> bytes:
        """An untagged ``FETCH (FLAGS ...)`` (with MODSEQ once CONDSTORE is on, RFC 7162 §3.2.4)."""
        items = [b"UID %d" % uid, b"FLAGS " + encode.flag_list(sorted(flags))]
        if self.condstore:
            items.append(b"MODSEQ (%d)" % modseq)
        return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(items))

    async def updates(self, mail: MailStore, *, allow_expunge: bool) -> list[bytes]:
        """Read what changed since the last call; return the untagged lines to send.

        EXPUNGE lines only when ``allow_expunge`` (RFC 3501 §7.4.1: never during FETCH,
        STORE or SEARCH); until then the removed messages keep their numbers.

        Raises:
            MailboxGone: the folder no longer exists.
        """
        folder = await mail.get_folder_by_id(self.folder.id)
        if folder is None:
            raise MailboxGone()
        self.folder = folder
        lines: list[bytes] = []
        changes: list[tuple[int, frozenset[str], int]] = []
        added = 0
        if folder.highestmodseq != self.highestmodseq:
            rows = await mail.list_messages(folder.id, changed_since=self.highestmodseq)
            last = self.uids[-1] if self.uids else 0
            new = [m.uid for m in rows if m.uid > last]
            changes = [
                (m.uid, m.flags, m.modseq) for m in rows
                if m.uid <= last and self.reported.get(m.uid) != m.modseq
            ]
            expected = len(self.uids) - len(self.expunged) + len(new)
            if folder.messages != expected:
                now = set(await mail.list_uids(folder.id))
                self.expunged |= {u for u in self.uids if u not in now and u <= last}
            self.uids.extend(new)
            added = len(new)
            self.highestmodseq = folder.highestmodseq
            self.reported.clear()
        if allow_expunge and self.expunged:
            lines += self._expunge_lines()
        for uid, flags, modseq in changes:
            if uid in self.expunged:
                continue
            seq = self.seq_of(uid)
            if seq is not None:
                lines.append(self.fetch_line(seq, uid, flags, modseq))
        if added:  # RFC 3501 §7.3.1, after any EXPUNGE so the count is final
            lines.append(b"* %d EXISTS\r\n" % len(self.uids))
        return lines

    def _expunge_lines(self) -> list[bytes]:
        """``* n EXPUNGE`` from the highest number down, so earlier numbers hold (§7.4.1)."""
        seqs = sorted((i + 1 for i, u in enumerate(self.uids) if u in self.expunged), reverse=True)
        gone = self.expunged
        self.uids = [u for u in self.uids if u not in gone]
        self.expunged = set()
        return [b"* %d EXPUNGE\r\n" % s for s in seqs]

    def forget(self, uids: list[int]) -> list[bytes]:
        """This session expunged ``uids``: mark and report them now (EXPUNGE, MOVE)."""
        self.expunged |= set(uids) & set(self.uids)
        return self._expunge_lines()
