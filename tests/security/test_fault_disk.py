"""Issue 10 §4, full disk: the data directory on a small tmpfs is filled up; writes get
temporary "insufficient storage" answers (SMTP 452 4.3.1, IMAP NO [OVERQUOTA]), reads and
the listeners keep working, and once space is freed delivery resumes with the store intact."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import imaplib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from auth.passwords import PasswordHasher
from delivery import replies as R
from mailserver import config as cfg
from mailserver.daemon import Daemon
from mailserver.imap.responses import storage_failure
from storage.errors import StorageError, StorageFull, Unavailable
from storage.postgres.db import translate as pg_translate
from storage.sqlite import SqliteStore
from storage.types import AccountKind, LocalRecipient
from tests.helpers import unavailable
from tests.smtp.client import PASSWORD, RawSmtp

#: Size of the data directory's tmpfs: room for the schema, a few messages and a WAL
#: of a few MiB, small enough to fill in a fraction of a second.
TMPFS_SIZE = "8m"
#: Body size of the messages sent while the disk is full: larger than any gap the
#: filler can leave (tmpfs allocates in 4 KiB pages) and than the WAL's free frames.
BIG = 256 * 1024
#: Most sends tried before the store must have refused one: the WAL may have room for
#: a few after the filler took the rest of the disk.
MAX_TRIES = 40


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (we run as root; CI too), unmounted after."""
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path) -> Path:
    """Write a file into ``folder`` until the file system says ENOSPC; return it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for step in (1 << 20, 4096, 1):
            block = b"\0" * step
            while True:
                try:
                    if os.write(fd, block) < step:
                        break
                except OSError as err:
                    if err.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


def message(token: str, size: int = 200) -> bytes:
    body = ("x" * 76 + "\r\n") * (size // 78 + 1)
    return (f"From: zed@elsewhere.example\r\nTo: bob@example.test\r\nSubject: {token}\r\n"
            f"Message-ID: <{token}@fault.test>\r\n\r\n{body}").encode()


def integrity(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return ", ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def imap_append(port: int, data: bytes) -> tuple[str, bytes]:
    c = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    try:
        c.login("bob@example.test", PASSWORD)
        typ, resp = c.append("INBOX", None, None, data)
        return typ, resp[0] or b""
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            c.logout()


def imap_read(port: int) -> list[bytes]:
    """SELECT INBOX and FETCH every message's Subject: the read path while the disk is full."""
    c = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    try:
        c.login("bob@example.test", PASSWORD)
        typ, _ = c.select("INBOX")
        assert typ == "OK"
        typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK", data
        return [part[1].strip() for part in data if isinstance(part, tuple)]
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            c.logout()


async def send(port: int, token: str, size: int = 200) -> tuple[int, str]:
    client = await RawSmtp.connect(port)
    try:
        await client.ehlo()
        code, text = await client.send_mail("zed@elsewhere.example", ["bob@example.test"], message(token, size))
        return code, text
    finally:
        await client.close()


async def test_full_disk_gives_temporary_refusals_keeps_serving_and_recovers(tmp_path: Path, make_config: Any) -> None:
    """Disk full: SMTP 452 4.3.1 and IMAP NO [OVERQUOTA], reads go on; freed: delivery resumes, nothing corrupt."""
    with tmpfs(tmp_path / "data", TMPFS_SIZE) as data:
        db = data / "mail.sqlite3"
        config = cfg.load(make_config(server__data_dir=str(data), storage__path=str(db)))
        daemon = Daemon(config, hasher=PasswordHasher(fast=True))
        app = await daemon.start()
        try:
            await app.accounts.add_user("bob@example.test", "Bob", PASSWORD)
            smtp, imap = app.bound["smtp"][1], app.bound["imap"][1]
            before = [f"before-{i}" for i in range(5)]
            for token in before:
                assert (await send(smtp, token))[0] == 250

            filler = fill(data)
            replies = [await send(smtp, f"full-{i}", BIG) for i in range(MAX_TRIES)]
            refused = [r for r in replies if r[0] != 250]
            assert refused, f"{MAX_TRIES} messages of {BIG} bytes were stored on a full disk"
            first = replies.index(refused[0])
            # Once refused, every later send is refused the same way: never 5xx, never 451.
            assert all(r[0] == 452 and r[1].startswith("4.3.1 ") for r in replies[first:]), replies[first:]
            accepted_while_full = [f"full-{i}" for i in range(first)]

            typ, text = await asyncio.to_thread(imap_append, imap, message("append-full", BIG))
            assert (typ, text.split(b"]")[0]) == ("NO", b"[OVERQUOTA"), (typ, text)
            subjects = await asyncio.to_thread(imap_read, imap)  # reads keep working
            assert [s.decode().removeprefix("Subject: ") for s in subjects] == before + accepted_while_full

            filler.unlink()
            assert (await send(smtp, "after", BIG))[0] == 250  # the same daemon, no restart
            typ, text = await asyncio.to_thread(imap_append, imap, message("append-after"))
            assert typ == "OK" and b"APPENDUID" in text, (typ, text)
            subjects = await asyncio.to_thread(imap_read, imap)
            assert [s.decode().removeprefix("Subject: ") for s in subjects] == [
                *before, *accepted_while_full, "after", "append-after"]
        finally:
            await daemon.stop()
        assert integrity(db) == "ok"
        store = await SqliteStore.open(db)  # earlier mail intact, byte for byte
        try:
            bob = await store.directory.get_account("bob@example.test")
            assert bob is not None
            inbox = await store.mail.get_folder(bob.id, "INBOX")
            assert inbox is not None
            bodies = [await store.mail.get_body(m.blob_id) for m in await store.mail.list_messages(inbox.id)]
            for token, body in zip(before, bodies, strict=False):
                assert body.endswith(message(token)), token
        finally:
            await store.close()


async def test_sqlite_writer_survives_a_full_disk(tmp_path: Path) -> None:
    """SQLITE_FULL fails the group with StorageFull and rolls it back; the writer thread keeps working after."""
    with tmpfs(tmp_path / "db", "2m") as folder:
        store = await SqliteStore.open(folder / "mail.sqlite3")
        try:
            await store.directory.add_domain("example.test")
            bob = await store.directory.create_account("bob@example.test", AccountKind.USER, "Bob")
            kept = await store.mail.deliver(b"Subject: kept\r\n\r\nkept\r\n", [LocalRecipient(bob.id)])
            filler = fill(folder)
            big = [os.urandom(BIG // 2).hex().encode() for _ in range(MAX_TRIES)]
            # Concurrent deliveries share write transactions (group commit): a failed group
            # must fail each of its jobs with StorageFull and commit none of them.
            results = await asyncio.gather(*(store.mail.deliver(b, [LocalRecipient(bob.id)]) for b in big),
                                           return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            assert errors and all(isinstance(e, StorageFull) for e in errors), {type(e) for e in errors}
            stored_while_full = len(results) - len(errors)
            filler.unlink()
            after = await store.mail.deliver(b"Subject: after\r\n\r\nafter\r\n", [LocalRecipient(bob.id)])
            inbox = await store.mail.get_folder(bob.id, "INBOX")
            assert inbox is not None
            uids = [m.uid for m in await store.mail.list_messages(inbox.id)]
            assert len(uids) == 2 + stored_while_full
            assert uids[0] == kept.uids[(bob.id, "INBOX")] and uids[-1] == after.uids[(bob.id, "INBOX")]
        finally:
            await store.close()
        assert integrity(folder / "mail.sqlite3") == "ok"


@pytest.mark.parametrize(("err", "reply"), [
    (StorageFull("disk full"), R.R452_4_3_1_STORAGE_FULL),
    (Unavailable("cannot connect"), R.R451_4_3_0_LOCAL_ERROR),
    (StorageError("database error"), R.R451_4_3_0_LOCAL_ERROR),
])
def test_storage_errors_map_to_temporary_replies(err: StorageError, reply: R.Reply) -> None:
    """A full store answers SMTP 452 4.3.1 and IMAP NO [OVERQUOTA]; other failures 451 4.3.0 and NO [UNAVAILABLE]."""
    assert R.for_storage_error(err) == reply
    assert storage_failure(err).code == ("OVERQUOTA" if isinstance(err, StorageFull) else "UNAVAILABLE")
    assert storage_failure(err).status == "NO"


def test_postgres_disk_full_is_storage_full() -> None:
    """PostgreSQL SQLSTATE 53100 (disk_full) becomes StorageFull; other class 53 errors stay Unavailable."""
    full = pg_translate(asyncpg.exceptions.DiskFullError("could not extend file: No space left on device"))
    assert isinstance(full, StorageFull)
    busy = pg_translate(asyncpg.exceptions.TooManyConnectionsError("too many clients"))
    assert isinstance(busy, Unavailable) and not isinstance(busy, StorageFull)
