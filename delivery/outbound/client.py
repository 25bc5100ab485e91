"""One outbound SMTP delivery: hosts in order, addresses in turn, per-recipient results.

:func:`deliver` takes the hosts of one destination (from :mod:`.routes`, or the smart
host) and the recipients of that destination, and returns an :class:`Outcome` per
recipient. It never raises for network or protocol trouble: everything becomes an
outcome ("delivered", "failed" for a permanent 5xx, "pending" to retry). A caller
that must commit the outcomes passes ``settle``: it is awaited with them as soon as
they are known, before the QUIT round trip (see :class:`Settle`).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiosmtplib

from delivery.outbound.routes import DnsError, MailHost, Resolver
from delivery.outbound.settings import SmartHost

log = logging.getLogger(__name__)

DELIVERED = "delivered"
FAILED = "failed"
PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one recipient: status, the diagnostic (remote reply or our own
    text, starting with a status code), and the remote host that answered."""

    status: str
    diagnostic: str
    remote: str | None = None


#: Told a delivery's per-recipient outcomes once, as soon as they are known: right
#: after the DATA reply (or the last RCPT reply when none was accepted), before QUIT.
#: The worker commits them there: until that commit, a crash makes the message go out
#: again (RFC 5321 §6.1: a duplicate rather than a loss), so the window is kept to the
#: commit itself instead of also waiting for the remote's QUIT reply (up to the
#: per-command timeout). An exception it raises propagates to the caller of
#: :func:`deliver` (after the QUIT); it never makes another host be tried.
Settle = Callable[[dict[str, Outcome]], Awaitable[None]]


class _Once:
    """Calls ``settle`` at most once; :meth:`finish` calls it if no session did."""

    def __init__(self, settle: Settle | None) -> None:
        self._settle = settle
        self.called = False

    async def __call__(self, outcomes: dict[str, Outcome]) -> None:
        self.called = True
        if self._settle is not None:
            await self._settle(outcomes)

    async def finish(self, outcomes: dict[str, Outcome]) -> dict[str, Outcome]:
        if not self.called:
            await self(outcomes)
        return outcomes


@dataclass(frozen=True, slots=True)
class Dialer:
    """How to open SMTP connections: the remote port (RFC 5321 §4.5.4: 25), timeouts,
    and the EHLO name. Tests and staging point ``port`` at loopback servers."""

    local_hostname: str
    port: int = 25
    timeout: float = 300.0

    def client(self, address: str, port: int | None = None, *, use_tls: bool = False,
               tls_context: ssl.SSLContext | None = None) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=address, port=port or self.port, local_hostname=self.local_hostname,
            timeout=self.timeout, use_tls=use_tls, start_tls=False, tls_context=tls_context,
        )


def opportunistic_tls_context() -> ssl.SSLContext:
    """RFC 3207 §4.1 / RFC 7435: opportunistic STARTTLS encrypts without authenticating
    the MX (its name is not verifiable without DANE or MTA-STS)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _SessionFailed(Exception):
    """This host/address could not take the transaction; try the next one."""

    def __init__(self, diagnostic: str) -> None:
        super().__init__(diagnostic)
        self.diagnostic = diagnostic


class _TlsFailed(_SessionFailed):
    """STARTTLS was offered but the handshake failed."""


def _reply(err: aiosmtplib.SMTPResponseException) -> str:
    return f"{err.code} {err.message}".strip()


def _needs_utf8(mail_from: str, rcpts: Sequence[str]) -> bool:
    return any(not a.isascii() for a in (mail_from, *rcpts))


async def deliver(
    hosts: Sequence[MailHost],
    mail_from: str,
    rcpts: Sequence[str],
    message: bytes,
    *,
    resolver: Resolver,
    dialer: Dialer,
    settle: Settle | None = None,
) -> dict[str, Outcome]:
    """Send ``message`` to ``rcpts`` (all of one domain) through the first host that
    takes the transaction (RFC 5321 §5.1: hosts in preference order, each host's
    addresses in turn). A host that cannot be reached, times out, or refuses the
    session with 4xx/5xx before any recipient is answered passes the turn to the next.
    When no host takes it, every recipient is "pending" with the last error, except an
    implicit MX without addresses (permanent, RFC 5321 §5.1). ``settle`` is awaited
    exactly once with the outcomes returned (before the QUIT when a session ended the
    transaction)."""
    once = _Once(settle)
    return await once.finish(await _deliver(hosts, mail_from, rcpts, message, resolver, dialer, once))


async def _deliver(
    hosts: Sequence[MailHost],
    mail_from: str,
    rcpts: Sequence[str],
    message: bytes,
    resolver: Resolver,
    dialer: Dialer,
    once: _Once,
) -> dict[str, Outcome]:
    last = "451 4.4.1 no answer from any mail host"
    for host in hosts:
        implicit_mx = host.implicit
        try:
            addresses = await resolver.addresses(host.name)
        except DnsError as err:
            if implicit_mx and err.permanent:
                return _all(rcpts, FAILED, f"550 5.1.2 {host.name}: no such domain")
            last = f"451 4.4.3 {err}"
            continue
        if not addresses:
            if implicit_mx:
                return _all(rcpts, FAILED, f"550 5.1.2 {host.name} has no MX and no address")
            last = f"451 4.4.3 mail host {host.name} has no address"
            continue
        for address in addresses:
            try:
                return await _session(host.name, address, mail_from, rcpts, message, dialer, once, tls=True)
            except _TlsFailed as err:
                log.info("STARTTLS with %s [%s] failed (%s); retrying without TLS", host.name, address, err)
                try:
                    return await _session(host.name, address, mail_from, rcpts, message, dialer, once, tls=False)
                except _SessionFailed as err2:
                    last = err2.diagnostic
            except _SessionFailed as err:
                last = err.diagnostic
            log.info("outbound: %s [%s]: %s", host.name, address, last)
    return _all(rcpts, PENDING, last)


async def deliver_smart_host(
    relay: SmartHost, mail_from: str, rcpts: Sequence[str], message: bytes, *, dialer: Dialer,
    settle: Settle | None = None,
) -> dict[str, Outcome]:
    """Send through the configured relay (TLS verified against the system CAs, AUTH
    when a username is set). Authentication failures are retried, not bounced: they
    are the operator's to fix, not the sender's. ``settle`` as for :func:`deliver`."""
    once = _Once(settle)
    try:
        outcomes = await _session(
            relay.host, relay.host, mail_from, rcpts, message, dialer, once,
            tls=relay.tls == "starttls", relay=relay,
        )
    except _SessionFailed as err:
        log.warning("outbound: smart host %s:%d: %s", relay.host, relay.port, err.diagnostic)
        outcomes = _all(rcpts, PENDING, err.diagnostic, relay.host)
    return await once.finish(outcomes)


def _all(rcpts: Sequence[str], status: str, diagnostic: str, remote: str | None = None) -> dict[str, Outcome]:
    return {r: Outcome(status, diagnostic, remote) for r in rcpts}


async def _session(
    host: str,
    address: str,
    mail_from: str,
    rcpts: Sequence[str],
    message: bytes,
    dialer: Dialer,
    settle: _Once,
    *,
    tls: bool,
    relay: SmartHost | None = None,
) -> dict[str, Outcome]:
    """One SMTP session. Raises _SessionFailed while no recipient has been answered.
    Once the transaction has ended, ``settle`` gets the outcomes before QUIT is sent;
    the QUIT's reply or failure does not change them (RFC 5321 §4.1.1.10: a
    connection lost before QUIT does not undo a completed transaction)."""
    where = f"{host} [{address}]" if host != address else host
    if relay is not None:
        verified = ssl.create_default_context()
        smtp = dialer.client(address, relay.port, use_tls=relay.tls == "implicit",
                             tls_context=verified if relay.tls == "implicit" else None)
        tls_ctx = verified
    else:
        smtp = dialer.client(address)
        tls_ctx = opportunistic_tls_context()
    try:
        try:
            await smtp.connect()
        except aiosmtplib.SMTPConnectResponseError as err:  # 4xx/5xx greeting: next host
            raise _SessionFailed(f"451 4.4.1 {where} greeted with {_reply(err)}") from None
        except (aiosmtplib.SMTPException, OSError) as err:
            raise _SessionFailed(f"451 4.4.1 cannot connect to {where}: {err}") from None
        try:
            await smtp.ehlo()
            if tls and smtp.supports_extension("starttls"):
                try:
                    await smtp.starttls(tls_context=tls_ctx, server_hostname=host)
                except aiosmtplib.SMTPResponseException as err:
                    raise _SessionFailed(f"451 4.7.0 {where} refused STARTTLS: {_reply(err)}") from None
                except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as err:
                    if relay is not None:
                        raise _SessionFailed(f"451 4.7.0 TLS with {where} failed: {err}") from None
                    raise _TlsFailed(f"451 4.7.0 TLS with {where} failed: {err}") from None
                await smtp.ehlo()  # RFC 3207 §4.2: forget what was learnt before TLS
            elif relay is not None and relay.tls == "starttls":
                raise _SessionFailed(f"451 4.7.0 smart host {where} does not offer STARTTLS")
            if relay is not None and relay.username:
                try:
                    await smtp.login(relay.username, relay.password)
                except aiosmtplib.SMTPException as err:
                    raise _SessionFailed(f"451 4.7.0 smart host {where} refused our login: {err}") from None
            outcomes = await _transaction(smtp, where, mail_from, rcpts, message)
        except aiosmtplib.SMTPResponseException as err:
            raise _SessionFailed(f"451 4.4.2 {where}: {_reply(err)}") from None
        except (aiosmtplib.SMTPException, OSError) as err:
            raise _SessionFailed(f"451 4.4.2 {where}: {err or type(err).__name__}") from None
        # Outside the handlers above: whatever settling raises is the caller's, and
        # must never be taken for this host's failure (another host would get the
        # message a second time).
        await settle(outcomes)
        return outcomes
    finally:
        if smtp.is_connected:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()


async def _transaction(
    smtp: aiosmtplib.SMTP, where: str, mail_from: str, rcpts: Sequence[str], message: bytes,
) -> dict[str, Outcome]:
    """MAIL, RCPT per recipient, DATA. Before any RCPT is answered a temporary error
    raises _SessionFailed (next host); from then on every recipient gets an outcome."""
    options: list[str] = []
    encoding = "ascii"
    if _needs_utf8(mail_from, rcpts):
        if not smtp.supports_extension("smtputf8"):
            # RFC 6531 §3.2: no SMTPUTF8 at the server: the message cannot be sent.
            return _all(rcpts, FAILED, f"553 5.6.7 {where} does not support SMTPUTF8 addresses", where)
        options.append("SMTPUTF8")
        encoding = "utf-8"
    if any(b > 0x7F for b in message) and smtp.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")  # RFC 6152 §3
    if smtp.supports_extension("size"):
        options.append(f"SIZE={len(message)}")  # RFC 1870 §6
    try:
        await smtp.mail(mail_from, options=options, encoding=encoding)
    except aiosmtplib.SMTPResponseException as err:
        if 500 <= err.code < 600:
            return _all(rcpts, FAILED, _reply(err), where)
        raise _SessionFailed(f"{_reply(err)} (from {where})") from None
    outcomes: dict[str, Outcome] = {}
    accepted: list[str] = []
    for rcpt in rcpts:
        try:
            await smtp.rcpt(rcpt, encoding=encoding)
            accepted.append(rcpt)
        except aiosmtplib.SMTPResponseException as err:
            status = FAILED if 500 <= err.code < 600 else PENDING
            outcomes[rcpt] = Outcome(status, _reply(err), where)
        except (aiosmtplib.SMTPException, OSError) as err:
            outcomes.update(_all([r for r in rcpts if r not in outcomes], PENDING,
                                 f"451 4.4.2 {where}: {err or type(err).__name__}", where))
            return outcomes
    if not accepted:
        return outcomes
    try:
        response = await smtp.data(message)
        outcomes.update(_all(accepted, DELIVERED, f"{response.code} {response.message}".strip(), where))
    except aiosmtplib.SMTPResponseException as err:
        status = FAILED if 500 <= err.code < 600 else PENDING
        outcomes.update(_all(accepted, status, _reply(err), where))
    except (aiosmtplib.SMTPException, OSError) as err:
        # The message may or may not have been taken: retrying risks a duplicate,
        # which RFC 5321 §6.1 prefers to a loss.
        outcomes.update(_all(accepted, PENDING, f"451 4.4.2 {where}: {err or type(err).__name__}", where))
    return outcomes
