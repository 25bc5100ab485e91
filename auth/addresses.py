"""Parsing and normalising mail addresses and domain names.

One normal form for every address the organisation stores or compares: ASCII
dot-atom local part and domain name, lower-cased, the domain in IDNA A-labels
(``xn--...``). Quoted local parts, domain literals (``[192.0.2.1]``) and non-ASCII
local parts (RFC 6531) are refused: they are legal on the wire but never needed for
accounts of this server, and refusing them keeps comparisons exact.

:func:`parse_mailbox` is the other side: the RFC 5321 §4.1.2 syntax of a mailbox in
an SMTP path (quoted local parts, address literals and RFC 6531 UTF-8 included), with
its length limits, for addresses that are routed rather than stored.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

# RFC 5321 §4.5.3.1.1: the maximum total length of a local part is 64 octets.
MAX_LOCAL_PART = 64
# RFC 5321 §4.5.3.1.2: the maximum total length of a domain name is 255 octets; DNS
# (RFC 1035 §2.3.4) allows 253 characters of text.
MAX_DOMAIN = 253
# RFC 1035 §2.3.4: labels are 63 octets or less.
MAX_LABEL = 63
# RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets.
MAX_ADDRESS = 254

# RFC 5322 §3.2.3 atext, and dot-atom-text = 1*atext *("." 1*atext).
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
# RFC 1123 §2.1 / RFC 5890 LDH label: letters, digits, hyphen; no hyphen at either end.
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


# RFC 5321 §4.1.2 Dot-string, with RFC 6531 §3.3's UTF8-non-ascii added to atext.
_DOT_STRING = re.compile(rf"(?:{_ATEXT}|[^\x00-\x7f])+(?:\.(?:{_ATEXT}|[^\x00-\x7f])+)*")
# RFC 5321 §4.1.2 Quoted-string: qtextSMTP (%d32-33 / %d35-91 / %d93-126, and RFC 6531
# UTF8-non-ascii) or quoted-pairSMTP (backslash and %d32-126).
_QUOTED_STRING = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|[^\x00-\x7f]|\\[\x20-\x7e])*"')
# RFC 5321 §4.1.3 IPv4-address-literal: four Snum (1*3DIGIT, 0-255).
_IPV4_LITERAL = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
# RFC 5321 §4.1.3 IPv6-addr: hex groups, colons, an IPv4 tail (no zone index).
_IPV6_TEXT = re.compile(r"[0-9A-Fa-f:.]+")


class AddressProblem(enum.Enum):
    """What is wrong with a refused address: its syntax, or one of the length limits."""

    SYNTAX = "malformed"
    LOCAL_PART_TOO_LONG = f"local part longer than {MAX_LOCAL_PART} octets"
    DOMAIN_TOO_LONG = f"domain longer than {MAX_DOMAIN} octets"
    LABEL_TOO_LONG = f"domain label longer than {MAX_LABEL} octets"
    PATH_TOO_LONG = f"address longer than {MAX_ADDRESS} octets"

    @property
    def too_long(self) -> bool:
        """True for a length limit (RFC 5321 §4.5.3.1), False for bad syntax."""
        return self is not AddressProblem.SYNTAX


class InvalidAddress(ValueError):
    """The text is not an acceptable address or domain; ``str(err)`` says why and
    ``problem`` says which kind of problem it is."""

    def __init__(self, message: str, problem: AddressProblem = AddressProblem.SYNTAX) -> None:
        super().__init__(message)
        self.problem = problem


def normalize_domain(text: str) -> str:
    """Return the domain in normal form (lower-case ASCII, A-labels).

    Raises InvalidAddress with the reason when it is empty, too long, has an empty or
    bad label, is a domain literal, or is not valid IDNA.
    """
    domain = text.strip()
    if not domain:
        raise InvalidAddress("the domain is empty")
    if domain.startswith("["):
        raise InvalidAddress(f"domain literals are not accepted: {text!r}")
    if not domain.isascii():
        try:
            # RFC 5891 §4: U-labels become A-labels (the codec implements IDNA 2003,
            # which is enough for the basic, lower-case forms used for accounts).
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as err:
            raise InvalidAddress(f"the domain {text!r} is not a valid internationalised name") from err
    domain = domain.lower()
    if len(domain) > MAX_DOMAIN:
        raise InvalidAddress(f"the domain is longer than {MAX_DOMAIN} characters", AddressProblem.DOMAIN_TOO_LONG)
    for label in domain.split("."):
        if not label:
            raise InvalidAddress(f"the domain {text!r} has an empty label")
        if len(label) > MAX_LABEL:
            raise InvalidAddress(
                f"the domain {text!r} has a label longer than {MAX_LABEL} characters", AddressProblem.LABEL_TOO_LONG
            )
        if not _LDH_LABEL.fullmatch(label):
            raise InvalidAddress(
                f"the domain {text!r} has an invalid label {label!r} "
                "(letters, digits and inner hyphens only)"
            )
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError as err:
                raise InvalidAddress(f"the domain {text!r} has an invalid IDNA label {label!r}") from err
    return domain


def normalize_address(text: str) -> str:
    """Return ``local@domain`` in normal form (lower-cased, domain in A-labels).

    Surrounding whitespace is ignored. Raises InvalidAddress naming the problem: no or
    several ``@``, an empty, over-long or invalid local part, or an invalid domain.
    """
    address = text.strip()
    if not address:
        raise InvalidAddress("the address is empty")
    if address.count("@") != 1:
        raise InvalidAddress(f"{text!r} is not an address: it needs exactly one '@'")
    local, domain_text = address.split("@")
    if not local:
        raise InvalidAddress(f"{text!r} has an empty local part")
    if not local.isascii():
        raise InvalidAddress(f"{text!r}: only ASCII local parts are accepted")
    if len(local) > MAX_LOCAL_PART:
        raise InvalidAddress(
            f"{text!r}: the local part is longer than {MAX_LOCAL_PART} characters", AddressProblem.LOCAL_PART_TOO_LONG
        )
    if not _DOT_ATOM.fullmatch(local):
        raise InvalidAddress(
            f"{text!r} has an invalid local part (letters, digits, dots between words and "
            "!#$%&'*+-/=?^_`{|}~ only)"
        )
    if not domain_text:
        raise InvalidAddress(f"{text!r} has an empty domain")
    try:
        domain = normalize_domain(domain_text)
    except InvalidAddress as err:
        raise InvalidAddress(f"{text!r}: {err}", err.problem) from None
    result = f"{local.lower()}@{domain}"
    if len(result) > MAX_ADDRESS:
        raise InvalidAddress(f"{text!r} is longer than {MAX_ADDRESS} characters", AddressProblem.PATH_TOO_LONG)
    return result


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A mailbox of an SMTP path, split where RFC 5321 splits it.

    ``local`` is the local part as written (a Quoted-string keeps its quotes, so an
    ``@`` or ``%`` inside it never becomes a separator); ``domain`` is the domain as
    written, or an address literal with its brackets.
    """

    local: str
    domain: str

    @property
    def is_literal(self) -> bool:
        """True for an address literal (RFC 5321 §4.1.3), e.g. ``[192.0.2.1]``."""
        return self.domain.startswith("[")

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"


def parse_mailbox(text: str) -> Mailbox:
    """Split ``text`` as an RFC 5321 §4.1.2 Mailbox, checking its syntax and limits.

    Accepts a Dot-string or Quoted-string local part, and a Domain (LDH labels, or
    U-labels under RFC 6531) or an IPv4 or IPv6 address literal (RFC 5321 §4.1.3; the
    general form has no other registered tag, so it is refused). Nothing is trimmed and
    a trailing dot is not part of the Domain grammar.

    Raises InvalidAddress whose ``problem`` is SYNTAX, or the limit that was passed:
    local part over 64 octets (§4.5.3.1.1), domain over 253 (RFC 1035 §2.3.4, within
    §4.5.3.1.2's 255), a label over 63, or the mailbox over 254 (§4.5.3.1.3: the path,
    brackets included, is at most 256).
    """
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # octets that were not UTF-8, kept as surrogate escapes
            raise InvalidAddress(f"{text!r} is not UTF-8 (RFC 6531 §3.3)") from None
    if text.startswith('"'):
        m = _QUOTED_STRING.match(text)
        end = m.end() if m else -1
    else:
        end = text.find("@")
    if end <= 0 or end >= len(text) or text[end] != "@":
        raise InvalidAddress(f"{text!r} is not a mailbox (local-part@domain)")
    local, domain = text[:end], text[end + 1 :]
    if not local.startswith('"') and not _DOT_STRING.fullmatch(local):
        raise InvalidAddress(f"{text!r} has an invalid local part")
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise InvalidAddress(
            f"{text!r}: the local part is longer than {MAX_LOCAL_PART} octets", AddressProblem.LOCAL_PART_TOO_LONG
        )
    if domain.startswith("["):
        if not _address_literal(domain):
            raise InvalidAddress(f"{text!r} has an invalid address literal")
    else:
        if domain != domain.strip():
            raise InvalidAddress(f"{text!r} has an invalid domain")
        try:
            normalize_domain(domain)
        except InvalidAddress as err:
            raise InvalidAddress(f"{text!r}: {err}", err.problem) from None
    if len(text.encode("utf-8")) > MAX_ADDRESS:
        raise InvalidAddress(f"{text!r} is longer than {MAX_ADDRESS} octets", AddressProblem.PATH_TOO_LONG)
    return Mailbox(local, domain)


def _address_literal(text: str) -> bool:
    """True for ``[IPv4]`` or ``[IPv6:addr]`` (RFC 5321 §4.1.3)."""
    if not (text.startswith("[") and text.endswith("]")):
        return False
    inner = text[1:-1]
    if _IPV4_LITERAL.fullmatch(inner):
        return all(int(snum) <= 255 for snum in inner.split("."))
    tag, colon, addr = inner.partition(":")
    if colon and tag.lower() == "ipv6" and _IPV6_TEXT.fullmatch(addr):
        try:
            ipaddress.IPv6Address(addr)
        except ValueError:
            return False
        return True
    return False


def domain_of(address: str) -> str:
    """The domain of an address already in normal form."""
    return address.rpartition("@")[2]


