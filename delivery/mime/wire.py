"""IMAP wire forms of strings, the ENVELOPE and BODY/BODYSTRUCTURE (RFC 3501 §7.4.2, §9)."""

from __future__ import annotations

import re

from .addresses import Address, parse_addresses
from .headers import HeaderMap

NIL = b"NIL"
_NOT_QUOTABLE = re.compile(rb"[^\x20-\x7e]")


def string(value: str | bytes) -> bytes:
    """RFC 3501 §9 ``string``: a quoted string when the value is printable 7-bit
    ASCII, else a literal (8-bit text, CR or LF).  NUL cannot be sent in IMAP4rev1
    (RFC 3501 §4.3 CHAR8) and is dropped."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    data = data.replace(b"\x00", b"")
    if not _NOT_QUOTABLE.search(data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def nstring(value: str | bytes | None) -> bytes:
    """RFC 3501 §9 ``nstring``: NIL for None."""
    return NIL if value is None else string(value)


def address_list(addresses: list[Address]) -> bytes:
    """``(( name adl mailbox host )...)`` or NIL for an empty list (RFC 3501 §7.4.2)."""
    if not addresses:
        return NIL
    return b"(" + b"".join(
        b"(" + b" ".join(nstring(x) for x in addr) + b")" for addr in addresses) + b")"


def envelope(headers: HeaderMap) -> bytes:
    """The ENVELOPE of a message header (RFC 3501 §7.4.2).

    Fields in order: date, subject, from, sender, reply-to, to, cc, bcc, in-reply-to,
    message-id; string values are the unfolded raw field values (encoded words are
    left for the client to decode).  Sender and reply-to default to from when absent
    or empty."""
    frm = parse_addresses(headers.get("from"))
    sender = parse_addresses(headers.get("sender")) or frm
    reply_to = parse_addresses(headers.get("reply-to")) or frm
    items = [
        nstring(headers.get("date")),
        nstring(headers.get("subject")),
        address_list(frm),
        address_list(sender),
        address_list(reply_to),
        address_list(parse_addresses(headers.get("to"))),
        address_list(parse_addresses(headers.get("cc"))),
        address_list(parse_addresses(headers.get("bcc"))),
        nstring(headers.get("in-reply-to")),
        nstring(headers.get("message-id")),
    ]
    return b"(" + b" ".join(items) + b")"


def params(values: list[tuple[str, str]]) -> bytes:
    """RFC 3501 §9 ``body-fld-param``: names upper-cased, values as written."""
    if not values:
        return NIL
    return b"(" + b" ".join(string(k.upper()) + b" " + string(v) for k, v in values) + b")"


def disposition(value: tuple[str, list[tuple[str, str]]] | None) -> bytes:
    """RFC 3501 §9 ``body-fld-dsp``."""
    if value is None:
        return NIL
    return b"(" + string(value[0].upper()) + b" " + params(value[1]) + b")"


def language(value: str | None) -> bytes:
    """RFC 3501 §9 ``body-fld-lang``: one string, a list, or NIL (RFC 3282 tags)."""
    if value is None:
        return NIL
    tags = [t.strip() for t in value.split(",") if t.strip()]
    if not tags:
        return NIL
    if len(tags) == 1:
        return string(tags[0])
    return b"(" + b" ".join(string(t) for t in tags) + b")"
