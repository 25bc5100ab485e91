"""Errors raised by every storage backend (never driver exceptions)."""


class StorageError(Exception):
    """Base class. ``str(err)`` is a message an operator can read."""


class NotFound(StorageError):
    """The named domain, account, folder, message or queue entry does not exist."""


class AlreadyExists(StorageError):
    """An address, domain, alias or folder with that name already exists."""


class Conflict(StorageError):
    """The change breaks an invariant (wrong account kind, list cycle, non-empty target...)."""


class SeatsExhausted(StorageError):
    """Assigning a licence would exceed the configured seat pool."""


class Unavailable(StorageError):
    """The store cannot be reached right now; the caller should answer with a temporary failure."""


class StorageFull(Unavailable):
    """The store has no space left (disk full: SQLite's SQLITE_FULL, PostgreSQL's
    SQLSTATE 53100 disk_full). Temporary, like every Unavailable: nothing of the failed
    write was kept, and the same call succeeds once space is freed. Front ends answer
    with their "insufficient storage" reply (SMTP 452 4.3.1, IMAP NO [OVERQUOTA])."""


class KeywordLimit(StorageError):
    """A change would add a keyword (RFC 3501 §2.3.2 flag-keyword: any flag other than
    the system flags) beyond one of the bounds in :mod:`storage.keywords`: more than
    MAX_KEYWORDS_PER_MESSAGE on one message, more than MAX_KEYWORDS_PER_FOLDER distinct
    keywords in one folder, or one longer than MAX_KEYWORD_LENGTH octets. Nothing of the
    refused call was changed. Not temporary: the same call fails again until keywords
    are removed. ``scope`` is "message", "folder" or "length"; ``limit`` the bound hit.
    Front ends answer IMAP ``NO [LIMIT]`` (RFC 5530 §3)."""

    def __init__(self, message: str, *, scope: str, limit: int) -> None:
        super().__init__(message)
        self.scope = scope
        self.limit = limit
