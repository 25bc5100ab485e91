"""The fast MAIL/RCPT path parser gives what aiosmtpd's own parser gives (issue 9 §4)."""

from __future__ import annotations

from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.smtp.server import simple_path

ATOM = st.text(alphabet="abcXYZ09!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=8)
LABEL = st.text(alphabet="abz09-", min_size=1, max_size=6)
TAIL = st.sampled_from(["", " SIZE=100", "  BODY=8BITMIME SMTPUTF8", "\tSIZE=1", " (comment) SIZE=1", ">", " x"])
ODD = st.sampled_from(["", ".", "..", '"q"', "@", "[1.2.3.4]", "é", " "])


def aiosmtpd_getaddr(arg: str) -> tuple[str | None, str | None]:
    """aiosmtpd's own parser, as the protocol calls it (no local-part limit)."""
    server = SMTP.__new__(SMTP)
    server.local_part_limit = 0
    return server._getaddr(arg)


@settings(max_examples=300)
@given(local=st.lists(ATOM, min_size=1, max_size=3), domain=st.lists(LABEL, min_size=1, max_size=3),
       odd=ODD, where=st.integers(0, 2), tail=TAIL)
def test_fast_path_agrees_with_aiosmtpd(local: list[str], domain: list[str], odd: str, where: int, tail: str) -> None:
    """Whenever the fast parser answers, aiosmtpd's parser gives the same address and parameters."""
    parts = [".".join(local), "@", ".".join(domain)]
    parts.insert(where * 1 + (where > 0), odd)
    arg = "<" + "".join(parts) + ">" + tail
    fast = simple_path(arg)
    if fast is None:
        return  # aiosmtpd's parser decides, as before
    address, rest = aiosmtpd_getaddr(arg)
    assert fast[0] == address
    assert fast[1].split() == (rest or "").split()


def test_fast_path_takes_the_common_forms() -> None:
    """Plain addresses with parameters take the fast path; comments and quoted parts do not."""
    assert simple_path("<Bob.Smith+x@Example.TEST> SIZE=10") == ("Bob.Smith+x@Example.TEST", "SIZE=10")
    assert simple_path("<a@b>") == ("a@b", "")
    assert simple_path('<"a b"@c>') is None
    assert simple_path("<a@b> (c) SIZE=1") is None
    assert simple_path("<a..b@c>") is None
    assert simple_path("<a@[1.2.3.4]>") is None
