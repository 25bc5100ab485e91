"""Real mail clients from Debian packages against the running server (issue 4 §6):
mbsync (isync) and offlineimap sync both ways; neomutt is driven in tmux.

Skipped when the client is not installed (``.ci/run`` installs isync, offlineimap,
neomutt and tmux).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.helpers import unavailable
from tests.imap.conftest import ALICE, PASSWORD, ImapEnv, message


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        unavailable(f"{binary} is not installed")


def _run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload]


def _maildir_files(folder: Path) -> list[Path]:
    return sorted(p for sub in ("cur", "new") for p in (folder / sub).glob("*"))


async def _server_state(imap: ImapEnv, folder: str = "INBOX") -> list[tuple[bytes, bytes]]:
    """(subject line, flags) of every message in alice's folder, by UID."""
    def go() -> list[tuple[bytes, bytes]]:
        c = imap.connect()
        c.select(folder, readonly=True)
        typ, data = c.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        c.logout()
        out = []
        for item in data:
            if isinstance(item, tuple):
                flags = item[0].split(b"FLAGS (")[1].split(b")")[0]
                out.append((item[1].strip(), flags))
        return out
    return await imap.run(go)


async def test_mbsync_pull_then_push(imap: ImapEnv, tmp_path: Path) -> None:
    """mbsync pulls two messages over IMAPS, then pushes a new message and a \\Flagged change back."""
    _need("mbsync")
    await imap.deliver(ALICE, message("one"))
    await imap.deliver(ALICE, message("two"))
    local = tmp_path / "mail"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""
IMAPAccount srv
Host localhost
Port {imap.imaps_port}
User {ALICE}
Pass "{PASSWORD}"
SSLType IMAPS
CertificateFile {imap.server.ca.ca_file}

IMAPStore remote
Account srv

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel ch
Far :remote:
Near :local:
Patterns INBOX Archive
Create Both
Expunge Both
SyncState *
""")
    first = await imap.run(_run, ["mbsync", "-c", str(rc), "-a"])
    assert first.returncode == 0, first.stderr + first.stdout
    files = _maildir_files(local / "INBOX")
    assert len(files) == 2
    # push: a new message and a flag change
    (local / "INBOX" / "new" / f"{int(time.time())}.local.host").write_bytes(message("three"))
    target = files[0]
    base = target.name.split(":2,")[0]
    target.rename(target.parent / f"{base}:2,F{target.name.split(':2,')[1] if ':2,' in target.name else ''}")
    second = await imap.run(_run, ["mbsync", "-c", str(rc), "-a"])
    assert second.returncode == 0, second.stderr + second.stdout
    state = await _server_state(imap)
    assert [s for s, _ in state] == [b"Subject: one", b"Subject: two", b"Subject: three"]
    assert sum(b"\\Flagged" in f for _, f in state) == 1


async def test_offlineimap_pull_then_push(imap: ImapEnv, tmp_path: Path) -> None:
    """offlineimap pulls, then pushes a new message and a \\Seen change back.

    Plain IMAP on loopback (allowed by auth.allow_plaintext_on_loopback): offlineimap
    insists on a certificate commonName, which the test CA's certificate lacks.
    """
    _need("offlineimap")
    await imap.deliver(ALICE, message("alpha"))
    await imap.deliver(ALICE, message("beta"))
    local = tmp_path / "mail"
    rc = tmp_path / "offlineimaprc"
    rc.write_text(f"""
[general]
accounts = srv
metadata = {tmp_path}/meta

[Account srv]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {local}

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {imap.port}
remoteuser = {ALICE}
remotepass = {PASSWORD}
ssl = no
starttls = no
folderfilter = lambda name: name in ['INBOX', 'Archive']
""")
    args = ["offlineimap", "-c", str(rc), "-o", "-u", "basic"]
    first = await imap.run(_run, args)
    assert first.returncode == 0, first.stderr + first.stdout
    files = _maildir_files(local / "INBOX")
    assert len(files) == 2
    (local / "INBOX" / "new" / f"{int(time.time())}_0.1.local").write_bytes(message("gamma"))
    target = files[0]
    name = target.name if ":2," in target.name else target.name + ":2,"
    target.rename(local / "INBOX" / "cur" / (name + "S"))
    second = await imap.run(_run, args)
    assert second.returncode == 0, second.stderr + second.stdout
    state = await _server_state(imap)
    assert sorted(s for s, _ in state) == [b"Subject: alpha", b"Subject: beta", b"Subject: gamma"]
    assert sum(b"\\Seen" in f for _, f in state) >= 1


def _tmux(*args: str) -> str:
    return _run(["tmux", *args]).stdout


async def test_neomutt_read_flag_delete_expunge(imap: ImapEnv, tmp_path: Path) -> None:
    """neomutt (in tmux) opens INBOX over IMAPS, reads, flags, deletes and expunges; the server agrees."""
    _need("neomutt")
    _need("tmux")
    for subject in ("first note", "second note"):
        await imap.deliver(ALICE, message(subject))
    rc = tmp_path / "neomuttrc"
    rc.write_text(f"""
set folder = "imaps://{ALICE.replace('@', '%40')}@127.0.0.1:{imap.imaps_port}/"
set spoolfile = "+INBOX"
set imap_pass = "{PASSWORD}"
set certificate_file = "{tmp_path}/certs"
set ssl_ca_certificates_file = "{imap.server.ca.ca_file}"
set ssl_verify_host = no
set header_cache = ""
set message_cachedir = ""
set sort = date-sent
set pager_stop = yes
set confirmappend = no
set delete = yes
set quit = yes
set move = no
set mark_old = no
set imap_check_subscribed = no
set mail_check = 1
""")
    session = f"mutt{os.getpid()}"
    env_cmd = f"TERM=xterm HOME={tmp_path} neomutt -n -F {rc}"
    _tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "40", env_cmd)
    try:
        def wait_for(text: str, timeout: float = 15) -> str:
            end = time.monotonic() + timeout
            screen = ""
            while time.monotonic() < end:
                screen = _tmux("capture-pane", "-p", "-t", session)
                if text in screen:
                    return screen
                time.sleep(0.2)
            raise AssertionError(f"{text!r} not on screen:\n{screen}")

        def drive() -> None:
            wait_for("second note")
            _tmux("send-keys", "-t", session, "Enter")  # read the current message
            wait_for("Hello world")
            _tmux("send-keys", "-t", session, "q")
            time.sleep(0.3)
            _tmux("send-keys", "-t", session, "F")  # flag it
            time.sleep(0.3)
            _tmux("send-keys", "-t", session, "j")
            _tmux("send-keys", "-t", session, "d")  # delete the other
            time.sleep(0.3)
            _tmux("send-keys", "-t", session, "$")  # sync: expunge
            time.sleep(1.5)
            _tmux("send-keys", "-t", session, "q")
            time.sleep(1.0)

        await imap.run(drive)
    finally:
        _tmux("kill-session", "-t", session)
    state = await _server_state(imap)
    assert len(state) == 1
    (_, flags), = state
    assert b"\\Flagged" in flags and b"\\Seen" in flags
