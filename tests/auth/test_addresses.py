"""Address and domain normal form, and the reasons given for refusals."""

from __future__ import annotations

import pytest

from auth.addresses import (
    AddressProblem,
    InvalidAddress,
    normalize_address,
    normalize_domain,
    parse_mailbox,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Alice@Example.TEST", "alice@example.test"),
        ("  bob@example.test ", "bob@example.test"),
        ("first.last+tag@sub.example.test", "first.last+tag@sub.example.test"),
        ("o'neil@example.test", "o'neil@example.test"),
        ("info@Bücher.example", "info@xn--bcher-kva.example"),
        ("info@xn--bcher-kva.example", "info@xn--bcher-kva.example"),
    ],
)
def test_normal_form(text: str, expected: str) -> None:
    """Addresses are lower-cased, trimmed, and their domain is in IDNA A-labels."""
    assert normalize_address(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("alice", "exactly one '@'"),
        ("a@b@example.test", "exactly one '@'"),
        ("@example.test", "empty local part"),
        ("alice@", "empty domain"),
        ("a..b@example.test", "invalid local part"),
        (".a@example.test", "invalid local part"),
        ('"q"@example.test', "invalid local part"),
        ("a b@example.test", "invalid local part"),
        ("alice\\hr@example.test", "invalid local part"),
        ("jürgen@example.test", "ASCII"),
        ("x" * 65 + "@example.test", "longer than 64"),
        ("a@-bad.test", "invalid label"),
        ("a@bad_.test", "invalid label"),
        ("a@example..test", "empty label"),
        ("a@example.test.", "empty label"),
        ("a@[192.0.2.1]", "domain literals"),
        ("a@xn--zz.test", "IDNA"),
        ("a@" + "l" * 64 + ".test", "longer than 63"),
    ],
)
def test_refusals_say_why(text: str, reason: str) -> None:
    """Each malformed address raises InvalidAddress (a ValueError) whose message names the problem."""
    with pytest.raises(InvalidAddress, match=reason.replace("(", r"\(")):
        normalize_address(text)
    assert issubclass(InvalidAddress, ValueError)


def test_normalize_domain() -> None:
    """Domains get the same normal form as the domain part of addresses."""
    assert normalize_domain(" Example.TEST ") == "example.test"
    with pytest.raises(InvalidAddress, match="empty"):
        normalize_domain(" ")
    with pytest.raises(InvalidAddress, match="longer than 253"):
        normalize_domain(".".join(["a" * 60] * 5))


@pytest.mark.parametrize(
    ("text", "local", "domain"),
    [
        ("user%elsewhere.example@example.test", "user%elsewhere.example", "example.test"),
        ("elsewhere.example!user@example.test", "elsewhere.example!user", "example.test"),
        ('"user@elsewhere.example"@example.test', '"user@elsewhere.example"', "example.test"),
        ('"a\\"b c"@example.test', '"a\\"b c"', "example.test"),
        ("Alice@EXAMPLE.Test", "Alice", "EXAMPLE.Test"),
        ("user@[192.0.2.1]", "user", "[192.0.2.1]"),
        ("user@[IPv6:2001:db8::1]", "user", "[IPv6:2001:db8::1]"),
        ("jürgen@bücher.example", "jürgen", "bücher.example"),
        ("l" * 64 + "@example.test", "l" * 64, "example.test"),
    ],
)
def test_parse_mailbox_splits_as_rfc_5321(text: str, local: str, domain: str) -> None:
    """parse_mailbox keeps %, ! and a quoted @ inside the local part and the domain as written."""
    mailbox = parse_mailbox(text)
    assert (mailbox.local, mailbox.domain) == (local, domain)
    assert mailbox.is_literal == domain.startswith("[")
    assert mailbox.address == text


P = AddressProblem  # short name for the table below


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("alice@example.test.", P.SYNTAX),
        ("alice@.example.test", P.SYNTAX),
        ("@example.test", P.SYNTAX),
        ("alice", P.SYNTAX),
        ("alice@", P.SYNTAX),
        ("a@b@example.test", P.SYNTAX),
        ("user@elsewhere.example%example.test", P.SYNTAX),
        ("a..b@example.test", P.SYNTAX),
        ('"unterminated@example.test', P.SYNTAX),
        ('"a"b"@example.test', P.SYNTAX),
        ('"tab\there"@example.test', P.SYNTAX),
        ("a b@example.test", P.SYNTAX),
        (" alice@example.test", P.SYNTAX),
        ("alice@example.test ", P.SYNTAX),
        ("a@-bad.test", P.SYNTAX),
        ("a@[example.test]", P.SYNTAX),
        ("a@[256.0.0.1]", P.SYNTAX),
        ("a@[1.2.3]", P.SYNTAX),
        ("a@[IPv6:fe80::1%eth0]", P.SYNTAX),
        ("a@[IPv6:1.2.3.4]", P.SYNTAX),
        ("a@[x-tag:anything]", P.SYNTAX),
        ("a@[192.0.2.1", P.SYNTAX),
        ("l" * 65 + "@example.test", P.LOCAL_PART_TOO_LONG),
        ('"' + "q" * 63 + '"@example.test', P.LOCAL_PART_TOO_LONG),
        ("a@" + "l" * 64 + ".test", P.LABEL_TOO_LONG),
        ("a@" + ".".join(["d" * 63] * 4) + ".example", P.DOMAIN_TOO_LONG),
        ("l" * 64 + "@" + ".".join(["d" * 63] * 3) + ".ex", P.PATH_TOO_LONG),
    ],
)
def test_parse_mailbox_refusals_name_the_problem(text: str, problem: AddressProblem) -> None:
    """Bad syntax and each RFC 5321 §4.5.3.1 limit raise InvalidAddress with their own problem."""
    with pytest.raises(InvalidAddress) as caught:
        parse_mailbox(text)
    assert caught.value.problem is problem
    assert problem.too_long == (problem is not AddressProblem.SYNTAX)


def test_normalize_address_limits_carry_their_problem() -> None:
    """normalize_address reports over-long parts with the same problem kinds as parse_mailbox."""
    with pytest.raises(InvalidAddress) as caught:
        normalize_address("x" * 65 + "@example.test")
    assert caught.value.problem is AddressProblem.LOCAL_PART_TOO_LONG
    with pytest.raises(InvalidAddress) as caught:
        normalize_address("a@" + "l" * 64 + ".test")
    assert caught.value.problem is AddressProblem.LABEL_TOO_LONG
