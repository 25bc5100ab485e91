"""Header edits on raw bytes: split, remove, count, Received."""

from __future__ import annotations

from delivery import message
from delivery.message import Trace

MSG = b"From: a@b.example\r\nX-Long: one\r\n two\r\nSender: x@y\r\nsender: z@w\r\n\r\nbody\r\nSender: not a header\r\n"


def test_split_and_join_is_identity() -> None:
    """split() then join() gives back the exact bytes, with or without a body."""
    for msg in (MSG, b"Subject: x\r\n", b"\r\nbody only\r\n", b""):
        assert message.split(msg).join() == msg


def test_remove_fields_with_continuations_and_case() -> None:
    """remove_fields drops every field of that name (any case), keeps folded others and the body untouched."""
    parts = message.split(MSG)
    header = message.remove_fields(parts.header, "Sender")
    assert header == b"From: a@b.example\r\nX-Long: one\r\n two\r\n"
    assert message.count_fields(parts.header, "sender") == 2
    assert message.remove_fields(parts.header, "x-long").startswith(b"From: a@b.example\r\nSender")


def test_received_names_tls_and_user() -> None:
    """The Received: field carries the protocol word, TLS details and the authenticated user (RFC 5321 §4.4, RFC 3848)."""
    trace = Trace("client(x)", "127.0.0.1", "mail.example.test", True, "TLSv1.3", "TLS_AES_256_GCM_SHA384", "alice@example.test")
    field = message.received(trace, "abc", ["bob@example.test"])
    assert field.startswith(b"Received: from client?x? ([127.0.0.1])\r\n\tby mail.example.test (mailserver) with ESMTPSA id abc")
    assert b"(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)" in field
    assert b"(authenticated user alice@example.test)" in field
    assert b"for <bob@example.test>; " in field and field.endswith(b"\r\n")
    many = message.received(trace, "abc", ["a@x", "b@x"])
    assert b"for <" not in many
