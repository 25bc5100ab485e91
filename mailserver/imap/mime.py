"""The IMAP side of the message index (:mod:`delivery.mime_index`): build, load,
and fill in indexes missing from stored messages (mail delivered before indexing)."""

from __future__ import annotations

from _json import scanstring  # the C string decoder json.loads uses

from delivery.mime_index import (
    FORMAT_VERSION,
    IndexFormatError,
    MessageIndex,
    Section,
    build_index,
    matches_text,
    partial,
    section_bytes,
)

__all__ = [
    "MessageIndex", "Section", "envelope_wire", "index_json", "load", "matches_text", "partial",
    "section_bytes",
]

# MessageIndex.to_json writes its keys in a fixed order: "v" (the format), "n" (the size,
# an integer), then "e" (the ENVELOPE wire string), so the first ',"e":"' after the
# prefix is that key: neither a format nor a size can contain it.
_PREFIX = f'{{"v":{FORMAT_VERSION},"n":'
_ENVELOPE_KEY = ',"e":"'


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


def envelope_wire(text: str | None) -> bytes | None:
    """The ENVELOPE wire bytes of a stored index, decoding that one JSON string only
    (about a fifth of the cost of :func:`load`, which decodes the whole object; FETCH of
    a folder's ENVELOPEs does this for every message).  Equal to
    ``load(text).envelope_wire``; None when :func:`load` would give None (missing or
    older format) or the text does not have the layout of ``to_json``."""
    if text is None or not text.startswith(_PREFIX):
        return None
    at = text.find(_ENVELOPE_KEY, len(_PREFIX))
    if at < 0 or not text[len(_PREFIX) : at].isdigit():
        return None
    try:
        value, _ = scanstring(text, at + len(_ENVELOPE_KEY))
        return value.encode("latin-1")
    except (ValueError, UnicodeEncodeError):
        return None
