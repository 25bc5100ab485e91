"""`mailserver check-config` and config validation, as an operator runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailserver import config as cfg
from tests.helpers import ROOT, run_cli, write_config


def test_default_config_is_valid() -> None:
    """The embedded default config.toml validates as is."""
    r = run_cli("check-config", config=ROOT / "config.toml")
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout


def test_default_config_paths_resolve_next_to_the_file() -> None:
    """Relative paths in config.toml resolve against its folder, not the working directory."""
    c = cfg.load(ROOT / "config.toml")
    assert c.storage_path == ROOT / "data" / "mail.sqlite3"
    assert c.data_dir == ROOT / "data"
    assert [(lst.name, lst.host, lst.port) for lst in c.listeners] == [
        ("smtp", "127.0.0.1", 3025), ("submission", "127.0.0.1", 3587), ("submissions", "127.0.0.1", 3465),
        ("imap", "127.0.0.1", 3143), ("imaps", "127.0.0.1", 3993), ("http", "127.0.0.1", 8080),
    ]


def test_every_schema_key_is_in_the_default_config_with_a_comment() -> None:
    """config.toml lists every schema key, each preceded by a comment line."""
    text = (ROOT / "config.toml").read_text()
    flat = cfg._flatten(__import__("tomllib").loads(text))
    assert set(flat) == {k.name for k in cfg.SCHEMA}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            j = i - 1
            while j >= 0 and lines[j].strip() and not lines[j].lstrip().startswith("#") and "=" in lines[j]:
                j -= 1  # keys grouped under one comment
            assert j >= 0 and lines[j].lstrip().startswith(("#", "[")), f"no comment before {line!r}"


BAD_CONFIGS = [
    ("unknown key", {"server.hostnme": "x"}, "unknown key 'server.hostnme'"),
    ("mistyped port", {"listeners.smtp.port": "25"}, "'listeners.smtp.port' must be an integer"),
    ("mistyped bool", {"listeners.smtp.enabled": "yes"}, "'listeners.smtp.enabled' must be true or false"),
    ("bad choice", {"server.log_format": "xml"}, "'server.log_format' must be one of"),
    ("negative", {"limits.max_recipients": 0}, "'limits.max_recipients' must be at least 1"),
]


@pytest.mark.parametrize(("case", "change", "message"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_refused_with_one_line(tmp_path: Path, case: str, change: dict[str, object], message: str) -> None:
    """A broken config makes check-config and serve fail with one line naming file and key."""
    values = {"server.hostname": "h.example.test", "server.domain": "example.test", **change}
    path = write_config(tmp_path / "c.toml", values)
    for command in (("check-config",), ("serve",)):
        r = run_cli(*command, config=path, timeout=30)
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert str(path) in lines[0] and message in lines[0], lines[0]


def test_missing_required_key(tmp_path: Path) -> None:
    """A missing required key is named."""
    path = write_config(tmp_path / "c.toml", {"server.domain": "example.test"})
    r = run_cli("check-config", config=path)
    assert r.returncode == 1
    assert "missing required key 'server.hostname'" in r.stderr


def test_not_toml(tmp_path: Path) -> None:
    """A file that is not TOML is refused with its name."""
    path = tmp_path / "c.toml"
    path.write_text("[server\nhostname=")
    r = run_cli("check-config", config=path)
    assert r.returncode == 1 and "not valid TOML" in r.stderr and str(path) in r.stderr


def test_missing_file(tmp_path: Path) -> None:
    """A config path that does not exist is named."""
    r = run_cli("check-config", config=tmp_path / "nope.toml")
    assert r.returncode == 1 and "config file not found" in r.stderr


def test_environment_variable_selects_config(tmp_path: Path) -> None:
    """MAILSERVER_CONFIG selects the file when --config is absent."""
    import os
    import subprocess
    import sys

    path = write_config(tmp_path / "c.toml", {"server.hostname": "h", "server.domain": "d.test", "bogus.key": 1})
    env = dict(os.environ, MAILSERVER_CONFIG=str(path))
    r = subprocess.run([sys.executable, "-m", "mailserver", "check-config"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "unknown key 'bogus.key'" in r.stderr and str(path) in r.stderr


def test_reference_covers_every_key() -> None:
    """The generated configuration reference has a row per schema key."""
    ref = cfg.reference_markdown()
    for key in cfg.SCHEMA:
        assert f"`{key.name}`" in ref
