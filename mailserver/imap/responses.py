"""IMAP response codes (RFC 3501 §7.1, RFC 5530, RFC 4315, RFC 7162) and the error
that carries its own tagged response.

Handlers raise :class:`ImapError`; the session's one catcher turns it into
``<tag> NO|BAD [CODE] text``. Texts are short and never name internals.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.errors import KeywordLimit, StorageError, StorageFull

# Response codes, named so the code shows (RFC 5530 unless noted).
AUTHENTICATIONFAILED = "AUTHENTICATIONFAILED"
PRIVACYREQUIRED = "PRIVACYREQUIRED"
NONEXISTENT = "NONEXISTENT"
ALREADYEXISTS = "ALREADYEXISTS"
TRYCREATE = "TRYCREATE"  # RFC 3501 §7.1
CANNOT = "CANNOT"
NOPERM = "NOPERM"
LIMIT = "LIMIT"
TOOBIG = "TOOBIG"  # RFC 7889 / RFC 4469
UNAVAILABLE = "UNAVAILABLE"
OVERQUOTA = "OVERQUOTA"  # RFC 5530 §3; also used for a full disk, as Dovecot does
SERVERBUG = "SERVERBUG"
CLIENTBUG = "CLIENTBUG"
READ_ONLY = "READ-ONLY"  # RFC 3501 §7.1
READ_WRITE = "READ-WRITE"
CLOSED = "CLOSED"  # RFC 7162 §3.2.11
EXPUNGEISSUED = "EXPUNGEISSUED"

#: RFC 5530 §3 / mission-semantics §1: one text for every kind of login failure.
AUTH_FAILED_TEXT = "Authentication failed."


@dataclass
class ImapError(Exception):
    """A command failed; ``status`` is NO or BAD, ``code`` the bracketed response code."""

    status: str
    text: str
    code: str | None = None

    def response(self, tag: str) -> bytes:
        """The tagged response line, CRLF included."""
        code = f"[{self.code}] " if self.code else ""
        return f"{tag} {self.status} {code}{self.text}\r\n".encode()


def no(text: str, code: str | None = None) -> ImapError:
    """A tagged NO."""
    return ImapError("NO", text, code)


def bad(text: str, code: str | None = None) -> ImapError:
    """A tagged BAD."""
    return ImapError("BAD", text, code)


def auth_failed() -> ImapError:
    """``NO [AUTHENTICATIONFAILED] Authentication failed.``, whatever the reason."""
    return ImapError("NO", AUTH_FAILED_TEXT, AUTHENTICATIONFAILED)


def nonexistent() -> ImapError:
    """The mailbox does not exist (or is not visible to this session)."""
    return ImapError("NO", "No such mailbox", NONEXISTENT)


def keyword_limit(err: KeywordLimit) -> ImapError:
    """``NO [LIMIT]`` (RFC 5530 §3: "the operation ... would exceed a server limit") for
    a change refused by the keyword bounds of :mod:`storage.keywords`; nothing changed."""
    if err.scope == "length":
        return no(f"Keyword too long (the limit is {err.limit} octets)", LIMIT)
    if err.scope == "folder":
        return no(f"Too many keywords in this mailbox (the limit is {err.limit})", LIMIT)
    return no(f"Too many keywords on a message (the limit is {err.limit})", LIMIT)


def storage_failure(err: StorageError) -> ImapError:
    """The NO for a command the store could not carry out. A full store is
    ``NO [OVERQUOTA]``: RFC 5530 has no code for a full disk, and OVERQUOTA ("the
    operation would exceed space limits") is the one that tells the client the write
    was refused for lack of space and may succeed later, as Dovecot answers ENOSPC.
    Anything else is ``NO [UNAVAILABLE]`` ("a subsystem is down"). Both are temporary:
    nothing of the failed command was kept. A keyword bound is ``NO [LIMIT]``
    (:func:`keyword_limit`), which is not temporary."""
    if isinstance(err, KeywordLimit):
        return keyword_limit(err)
    if isinstance(err, StorageFull):
        return no("Not enough storage space, try again later", OVERQUOTA)
    return no("Temporary failure, try again later", UNAVAILABLE)
