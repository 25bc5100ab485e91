"""Header work on the message bytes: trace fields, checks, edits.

The message is kept byte for byte as the client sent it, except for the header fields
added or removed here: fields are located and edited on the raw header section, never
by re-serialising the message through the ``email`` package.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from delivery import replies as R
from delivery.replies import ReplyError

CRLF = b"\r\n"
#: RFC 5322 §2.2.3: a line beginning with WSP continues the previous field.
_WSP = (0x20, 0x09)
_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")  # RFC 5322 §3.6.8 ftext


@dataclass(frozen=True, slots=True)
class Parts:
    """A message split at the end of its header section (RFC 5322 §2.1).

    ``header`` holds the header fields, each ending in CRLF (may be empty); ``rest`` is
    the blank line and the body (empty when the message has no body separator).
    """

    header: bytes
    rest: bytes

    def join(self) -> bytes:
        return self.header + self.rest


def split(message: bytes) -> Parts:
    """Split ``message`` after its last header field."""
    if message.startswith(CRLF):
        return Parts(b"", message)
    end = message.find(b"\r\n\r\n")
    if end < 0:
        return Parts(message, b"")
    return Parts(message[: end + 2], message[end + 2:])


def fields(header: bytes) -> list[tuple[str, bytes]]:
    """The fields of a header section: (lower-case name, raw bytes with continuation
    lines and CRLFs). Lines that are no field (garbage) are kept under the name ""."""
    result: list[tuple[str, bytes]] = []
    for line in header.splitlines(keepends=True):
        if line[:1] and line[0] in _WSP and result:
            name, raw = result[-1]
            result[-1] = (name, raw + line)
            continue
        m = _FIELD_NAME.match(line)
        result.append((m.group(1).decode("ascii").lower() if m else "", line))
    return result


def count_fields(header: bytes, name: str) -> int:
    name = name.lower()
    return sum(1 for n, _ in fields(header) if n == name)


def remove_fields(header: bytes, name: str) -> bytes:
    """``header`` without any field called ``name`` (case-insensitive)."""
    name = name.lower()
    return b"".join(raw for n, raw in fields(header) if n != name)


def field(name: str, value: str) -> bytes:
    """One header field line; ``value`` is already encoded for the header (RFC 2047)
    or UTF-8 (RFC 6532)."""
    return f"{name}: {value}".encode() + CRLF


def check_limits(parts: Parts, *, max_header_size: int, max_hops: int) -> None:
    """Raise ReplyError when the header section is larger than ``max_header_size``, or
    when the message carries more than ``max_hops`` Received: fields (RFC 5321 §6.3:
    a loop, 554 5.4.6)."""
    if len(parts.header) > max_header_size:
        raise ReplyError(R.R552_5_3_4_HEADER_TOO_BIG)
    if count_fields(parts.header, "received") > max_hops:
        raise ReplyError(R.R554_5_4_6_ROUTING_LOOP)


def check_start(parts: Parts) -> None:
    """Raise ReplyError (554 5.6.0) when the header section begins with a continuation
    line (RFC 5322 §2.2.3: WSP continues the field before it). A field put in front of
    it would take it as its own: on submission, the client could write into the Sender:
    we set for Send on Behalf. (Inbound mail is kept as sent, RFC 5321 §4.4; there the
    line continues our Received:, after its date.)"""
    if parts.header[:1] in (b" ", b"\t"):
        raise ReplyError(R.R554_5_6_0_LEADING_CONTINUATION)


@dataclass(frozen=True, slots=True)
class Trace:
    """What the Received: field records about the session (RFC 5321 §4.4)."""

    helo: str
    client_ip: str
    hostname: str
    esmtp: bool
    tls_version: str | None = None
    tls_cipher: str | None = None
    authenticated_user: str | None = None
    smtputf8: bool = False


def protocol(trace: Trace) -> str:
    """The WITH keyword: RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA) and RFC 6531
    §3.7.3 (UTF8SMTP...)."""
    if not trace.esmtp:
        return "SMTP"
    word = "UTF8SMTP" if trace.smtputf8 else "ESMTP"
    if trace.tls_version:
        word += "S"
    if trace.authenticated_user:
        word += "A"
    return word


def _clean(text: str) -> str:
    """Text safe inside a Received: comment or domain slot."""
    return re.sub(r"[^\x21-\x7e]|[()\\]", "?", text)[:255] or "unknown"


def received(trace: Trace, queue_id: str, recipients: list[str], now: datetime | None = None) -> bytes:
    """A Received: field for this hop (RFC 5321 §4.4, RFC 5322 §3.6.7).

    ``for`` names the recipient only when there is exactly one, so a list's members are
    not shown to each other.
    """
    when = email.utils.format_datetime(now or datetime.now(UTC))
    lines = [f"from {_clean(trace.helo)} ([{trace.client_ip}])"]
    lines.append(f"by {_clean(trace.hostname)} (mailserver) with {protocol(trace)} id {queue_id}")
    if trace.tls_version:
        lines.append(f"(using {_clean(trace.tls_version)} with cipher {_clean(trace.tls_cipher or '')})")
    if trace.authenticated_user:
        lines.append(f"(authenticated user {_clean(trace.authenticated_user)})")
    tail = f"for <{_clean(recipients[0])}>; {when}" if len(recipients) == 1 else f"; {when}"
    if tail.startswith(";"):
        lines[-1] += tail
    else:
        lines.append(tail)
    return ("Received: " + "\r\n\t".join(lines)).encode() + CRLF


def return_path(mail_from: str) -> bytes:
    """Return-Path: added at final delivery (RFC 5321 §4.4)."""
    return b"Return-Path: <" + mail_from.encode("utf-8", "surrogateescape") + b">" + CRLF


def submission_fields(header: bytes, hostname: str, now: datetime | None = None) -> bytes:
    """Fields a submission server adds when missing: Date (RFC 5322 §3.6.1) and
    Message-ID (§3.6.4), as RFC 6409 §8.2 and §8.3 allow."""
    added = b""
    if count_fields(header, "date") == 0:
        added += field("Date", email.utils.format_datetime(now or datetime.now(UTC)))
    if count_fields(header, "message-id") == 0:
        added += field("Message-ID", email.utils.make_msgid(domain=hostname))
    return added
