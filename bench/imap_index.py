"""Benchmark: the IMAP message index (delivery/mime_index.py).

Prints, for a 1 KiB plain-text message and a 64 KiB multipart message (text, HTML,
base64 attachment, forwarded message/rfc822): build_index time per message, JSON size,
and the time for N from_json loads with ENVELOPE access (the FETCH 1:* ENVELOPE path;
target: 100,000 loads under 3 s), plus from_json + BODY[1] section lookup.

    python bench/imap_index.py [--loads 100000]
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from delivery.mime_index import MessageIndex, Section, build_index, section_bytes  # noqa: E402

HEADER = (b"Return-Path: <alice@example.com>\r\n"
          b"Received: from mx.example.com (mx.example.com [192.0.2.1])\r\n"
          b"\tby mail.example.test with ESMTPS id 4F1a2b3c4d; Mon, 1 Jan 2024 10:00:00 +0000\r\n"
          b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
          b"From: =?utf-8?Q?Alice_Andr=C3=A9?= <alice@example.com>\r\n"
          b"To: Bob <bob@example.test>, carol@example.test\r\n"
          b"Cc: Team: dan@example.test, erin@example.test;\r\n"
          b"Subject: =?utf-8?B?UXVhcnRlcmx5IHJlcG9ydCDinJQ=?=\r\n"
          b"Message-ID: <20240101100000.12345@example.com>\r\n"
          b"In-Reply-To: <prev@example.com>\r\nMIME-Version: 1.0\r\n")


def plain_1k() -> bytes:
    head = HEADER + b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    return head + line * ((1024 - len(head)) // len(line) + 1)


def multipart_64k() -> bytes:
    text = b"Hello Bob, here is the report. " * 40 + b"\r\n"
    html = b"<p>" + b"Hello <b>Bob</b>, here is the report. " * 60 + b"</p>\r\n"
    attach = base64.encodebytes(os.urandom(44_000)).replace(b"\n", b"\r\n")
    inner = (b"From: x@example.org\r\nSubject: fwd\r\nContent-Type: text/plain\r\n\r\n"
             + b"forwarded line\r\n" * 200)
    return (HEADER + b'Content-Type: multipart/mixed; boundary="==outer"\r\n\r\n'
            b'--==outer\r\nContent-Type: multipart/alternative; boundary="==alt"\r\n\r\n'
            b"--==alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text +
            b"\r\n--==alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html +
            b"\r\n--==alt--\r\n\r\n--==outer\r\nContent-Type: application/pdf; name=r.pdf\r\n"
            b"Content-Disposition: attachment; filename=r.pdf\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + attach +
            b"\r\n--==outer\r\nContent-Type: message/rfc822\r\n\r\n" + inner +
            b"\r\n--==outer--\r\n")


def per_call(fn: object, n: int) -> float:
    assert callable(fn)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", type=int, default=100_000)
    args = ap.parse_args()
    for name, raw in (("1 KiB plain", plain_1k()), ("64 KiB multipart", multipart_64k())):
        build = per_call(lambda raw=raw: build_index(raw), 2000 if len(raw) < 4096 else 200)
        doc = build_index(raw).to_json()
        start = time.perf_counter()
        for _ in range(args.loads):
            MessageIndex.from_json(doc).envelope_wire  # noqa: B018
        loads = time.perf_counter() - start
        n_sect = max(1, args.loads // 10)
        start = time.perf_counter()
        for _ in range(n_sect):
            section_bytes(raw, MessageIndex.from_json(doc), Section((1,)))
        sect = (time.perf_counter() - start) / n_sect
        print(f"{name:17} {len(raw):6d} B  build_index {build * 1e6:8.1f} us/msg  "
              f"JSON {len(doc.encode()):5d} B  "
              f"{args.loads} x from_json+ENVELOPE {loads:6.2f} s ({loads / args.loads * 1e6:.1f} us)  "
              f"from_json+BODY[1] {sect * 1e6:.1f} us")


if __name__ == "__main__":
    main()
