"""The bounce address of distribution-list mail sent to external members.

A list's external members get the message with the envelope sender rewritten (so SPF
checks our domain, mission-semantics §3.3) to the list's bounce address, which carries
the original sender, SRS-style, with a keyed hash so it cannot be forged into a relay:

    <list-local>-bounces+<hash>=<day>=<sender-domain>=<sender-local>@<list-domain>

``hash`` is 8 hex digits of HMAC-SHA256(secret, day|sender) and ``day`` the day
number (days since 1970, base 36). A DSN that a remote server later sends there is
handed back to the original sender (Exchange's ReportToOriginatorEnabled default):
inbound routing calls :func:`decode` for an address of a local domain whose local
part starts with the bounce form, and delivers to the sender it returns. Failures the
worker itself sees (5xx, expiry) go to the original sender directly.

When the tagged local part would pass the 64-octet limit (RFC 5321 §4.5.3.1.1) the
plain ``<list-local>-bounces@<list-domain>`` is used; bounces to it cannot be traced.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

#: RFC 5321 §4.5.3.1.1: the maximum length of a local part.
MAX_LOCAL_PART = 64
#: How long (days) a bounce address stays valid: beyond the longest queue lifetime
#: anyone uses (ours is 5 days) plus late bounces.
MAX_AGE_DAYS = 30
_DAY_MODULUS = 36**2  # two base-36 digits, wrapping every 1296 days

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _day(now: datetime) -> int:
    return int(now.astimezone(UTC).timestamp() // 86400) % _DAY_MODULUS


def _b36(n: int) -> str:
    return _DIGITS[n // 36] + _DIGITS[n % 36]


def _hash(secret: bytes, day: str, sender: str) -> str:
    return hmac.new(secret, f"{day}|{sender.lower()}".encode(), hashlib.sha256).hexdigest()[:8]


def bounce_local(list_address: str, form: str) -> str:
    """The untagged bounce local part, e.g. "team-bounces" for form "{list}-bounces"."""
    return form.format(list=list_address.rpartition("@")[0])


def encode(list_address: str, sender: str, *, form: str, secret: bytes, now: datetime) -> str:
    """The envelope sender for ``list_address``'s mail to an external member."""
    local_form = bounce_local(list_address, form)
    domain = list_address.rpartition("@")[2]
    if not sender or "@" not in sender:
        return f"{local_form}@{domain}"
    s_local, _, s_domain = sender.rpartition("@")
    day = _b36(_day(now))
    tagged = f"{local_form}+{_hash(secret, day, sender)}={day}={s_domain}={s_local}"
    if len(tagged.encode()) > MAX_LOCAL_PART:
        return f"{local_form}@{domain}"
    return f"{tagged}@{domain}"


@dataclass(frozen=True, slots=True)
class ListBounce:
    """A bounce address taken apart: the list's bounce local part and the sender."""

    bounce_local: str
    sender: str


def decode(address: str, *, secret: bytes, now: datetime) -> ListBounce | None:
    """The original sender behind a tagged bounce address, or None when the address is
    not one, its hash is wrong, or it is older than :data:`MAX_AGE_DAYS`."""
    local, at, _ = address.rpartition("@")
    head, plus, tag = local.partition("+")
    if not at or not plus:
        return None
    parts = tag.split("=", 3)
    if len(parts) != 4:
        return None
    digest, day, s_domain, s_local = parts
    sender = f"{s_local}@{s_domain}"
    if not hmac.compare_digest(digest.lower(), _hash(secret, day.lower(), sender)):
        return None
    try:
        stamped = int(day.lower(), 36)
    except ValueError:
        return None
    if (_day(now) - stamped) % _DAY_MODULUS > MAX_AGE_DAYS:
        return None
    return ListBounce(head, sender)


#: Size of the bounce-address key: 256 bits, the HMAC-SHA256 block-size-safe default.
SECRET_BYTES = 32


def load_or_create_secret(path: Path) -> bytes:
    """The bounce-address key kept at ``path`` (created, mode 0600, on first use).
    Raises OSError when it can be neither read nor created."""
    try:
        data = path.read_bytes()
        if len(data) >= SECRET_BYTES:
            return data
    except FileNotFoundError:
        pass
    data = secrets.token_bytes(SECRET_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return data
