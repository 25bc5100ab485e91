"""CLI: `mailserver store copy --from SQLITE_CONFIG_OR_PATH --to POSTGRES_DSN [--force]`.

Moves an embedded SQLite store into PostgreSQL with every identifier kept (UIDs,
UIDVALIDITY, modseqs, account and folder ids), so IMAP clients keep their caches. Stop
the daemon first: mail delivered to the SQLite store during the copy would not be
copied. Registered on the main parser by :func:`add_commands`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailserver import config as cfg
from storage.errors import StorageError


def sqlite_path_of(source: str) -> Path:
    """``source`` is a config file (its storage.path) or the SQLite database itself."""
    path = Path(source)
    if path.suffix == ".toml":
        config = cfg.load(path)
        if config["storage.backend"] != "sqlite":
            raise cfg.ConfigError(f"{path}: storage.backend is {config['storage.backend']!r}, not sqlite")
        return config.storage_path
    return path


async def cmd_store(args: argparse.Namespace) -> int:
    from storage.postgres.copy import copy_sqlite_to_postgres

    def progress(line: str) -> None:
        print(line, flush=True)

    try:
        source = sqlite_path_of(args.source)
        print(f"copying {source} to PostgreSQL", flush=True)
        counts = await copy_sqlite_to_postgres(source, args.dsn, force=args.force, progress=progress)
    except (StorageError, cfg.ConfigError) as err:
        print(f"mailserver: store copy: {err}", file=sys.stderr)
        return 1
    print(
        f"done: {counts.get('accounts', 0)} accounts, {counts.get('folders', 0)} folders,"
        f" {counts.get('messages', 0)} messages, {counts.get('blob_data', 0)} bodies,"
        f" {counts.get('queue', 0)} queued"
    )
    return 0


def add_commands(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """Add `store copy` to the main parser's subcommands."""
    s = cmd(sub, "store", "move the store between backends")
    ss = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = cmd(ss, "copy", "copy an embedded SQLite store into an empty PostgreSQL database", cmd_store)
    c.add_argument("--from", dest="source", required=True, metavar="SQLITE_CONFIG_OR_PATH",
                   help="config.toml of the SQLite installation, or its database file")
    c.add_argument("--to", dest="dsn", required=True, metavar="POSTGRES_DSN",
                   help="postgresql://user:password@host:port/database")
    c.add_argument("--force", action="store_true", help="replace a target that already holds a store")
