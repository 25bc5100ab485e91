"""Parsing and normalising mail addresses and domain names.

One normal form for every address the organisation stores or compares: ASCII
dot-atom local part and domain name, lower-cased, the domain in IDNA A-labels
(``xn--...``). Quoted local parts, domain literals (``[192.0.2.1]``) and non-ASCII
local parts (RFC 6531) are refused: they are legal on the wire but never needed for
accounts of this server, and refusing them keeps comparisons exact.
"""

from __future__ import annotations

import re

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


class InvalidAddress(ValueError):
    """The text is not an acceptable address or domain; ``str(err)`` says why."""


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
        raise InvalidAddress(f"the domain is longer than {MAX_DOMAIN} characters")
    for label in domain.split("."):
        if not label:
            raise InvalidAddress(f"the domain {text!r} has an empty label")
        if len(label) > MAX_LABEL:
            raise InvalidAddress(f"the domain {text!r} has a label longer than {MAX_LABEL} characters")
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
        raise InvalidAddress(f"{text!r}: the local part is longer than {MAX_LOCAL_PART} characters")
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
        raise InvalidAddress(f"{text!r}: {err}") from None
    result = f"{local.lower()}@{domain}"
    if len(result) > MAX_ADDRESS:
        raise InvalidAddress(f"{text!r} is longer than {MAX_ADDRESS} characters")
    return result


def domain_of(address: str) -> str:
    """The domain of an address already in normal form."""
    return address.rpartition("@")[2]


def local_part_of(address: str) -> str:
    """The local part of an address already in normal form."""
    return address.rpartition("@")[0]
