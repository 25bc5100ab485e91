"""CLI commands for outbound delivery: `queue ...`, `dkim generate`, `dns DOMAIN`.

Registered on the main parser by :func:`add_commands`. The queue commands work on the
same store as the running daemon; `queue retry` makes entries due now and the daemon's
worker picks them up at its next poll (``outbound.poll_seconds``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from delivery.outbound import dkim
from mailserver import config as cfg
from storage.interfaces import Store
from storage.types import QueueEntry


def _entry_doc(e: QueueEntry, now: datetime) -> dict[str, Any]:
    return {
        "id": e.id,
        "from": e.mail_from,
        "created": e.created.isoformat(),
        "age_seconds": int((now - e.created).total_seconds()),
        "next_attempt": e.next_attempt.isoformat(),
        "attempts": e.attempts,
        "delay_warned": e.warned,
        "recipients": [
            {"address": r.address, "status": r.status, "attempts": r.attempts,
             "last_error": r.last_error, "via_list": r.via_list}
            for r in e.recipients
        ],
    }


def _summary(e: QueueEntry, now: datetime) -> str:
    pending = sum(r.status == "pending" for r in e.recipients)
    age = int((now - e.created).total_seconds())
    return (f"{e.id}  from=<{e.mail_from}>  age={age}s  attempts={e.attempts}  "
            f"pending={pending}/{len(e.recipients)}  next={e.next_attempt.isoformat(timespec='seconds')}")


async def cmd_queue(args: argparse.Namespace) -> int:
    from mailserver.cli import CliError, _out, _with_store

    async def run(store: Store, _: Any) -> int:
        now = datetime.now(UTC)
        q = store.queue
        if args.action == "list":
            entries = await q.list_queue()
            lines = [_summary(e, now) for e in entries] or ["the queue is empty"]
            _out(args, [_entry_doc(e, now) for e in entries], lines)
        elif args.action == "show":
            entry = await q.get_queue_entry(args.id)
            if entry is None:
                raise CliError(f"no queue entry {args.id}")
            lines = [_summary(entry, now)] + [
                f"  <{r.address}> {r.status} attempts={r.attempts}"
                + (f" via <{r.via_list}>" if r.via_list else "")
                + (f": {r.last_error}" if r.last_error else "")
                for r in entry.recipients
            ]
            _out(args, _entry_doc(entry, now), lines)
        elif args.action == "retry":
            if args.all == (args.id is not None):
                raise CliError("give a queue entry ID or --all")
            changed = await q.retry_now(now, args.id)
            if args.id is not None and not changed:
                raise CliError(f"no queue entry {args.id} with recipients left to send")
            print(f"{changed} queue entr{'y' if changed == 1 else 'ies'} due now")
        elif args.action == "remove":
            if not await q.remove_queue_entry(args.id):
                raise CliError(f"no queue entry {args.id}")
            print(f"queue entry {args.id} removed (no bounce is sent)")
        return 0

    return await _with_store(args, run)


async def cmd_dkim(args: argparse.Namespace) -> int:
    from mailserver.cli import CliError, _load

    config = _load(args)
    selector = args.selector or config["outbound.dkim.selector"]
    key_dir = config["outbound.dkim.key_dir"]
    try:
        path = dkim.generate_key(key_dir, args.domain, selector)
        record = dkim.txt_record(path, args.domain, selector)
    except dkim.DkimError as e:
        raise CliError(str(e)) from None
    print(f"created {path}")
    if selector != config["outbound.dkim.selector"]:
        print(f"note: outbound.dkim.selector is {config['outbound.dkim.selector']!r}; "
              f"set it to {selector!r} to sign with this key")
    print("publish this DNS record:")
    print(record)
    return 0


def dns_lines(config: cfg.Config, domain: str) -> list[str]:
    """Every record an operator publishes for ``domain``: MX, SPF, DKIM, DMARC, and the
    SRV/autoconfig records of the client listeners."""
    domain = domain.lower().rstrip(".")
    host = config.hostname.rstrip(".")
    lines = [
        f"; mail for {domain} is received by {host}",
        f"{domain}. IN MX 10 {host}.",
        "; SPF (RFC 7208): only the MX hosts send for the domain"
        + ("; add the smart host's SPF include" if config["outbound.smarthost.host"] else ""),
        f'{domain}. IN TXT "v=spf1 mx -all"',
    ]
    selector = config["outbound.dkim.selector"]
    key = dkim.key_path(config["outbound.dkim.key_dir"], domain, selector)
    if key.exists():
        lines += ["; DKIM (RFC 6376)", dkim.txt_record(key, domain, selector)]
    else:
        lines.append(f"; DKIM: no key yet; run `mailserver dkim generate {domain}` and publish what it prints")
    lines += [
        "; DMARC (RFC 7489): quarantine mail failing SPF and DKIM alignment; reports to postmaster",
        f'_dmarc.{domain}. IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"',
    ]
    try:
        from mailserver.cli_ops import autoconfig_dns_lines
    except ImportError:  # pragma: no cover - the ops commands are part of this build
        return lines
    extra = autoconfig_dns_lines(config, domain)
    if extra:
        lines += ["; client configuration (RFC 6186 SRV, autoconfig, autodiscover)", *extra]
    return lines


async def cmd_dns(args: argparse.Namespace) -> int:
    from mailserver.cli import _load

    for line in dns_lines(_load(args), args.domain):
        print(line)
    return 0


def add_commands(sub: Any, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """Register `queue`, `dkim` and `dns` (``cmd`` is cli.build_parser's helper)."""
    q = cmd(sub, "queue", "inspect and manage the outbound queue")
    qs = q.add_subparsers(dest="action", required=True, metavar="ACTION")
    cmd(qs, "list", "list queued messages (id, sender, age, attempts, pending recipients)", cmd_queue, json_out=True)
    cmd(qs, "show", "show one queued message and its recipients", cmd_queue, json_out=True).add_argument("id", type=int)
    a = cmd(qs, "retry", "try queued messages again now", cmd_queue)
    a.add_argument("id", type=int, nargs="?", help="queue entry ID")
    a.add_argument("--all", action="store_true", help="every queued message")
    cmd(qs, "remove", "delete a queued message without bouncing it", cmd_queue).add_argument("id", type=int)

    d = cmd(sub, "dkim", "DKIM signing keys")
    ds = d.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = cmd(ds, "generate", "create a DKIM key for DOMAIN and print the DNS TXT record to publish", cmd_dkim)
    a.add_argument("domain")
    a.add_argument("--selector", help="DKIM selector (default: outbound.dkim.selector)")

    cmd(sub, "dns", "print every DNS record to publish for DOMAIN (MX, SPF, DKIM, DMARC, SRV)",
        cmd_dns).add_argument("domain")
