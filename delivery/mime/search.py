"""SEARCH text matching (RFC 3501 §6.4.4): case-insensitive substring on decoded text."""

from __future__ import annotations

import binascii
from collections.abc import Iterator

from .headers import b64decode_lenient, decode_bytes, decode_words, field_value, split_fields
from .parts import Part

#: Most decoded body text searched per part: a SEARCH over a folder must not spend
#: seconds decoding one 50 MB attachment that happens to be text/plain.
MAX_SEARCH_TEXT = 4 * 1024 * 1024


def text_parts(part: Part) -> Iterator[Part]:
    """The text/* leaves of a part tree, through multiparts and encapsulated messages."""
    if part.is_multipart:
        for child in part.children:
            yield from text_parts(child)
    elif part.message is not None:
        yield from text_parts(part.message)
    elif part.type == "text":
        yield part


def decode_body(raw: bytes, part: Part) -> str:
    """A part's body with its transfer encoding (RFC 2045 §6) and charset undone.
    Never raises."""
    body = raw[part.bs:min(part.be, part.bs + MAX_SEARCH_TEXT)]
    if part.encoding == "BASE64":
        body = b64decode_lenient(body)
    elif part.encoding == "QUOTED-PRINTABLE":
        try:
            body = binascii.a2b_qp(body)
        except (binascii.Error, ValueError):
            pass
    return decode_bytes(body, part.charset or None)


def decoded_header(raw: bytes, part: Part) -> str:
    """A header section with RFC 2047 words decoded, one field per line."""
    return "\n".join(raw_field.decode("latin-1").split(":", 1)[0] + ": "
                     + decode_words(field_value(raw_field))
                     for _, raw_field in split_fields(raw[part.hs:part.bs]))


def header_contains(raw: bytes, root: Part, name: str, needle: str) -> bool:
    """RFC 3501 §6.4.4 HEADER: some field ``name`` contains ``needle`` (an empty
    needle matches any message that has the field)."""
    name = name.lower()
    needle = needle.casefold()
    for n, raw_field in split_fields(raw[root.hs:root.bs]):
        if n == name and needle in decode_words(field_value(raw_field)).casefold():
            return True
    return False


def body_contains(raw: bytes, root: Part, needle: str) -> bool:
    """RFC 3501 §6.4.4 BODY: some decoded text part contains ``needle``."""
    needle = needle.casefold()
    return any(needle in decode_body(raw, p).casefold() for p in text_parts(root))
