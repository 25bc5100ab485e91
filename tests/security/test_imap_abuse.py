"""Issue 10 §2, IMAP half: protocol abuse against the running daemon over real TCP/TLS.

STARTTLS command injection, literal bombs, deep nesting, huge sequence sets and
partials, and many IDLE sessions. After each abuse the session is either still usable
or closed with BYE where the RFC allows it, and another client can still log in and
SELECT (the daemon keeps serving).
"""

from __future__ import annotations

import resource

from tests.imap.conftest import ALICE, BOB, PASSWORD, ImapEnv, Raw, imap

__all__ = ["imap"]  # the fixture, imported for this package

#: Most the daemon's peak RSS may grow while a case runs: far below any announced size
#: (gigabytes), far above what parsing a 64 KiB line costs.
MAX_GROWTH_KIB = 64 * 1024


def login(imap: ImapEnv, user: str = ALICE) -> Raw:
    r = Raw(imap.port)
    assert r.cmd(f'LOGIN "{user}" "{PASSWORD}"')[-1].split()[1] == b"OK"
    return r


def status(lines: list[bytes]) -> bytes:
    """OK, NO or BAD of the tagged line."""
    return lines[-1].split(b" ", 2)[1]


def peak_kib() -> int:
    """This process's peak RSS (the daemon runs in-process), KiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def others_still_served(imap: ImapEnv) -> None:
    """A second client logs in and SELECTs (the daemon keeps serving)."""
    r = login(imap, BOB)
    assert status(r.cmd("SELECT INBOX")) == b"OK"
    r.close()


def rest(r: Raw) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = r.buf
    r.sock.settimeout(10)
    while chunk := r.sock.recv(65536):
        out += chunk
    return out


# -- 1. STARTTLS command injection (RFC 3501 §6.2.1, RFC 9051 §6.2.1)

async def test_starttls_discards_commands_pipelined_in_the_same_packet(imap: ImapEnv) -> None:
    """A LOGIN sent in the same packet as STARTTLS is never executed nor answered; CAPABILITY after TLS is fresh."""
    def go() -> tuple[list[bytes], list[bytes], list[bytes]]:
        r = Raw(imap.port)
        r.send(f'a STARTTLS\r\nb LOGIN {ALICE} "{PASSWORD}"\r\n'.encode())
        started = r.until(b"a")
        r.sock = imap.server.client_ssl_context().wrap_socket(r.sock, server_hostname="mail.example.test")
        r.buf = b""
        caps = r.cmd("CAPABILITY")
        select = r.cmd("SELECT INBOX")
        r.close()
        return started, caps, select
    started, caps, select = await imap.run(go)
    assert started == [b"a OK Begin TLS negotiation now"]
    assert not any(line.startswith(b"b ") for line in caps + select)
    assert caps[0].startswith(b"* CAPABILITY ") and b"STARTTLS" not in caps[0] and b"AUTH=PLAIN" in caps[0]
    assert status(select) == b"BAD"  # still not authenticated: the injected LOGIN did nothing
    await imap.run(others_still_served, imap)


async def test_starttls_discards_commands_already_buffered_beyond_the_read(imap: ImapEnv) -> None:
    """Injected bytes the server buffered past its 64 KiB read (not yet parsed) are dropped at STARTTLS too."""
    # STARTTLS ends exactly at the 64 KiB read boundary, so the LOGIN after it sits in the
    # stream's buffer rather than in the command parser when the handshake starts.
    starttls = b"a STARTTLS\r\n"
    filler = 65536 - len(starttls)
    noops = b"n NOOP\r\n" * (filler // 8)
    pad = b"p" + b"x" * (filler - len(noops) - 3) + b"\r\n" if filler % 8 else b""
    injected = f'b LOGIN {ALICE} "{PASSWORD}"\r\n'.encode()
    assert len(noops + pad + starttls) == 65536
    def go() -> tuple[list[bytes], list[bytes]]:
        r = Raw(imap.port)
        r.send(noops + pad + starttls + injected)
        started = r.until(b"a")
        r.sock = imap.server.client_ssl_context().wrap_socket(r.sock, server_hostname="mail.example.test")
        r.buf = b""
        after = r.cmd("SELECT INBOX")
        r.close()
        return started, after
    started, after = await imap.run(go)
    assert started[-1] == b"a OK Begin TLS negotiation now"
    assert not any(line.startswith(b"b ") for line in after)
    assert status(after) == b"BAD"
