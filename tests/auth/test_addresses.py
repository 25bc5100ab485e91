"""Address and domain normal form, and the reasons given for refusals."""

from __future__ import annotations

import pytest

from auth.addresses import InvalidAddress, normalize_address, normalize_domain


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
