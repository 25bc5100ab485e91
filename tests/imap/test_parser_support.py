"""Helpers for the IMAP parser tests: drive a CommandReader like a server would.

(No tests here; the name keeps it inside the parser tests' files.)
"""

from __future__ import annotations

from mailserver.imap.parser import NEED_DATA, CommandReader, Event


def drain(reader: CommandReader) -> list[Event]:
    """Every event the reader can produce from what it holds, NEED_DATA excluded."""
    out: list[Event] = []
    while (event := reader.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def events_in_chunks(wire: bytes, chunks: list[bytes], max_literal: int = 1 << 20) -> list[Event]:
    """Feed ``chunks`` one by one (their join must be ``wire``), draining after each."""
    assert b"".join(chunks) == wire
    reader = CommandReader(max_literal=max_literal)
    out: list[Event] = []
    for chunk in chunks:
        reader.feed(chunk)
        out.extend(drain(reader))
    return out


def events_every_split(wire: bytes, max_literal: int = 1 << 20) -> list[Event]:
    """Events for ``wire`` fed whole; asserts every two-way split and byte-by-byte agree."""
    whole = events_in_chunks(wire, [wire], max_literal)
    for i in range(1, len(wire)):
        split = events_in_chunks(wire, [wire[:i], wire[i:]], max_literal)
        assert split == whole, f"split at {i}: {split!r} != {whole!r}"
    bytewise = events_in_chunks(wire, [wire[i : i + 1] for i in range(len(wire))], max_literal)
    assert bytewise == whole, "byte-by-byte feeding differs"
    return whole
