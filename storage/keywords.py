"""Bounds on message keywords (RFC 3501 §2.3.2 flag-keyword), the same for every backend.

A keyword is any stored flag other than the five system flags (``\\Seen``,
``\\Answered``, ``\\Flagged``, ``\\Deleted``, ``\\Draft``; ``\\Recent`` is never stored).
Without bounds one STORE could put about 8,000 keywords on each message (measured:
0.57 s and 3.2 MB of ``FETCH FLAGS`` for 50 messages), and repeated STOREs more, with
no end. The bounds apply only to changes that *add* keywords: removing keywords and
changing system flags always work, also on a message or folder already over a bound
(data from before the bounds existed).

What real clients use, which the numbers leave generous room for: Thunderbird's tags
(``$label1`` to ``$label5`` and one keyword per tag the user creates), ``$Forwarded``,
``$MDNSent``, ``Junk``/``NonJunk`` and ``$Junk``/``$NotJunk``; Apple Mail's
``$MailFlagBit0``-``2``; Outlook categories synced as keywords by some clients (eM
Client, Evolution's ``$Label...``); the IANA registry of keywords (RFC 5788) holds a
few dozen. One message carries a handful of these, rarely twenty.
"""

from __future__ import annotations

from collections.abc import Iterable

from storage.errors import KeywordLimit

#: Keywords on one message. A message realistically carries at most 20-30 (a user's
#: Thunderbird tags or Outlook categories plus the registered $-keywords), so 100 is
#: 3-5 times that. With MAX_KEYWORD_LENGTH it bounds one message's FETCH FLAGS to
#: about 10 KB (100 x 101 octets) where the abuse reached 64 KB per STORE, unbounded.
MAX_KEYWORDS_PER_MESSAGE = 100

#: Distinct keywords in use in one folder. Cyrus keeps at most 128 user flags per
#: mailbox (MAX_USER_FLAGS in imap/mailbox.h) and Dovecot's maildir 26, and both have
#: served Thunderbird and Apple Mail users for decades; 1,000 is 8 times Cyrus's.
MAX_KEYWORDS_PER_FOLDER = 1000

#: Octets (UTF-8) of one keyword. Dovecot refuses new keywords over 50 characters
#: (mail_max_keyword_length, default 50); a Thunderbird tag key is the tag's name in
#: modified UTF-7, so a long non-ASCII tag name can pass 50: 100 is twice Dovecot's.
#: Without it the per-message bound would not bound bytes: one keyword may be as long
#: as an IMAP command (128 KiB).
MAX_KEYWORD_LENGTH = 100

#: RFC 3501 §2.3.2 system flags, in the canonical spelling the stores keep.
SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})


def keywords_of(flags: Iterable[str]) -> frozenset[str]:
    """The keywords among ``flags`` (normalized flags: system flags in canonical case)."""
    return frozenset(f for f in flags if f not in SYSTEM_FLAGS)


def check_message(current: frozenset[str], new: frozenset[str]) -> frozenset[str]:
    """Check one message's flags going from ``current`` to ``new``; return the keywords
    the change adds (empty when it adds none, which is never refused).

    Raises KeywordLimit ("length") when an added keyword is longer than
    MAX_KEYWORD_LENGTH octets, ("message") when the change adds a keyword and leaves
    more than MAX_KEYWORDS_PER_MESSAGE keywords.
    """
    added = keywords_of(new - current)
    if not added:
        return added
    if any(len(k.encode()) > MAX_KEYWORD_LENGTH for k in added):
        raise KeywordLimit(
            f"a keyword is longer than {MAX_KEYWORD_LENGTH} octets",
            scope="length", limit=MAX_KEYWORD_LENGTH,
        )
    if len(keywords_of(new)) > MAX_KEYWORDS_PER_MESSAGE:
        raise KeywordLimit(
            f"a message would carry more than {MAX_KEYWORDS_PER_MESSAGE} keywords",
            scope="message", limit=MAX_KEYWORDS_PER_MESSAGE,
        )
    return added


def folder_limit() -> KeywordLimit:
    """The error for a change that would leave a folder with more than
    MAX_KEYWORDS_PER_FOLDER distinct keywords."""
    return KeywordLimit(
        f"the folder would hold more than {MAX_KEYWORDS_PER_FOLDER} distinct keywords",
        scope="folder", limit=MAX_KEYWORDS_PER_FOLDER,
    )


def keywords_in_texts(texts: Iterable[str]) -> set[str]:
    """The distinct keywords in stored flag texts (space-separated, as the backends
    keep ``messages.flags``)."""
    out: set[str] = set()
    for text in texts:
        if text:
            out.update(f for f in text.split() if f not in SYSTEM_FLAGS)
    return out
