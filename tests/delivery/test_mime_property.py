"""Property test: for random MIME trees, BODY[n] slices equal the part bodies put in."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from delivery.mime_index import MessageIndex, Section, build_index, matches_text, section_bytes

_counter = itertools.count()


@dataclass
class Node:
    """A generated entity: a text leaf, a multipart, or a message/rfc822 wrapper."""

    kind: str  # "leaf" | "multi" | "msg"
    text: bytes = b""
    children: list[Node] = field(default_factory=list)
    boundary: str = ""


_line = st.text(alphabet="abcxyz 019=.:-_", max_size=30).filter(lambda s: not s.startswith("-"))
_lines = st.lists(_line, max_size=5)
_leaf = st.builds(lambda ls, tail: Node("leaf", text=("\n".join(ls) + ("\n" if tail else "")).encode()),
                  _lines, st.booleans())


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    multi = st.lists(children, min_size=1, max_size=4).map(
        lambda cs: Node("multi", children=cs, boundary=f"=_b{next(_counter)}.x"))
    msg = children.map(lambda c: Node("msg", children=[c]))
    return st.one_of(multi, msg)


trees = st.recursive(_leaf, _extend, max_leaves=12)


def _render(node: Node, eol: bytes) -> tuple[bytes, bytes]:
    """(header lines without the blank line, body) of an entity."""
    if node.kind == "leaf":
        return b"Content-Type: text/plain" + eol, node.text.replace(b"\n", eol)
    if node.kind == "msg":
        inner_h, inner_b = _render(node.children[0], eol)
        return (b"Content-Type: message/rfc822" + eol,
                b"Subject: inner" + eol + inner_h + eol + inner_b)
    b = node.boundary.encode()
    body = b"preamble" + eol
    for child in node.children:
        h, cb = _render(child, eol)
        body += b"--" + b + eol + h + eol + cb + eol
    body += b"--" + b + b"--" + eol + b"epilogue" + eol
    return b"Content-Type: multipart/mixed; boundary=\"" + b + b"\"" + eol, body


def _expected(node: Node, eol: bytes, path: tuple[int, ...],
              out: dict[tuple[int, ...], tuple[bytes, bytes]]) -> None:
    """Record (MIME header, body) for ``path`` and, recursively, its numbered sub-parts."""
    h, b = _render(node, eol)
    out[path] = (h + eol, b)
    if node.kind == "multi":
        for n, child in enumerate(node.children, 1):
            _expected(child, eol, path + (n,), out)
    elif node.kind == "msg":
        _message_parts(node, eol, path, out)


def _message_parts(node: Node, eol: bytes, path: tuple[int, ...],
                   out: dict[tuple[int, ...], tuple[bytes, bytes]]) -> None:
    """Sub-parts of a message/rfc822 part: the encapsulated message's numbered parts."""
    inner = node.children[0]
    if inner.kind == "multi":
        for n, child in enumerate(inner.children, 1):
            _expected(child, eol, path + (n,), out)
        return
    ih, ib = _render(inner, eol)
    out[path + (1,)] = (b"Subject: inner" + eol + ih + eol, ib)  # one-part message: 1 is its body
    if inner.kind == "msg":
        _message_parts(inner, eol, path + (1,), out)


@settings(max_examples=150, deadline=None)
@given(trees, st.sampled_from([b"\r\n", b"\n"]))
def test_random_trees_sections(tree: Node, eol: bytes) -> None:
    """BODY[path] and BODY[path.MIME] of every generated part are exactly its bytes."""
    h, b = _render(tree, eol)
    raw = b"Subject: top" + eol + h + eol + b
    expected: dict[tuple[int, ...], tuple[bytes, bytes]] = {}
    if tree.kind == "multi":
        for n, child in enumerate(tree.children, 1):
            _expected(child, eol, (n,), expected)
    else:
        _expected(tree, eol, (1,), expected)
        expected[(1,)] = (b"Subject: top" + eol + h + eol, b)  # part 1 of a one-part message
    index = MessageIndex.from_json(build_index(raw).to_json())
    for path, (mime, body) in expected.items():
        assert section_bytes(raw, index, Section(path)) == body, path
        assert section_bytes(raw, index, Section(path, "MIME")) == mime, path
    assert section_bytes(raw, index, Section(text="TEXT")) == b


_SAMPLE_BITS = [b"Content-Type: multipart/mixed; boundary=b\r\n", b"--b\r\n", b"--b--\r\n",
                b"Content-Type: message/rfc822\n", b"\r\n", b"\n", b"From: a <b@c>\r\n",
                b"To: g: x@y;,\r\n", b"Content-Transfer-Encoding: base64\r\n", b"=?x?q?=FF?=",
                b" folded\r\n", b"\xff\xfe\x00", b"filename*0*=bad'%zz; a*1=\"q", b"(", b"\""]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400),
                 st.lists(st.sampled_from(_SAMPLE_BITS), max_size=40).map(b"".join)))
def test_never_raises(raw: bytes) -> None:
    """Any byte string indexes, round-trips and answers sections and searches without raising."""
    index = MessageIndex.from_json(build_index(raw).to_json())
    assert index.size == len(raw)
    for spec in (Section(), Section((1,)), Section((1, 1), "MIME"), Section((2,), "HEADER"),
                 Section(text="HEADER.FIELDS.NOT", headers=("from",))):
        section_bytes(raw, index, spec)
    for where in ("BODY", "TEXT", "FROM", "SUBJECT"):
        matches_text(raw, index, "x", where)
    matches_text(raw, index, "x", "HEADER", "to")
