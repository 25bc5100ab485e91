"""The SMTP reply table: names match values, lines are well formed."""

from __future__ import annotations

import re

from delivery import replies
from delivery.replies import Reply

_NAME = re.compile(r"R(\d{3})(?:_(\d)_(\d{1,3})_(\d{1,3}))?_[A-Z0-9_]+")


def _table() -> dict[str, Reply]:
    return {name: value for name, value in vars(replies).items() if isinstance(value, Reply)}


def test_every_name_matches_code_and_enhanced_code() -> None:
    """R550_5_1_1_X has code 550 and enhanced 5.1.1; a name without an enhanced part has none."""
    table = _table()
    assert len(table) > 40
    for name, reply in table.items():
        m = _NAME.fullmatch(name)
        assert m, name
        assert int(m.group(1)) == reply.code, name
        enhanced = ".".join(m.group(i) for i in (2, 3, 4)) if m.group(2) else None
        assert enhanced == reply.enhanced, name
        if reply.enhanced:  # RFC 3463: the class digit equals the reply's first digit
            assert reply.enhanced[0] == str(reply.code)[0], name


def test_line_and_format() -> None:
    """A reply renders as 'code enhanced text' and fills its fields."""
    r = replies.R550_5_1_1_USER_UNKNOWN.format(address="x@example.test")
    assert r.line() == "550 5.1.1 <x@example.test>: Recipient address rejected: User unknown"
    assert replies.R354_START_INPUT.line() == "354 End data with <CR><LF>.<CR><LF>"
