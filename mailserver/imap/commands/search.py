"""SEARCH and UID SEARCH (RFC 3501 §6.4.4), ESEARCH results (RFC 4731), MODSEQ
(RFC 7162 §3.1.5).

Flag, size, date, number and MODSEQ keys read the message list only; FROM, TO, CC,
BCC and SUBJECT are answered by the store from the bodies' index (one query per key,
:meth:`MailStore.search_index`; only messages without an index are checked here);
BODY, TEXT and other HEADER fields read the message bytes. A search made only of
store-answered keys, ALL and message sets reads no message at all.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mailserver.imap import mime
from mailserver.imap import parser as p
from mailserver.imap.commands.fetch import FETCH_BATCH, BodyReader, batches
from mailserver.imap.commands.messages import uid_set
from mailserver.imap.view import SelectedView
from storage.interfaces import MailStore
from storage.types import MessageMeta

if TYPE_CHECKING:
    from mailserver.imap.session import Session

_INDEX_FIELDS = frozenset({"from", "to", "cc", "bcc", "subject"})
#: Stands in for the internal date of messages a search never reads (never compared).
_NO_DATE = datetime(1970, 1, 1, tzinfo=UTC)


def _walk(key: p.SearchKey) -> list[p.SearchKey]:
    out: list[p.SearchKey] = [key]
    if isinstance(key, p.SearchNot):
        out += _walk(key.key)
    elif isinstance(key, p.SearchOr):
        out += _walk(key.left) + _walk(key.right)
    elif isinstance(key, p.SearchAnd):
        for k in key.keys:
            out += _walk(k)
    return out


def _needs_raw(key: p.SearchKey) -> bool:
    return isinstance(key, (p.SearchBody, p.SearchText)) or (
        isinstance(key, p.SearchHeader) and key.field.lower() not in _INDEX_FIELDS
    )


def _indexed(key: p.SearchKey) -> bool:
    """FROM/TO/CC/BCC/SUBJECT: answered by the store (:meth:`MailStore.search_index`)."""
    return isinstance(key, p.SearchHeader) and key.field.lower() in _INDEX_FIELDS


def _needs_index(key: p.SearchKey) -> bool:
    """The key needs every message's index (store-answered keys only for unknown ones)."""
    return _needs_raw(key) or (isinstance(key, p.SearchDate) and key.sent)


def _by_uid(key: p.SearchKey) -> bool:
    """The key is decided by the UID alone once store-answered keys are known."""
    return isinstance(key, (p.SearchAll, p.SearchSequence, p.SearchNot, p.SearchOr, p.SearchAnd)) or _indexed(key)


#: Messages matched between two yields to the event loop: a search of many keys over
#: a large folder must not hold up the other sessions (1,000 keys x 64 messages is a
#: few tens of milliseconds).
MATCH_SLICE = 64


class _UidRanges:
    """The UIDs a sequence set names, as sorted disjoint ``[lo, hi]`` UID ranges.

    Memory grows with the ranges the client wrote, not with the messages they cover:
    ``1:*`` over a million messages is one range (a set of its UIDs per key would let
    1,000 such keys take gigabytes).
    """

    __slots__ = ("highs", "lows")

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.lows = [lo for lo, _ in ranges]
        self.highs = [hi for _, hi in ranges]

    def __contains__(self, uid: int) -> bool:
        i = bisect.bisect_right(self.lows, uid) - 1
        return i >= 0 and uid <= self.highs[i]


class _Matcher:
    """Evaluates a search key against one message."""

    def __init__(self, view: SelectedView, key: p.SearchKey) -> None:
        self.view = view
        self.key = key
        self._sets: dict[int, _UidRanges] = {}
        #: id(key) -> (UIDs that match, UIDs the store could not tell) for indexed keys
        self.known: dict[int, tuple[frozenset[int], frozenset[int]]] = {}
        for k in _walk(key):
            if isinstance(k, p.SearchSequence):
                self._sets[id(k)] = self._resolve(k)

    def _resolve(self, k: p.SearchSequence) -> _UidRanges:
        """UID ranges of ``k`` that hold exactly the view's messages it names."""
        view = self.view
        if k.uid:  # RFC 3501 §6.4.8: "*" is the highest UID in the mailbox
            return _UidRanges(k.sequence_set.normalized(view.uids[-1] if view.uids else 0))
        # message numbers lo..hi are the view's UIDs from uids[lo - 1] to uids[hi - 1]
        return _UidRanges([(view.uids[lo - 1], view.uids[hi - 1]) for lo, hi in k.sequence_set.normalized(view.exists)])

    def match(self, key: p.SearchKey, meta: MessageMeta, index: mime.MessageIndex | None, raw: bytes | None) -> bool:
        m = self.match
        match key:
            case p.SearchAll():
                return True
            case p.SearchFlag(flag=flag, present=present):
                if flag == "\\Recent":
                    return not present  # no message is \Recent in this server
                has = flag in meta.flags or flag.lower() in (f.lower() for f in meta.flags)
                return has == present
            case p.SearchHeader(field=field, value=value):
                known = self.known.get(id(key))
                if known is not None:
                    if meta.uid in known[0]:
                        return True
                    if meta.uid not in known[1]:
                        return False
                assert index is not None
                name = field.lower()
                if name in _INDEX_FIELDS:
                    if not value:
                        return name in index.search_fields
                    return mime.matches_text(b"", index, value, name.upper())
                if not field:  # HEADER "" x: no field has an empty name (RFC 5322 §3.6.8)
                    return False
                assert raw is not None
                return mime.matches_text(raw, index, value, "HEADER", field)
            case p.SearchBody(value=value):
                assert raw is not None and index is not None
                return mime.matches_text(raw, index, value, "BODY")
            case p.SearchText(value=value):
                assert raw is not None and index is not None
                return mime.matches_text(raw, index, value, "TEXT")
            case p.SearchDate(relation=rel, date=date, sent=sent):
                if sent:
                    assert index is not None
                    day = index.sent_date
                    if day is None:
                        return False
                else:
                    day = meta.internal_date.date()  # RFC 3501 §6.4.4: date only, own zone
                if rel is p.DateRelation.BEFORE:
                    return day < date
                if rel is p.DateRelation.ON:
                    return day == date
                return day >= date
            case p.SearchSize(larger=larger, size=size):
                return meta.size > size if larger else meta.size < size
            case p.SearchSequence():
                return meta.uid in self._sets[id(key)]
            case p.SearchModSeq(modseq=modseq):
                return meta.modseq >= modseq
            case p.SearchNot(key=inner):
                return not m(inner, meta, index, raw)
            case p.SearchOr(left=left, right=right):
                return m(left, meta, index, raw) or m(right, meta, index, raw)
            case p.SearchAnd(keys=keys):
                return all(m(k, meta, index, raw) for k in keys)
        raise AssertionError(f"unknown search key {key!r}")


async def search(s: Session, cmd: p.Search) -> str:
    """Answer ``* SEARCH`` or, with RETURN, ``* ESEARCH`` (RFC 4731 §3.1)."""
    view = s.view
    assert view is not None
    keys = _walk(cmd.key)
    with_modseq = any(isinstance(k, p.SearchModSeq) for k in keys)
    if with_modseq:
        s.enable_condstore()
    need_raw = any(_needs_raw(k) for k in keys)
    need_index = any(_needs_index(k) for k in keys)
    matcher = _Matcher(view, cmd.key)
    mail = s.app.store.mail
    folder_id = view.folder.id
    candidates = view.live(list(view.uids))
    unknown: set[int] = set()  # messages the store could not answer an indexed key for
    for k in keys:
        if _indexed(k) and candidates:
            assert isinstance(k, p.SearchHeader)
            found, unsure = await mail.search_index(folder_id, k.field.lower(), k.value)
            matcher.known[id(k)] = (frozenset(found), frozenset(unsure))
            unknown.update(unsure)
    # Top-level (AND-ed) indexed keys narrow the messages to look at, to ones the store
    # still has.
    narrowed = False
    for k in cmd.key.keys if isinstance(cmd.key, p.SearchAnd) else (cmd.key,):
        if id(k) in matcher.known:
            hit, unclear = matcher.known[id(k)]
            candidates = [u for u in candidates if u in hit or u in unclear]
            narrowed = True
    hits: list[MessageMeta] = []
    if narrowed and all(_by_uid(k) for k in keys) and not unknown.intersection(candidates):
        # Decided by UIDs alone: no message needs reading (no MODSEQ key either).
        for n, uid in enumerate(candidates):
            if n % MATCH_SLICE == MATCH_SLICE - 1:
                await asyncio.sleep(0)
            bare = MessageMeta(uid, frozenset(), _NO_DATE, 0, 0, "")
            if matcher.match(cmd.key, bare, None, None):
                hits.append(bare)
        _respond(s, view, cmd, hits, with_modseq)
        return ("UID " if cmd.uid else "") + "SEARCH completed"
    new_indexes: list[tuple[str, str]] = []
    for chunk in batches(candidates, FETCH_BATCH):
        want = set(chunk)
        rows = [
            row for row in await mail.fetch_range(folder_id, chunk[0], chunk[-1], with_index=need_index or bool(unknown))
            if row[0].uid in want
        ]
        bodies = BodyReader(mail, [meta for meta, _ in rows]) if need_raw else None
        try:
            await _match_rows(matcher, cmd.key, rows, bodies, need_index, unknown, hits, new_indexes, mail)
        finally:
            if bodies is not None:
                bodies.close()
    if new_indexes:
        await mail.set_index(new_indexes)
    _respond(s, view, cmd, hits, with_modseq)
    return ("UID " if cmd.uid else "") + "SEARCH completed"


async def _match_rows(
    matcher: _Matcher, key: p.SearchKey, rows: list[tuple[MessageMeta, str | None]], bodies: BodyReader | None,
    need_index: bool, unknown: set[int], hits: list[MessageMeta], new_indexes: list[tuple[str, str]],
    mail: MailStore,
) -> None:
    """Add the messages of ``rows`` that match ``key`` to ``hits`` (and indexes built on
    the way to ``new_indexes``)."""
    loop = asyncio.get_running_loop()
    for n, (meta, idx_json) in enumerate(rows):
        if n % MATCH_SLICE == MATCH_SLICE - 1:
            await asyncio.sleep(0)
        raw = await bodies.body(n, meta) if bodies is not None else None
        index: mime.MessageIndex | None = None
        if need_index or meta.uid in unknown:
            index = mime.load(idx_json)
            if index is None:
                if raw is None:
                    raw = await mail.get_body(meta.blob_id)
                text = await loop.run_in_executor(None, mime.index_json, raw)
                new_indexes.append((meta.blob_id, text))
                index = mime.load(text)
        if matcher.match(key, meta, index, raw):
            hits.append(meta)


def _respond(s: Session, view: SelectedView, cmd: p.Search, hits: list[MessageMeta], with_modseq: bool) -> None:
    number: Callable[[MessageMeta], int | None] = (lambda m: m.uid) if cmd.uid else (lambda m: view.seq_of(m.uid))
    nums = sorted(n for n in (number(m) for m in hits) if n is not None)
    top = max((m.modseq for m in hits), default=0)
    if cmd.returns is None:
        line = b"* SEARCH" + b"".join(b" %d" % n for n in nums)
        if with_modseq and nums:
            line += b" (MODSEQ %d)" % top  # RFC 7162 §3.1.5
        s.send(line + b"\r\n")
        return
    parts = [b'* ESEARCH (TAG "' + cmd.tag.encode() + b'")']
    if cmd.uid:
        parts.append(b"UID")
    if nums:
        if "MIN" in cmd.returns:
            parts.append(b"MIN %d" % nums[0])
        if "MAX" in cmd.returns:
            parts.append(b"MAX %d" % nums[-1])
        if "ALL" in cmd.returns:
            parts.append(b"ALL " + uid_set(nums).encode())
    if "COUNT" in cmd.returns:
        parts.append(b"COUNT %d" % len(nums))
    if with_modseq and nums:
        parts.append(b"MODSEQ %d" % top)
    s.send(b" ".join(parts) + b"\r\n")
