"""Modified UTF-7 mailbox names, RFC 3501 §5.1.3.

Printable US-ASCII (0x20-0x7E) except ``&`` stands for itself; ``&`` is
written ``&-``; every other run of characters is written ``&`` + modified
BASE64 (``,`` instead of ``/``, no padding) of its UTF-16BE form + ``-``.
"""

from __future__ import annotations

import base64
import binascii

_AMP = 0x26
_DASH = 0x2D


class MUTF7Error(ValueError):
    """The bytes are not a valid modified UTF-7 mailbox name."""


def _is_direct(ch: str) -> bool:
    return "\x20" <= ch <= "\x7e"


def encode_mutf7(name: str) -> bytes:
    """Return the modified UTF-7 form of ``name``.

    Promises ``decode_mutf7(encode_mutf7(s)) == s`` for every string without
    lone surrogates.

    Raises:
        UnicodeEncodeError: (a ValueError) if ``name`` holds a lone surrogate.
    """
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(raw).rstrip(b"=").replace(b"/", b",")
            out.extend(b"&" + b64 + b"-")
            pending.clear()

    for ch in name:
        if _is_direct(ch):
            flush()
            out.extend(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    flush()
    return bytes(out)


def decode_mutf7(data: bytes) -> str:
    """Decode a modified UTF-7 mailbox name.

    Raises:
        MUTF7Error: on 8-bit or control octets, an unterminated or malformed
            ``&...-`` run, or a run that encodes only printable ASCII
            (RFC 3501 §5.1.3 forbids that, it would make names ambiguous).
    """
    out: list[str] = []
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b < 0x20 or b > 0x7E:
            raise MUTF7Error("mailbox name contains a non-ASCII or control octet")
        if b != _AMP:
            out.append(chr(b))
            i += 1
            continue
        end = data.find(b"-", i + 1)
        if end < 0:
            raise MUTF7Error("unterminated &-sequence in mailbox name")
        if end == i + 1:
            out.append("&")
            i = end + 1
            continue
        out.append(_decode_run(data[i + 1 : end]))
        i = end + 1
    return "".join(out)


def _decode_run(b64: bytes) -> str:
    if len(b64) % 4 == 1:
        raise MUTF7Error("bad base64 length in mailbox name")
    std = b64.replace(b",", b"/")
    padded = std + b"=" * (-len(std) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except binascii.Error as exc:
        raise MUTF7Error("bad base64 in mailbox name") from exc
    # The unused low bits of the last base64 character must be zero, or the
    # same name would have several spellings.
    if base64.b64encode(raw).rstrip(b"=") != std.rstrip(b"="):
        raise MUTF7Error("non-canonical base64 in mailbox name")
    if len(raw) % 2:
        raise MUTF7Error("odd UTF-16 length in mailbox name")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise MUTF7Error("bad UTF-16 in mailbox name") from exc
    if any(_is_direct(ch) for ch in text):
        raise MUTF7Error("printable ASCII must not be base64-encoded in a mailbox name")
    return text
