"""The message index on real-world and torture-test samples (/work/shared/samples).

Every sample must index without exception, give well-formed wire strings, round-trip
through JSON, and have part offsets that nest and tile the message; the imaptest
samples are compared with Dovecot's expected answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from delivery.mime_index import MessageIndex, Part, Section, build_index, section_bytes
from tests.helpers import unavailable

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "samples"
_MBOX_FROM = re.compile(rb"(?:^|\n)From [^\n]*\n")


def _sample_files() -> list[Path]:
    if not SAMPLES.is_dir():
        return []
    return sorted(p for p in SAMPLES.rglob("*") if p.suffix in (".eml", ".mbox", ".ics"))


def _messages(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.suffix != ".mbox":
        return [data]
    return [m for m in _MBOX_FROM.split(data) if m.strip()]


def _skip_without_samples() -> None:
    if not SAMPLES.is_dir():
        unavailable(f"samples folder {SAMPLES} not present")


def _wire_items(data: bytes) -> int:
    """Check ``data`` is one balanced IMAP parenthesised value with exact literals;
    returns the number of atoms/strings seen."""
    depth, i, n, items = 0, 0, len(data), 0
    while i < n:
        c = data[i:i + 1]
        if c == b"(":
            depth += 1
        elif c == b")":
            depth -= 1
            assert depth >= 0, data
        elif c == b'"':
            i += 1
            while data[i:i + 1] != b'"':
                i += 2 if data[i:i + 1] == b"\\" else 1
                assert i < n, data
            items += 1
        elif c == b"{":
            m = re.match(rb"\{(\d+)\}\r\n", data[i:])
            assert m, data[i:i + 20]
            i += m.end() + int(m.group(1)) - 1
            items += 1
        elif c != b" ":
            m = re.match(rb"NIL|\d+", data[i:])
            assert m, data[i:i + 20]
            i += m.end() - 1
            items += 1
        i += 1
    assert depth == 0, data
    return items


def _walk(part: Part, lo: int, hi: int) -> Iterator[Part]:
    """Every part, checking each lies within its parent's body and siblings are ordered."""
    assert lo <= part.hs <= part.bs <= part.be <= hi, (part, lo, hi)
    yield part
    last = part.bs
    for child in part.children:
        assert child.hs >= last, (child, last)
        yield from _walk(child, part.bs, part.be)
        last = child.be
    if part.message is not None:
        assert (part.message.hs, part.message.be) == (part.bs, part.be)
        yield from _walk(part.message, part.bs, part.be)


def _numbered(message: Part) -> list[Part]:
    return message.children if message.is_multipart else [message]


def _paths(level: list[Part], prefix: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], Part]]:
    """Every numbered part with its RFC 3501 §6.4.5 part number."""
    for n, child in enumerate(level, 1):
        yield prefix + (n,), child
        sub = child.children if child.is_multipart else (
            _numbered(child.message) if child.message is not None else [])
        yield from _paths(sub, prefix + (n,))


@pytest.mark.parametrize("path", _sample_files(), ids=lambda p: p.name)
def test_sample_indexes(path: Path) -> None:
    """Sample indexes without error; wire strings are well formed; offsets nest; JSON round-trips."""
    for raw in _messages(path):
        index = build_index(raw)
        assert _wire_items(index.envelope_wire) >= 10
        _wire_items(index.body_wire)
        _wire_items(index.bodystructure_wire)
        parts = list(_walk(index.root, 0, len(raw)))
        assert index.root.be == len(raw)
        loaded = MessageIndex.from_json(index.to_json())
        assert loaded.root == index.root
        assert loaded.bodystructure_wire == index.bodystructure_wire
        # Section n.MIME + n is exactly the part's bytes, for every numbered part.
        for num, part in _paths(_numbered(index.root), ()):
            mime = section_bytes(raw, index, Section(num, "MIME"))
            body = section_bytes(raw, index, Section(num))
            assert mime is not None and body is not None
            assert mime + body == raw[part.hs:part.be]
        assert len(parts) >= 1


@pytest.mark.parametrize("name", ["ryan-finnie-mime-torture-test-v1.eml",
                                  "multipart-digest-implicit-message-rfc822-with-nested-multipart.eml",
                                  "rfc2049-appendix-a-multipart-example-enriched-parallel.eml"])
def test_multipart_sections_tile_the_body(name: str) -> None:
    """Top-level parts' bytes plus delimiter lines rebuild the multipart body in order."""
    _skip_without_samples()
    raw = (SAMPLES / "mime" / name).read_bytes()
    index = build_index(raw)
    root = index.root
    assert root.is_multipart and len(root.children) > 1
    pos = root.bs
    for n, child in enumerate(root.children, 1):
        between = raw[pos:child.hs]
        assert b"--" in between, (n, between[-80:])  # a delimiter line separates parts
        chunk = section_bytes(raw, index, Section((n,), "MIME"))
        body = section_bytes(raw, index, Section((n,)))
        assert chunk is not None and body is not None
        assert raw[child.hs:child.be] == chunk + body
        pos = child.be


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _expected_fetches(name: str, item: str) -> dict[int, bytes]:
    text = (SAMPLES / "mime" / name).read_bytes()
    out = {}
    for m in re.finditer(rb"^\* (\d+) FETCH \(" + item.encode() + rb" (.*)\)$", text, re.M):
        out[int(m.group(1))] = m.group(2)
    return out


def test_imaptest_envelopes() -> None:
    """ENVELOPEs equal Dovecot's imaptest expectations (groups, empty Sender, source route)."""
    _skip_without_samples()
    expected = _expected_fetches("imaptest-envelope.expected.imaptest", "ENVELOPE")
    msgs = _messages(SAMPLES / "mime" / "imaptest-envelope-groups-empty-sender-source-route.mbox")
    assert len(expected) == len(msgs) == 6
    for n, raw in enumerate(msgs, 1):
        assert build_index(_crlf(raw)).envelope_wire == expected[n], n


def test_imaptest_body() -> None:
    """BODY of a boundary folded inside quotes equals imaptest's (case-insensitively)."""
    _skip_without_samples()
    expected = _expected_fetches("imaptest-bodystructure.expected.imaptest", "BODY")
    raw = _messages(SAMPLES / "mime" / "imaptest-bodystructure-boundary-folded-inside-quotes.mbox")[0]
    # imaptest APPENDs with CRLF line ends and drops the mbox separator's final newline.
    raw = _crlf(raw.removesuffix(b"\n"))
    assert build_index(raw).body_wire.lower() == expected[1].lower()
