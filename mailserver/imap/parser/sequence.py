"""Sequence sets (RFC 3501 §9 ``sequence-set``), for message numbers and UIDs."""

from __future__ import annotations

from dataclasses import dataclass

from .lexer import Cursor, ParseError

# One bound of a range: a number, or None for "*" (the largest number in use).
Bound = int | None


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A parsed sequence set such as ``1:4,7,9:*``.

    ``ranges`` keeps the client's items in order; a single number ``n`` is the
    range ``(n, n)`` and ``None`` stands for ``*``.  Whether the numbers are
    message sequence numbers or UIDs is decided by the command (``uid`` field).
    """

    ranges: tuple[tuple[Bound, Bound], ...]

    def normalized(self, max_value: int) -> list[tuple[int, int]]:
        """Sorted, merged ``(low, high)`` ranges within ``1..max_value``.

        ``*`` means ``max_value``; ``a:b`` equals ``b:a`` (RFC 3501 §9), so
        ``559:*`` with max 500 covers 500 (the UID of the last message, as the
        RFC requires).  An empty mailbox (``max_value`` 0) gives ``[]``.
        """
        if max_value <= 0:
            return []
        spans: list[tuple[int, int]] = []
        for a, b in self.ranges:
            lo_hi = sorted((max_value if a is None else a, max_value if b is None else b))
            lo, hi = lo_hi[0], min(lo_hi[1], max_value)
            if lo <= hi:
                spans.append((lo, hi))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def resolve(self, max_value: int) -> list[int]:
        """Every number the set covers in ``1..max_value``, ascending, without repeats."""
        return [n for lo, hi in self.normalized(max_value) for n in range(lo, hi + 1)]

    def contains(self, value: int, max_value: int) -> bool:
        """True if ``value`` (1..max_value) is in the set."""
        return any(lo <= value <= hi for lo, hi in self.normalized(max_value))

    def exceeds(self, max_value: int) -> bool:
        """True if an explicit number is above ``max_value``.

        For message sequence numbers that makes the command invalid
        (RFC 3501 §9 ``seq-number``); for UIDs it is allowed.
        """
        return any(b is not None and b > max_value for r in self.ranges for b in r)

    def __str__(self) -> str:
        def one(b: Bound) -> str:
            return "*" if b is None else str(b)

        return ",".join(one(a) if a == b else f"{one(a)}:{one(b)}" for a, b in self.ranges)


def _xbound(cur: Cursor) -> Bound:
    if cur.try_byte(b"*"):
        return None
    return cur.xnz_number("sequence set")


def xsequence_set(cur: Cursor) -> SequenceSet:
    """sequence-set = (seq-number / seq-range) *("," ...)."""
    ranges: list[tuple[Bound, Bound]] = []
    while True:
        a = _xbound(cur)
        b = _xbound(cur) if cur.try_byte(b":") else a
        ranges.append((a, b))
        if not cur.try_byte(b","):
            break
    nxt = cur.peek()
    if nxt not in (0x20, 0x29, 0x0D, -1):
        raise ParseError("Invalid sequence set")
    return SequenceSet(tuple(ranges))


def parse_sequence_set(text: str | bytes) -> SequenceSet:
    """Parse a whole string as a sequence set (for tests and response code use).

    Raises:
        ParseError: if ``text`` is not exactly one sequence set.
    """
    raw = text.encode("ascii") if isinstance(text, str) else text
    cur = Cursor(raw + b"\r\n")
    seqset = xsequence_set(cur)
    cur.xeol()
    return seqset
