"""FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8; CHANGEDSINCE and MODSEQ, RFC 7162 §3.1.4).

Responses are streamed: messages are read in UID-range batches and each batch is
written (and the socket drained) before the batch after next is read, so a FETCH 1:*
of a large folder never holds the whole response in memory. The store reads the next
batch while this one is formatted (it runs on its own thread, so on two cores both
proceed at once). Without bodies a batch goes out as one write (one system call
instead of one per message); ENVELOPE alone decodes only that string of each stored
index (:func:`mime.envelope_wire`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING, Any

from mailserver.imap import mime
from mailserver.imap import parser as p
from mailserver.imap.parser import encode
from mailserver.imap.responses import bad
from storage.interfaces import MailStore
from storage.types import MessageMeta

if TYPE_CHECKING:
    from mailserver.imap.session import Session

#: Messages read per storage query without bodies: big enough to amortise the query and
#: the socket write, small enough to keep memory flat (1,000 stored indexes of ~1 KiB
#: and their ~0.4 KiB responses, twice that with the batch read ahead).
FETCH_BATCH = 1000
#: Batch size when bodies are fetched (their bytes are read in groups, see below;
#: every message is written on its own and the socket drained past 256 KiB).
BODY_BATCH = 100
#: Bodies read at once: their reads are queued together, so the store's thread runs
#: them back to back instead of one thread round trip per message. A group stops at
#: this many bytes (by RFC822.SIZE; one larger message is read alone) ...
BODY_GROUP_BYTES = 4 * 1024 * 1024
#: ... or at this many bodies.
BODY_GROUP_COUNT = 50

_INDEX_ITEMS = frozenset({"ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822.HEADER", "RFC822.TEXT"})
_BODY_ITEMS = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT"})
_HEADER = mime.Section((), "HEADER", ())
_TEXT = mime.Section((), "TEXT", ())


def batches(uids: list[int], size: int) -> list[list[int]]:
    """``uids`` in consecutive slices of at most ``size``."""
    return [uids[i : i + size] for i in range(0, len(uids), size)]


def _section_data(raw: bytes, index: mime.MessageIndex, attr: p.FetchAttr) -> bytes | None:
    assert attr.section is not None
    data = mime.section_bytes(raw, index, attr.section)
    if data is not None and attr.partial is not None:
        data = mime.partial(data, attr.partial[0], attr.partial[1])
    return data


def render(
    seq: int,
    meta: MessageMeta,
    attrs: tuple[p.FetchAttr, ...],
    index: mime.MessageIndex | None,
    raw: bytes | None,
    flags_changed: bool,
    *,
    envelope: bytes | None = None,
    flag_lists: dict[frozenset[str], bytes] | None = None,
) -> bytes:
    """One ``* n FETCH (...)`` response line (literals included): :func:`render_pieces` joined.

    ``envelope`` (when given) is the ENVELOPE wire string, so ``index`` may be None
    for a FETCH whose only index item is ENVELOPE; ``flag_lists`` caches the encoded
    flag list of each flag set across the messages of one FETCH.
    """
    return b"".join(render_pieces(seq, meta, attrs, index, raw, flags_changed,
                                  envelope=envelope, flag_lists=flag_lists))


def render_pieces(
    seq: int,
    meta: MessageMeta,
    attrs: tuple[p.FetchAttr, ...],
    index: mime.MessageIndex | None,
    raw: bytes | None,
    flags_changed: bool,
    *,
    envelope: bytes | None = None,
    flag_lists: dict[frozenset[str], bytes] | None = None,
) -> Iterator[bytes]:
    """The ``* n FETCH (...)`` response line in consecutive pieces, each made only when
    asked for: a literal's octets are a piece of their own, so a caller that sends each
    piece before taking the next holds one body section at a time, however many the
    client asked for (arguments as for :func:`render`)."""
    names = {attr.name for attr in attrs}
    flags = _flag_list(meta.flags, flag_lists)
    yield b"* %d FETCH (" % seq
    sep = b""
    if "UID" in names:
        yield b"UID %d" % meta.uid
        sep = b" "
    for attr in attrs:
        name = attr.name
        if attr.section is not None:
            assert index is not None and raw is not None
            data = _section_data(raw, index, attr)
            if data is None:
                yield sep + attr.response_name().encode() + b" " + encode.NIL
            else:
                yield sep + attr.response_name().encode() + b" {%d}\r\n" % len(data)
                yield data
        elif name == "UID":
            continue
        elif name == "FLAGS":
            yield sep + b"FLAGS " + flags
        elif name == "INTERNALDATE":
            yield sep + b"INTERNALDATE " + encode.date_time(meta.internal_date)
        elif name == "RFC822.SIZE":
            yield sep + b"RFC822.SIZE %d" % meta.size
        elif name == "MODSEQ":
            yield sep + b"MODSEQ (%d)" % meta.modseq
        elif name == "ENVELOPE":
            if envelope is None:
                assert index is not None
                envelope = index.envelope_wire
            yield sep + b"ENVELOPE " + envelope
        elif name == "BODY":
            assert index is not None
            yield sep + b"BODY " + index.body_wire
        elif name == "BODYSTRUCTURE":
            assert index is not None
            yield sep + b"BODYSTRUCTURE " + index.bodystructure_wire
        elif name == "RFC822":
            assert raw is not None
            yield sep + b"RFC822 {%d}\r\n" % len(raw)
            yield raw
        elif name in ("RFC822.HEADER", "RFC822.TEXT"):
            assert raw is not None and index is not None
            data = mime.section_bytes(raw, index, _HEADER if name == "RFC822.HEADER" else _TEXT) or b""
            yield sep + name.encode() + b" {%d}\r\n" % len(data)
            yield data
        sep = b" "
    if flags_changed and "FLAGS" not in names:
        # RFC 3501 §6.4.5: an implicit \Seen change is reported with the data
        yield sep + b"FLAGS " + flags
    yield b")\r\n"


def body_groups(metas: list[MessageMeta]) -> list[list[MessageMeta]]:
    """``metas`` in consecutive groups to read together (BODY_GROUP_BYTES/COUNT)."""
    groups: list[list[MessageMeta]] = []
    group: list[MessageMeta] = []
    size = 0
    for meta in metas:
        if group and (size + meta.size > BODY_GROUP_BYTES or len(group) >= BODY_GROUP_COUNT):
            groups.append(group)
            group, size = [], 0
        group.append(meta)
        size += meta.size
    if group:
        groups.append(group)
    return groups


async def read_bodies(mail: MailStore, metas: list[MessageMeta]) -> dict[str, bytes]:
    """The bodies of ``metas`` by blob id, read with all requests queued at once."""
    ids = list(dict.fromkeys(m.blob_id for m in metas))
    return dict(zip(ids, await asyncio.gather(*(mail.get_body(b) for b in ids)), strict=True))


class BodyReader:
    """The bodies of one batch of messages, read a group at a time (:func:`body_groups`)
    with the next group read while the caller works on this one."""

    def __init__(self, mail: MailStore, metas: list[MessageMeta]) -> None:
        self._mail = mail
        self._groups = body_groups(metas)
        self._group_of = [g for g, group in enumerate(self._groups) for _ in group]
        self._current = -1
        self._bodies: dict[str, bytes] = {}
        self._ahead: tuple[int, asyncio.Future[dict[str, bytes]]] | None = None

    def _read(self, g: int) -> asyncio.Future[dict[str, bytes]]:
        return asyncio.ensure_future(read_bodies(self._mail, self._groups[g]))

    async def body(self, n: int, meta: MessageMeta) -> bytes:
        """The body of ``meta``, the ``n``-th (0-based) of the metas given."""
        g = self._group_of[n]
        if g != self._current:
            if self._ahead is not None and self._ahead[0] == g:
                reading = self._ahead[1]
            else:
                self.close()
                reading = self._read(g)
            self._ahead = None
            self._bodies = await reading
            self._current = g
            if g + 1 < len(self._groups):
                self._ahead = (g + 1, self._read(g + 1))
        return self._bodies[meta.blob_id]

    def close(self) -> None:
        """Abandon a read ahead (the command ended early)."""
        if self._ahead is not None:
            self._ahead[1].cancel()
            self._ahead[1].add_done_callback(_consume)
            self._ahead = None


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned read's outcome (no "exception never retrieved" warning)."""
    if not future.cancelled():
        future.exception()


def _flag_list(flags: frozenset[str], cache: dict[frozenset[str], bytes] | None) -> bytes:
    if cache is None:
        return encode.flag_list(sorted(flags))
    out = cache.get(flags)
    if out is None:
        out = cache[flags] = encode.flag_list(sorted(flags))
    return out


async def fetch(s: Session, cmd: p.Fetch) -> str:
    """Stream FETCH responses for the messages of the set that still exist."""
    view = s.view
    assert view is not None
    try:
        uids = view.live(view.resolve(cmd.sequence_set, cmd.uid))
    except ValueError:
        raise bad("Invalid message number") from None  # RFC 3501 §9 seq-number
    attrs = cmd.attrs
    if cmd.changed_since is not None or any(a.name == "MODSEQ" for a in attrs):
        s.enable_condstore()  # RFC 7162 §3.1: a CONDSTORE-enabling command
    with_body = any(a.section is not None or a.name in _BODY_ITEMS for a in attrs)
    index_names = {a.name for a in attrs if a.name in _INDEX_ITEMS}
    with_index = with_body or bool(index_names)
    # ENVELOPE is the only index item: decode just that string of each stored index.
    envelope_only = not with_body and index_names == {"ENVELOPE"}
    sets_seen = not view.readonly and any(
        (a.section is not None and not a.peek) or a.name in ("RFC822", "RFC822.TEXT") for a in attrs
    )
    mail = s.app.store.mail
    loop = asyncio.get_running_loop()
    folder_id = view.folder.id
    flag_lists: dict[frozenset[str], bytes] = {}
    chunks = batches(uids, BODY_BATCH if with_body else FETCH_BATCH)

    def read(i: int) -> asyncio.Future[list[tuple[MessageMeta, str | None]]] | None:
        if i >= len(chunks):
            return None
        reading: Awaitable[list[tuple[MessageMeta, str | None]]] = mail.fetch_range(
            folder_id, chunks[i][0], chunks[i][-1], with_index=with_index
        )
        return asyncio.ensure_future(reading)

    ahead = read(0)
    try:
        for i, chunk in enumerate(chunks):
            assert ahead is not None
            got = await ahead
            ahead = read(i + 1)  # the store reads the next batch while this one is sent
            wanted = set(chunk)
            rows = [
                (meta, idx) for meta, idx in got
                if meta.uid in wanted and (cmd.changed_since is None or meta.modseq > cmd.changed_since)
            ]
            changed: dict[int, MessageMeta] = {}
            if sets_seen:
                unseen = [meta.uid for meta, _ in rows if "\\Seen" not in meta.flags]
                if unseen:
                    changes, _ = await mail.store_flags(folder_id, unseen, "add", ["\\Seen"])
                    for c in changes:
                        view.reported[c.uid] = c.modseq
                        changed[c.uid] = MessageMeta(c.uid, c.flags, rows[0][0].internal_date, c.modseq, 0, "")
            new_indexes: list[tuple[str, str]] = []
            out: list[bytes] = []
            bodies = BodyReader(mail, [meta for meta, _ in rows]) if with_body else None
            try:
                for n, (meta, idx_json) in enumerate(rows):
                    raw = await bodies.body(n, meta) if bodies is not None else None
                    envelope = mime.envelope_wire(idx_json) if envelope_only else None
                    index = mime.load(idx_json) if with_index and envelope is None else None
                    if with_index and index is None and envelope is None:
                        if raw is None:
                            raw = await mail.get_body(meta.blob_id)
                        text = await loop.run_in_executor(None, mime.index_json, raw)
                        new_indexes.append((meta.blob_id, text))
                        index = mime.load(text)
                    if meta.uid in changed:
                        now = changed[meta.uid]
                        meta = MessageMeta(meta.uid, now.flags, meta.internal_date, now.modseq, meta.size, meta.blob_id)
                    seq = view.seq_of(meta.uid)
                    if seq is None:
                        continue
                    if with_body:  # piece by piece: one section in memory at a time
                        for piece in render_pieces(seq, meta, attrs, index, raw, meta.uid in changed,
                                                   envelope=envelope, flag_lists=flag_lists):
                            s.send(piece)
                            await s.flush()
                    else:
                        out.append(render(seq, meta, attrs, index, raw, meta.uid in changed,
                                          envelope=envelope, flag_lists=flag_lists))
            finally:
                if bodies is not None:
                    bodies.close()
            if out:
                s.send(b"".join(out))
                await s.flush()
            if new_indexes:
                await mail.set_index(new_indexes)
    finally:
        if ahead is not None:  # the command failed or the client went away
            ahead.cancel()
            ahead.add_done_callback(_consume)
    return ("UID " if cmd.uid else "") + "FETCH completed"
