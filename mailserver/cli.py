"""The operator's command line: `mailserver COMMAND ...`.

Every command has --help; failures print one line ``mailserver: error: ...`` on stderr
and exit 1 (usage errors exit 2); list and show commands accept --json. The CLI opens
the same store as the running daemon; SQLite serialises the writes and the daemon
picks up directory changes without a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from auth.accounts import AccountService
from auth.errors import AccountError
from auth.settings import ListPolicy, RoomSettings, SharedSettings
from mailserver import config as cfg
from mailserver.daemon import Daemon, StartupError, open_services
from storage import StorageError
from storage.interfaces import Store
from storage.types import Account, AccountKind, Right


class CliError(Exception):
    """A failure reported as one line and exit status 1."""


Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


# --------------------------------------------------------------------------- helpers


def _out(args: argparse.Namespace, doc: Any, text: str | Sequence[str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(doc, indent=2, sort_keys=False, default=str))
    elif isinstance(text, str):
        print(text)
    else:
        for line in text:
            print(line)


def _load(args: argparse.Namespace) -> cfg.Config:
    try:
        return cfg.load(getattr(args, "config", None))
    except cfg.ConfigError as e:
        raise CliError(str(e)) from None


async def _with_store(args: argparse.Namespace, fn: Callable[[Store, AccountService], Awaitable[int]]) -> int:
    config = _load(args)
    try:
        store, accounts, _ = await open_services(config)
    except StartupError as e:
        raise CliError(str(e)) from None
    try:
        return await fn(store, accounts)
    finally:
        await store.close()


def _read_password(args: argparse.Namespace, *, required: bool) -> str | None:
    if getattr(args, "password_stdin", False):
        pw = sys.stdin.readline().rstrip("\r\n")
        if not pw:
            raise CliError("no password on standard input")
        return pw
    if not sys.stdin.isatty():
        if required:
            raise CliError("no password given: pass it on standard input with --password-stdin")
        return None
    pw = getpass.getpass("Password: ")
    if pw != getpass.getpass("Repeat password: "):
        raise CliError("the two passwords differ")
    if not pw:
        raise CliError("empty password")
    return pw


async def _need(store: Store, address: str, kind: AccountKind | None = None) -> Account:
    account = await store.directory.get_account(address.strip().lower())
    if account is None or (kind is not None and account.kind != kind):
        what = kind.value if kind else "account"
        raise CliError(f"no {what} {address}" + (f" (it is a {account.kind.value})" if account else ""))
    return account


def _yesno(value: bool) -> str:
    return "yes" if value else "no"


def _bool_arg(text: str) -> bool:
    t = text.lower()
    if t in ("true", "yes", "on", "1"):
        return True
    if t in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _addr_list(text: str) -> list[str]:
    return [a.strip().lower() for a in text.split(",") if a.strip()]


async def _account_doc(store: Store, a: Account) -> dict[str, Any]:
    d = store.directory
    doc: dict[str, Any] = {
        "address": a.address,
        "kind": a.kind.value,
        "name": a.display_name,
        "enabled": a.enabled,
        "aliases": [x.alias for x in await d.list_aliases(a.address)],
    }
    if a.kind == AccountKind.USER:
        doc["licensed"] = a.licensed
        doc["has_password"] = a.password_hash is not None
        doc["access_to"] = [
            {"mailbox": g.mailbox, "rights": sorted(r.value for r in g.rights)} for g in await d.grants_of(a.address)
        ]
    else:
        doc["grants"] = [
            {"user": g.user, "rights": sorted(r.value for r in g.rights)} for g in await d.grants_on(a.address)
        ]
    if a.kind == AccountKind.LIST:
        doc["members"] = await d.members(a.address)
        p = ListPolicy.of(a)
        doc["policy"] = {
            "require_sender_authentication": p.require_sender_authentication,
            "allowed_senders": list(p.allowed_senders),
            "blocked_senders": list(p.blocked_senders),
        }
    if a.kind == AccountKind.SHARED:
        s = SharedSettings.of(a)
        doc["settings"] = {"copy_sent_as": s.copy_sent_as, "copy_send_on_behalf": s.copy_send_on_behalf}
    if a.kind == AccountKind.ROOM:
        doc["capacity"] = RoomSettings.of(a).capacity
    doc["member_of"] = await d.lists_containing(a.address)
    if a.kind != AccountKind.LIST:
        doc["folders"] = [
            {"name": f.name, "messages": f.messages, "unseen": f.unseen} for f in await store.mail.list_folders(a.id)
        ]
    return doc


def _doc_lines(doc: dict[str, Any]) -> list[str]:
    lines = []
    for k, v in doc.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            lines.append(f"{k}:")
            for item in v:
                lines.append("  " + "  ".join(f"{ik}={','.join(iv) if isinstance(iv, list) else iv}" for ik, iv in item.items()))
        elif isinstance(v, list):
            lines.append(f"{k}: {', '.join(v) if v else '-'}")
        elif isinstance(v, dict):
            lines.append(f"{k}: " + "  ".join(f"{ik}={iv}" for ik, iv in v.items()))
        elif isinstance(v, bool):
            lines.append(f"{k}: {_yesno(v)}")
        else:
            lines.append(f"{k}: {v}")
    return lines


async def _show(args: argparse.Namespace, kind: AccountKind | None) -> int:
    async def run(store: Store, accounts: AccountService) -> int:
        doc = await _account_doc(store, await _need(store, args.address, kind))
        _out(args, doc, _doc_lines(doc))
        return 0

    return await _with_store(args, run)


async def _list(args: argparse.Namespace, kind: AccountKind) -> int:
    async def run(store: Store, accounts: AccountService) -> int:
        rows = await store.directory.list_accounts(kind)
        docs: list[dict[str, Any]] = []
        lines: list[str] = []
        for a in rows:
            doc: dict[str, Any] = {"address": a.address, "name": a.display_name, "enabled": a.enabled}
            extra = ""
            if kind == AccountKind.USER:
                doc["licensed"] = a.licensed
                extra = f"  licensed={_yesno(a.licensed)} enabled={_yesno(a.enabled)}"
            elif kind == AccountKind.LIST:
                doc["members"] = len(await store.directory.members(a.address))
                extra = f"  members={doc['members']}"
            elif kind == AccountKind.ROOM:
                doc["capacity"] = RoomSettings.of(a).capacity
                extra = f"  capacity={doc['capacity'] if doc['capacity'] is not None else '-'}"
            docs.append(doc)
            lines.append(f"{a.address}  {a.display_name!r}{extra}")
        _out(args, docs, lines or [f"no {kind.value} accounts"])
        return 0

    return await _with_store(args, run)


# --------------------------------------------------------------------------- commands


async def cmd_check_config(args: argparse.Namespace) -> int:
    c = _load(args)
    print(f"{c.path}: configuration is valid")
    return 0


async def cmd_init(args: argparse.Namespace) -> int:
    from mailserver import tls

    config = _load(args)

    async def run(store: Store, accounts: AccountService) -> int:
        try:
            cert, _, generated = tls.ensure_certificate(config)
        except (tls.TLSError, OSError) as e:
            raise CliError(f"tls: {e}") from None
        where = config.storage_path if config["storage.backend"] == "sqlite" else "PostgreSQL (storage.dsn)"
        print(f"store ready: {where}")
        print(f"domain: {config.domain}")
        print(f"certificate: {cert}" + (" (self-signed, generated now)" if generated else ""))
        return 0

    return await _with_store(args, run)


async def cmd_serve(args: argparse.Namespace) -> int:
    from mailserver import logs

    if args.ephemeral:
        from mailserver.cli_ops import serve_ephemeral

        return await serve_ephemeral(args)
    config = _load(args)
    logs.setup(config["server.log_format"], config["server.log_level"])
    daemon = Daemon(config, demo=args.demo)
    try:
        await daemon.run()
    except StartupError as e:
        raise CliError(str(e)) from None
    return 0


async def cmd_domain(args: argparse.Namespace) -> int:
    async def run(store: Store, accounts: AccountService) -> int:
        if args.action == "add":
            await accounts.add_domain(args.domain)
            print(f"domain {args.domain.lower()} added")
        elif args.action == "remove":
            await accounts.remove_domain(args.domain)
            print(f"domain {args.domain.lower()} removed")
        else:
            domains = await store.directory.list_domains()
            _out(args, domains, domains or ["no domains"])
        return 0

    return await _with_store(args, run)


async def cmd_user(args: argparse.Namespace) -> int:
    if args.action == "list":
        return await _list(args, AccountKind.USER)
    if args.action == "show":
        return await _show(args, AccountKind.USER)
    password = None
    if args.action in ("add", "passwd"):
        password = _read_password(args, required=True)

    async def run(store: Store, accounts: AccountService) -> int:
        a = args.address
        if args.action == "add":
            acct = await accounts.add_user(a, args.name or "", password, licensed=not args.no_license)
            print(f"user {acct.address} added" + ("" if acct.licensed else " (no licence: cannot log in)"))
        elif args.action == "passwd":
            assert password is not None
            await accounts.set_password(a, password)
            print(f"password of {a} changed")
        elif args.action == "license":
            await accounts.license(a)
            print(f"{a} licensed")
        elif args.action == "unlicense":
            await accounts.unlicense(a)
            print(f"{a} unlicensed: login blocked, mail kept")
        elif args.action == "disable":
            await accounts.disable(a)
            print(f"{a} disabled")
        elif args.action == "enable":
            await accounts.enable(a)
            print(f"{a} enabled")
        elif args.action == "remove":
            await _need(store, a, AccountKind.USER)
            await accounts.remove(a)
            print(f"user {a} removed with its mail")
        return 0

    return await _with_store(args, run)


def _rights(args: argparse.Namespace) -> list[Right]:
    rights = [r for r, on in ((Right.FULL_ACCESS, args.full_access), (Right.SEND_AS, args.send_as),
                              (Right.SEND_ON_BEHALF, args.send_on_behalf)) if on]
    if not rights:
        raise CliError("name at least one right: --full-access, --send-as, --send-on-behalf")
    return rights


async def cmd_shared(args: argparse.Namespace) -> int:
    if args.action == "list":
        return await _list(args, AccountKind.SHARED)
    if args.action == "show":
        return await _show(args, AccountKind.SHARED)

    async def run(store: Store, accounts: AccountService) -> int:
        if args.action == "add":
            acct = await accounts.add_shared(args.address, args.name or "")
            print(f"shared mailbox {acct.address} added")
        elif args.action in ("grant", "revoke"):
            rights = _rights(args)
            fn = accounts.grant if args.action == "grant" else accounts.revoke
            now = await fn(args.shared, args.user, rights)
            held = ", ".join(sorted(r.value for r in now)) or "nothing"
            print(f"{args.user.lower()} now holds on {args.shared.lower()}: {held}")
        elif args.action == "set":
            changes = {k: v for k, v in (("copy_sent_as", args.copy_sent_as),
                                         ("copy_send_on_behalf", args.copy_send_on_behalf)) if v is not None}
            if not changes:
                raise CliError("nothing to set: use --copy-sent-as and/or --copy-send-on-behalf")
            await accounts.set_shared_settings(args.shared, **changes)
            print(f"{args.shared.lower()}: " + ", ".join(f"{k}={_yesno(v)}" for k, v in changes.items()))
        return 0

    return await _with_store(args, run)


async def cmd_list(args: argparse.Namespace) -> int:
    if args.action == "list":
        return await _list(args, AccountKind.LIST)
    if args.action == "show":
        return await _show(args, AccountKind.LIST)

    async def run(store: Store, accounts: AccountService) -> int:
        if args.action == "add":
            acct = await accounts.add_list(args.address, args.name or "")
            print(f"distribution list {acct.address} added")
        elif args.action == "member":
            if args.member_action == "add":
                await accounts.add_members(args.list, args.members)
                print(f"{len(args.members)} member(s) added to {args.list.lower()}")
            else:
                await accounts.remove_members(args.list, args.members)
                print(f"{len(args.members)} member(s) removed from {args.list.lower()}")
        elif args.action == "policy":
            p = await accounts.set_list_policy(
                args.list,
                require_sender_authentication=args.require_sender_authentication,
                allowed_senders=args.allowed_senders,
                blocked_senders=args.blocked_senders,
            )
            doc = {
                "require_sender_authentication": p.require_sender_authentication,
                "allowed_senders": list(p.allowed_senders),
                "blocked_senders": list(p.blocked_senders),
            }
            _out(args, doc, _doc_lines(doc))
        return 0

    return await _with_store(args, run)


async def cmd_room(args: argparse.Namespace) -> int:
    if args.action == "list":
        return await _list(args, AccountKind.ROOM)
    if args.action == "show":
        return await _show(args, AccountKind.ROOM)

    async def run(store: Store, accounts: AccountService) -> int:
        acct = await accounts.add_room(args.address, args.name or "", capacity=args.capacity)
        print(f"room {acct.address} added")
        return 0

    return await _with_store(args, run)


async def cmd_alias(args: argparse.Namespace) -> int:
    async def run(store: Store, accounts: AccountService) -> int:
        if args.action == "add":
            await accounts.add_alias(args.alias, args.target)
            print(f"alias {args.alias.lower()} -> {args.target.lower()} added")
        else:
            await accounts.remove_alias(args.alias)
            print(f"alias {args.alias.lower()} removed")
        return 0

    return await _with_store(args, run)


async def cmd_license(args: argparse.Namespace) -> int:
    async def run(store: Store, accounts: AccountService) -> int:
        st = await accounts.licence_status()
        doc = {"total": st.total, "used": st.used, "free": st.free}
        _out(args, doc, f"licence seats: {st.total} total, {st.used} used, {st.free} free")
        return 0

    return await _with_store(args, run)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help=f"config file (default: ${cfg.ENV_VAR} or ./config.toml)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON")

    p = argparse.ArgumentParser(prog="mailserver", parents=[common],
                                description="Self-contained SMTP/IMAP mail server core.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(parent: Any, name: str, help_text: str, fn: Command | None = None,
            json_out: bool = False) -> argparse.ArgumentParser:
        parents = [common, as_json] if json_out else [common]
        sp: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text, parents=parents)
        if fn is not None:
            sp.set_defaults(func=fn)
        return sp

    cmd(sub, "init", "create the data folder, database, primary domain and TLS certificate", cmd_init)
    s = cmd(sub, "serve", "run the daemon with every listener from the config", cmd_serve)
    s.add_argument("--demo", action="store_true", help="seed a demo organisation (idempotent) and print its logins")
    s.add_argument("--ephemeral", action="store_true",
                   help="ignore the config file: temporary store, free loopback ports, demo logins; deleted at exit")
    s.add_argument("--domain", default="example.test", help="primary domain with --ephemeral (default example.test)")
    cmd(sub, "check-config", "validate the config file without starting", cmd_check_config)
    from mailserver.cli_ops import add_commands as add_ops_commands

    add_ops_commands(sub, cmd)
    from mailserver.cli_queue import add_commands as add_queue_commands

    add_queue_commands(sub, cmd)
    from mailserver.cli_store import add_commands as add_store_commands

    add_store_commands(sub, cmd)

    d = cmd(sub, "domain", "manage local domains")
    ds = d.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, h in (("add", "add a local domain"), ("remove", "remove a local domain without accounts")):
        cmd(ds, action, h, cmd_domain).add_argument("domain")
    cmd(ds, "list", "list local domains", cmd_domain, json_out=True)

    u = cmd(sub, "user", "manage user mailboxes (licensed people who log in)")
    us = u.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = cmd(us, "add", "add a user (licensed unless --no-license)", cmd_user)
    a.add_argument("address")
    a.add_argument("--name", help="display name")
    a.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    a.add_argument("--no-license", action="store_true", help="do not assign a licence seat")
    a = cmd(us, "passwd", "set a user's password", cmd_user)
    a.add_argument("address")
    a.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    for action, h in (("license", "assign a licence seat"), ("unlicense", "remove the licence: login blocked, mail kept"),
                      ("disable", "block login"), ("enable", "allow login again"),
                      ("remove", "delete the user and its mail")):
        cmd(us, action, h, cmd_user).add_argument("address")
    cmd(us, "list", "list users", cmd_user, json_out=True)
    cmd(us, "show", "show a user", cmd_user, json_out=True).add_argument("address")

    sh = cmd(sub, "shared", "manage shared mailboxes and their grants")
    shs = sh.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = cmd(shs, "add", "add a shared mailbox", cmd_shared)
    a.add_argument("address")
    a.add_argument("--name", help="display name")
    for action in ("grant", "revoke"):
        a = cmd(shs, action, f"{action} rights of USER on SHARED", cmd_shared)
        a.add_argument("shared")
        a.add_argument("user")
        a.add_argument("--full-access", action="store_true", help="open, read, delete and file mail")
        a.add_argument("--send-as", action="store_true", help="send as the mailbox, no trace of the delegate")
        a.add_argument("--send-on-behalf", action="store_true", help="send with Sender: the delegate")
    a = cmd(shs, "set", "change a shared mailbox's settings", cmd_shared)
    a.add_argument("shared")
    a.add_argument("--copy-sent-as", type=_bool_arg, metavar="true|false",
                   help="keep a copy of Send As mail in the mailbox's Sent folder")
    a.add_argument("--copy-send-on-behalf", type=_bool_arg, metavar="true|false",
                   help="keep a copy of Send on Behalf mail in the mailbox's Sent folder")
    cmd(shs, "show", "show a shared mailbox, its grants and settings", cmd_shared, json_out=True).add_argument("address")
    cmd(shs, "list", "list shared mailboxes", cmd_shared, json_out=True)

    li = cmd(sub, "list", "manage distribution lists")
    lis = li.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = cmd(lis, "add", "add a distribution list", cmd_list)
    a.add_argument("address")
    a.add_argument("--name", help="display name")
    m = cmd(lis, "member", "add or remove members")
    ms = m.add_subparsers(dest="member_action", required=True, metavar="ACTION")
    for action in ("add", "remove"):
        a = cmd(ms, action, f"{action} members (local or external addresses, or lists)", cmd_list)
        a.add_argument("list")
        a.add_argument("members", nargs="+", metavar="ADDRESS")
    a = cmd(lis, "policy", "show or change who may send to the list", cmd_list, json_out=True)
    a.add_argument("list")
    a.add_argument("--require-sender-authentication", type=_bool_arg, metavar="true|false",
                   help="refuse senders who did not authenticate (default true)")
    a.add_argument("--allowed-senders", type=_addr_list, metavar="A,B,...",
                   help="only these senders may post (empty string clears)")
    a.add_argument("--blocked-senders", type=_addr_list, metavar="A,B,...",
                   help="these senders may not post (empty string clears)")
    cmd(lis, "show", "show a list, its members and policy", cmd_list, json_out=True).add_argument("address")
    cmd(lis, "list", "list distribution lists", cmd_list, json_out=True)

    r = cmd(sub, "room", "manage room mailboxes")
    rs = r.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = cmd(rs, "add", "add a room", cmd_room)
    a.add_argument("address")
    a.add_argument("--name", help="display name")
    a.add_argument("--capacity", type=int, help="number of seats")
    cmd(rs, "show", "show a room", cmd_room, json_out=True).add_argument("address")
    cmd(rs, "list", "list rooms", cmd_room, json_out=True)
    from mailserver.cli_room import add_commands as add_room_commands

    add_room_commands(rs, cmd)

    al = cmd(sub, "alias", "manage address aliases")
    als = al.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = cmd(als, "add", "make ALIAS deliver to TARGET", cmd_alias)
    a.add_argument("alias")
    a.add_argument("target")
    cmd(als, "remove", "remove an alias", cmd_alias).add_argument("alias")

    lc = cmd(sub, "license", "licence seats")
    lcs = lc.add_subparsers(dest="action", required=True, metavar="ACTION")
    cmd(lcs, "status", "seats total / used / free", cmd_license, json_out=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command | None = getattr(args, "func", None)
    if func is None:  # a group without its action: argparse requires it, so unreachable
        parser.print_help()
        return 2
    try:
        return asyncio.run(func(args))
    except (CliError, AccountError, StartupError, StorageError, cfg.ConfigError) as e:
        print(f"mailserver: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
