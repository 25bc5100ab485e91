"""Address lists for the IMAP ENVELOPE (RFC 3501 §7.4.2, RFC 5322 §3.4 incl. §4.4
obsolete forms).

Names are kept raw (encoded words undecoded, as the ENVELOPE carries them); the
parser never raises and returns whatever it can make of broken input.
"""

from __future__ import annotations

import re

#: (name, adl, mailbox, host); None is NIL.  Group start: (None, None, group, None);
#: group end: (None, None, None, None) (RFC 3501 §7.4.2).
Address = tuple[str | None, str | None, str | None, str | None]

#: What a bare local part without ``@domain`` gets as host, as Dovecot does, so that
#: it cannot be mistaken for group syntax (NIL host).
MISSING_DOMAIN = "MISSING_DOMAIN"

#: Most addresses kept from one field: the ENVELOPE is sent for every message in a
#: FETCH 1:*, so a spam header with 10,000 recipients must not bloat it.
MAX_ADDRESSES = 500
#: Octets of a field value parsed for addresses: 500 addresses fit in far less, and
#: tokenizing a megabyte-long To: line for nothing would cost a third of a second.
MAX_ADDRESS_FIELD = 64 * 1024

_ATOM = re.compile(r"[^\s()<>\[\]:;@\\,.\"]+")
_SPECIALS = "<>:;@,."

# Token kinds
_WORD, _QUOTED, _COMMENT, _SPECIAL, _LITERAL = range(5)


def _tokens(s: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c == '"':
            buf: list[str] = []
            i += 1
            while i < n and s[i] != '"':
                if s[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(s[i])
                i += 1
            out.append((_QUOTED, "".join(buf)))
            i += 1
        elif c == "(":
            depth, start = 0, i
            while i < n:
                if s[i] == "\\":
                    i += 2
                    continue
                if s[i] == "(":
                    depth += 1
                elif s[i] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            out.append((_COMMENT, s[start + 1:i].strip()))
            i += 1
        elif c == "[":
            end = s.find("]", i)
            end = n if end < 0 else end + 1
            out.append((_LITERAL, s[i:end]))
            i = end
        elif c in _SPECIALS:
            out.append((_SPECIAL, c))
            i += 1
        else:
            m = _ATOM.match(s, i)
            if m:
                out.append((_WORD, m.group(0)))
                i = m.end()
            else:  # stray backslash, ']' or ')'
                out.append((_WORD, c))
                i += 1
    return out


def _phrase(tokens: list[tuple[int, str]]) -> str | None:
    """RFC 5322 §3.2.5 phrase: words joined by one space (obs-phrase allows dots)."""
    words: list[str] = []
    for kind, text in tokens:
        if kind in (_WORD, _QUOTED, _LITERAL):
            words.append(text)
        elif kind == _SPECIAL and text == "." and words:
            words[-1] += "."
    name = " ".join(words).strip()
    return name or None


def _addr_spec(tokens: list[tuple[int, str]]) -> tuple[str | None, str | None]:
    """(mailbox, host) of ``local@domain`` tokens; the last ``@`` splits them."""
    at = max((i for i, (k, t) in enumerate(tokens) if k == _SPECIAL and t == "@"),
             default=-1)
    local = tokens if at < 0 else tokens[:at]
    domain = [] if at < 0 else tokens[at + 1:]
    mailbox = "".join(t for k, t in local if k != _COMMENT) or None
    host = "".join(t for k, t in domain if k != _COMMENT) or None
    if mailbox is None and host is None:
        return None, None
    return mailbox or "", host or MISSING_DOMAIN


def _comment_name(tokens: list[tuple[int, str]]) -> str | None:
    comments = [t for k, t in tokens if k == _COMMENT and t]
    return comments[-1] if comments else None


def parse_addresses(value: str | None) -> list[Address]:
    """The ENVELOPE address structures of an address-list field value.

    ``display <adl:local@domain>`` gives (display, adl, local, domain); a bare
    ``local@domain (Comment)`` uses the comment as the name, as Dovecot and UW-IMAP
    do; ``group: a, b;`` is bracketed by group start/end markers.  An empty list
    means the field has no address (the ENVELOPE then says NIL)."""
    if not value:
        return []
    toks = _tokens(value[:MAX_ADDRESS_FIELD])
    out: list[Address] = []
    in_group = False
    i, n = 0, len(toks)
    while i < n and len(out) < MAX_ADDRESSES:
        # Gather one mailbox or group head up to a delimiter.
        start = i
        while i < n and not (toks[i][0] == _SPECIAL and toks[i][1] in ",;:<"):
            i += 1
        head = toks[start:i]
        delim = toks[i][1] if i < n else ""
        if delim == ":":
            if in_group:
                out.append((None, None, None, None))
            out.append((None, None, _phrase(head) or "", None))
            in_group = True
            i += 1
            continue
        if delim == "<":
            close = i + 1
            while close < n and not (toks[close][0] == _SPECIAL and toks[close][1] == ">"):
                close += 1
            inner = toks[i + 1:close]
            adl: str | None = None
            # RFC 5322 §4.4 obs-route: "@a,@b:" before the addr-spec.
            if inner and inner[0] == (_SPECIAL, "@"):
                colon = next((j for j, t in enumerate(inner) if t == (_SPECIAL, ":")), -1)
                if colon >= 0:
                    adl = "".join(t for k, t in inner[:colon] if k != _COMMENT) or None
                    inner = inner[colon + 1:]
            mailbox, host = _addr_spec(inner)
            name = _phrase(head) or _comment_name(toks[close + 1:_next_delim(toks, close)])
            if mailbox is not None or host is not None:
                out.append((name, adl, mailbox, host))
            i = _next_delim(toks, close)
            delim = toks[i][1] if i < n else ""
        elif head:
            mailbox, host = _addr_spec(head)
            if mailbox is not None or host is not None:
                out.append((_comment_name(head), None, mailbox, host))
        if delim == ";" and in_group:
            out.append((None, None, None, None))
            in_group = False
        i += 1
    if in_group:
        out.append((None, None, None, None))
    return out


def _next_delim(toks: list[tuple[int, str]], i: int) -> int:
    """Index of the next ``,`` or ``;`` after ``i`` (or len)."""
    i += 1
    while i < len(toks) and not (toks[i][0] == _SPECIAL and toks[i][1] in ",;"):
        i += 1
    return i
