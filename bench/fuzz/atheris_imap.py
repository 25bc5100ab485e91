"""Coverage-guided fuzzing (atheris / libFuzzer) of the sans-IO protocol readers.

Targets, each run for a bounded time or number of inputs in its own process:

* ``imap``: :class:`mailserver.imap.parser.CommandReader` fed the input in chunks of
  fuzzer-chosen sizes (as a socket would), with a fuzzer-chosen literal limit; every
  event must be one of the reader's event types, the same events must come out when
  the input is fed whole, a drain must end, and ``parse_command`` must return a
  command or an error event for the raw input;
* ``smtp``: :class:`mailserver.smtp.data.DataReader` against a line-by-line reference
  (RFC 5321 §4.1.1.4, §4.5.2: only CRLF.CRLF ends the data, one leading dot removed
  per line): same end, same octets used, same message, same accept/refuse decision,
  whatever the chunking;
* ``mime``: :func:`delivery.mime_index.build_index` and the IMAP wire forms of what it
  found (every input indexes; ENVELOPE and BODYSTRUCTURE stay balanced).

An exception or a broken invariant is a crash: libFuzzer stops that target and writes
the input to ``--artifacts``. Prints per target: inputs tried, seconds, crashes.

    pip install -e ".[fuzz]"
    python bench/fuzz/atheris_imap.py [--seconds 60] [--runs 0] [--targets imap,smtp,mime]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
TARGETS = ("imap", "smtp", "mime")

#: Seeds: real inputs for each target, so the fuzzer starts from valid shapes.
SEEDS: dict[str, list[bytes]] = {
    "imap": [
        b"a1 LOGIN alice \"pw\"\r\n", b"a2 SELECT INBOX\r\n", b"a3 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From)])\r\n",
        b"a4 APPEND INBOX (\\Seen) {5}\r\nhello\r\n", b"a5 APPEND INBOX {3+}\r\nabc\r\n",
        b"a6 SEARCH CHARSET UTF-8 OR FROM x (SINCE 1-Jan-2020 NOT SEEN)\r\n", b"a7 STORE 1,3:5 +FLAGS.SILENT (\\Deleted)\r\n",
        b"a8 LIST (SUBSCRIBED) \"\" \"*\" RETURN (STATUS (MESSAGES))\r\n", b"a9 ID (\"name\" \"x\")\r\n",
        b"b1 AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n", b"b2 APPEND INBOX ~{3}\r\n\x00\x01\x02\r\n", b"b3 IDLE\r\nDONE\r\n",
    ],
    "smtp": [b"Subject: x\r\n\r\nbody\r\n.\r\n", b"..dot\r\n.\r\nMAIL FROM:<a@b>\r\n", b"a\n.\nb\r\n.\r\n",
             b"x" * 1200 + b"\r\n.\r\n"],
    "mime": [
        b"From: a@b.test\r\nSubject: =?utf-8?q?x?=\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
        b"Subject: inner\r\n\r\ntwo\r\n--b--\r\n",
        b"To: g: x@y, \"q\\\"\" <z@w>;\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\n\xff\r\n",
    ],
}


# -- the harnesses (run in the child process) ------------------------------------------

def imap_harness() -> object:
    import atheris

    with atheris.instrument_imports():
        from mailserver.imap.parser import (
            NEED_DATA,
            BadCommand,
            CommandReader,
            CommandRejected,
            LiteralTooBig,
            NeedsContinuation,
            parse_command,
        )
        from mailserver.imap.parser.commands import Command

    kinds = (Command, BadCommand, CommandRejected, LiteralTooBig, NeedsContinuation)

    def drain(reader: CommandReader, out: list[object]) -> None:
        for _ in range(100_000):
            event = reader.next_event()
            if event is NEED_DATA:
                return
            assert isinstance(event, kinds), event
            out.append(event)
        raise AssertionError("next_event never returned NEED_DATA")

    def test_one(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        max_literal = fdp.ConsumeIntInRange(0, 100)
        cuts = [fdp.ConsumeIntInRange(1, 64) for _ in range(fdp.ConsumeIntInRange(0, 8))]
        payload = fdp.ConsumeBytes(fdp.remaining_bytes())
        chunked = CommandReader(max_literal=max_literal)
        events: list[object] = []
        pos = 0
        for cut in [*cuts, len(payload)]:
            chunked.feed(payload[pos:pos + cut])
            pos += cut
            drain(chunked, events)
        whole = CommandReader(max_literal=max_literal)
        whole.feed(payload)
        once: list[object] = []
        drain(whole, once)
        assert events == once, (events, once)
        result = parse_command(payload)
        assert isinstance(result, (Command, BadCommand, CommandRejected)), result

    return test_one


def smtp_harness() -> object:
    import atheris

    with atheris.instrument_imports():
        from mailserver.smtp.data import DataReader

    def reference(stream: bytes, max_size: int, max_line: int) -> tuple[int, bytes | None, bool] | None:
        """Line-by-line: (octets used, message or None, refused) or None (no end yet)."""
        data = b"\r\n" + stream
        end = data.find(b"\r\n.\r\n")
        if end < 0:
            return None
        body = data[2:end + 2]
        lines = body.split(b"\r\n")[:-1]
        refused = len(body) > max_size or any(len(x) > max_line + 1 for x in lines)
        message = b"".join((x[1:] if x.startswith(b".") else x) + b"\r\n" for x in lines)
        return end + 3, (None if refused else message), refused

    def test_one(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        max_size = fdp.ConsumeIntInRange(0, 400)
        max_line = fdp.ConsumeIntInRange(1, 80)
        cuts = [fdp.ConsumeIntInRange(1, 32) for _ in range(fdp.ConsumeIntInRange(0, 8))]
        stream = fdp.ConsumeBytes(fdp.remaining_bytes())
        reader = DataReader(max_size, max_line)
        used, pos = 0, 0
        for cut in [*cuts, len(stream)]:
            chunk = stream[pos:pos + cut]
            pos += cut
            took = reader.feed(chunk)
            assert 0 <= took <= len(chunk)
            used += took
            if reader.done:
                break
        expected = reference(stream, max_size, max_line)
        if expected is None:
            assert not reader.done and used == len(stream), (reader.done, used)
            return
        assert reader.done and used == expected[0], (used, expected[0])
        assert (reader.error is not None) == expected[2], (reader.error, expected)
        if expected[1] is not None:
            assert reader.message == expected[1], (reader.message, expected[1])

    return test_one


def mime_harness() -> object:
    import atheris

    with atheris.instrument_imports():
        from delivery.mime_index import MessageIndex, Section, build_index, section_bytes

    def balanced(wire: bytes) -> None:
        depth, i = 0, 0
        while i < len(wire):
            c = wire[i]
            if c == 0x22:  # a quoted string: to its closing quote, escapes skipped
                i += 1
                while wire[i] != 0x22:
                    i += 2 if wire[i] == 0x5C else 1
            elif c == 0x7B and (m := re.match(rb"\{(\d+)\}\r\n", wire[i:])):
                i += m.end() + int(m.group(1)) - 1
            elif c in (0x0D, 0x0A, 0x00):
                raise AssertionError(f"control octet outside a literal in {wire[:200]!r}")
            elif c == 0x28:
                depth += 1
            elif c == 0x29:
                depth -= 1
                assert depth >= 0, wire[:200]
            i += 1
        assert depth == 0, wire[:200]

    def test_one(data: bytes) -> None:
        index = MessageIndex.from_json(build_index(data).to_json())
        assert index.size == len(data)
        balanced(index.envelope_wire)
        balanced(index.bodystructure_wire)
        for spec in (Section(), Section((1,)), Section((1, 1), "MIME"), Section(text="TEXT")):
            section_bytes(data, index, spec)

    return test_one


def child(target: str, fuzzer_args: list[str]) -> None:
    import atheris

    sys.path.insert(0, str(ROOT))
    test_one = {"imap": imap_harness, "smtp": smtp_harness, "mime": mime_harness}[target]()
    atheris.Setup([sys.argv[0], *fuzzer_args], test_one)
    atheris.Fuzz()


# -- the driver ------------------------------------------------------------------------

_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STAT = re.compile(r"#(\d+)\s")


def run(target: str, seconds: int, runs: int, artifacts: Path) -> tuple[int, float, list[str]]:
    """Fuzz one target in a child process; (inputs tried, seconds, crash reports)."""
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-"))
    for n, seed in enumerate(SEEDS[target]):
        (corpus / f"seed{n}").write_bytes(seed)
    args = [f"-max_total_time={seconds}", f"-artifact_prefix={artifacts}/{target}-", "-print_final_stats=1",
            "-rss_limit_mb=2048", "-timeout=10", "-max_len=4096"]
    if runs:
        args.append(f"-runs={runs}")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, __file__, "--child", target, "--", *args, str(corpus)],
                          capture_output=True, text=True, cwd=ROOT, timeout=seconds + 300)
    elapsed = time.monotonic() - started
    log = proc.stdout + proc.stderr
    done = _DONE.search(log)
    tried = int(done.group(1)) if done else max((int(n) for n in _STAT.findall(log)), default=0)
    crashes: list[str] = []
    if proc.returncode != 0 or "Uncaught Python exception" in log:
        start = log.find("=== Uncaught Python exception")
        crashes.append(log[start:start + 2500] if start >= 0 else log[-2500:])
    return tried, elapsed, crashes


def main() -> int:
    if "--child" in sys.argv:
        at = sys.argv.index("--child")
        rest = sys.argv[at + 2:]
        child(sys.argv[at + 1], rest[1:] if rest[:1] == ["--"] else rest)
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="time per target (default 60)")
    parser.add_argument("--runs", type=int, default=0, help="at most this many inputs per target (0: no limit)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated: imap, smtp, mime")
    parser.add_argument("--artifacts", type=Path, default=Path(tempfile.gettempdir()) / "mailserver-fuzz",
                        help="where crashing inputs are written")
    args = parser.parse_args()
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install atheris", file=sys.stderr)
        return 2
    args.artifacts.mkdir(parents=True, exist_ok=True)
    failed = False
    print(f"{'target':<6} {'inputs':>10} {'seconds':>8} {'inputs/s':>9}  crashes")
    for target in args.targets.split(","):
        tried, elapsed, crashes = run(target, args.seconds, args.runs, args.artifacts)
        print(f"{target:<6} {tried:>10,} {elapsed:>8.1f} {tried / max(elapsed, 1e-9):>9,.0f}  {len(crashes)}", flush=True)
        for report in crashes:
            failed = True
            print(report, file=sys.stderr)
    print(f"(python {sys.version.split()[0]}, atheris, {os.cpu_count()} CPUs; artifacts in {args.artifacts})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
