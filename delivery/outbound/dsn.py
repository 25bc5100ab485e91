"""Delivery status notifications, RFC 3464: multipart/report (RFC 6522) with a human
part, a message/delivery-status part and the original message's header section."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Literal

Action = Literal["failed", "delayed"]

#: Longest diagnostic kept in a field: well under the 998-octet line limit of
#: RFC 5322 §2.1.1 once the field name is added.
MAX_DIAGNOSTIC = 800

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    """One recipient reported on: the address, the last diagnostic (a reply such as
    "550 5.1.1 User unknown" or our own text) and the remote host, if any answered."""

    address: str
    diagnostic: str
    remote_mta: str | None = None


def status_of(diagnostic: str, action: Action) -> str:
    """The RFC 3463 status for the DSN: the enhanced code in the reply when there is
    one; otherwise 5.0.0 for a failure and 4.0.0 for a delay. An expired message that
    only ever saw temporary errors keeps its 4.x.x status with Action: failed (as
    Postfix does), so the reader sees what kept failing."""
    m = _ENHANCED.search(diagnostic)
    if m:
        return ".".join(m.groups())
    return "5.0.0" if action == "failed" else "4.0.0"


def _clean(text: str) -> str:
    return " ".join(text.split())[:MAX_DIAGNOSTIC]


def header_section(message: bytes) -> bytes:
    """The original header section (without Return-Path, which the final delivery adds)."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    lines = head.split(b"\r\n")
    out: list[bytes] = []
    skipping = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                out.append(line)
            continue
        skipping = line.lower().startswith(b"return-path:")
        if not skipping:
            out.append(line)
    return b"\r\n".join(out).rstrip(b"\r\n") + b"\r\n"


def build_dsn(
    *,
    reporting_mta: str,
    postmaster: str,
    sender: str,
    original: bytes,
    recipients: Sequence[DsnRecipient],
    action: Action,
    arrival: datetime,
    now: datetime,
    will_retry_until: datetime | None = None,
) -> bytes:
    """The complete DSN message (CRLF line ends) for ``sender``.

    It is sent with the null envelope sender (RFC 5321 §4.5.5) and carries
    Auto-Submitted: auto-replied (RFC 3834 §5) so that responders stay quiet.
    """
    boundary = f"dsn-{secrets.token_hex(12)}"
    failed = action == "failed"
    subject = "Undelivered Mail Returned to Sender" if failed else "Delayed Mail (still being retried)"
    listed = "\r\n".join(f"  <{r.address}>: {_clean(r.diagnostic)}" for r in recipients)
    if failed:
        human = (
            f"This is the mail system at host {reporting_mta}.\r\n\r\n"
            "Your message could not be delivered to one or more recipients.\r\n"
            "It is attached below (headers only). The mail system said:\r\n\r\n"
            f"{listed}\r\n"
        )
    else:
        until = format_datetime(will_retry_until) if will_retry_until else "later"
        human = (
            f"This is the mail system at host {reporting_mta}.\r\n\r\n"
            "Your message has not been delivered yet to the recipients below.\r\n"
            f"Delivery will be tried again until {until}; no action is needed.\r\n\r\n"
            f"{listed}\r\n"
        )
    # RFC 3464 §2.2: per-message fields, then one block per recipient (§2.3).
    status_lines = [f"Reporting-MTA: dns; {reporting_mta}", f"Arrival-Date: {format_datetime(arrival)}", ""]
    for r in recipients:
        status_lines += [
            f"Final-Recipient: rfc822; {r.address}",
            f"Action: {action}",
            f"Status: {status_of(r.diagnostic, action)}",
        ]
        if r.remote_mta:
            status_lines.append(f"Remote-MTA: dns; {r.remote_mta}")
        if r.diagnostic[:3].isdigit():
            status_lines.append(f"Diagnostic-Code: smtp; {_clean(r.diagnostic)}")
        else:
            status_lines.append(f"X-Diagnostic: {_clean(r.diagnostic)}")
        status_lines.append(f"Last-Attempt-Date: {format_datetime(now)}")
        if will_retry_until is not None and not failed:
            status_lines.append(f"Will-Retry-Until: {format_datetime(will_retry_until)}")
        status_lines.append("")
    head = [
        f"From: Mail Delivery System <{postmaster}>",
        f"To: <{sender}>",
        f"Subject: {subject}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: <{secrets.token_hex(12)}@{reporting_mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
    ]
    parts = [
        "\r\n".join(head).encode() + b"\r\n" + human.encode(),
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n".encode()
        + "\r\n".join(status_lines).encode() + b"\r\n",
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n".encode() + header_section(original) + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts)
