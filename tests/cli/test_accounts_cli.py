"""The operator CLI for domains, users, shared mailboxes, lists, rooms, aliases, licences.

Every test runs `python -m mailserver ... --config X` as a subprocess, as an operator would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli, throwaway_config_values, write_config


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.toml", throwaway_config_values(tmp_path, **{"licences.seats": 2}))


def ok(conf: Path, *args: str, stdin: str | None = None) -> str:
    r = run_cli(*args, config=conf, stdin=stdin)
    assert r.returncode == 0, f"{args}: {r.stderr}"
    return r.stdout


def fails(conf: Path, *args: str, stdin: str | None = None) -> str:
    r = run_cli(*args, config=conf, stdin=stdin)
    assert r.returncode == 1, f"{args} should fail: {r.stdout}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailserver: error: "), r.stderr
    return lines[0]


def js(conf: Path, *args: str) -> Any:
    return json.loads(ok(conf, *args, "--json"))


def test_init_creates_store_and_certificate(conf: Path, tmp_path: Path) -> None:
    """init creates the database, the primary domain and a self-signed certificate."""
    out = ok(conf, "init")
    assert (tmp_path / "data" / "mail.sqlite3").exists()
    assert (tmp_path / "data" / "tls" / "cert.pem").exists()
    assert "self-signed" in out
    assert js(conf, "domain", "list") == ["example.test"]


def test_domains(conf: Path) -> None:
    """Domains are added, listed, refused twice, and removed only when empty."""
    ok(conf, "domain", "add", "Other.TEST")
    assert js(conf, "domain", "list") == ["example.test", "other.test"]
    assert "already" in fails(conf, "domain", "add", "other.test")
    ok(conf, "user", "add", "x@other.test", "--password-stdin", stdin="pw\n")
    assert "other.test" in fails(conf, "domain", "remove", "other.test")
    ok(conf, "user", "remove", "x@other.test")
    ok(conf, "domain", "remove", "other.test")
    assert js(conf, "domain", "list") == ["example.test"]


def test_user_lifecycle(conf: Path) -> None:
    """A user is added licensed, shown, listed, disabled, unlicensed, and removed."""
    ok(conf, "user", "add", "Alice@Example.test", "--name", "Alice", "--password-stdin", stdin="s3cret\n")
    users = js(conf, "user", "list")
    assert users == [{"address": "alice@example.test", "name": "Alice", "enabled": True, "licensed": True}]
    shown = js(conf, "user", "show", "alice@example.test")
    assert shown["licensed"] is True and shown["has_password"] is True
    assert [f["name"] for f in shown["folders"]] == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    ok(conf, "user", "disable", "alice@example.test")
    assert js(conf, "user", "show", "alice@example.test")["enabled"] is False
    ok(conf, "user", "enable", "alice@example.test")
    ok(conf, "user", "unlicense", "alice@example.test")
    assert js(conf, "license", "status") == {"total": 2, "used": 0, "free": 2}
    ok(conf, "user", "passwd", "alice@example.test", "--password-stdin", stdin="n3w\n")
    ok(conf, "user", "remove", "alice@example.test")
    assert js(conf, "user", "list") == []


def test_user_refusals(conf: Path) -> None:
    """Existing address, foreign domain, bad address and missing password are refused with why."""
    ok(conf, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    assert "already taken" in fails(conf, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    assert "not a local domain" in fails(conf, "user", "add", "bob@elsewhere.test", "--password-stdin", stdin="pw\n")
    assert "invalid address" in fails(conf, "user", "add", "no-at-sign", "--password-stdin", stdin="pw\n")
    assert "password" in fails(conf, "user", "add", "carol@example.test", stdin="")
    assert "no user" in fails(conf, "user", "show", "nobody@example.test")


def test_licence_pool(conf: Path) -> None:
    """A licence beyond the seat pool is refused; --no-license takes no seat."""
    for who in ("a", "b"):
        ok(conf, "user", "add", f"{who}@example.test", "--password-stdin", stdin="pw\n")
    err = fails(conf, "user", "add", "c@example.test", "--password-stdin", stdin="pw\n")
    assert "seat" in err
    ok(conf, "user", "add", "c@example.test", "--no-license", "--password-stdin", stdin="pw\n")
    assert "seat" in fails(conf, "user", "license", "c@example.test")
    assert js(conf, "license", "status") == {"total": 2, "used": 2, "free": 0}
    ok(conf, "user", "unlicense", "a@example.test")
    ok(conf, "user", "license", "c@example.test")
    assert js(conf, "license", "status")["used"] == 2


def test_shared_mailbox_and_grants(conf: Path) -> None:
    """Grants are added and revoked per right; granting to a non-user is refused."""
    ok(conf, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    ok(conf, "shared", "add", "hr@example.test", "--name", "HR")
    ok(conf, "shared", "add", "support@example.test")
    out = ok(conf, "shared", "grant", "hr@example.test", "alice@example.test", "--full-access", "--send-on-behalf")
    assert "full_access" in out and "send_on_behalf" in out
    shown = js(conf, "shared", "show", "hr@example.test")
    assert shown["grants"] == [{"user": "alice@example.test", "rights": ["full_access", "send_on_behalf"]}]
    assert shown["settings"] == {"copy_sent_as": False, "copy_send_on_behalf": False}
    assert "user" in fails(conf, "shared", "grant", "hr@example.test", "support@example.test", "--full-access")
    assert "at least one right" in fails(conf, "shared", "grant", "hr@example.test", "alice@example.test")
    ok(conf, "shared", "revoke", "hr@example.test", "alice@example.test", "--send-on-behalf")
    assert js(conf, "user", "show", "alice@example.test")["access_to"] == [
        {"mailbox": "hr@example.test", "rights": ["full_access"]}
    ]
    ok(conf, "shared", "set", "hr@example.test", "--copy-sent-as", "true")
    assert js(conf, "shared", "show", "hr@example.test")["settings"]["copy_sent_as"] is True
    assert [s["address"] for s in js(conf, "shared", "list")] == ["hr@example.test", "support@example.test"]
    assert "password" not in json.dumps(shown)


def test_lists_nesting_and_cycles(conf: Path) -> None:
    """Lists take local and external members and nested lists; cycles are refused with why."""
    ok(conf, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    ok(conf, "list", "add", "finance@example.test")
    ok(conf, "list", "add", "all@example.test")
    ok(conf, "list", "member", "add", "finance@example.test", "alice@example.test", "ext@partner.test")
    ok(conf, "list", "member", "add", "all@example.test", "finance@example.test")
    assert "itself" in fails(conf, "list", "member", "add", "finance@example.test", "finance@example.test")
    assert "itself" in fails(conf, "list", "member", "add", "finance@example.test", "all@example.test")
    shown = js(conf, "list", "show", "finance@example.test")
    assert shown["members"] == ["alice@example.test", "ext@partner.test"]
    assert shown["member_of"] == ["all@example.test"]
    assert shown["policy"]["require_sender_authentication"] is True
    pol = js(conf, "list", "policy", "finance@example.test", "--require-sender-authentication", "false",
             "--allowed-senders", "boss@example.test,cfo@example.test")
    assert pol == {"require_sender_authentication": False,
                   "allowed_senders": ["boss@example.test", "cfo@example.test"], "blocked_senders": []}
    ok(conf, "list", "member", "remove", "finance@example.test", "ext@partner.test")
    assert js(conf, "list", "list") == [
        {"address": "all@example.test", "name": "", "enabled": True, "members": 1},
        {"address": "finance@example.test", "name": "", "enabled": True, "members": 1},
    ]


def test_rooms_and_aliases(conf: Path) -> None:
    """Rooms are added with capacity; aliases point at accounts and are refused when taken."""
    ok(conf, "room", "add", "boardroom@example.test", "--name", "Boardroom", "--capacity", "12")
    assert js(conf, "room", "show", "boardroom@example.test")["capacity"] == 12
    assert js(conf, "room", "list")[0]["capacity"] == 12
    ok(conf, "user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    ok(conf, "alias", "add", "a.smith@example.test", "alice@example.test")
    assert js(conf, "user", "show", "alice@example.test")["aliases"] == ["a.smith@example.test"]
    assert "taken" in fails(conf, "alias", "add", "boardroom@example.test", "alice@example.test")
    ok(conf, "alias", "remove", "a.smith@example.test")
    assert "no " in fails(conf, "alias", "remove", "a.smith@example.test").lower()


@pytest.mark.parametrize("words", [
    [], ["init"], ["serve"], ["check-config"], ["domain"], ["domain", "add"], ["user"], ["user", "add"],
    ["user", "passwd"], ["user", "list"], ["shared"], ["shared", "grant"], ["list"], ["list", "member", "add"],
    ["list", "policy"], ["room"], ["room", "add"], ["alias", "add"], ["license", "status"],
])
def test_every_command_has_help(conf: Path, words: list[str]) -> None:
    """--help works for every command and sub-command."""
    r = run_cli(*words, "--help", config=conf)
    assert r.returncode == 0 and "usage: mailserver" in r.stdout


def test_usage_error_exits_2(conf: Path) -> None:
    """An unknown command is a usage error (exit 2)."""
    assert run_cli("frobnicate", config=conf).returncode == 2
