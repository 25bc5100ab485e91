"""Small pure helpers shared by the SQLite backend: names, flags, dates, error translation."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from storage.errors import AlreadyExists, Conflict, StorageError, StorageFull, Unavailable
from storage.keywords import check_message

INBOX = "INBOX"

#: RFC 3501 §2.3.2 system flags, by lower-case spelling -> canonical spelling.
SYSTEM_FLAGS = {
    f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
}
#: RFC 3501 §2.3.2: \Recent is per session and cannot be stored by a client.
RECENT = "\\recent"


def normalize_address(address: str) -> str:
    """Lower-cased address; raises StorageError when it has no local part or domain."""
    addr = address.strip().lower()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        raise StorageError(f"{address!r} is not an email address (local@domain)")
    return addr


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def normalize_folder(name: str) -> str:
    """RFC 3501 §5.1: INBOX is case-insensitive (also as the head of a hierarchy)."""
    if name.upper() == INBOX:
        return INBOX
    if name[:6].upper() == "INBOX/":
        return INBOX + name[5:]
    return name


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """System flags in canonical case, keywords as given, \\Recent dropped.

    Raises Conflict for an empty flag or one with whitespace (it could not be an IMAP atom).
    """
    out: set[str] = set()
    for flag in flags:
        if not flag or any(c.isspace() for c in flag):
            raise Conflict(f"invalid flag {flag!r}")
        low = flag.lower()
        if low == RECENT:
            continue
        out.add(SYSTEM_FLAGS.get(low, flag))
    return frozenset(out)


def encode_flags(flags: frozenset[str]) -> str:
    return " ".join(sorted(flags))


def decode_flags(text: str) -> frozenset[str]:
    return frozenset(text.split()) if text else frozenset()


def plan_flag_changes(
    rows: Iterable[Mapping[str, Any]], mode: str, flags: frozenset[str], unchanged_since: int | None
) -> tuple[list[tuple[int, frozenset[str]]], list[int], set[str]]:
    """A STORE worked out on ``rows`` (uid, flags, modseq; either backend's rows), before
    anything is written: the (uid, new flags) to write, the UIDs refused by
    UNCHANGEDSINCE (RFC 7162 §3.1.3), and the keywords the change adds. Raises
    KeywordLimit (storage.keywords.check_message) when a message would pass a bound."""
    updates: list[tuple[int, frozenset[str]]] = []
    refused: list[int] = []
    added: set[str] = set()
    for row in rows:
        if unchanged_since is not None and row["modseq"] > unchanged_since:
            refused.append(row["uid"])
            continue
        current = decode_flags(row["flags"])
        if mode == "add":
            new = current | flags
        elif mode == "remove":
            new = current - flags
        else:
            new = flags
        if new != current:
            added |= check_message(current, new)
            updates.append((row["uid"], new))
    return updates, refused, added


def now_utc() -> datetime:
    return datetime.now(UTC)


def encode_date(value: datetime) -> str:
    """ISO 8601 text keeping the offset; naive datetimes are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def decode_date(text: str) -> datetime:
    return datetime.fromisoformat(text)


def translate(err: BaseException) -> BaseException:
    """Map a driver exception to a storage.errors class; other exceptions pass through."""
    if isinstance(err, StorageError) or not isinstance(err, sqlite3.Error):
        return err
    msg = str(err)
    if _is_disk_full(err):
        return StorageFull(f"no space left for the database: {msg}")
    if isinstance(err, sqlite3.IntegrityError):
        if "UNIQUE" in msg or "PRIMARY KEY" in msg:
            return AlreadyExists(f"already exists ({msg})")
        return Conflict(f"the change breaks a database invariant ({msg})")
    if isinstance(err, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg):
        return Unavailable(f"database busy: {msg}")
    return StorageError(f"database error: {msg}")


#: SQLite result codes meaning "no space": SQLITE_FULL (13; a write got ENOSPC, see
#: unixWrite in os_unix.c), and SQLITE_IOERR_SHMSIZE (10 | 19 << 8), which is what growing
#: the WAL index (-shm file) reports when its pages cannot be allocated.
_SQLITE_FULL = 13
_SQLITE_IOERR_SHMSIZE = 10 | (19 << 8)


def _is_disk_full(err: sqlite3.Error) -> bool:
    code = getattr(err, "sqlite_errorcode", None)  # the extended code (Python 3.11+)
    if code is None:
        return "database or disk is full" in str(err)
    return (code & 0xFF) == _SQLITE_FULL or code == _SQLITE_IOERR_SHMSIZE
