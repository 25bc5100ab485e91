"""The IMAP side of the message index (:mod:`delivery.mime_index`): build, load,
and fill in indexes missing from stored messages (mail delivered before indexing)."""

from __future__ import annotations

from delivery.mime_index import (
    IndexFormatError,
    MessageIndex,
    Section,
    build_index,
    matches_text,
    partial,
    section_bytes,
)

__all__ = [
    "MessageIndex", "Section", "index_json", "load", "matches_text", "partial", "section_bytes",
]


def index_json(raw: bytes) -> str:
    """The stored form of ``raw``'s index (CPU-bound: run it off the event loop)."""
    return build_index(raw).to_json()


def load(text: str | None) -> MessageIndex | None:
    """A stored index, or None when missing or of an older format (rebuild it then)."""
    if text is None:
        return None
    try:
        return MessageIndex.from_json(text)
    except IndexFormatError:
        return None
