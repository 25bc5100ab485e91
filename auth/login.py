"""Authenticating a login name and password into a :class:`Principal`.

Login names (mission-semantics §2.3):

* ``alice@example.test``: alice, acting as herself;
* ``alice@example.test\\hr@example.test`` or ``alice@example.test\\hr`` (a bare local part
  takes alice's domain): alice proves her password and acts as the shared mailbox or
  room ``hr``, which needs Full Access. A backslash cannot appear unquoted in a local
  part (RFC 5322 §3.2.3 atext), so the form is unambiguous;
* SASL PLAIN authorization identity (RFC 4616 §2): ``authzid="hr@example.test"`` with
  authcid alice means the same; an authzid equal to alice herself means no delegation.

Only a licensed, enabled user authenticates, by primary address (aliases do not log in).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from auth.addresses import InvalidAddress, domain_of, normalize_address
from auth.errors import AuthFailed, AuthThrottled
from auth.passwords import PasswordHasher
from auth.throttle import FailureThrottle
from storage.errors import StorageError
from storage.interfaces import Directory
from storage.types import Account, AccountKind, Right

log = logging.getLogger(__name__)

#: Separator between the user and the mailbox to open in a delegate login name.
DELEGATE_SEPARATOR = "\\"

#: Longest login name considered; anything longer is a failure without a lookup. Two
#: addresses of at most 254 characters (RFC 5321 §4.5.3.1.3) and the separator.
MAX_LOGIN_NAME = 2 * 254 + 1

#: Kinds of account a delegate login may act as.
DELEGATE_TARGET_KINDS = frozenset({AccountKind.SHARED, AccountKind.ROOM})


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """Delays and limits for authentication; the daemon fills it from config ``auth.*``.

    ``failure_delay``: seconds from the start of a failed attempt to its answer
    (``auth.failure_delay_seconds``); ``max_failures`` within ``failure_window`` seconds
    from one IP or against one account name lock it for ``lockout`` seconds
    (``auth.max_failures``, ``auth.failure_window_seconds``, ``auth.lockout_seconds``).
    """

    failure_delay: float = 1.0
    max_failures: int = 10
    failure_window: float = 300.0
    lockout: float = 300.0


@dataclass(frozen=True, slots=True)
class Principal:
    """Who authenticated and what the session acts as.

    ``user`` proved the password; ``mailbox`` is the mailbox the session opens: the
    user itself, or a shared mailbox or room the user holds Full Access on.
    """

    user: Account
    mailbox: Account

    @property
    def delegated(self) -> bool:
        """True when the session acts as a mailbox other than the user's own."""
        return self.user.id != self.mailbox.id


@dataclass(frozen=True, slots=True)
class LoginName:
    """A parsed login: the user's address and the target address (None: no delegation)."""

    user: str
    target: str | None


def parse_login(username: str, authzid: str | None = None) -> LoginName:
    """Parse a login name and optional SASL authorization identity.

    Raises InvalidAddress when either is malformed, or when both name a target and they
    differ.
    """
    if len(username) > MAX_LOGIN_NAME:
        raise InvalidAddress("the login name is too long")
    user_text, sep, target_text = username.partition(DELEGATE_SEPARATOR)
    user = normalize_address(user_text)
    target = _target(target_text, user) if sep else None
    if authzid:
        requested = _target(authzid, user)
        if target is not None and requested != target:
            raise InvalidAddress("the login name and the authorization identity name different mailboxes")
        target = requested
    if target == user:
        target = None
    return LoginName(user, target)


def _target(text: str, user: str) -> str:
    """Normalise a delegation target; a bare local part takes the user's domain."""
    if "@" not in text:
        text = f"{text}@{domain_of(user)}"
    return normalize_address(text)


def may_log_in(account: Account) -> bool:
    """True when ``account`` may authenticate now: a user, licensed and enabled.

    Shared mailboxes, rooms and lists never do. Whoever remembers a successful login
    (the DAV login cache) asks this again on every use, so that unlicensing or disabling
    a user takes effect at once.
    """
    return account.kind is AccountKind.USER and account.enabled and account.licensed


class Authenticator:
    """Checks login names and passwords, uniformly slow on failure, with throttling.

    One instance per daemon (the throttle counts live in it). ``clock`` and ``sleep``
    are injectable so tests can check the delay without waiting.
    """

    def __init__(
        self,
        directory: Directory,
        hasher: PasswordHasher,
        policy: AuthPolicy,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._directory = directory
        self._hasher = hasher
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._throttle = FailureThrottle(
            policy.max_failures, policy.failure_window, policy.lockout, clock
        )

    async def authenticate(
        self,
        username: str,
        password: str,
        *,
        authzid: str | None = None,
        client_ip: str,
    ) -> Principal:
        """Authenticate ``username`` with ``password``; return who and as what.

        Raises:
            AuthFailed: for every kind of failure (unknown name, shared/room/list
                address, unlicensed or disabled user, wrong password, delegation not
                allowed), always ``policy.failure_delay`` seconds after the call began.
            AuthThrottled: the client IP or the account name has too many recent
                failures; the password is not checked. Raised after the same delay.
            storage.errors.StorageError (e.g. Unavailable): the directory could not be
                read; the caller answers with a temporary failure.
        """
        start = self._clock()
        name_key = ("name", _name_key(username))
        ip_key = ("ip", client_ip)
        retry_after = self._throttle.locked_for(ip_key, name_key)
        if retry_after > 0:
            log.info("auth throttled ip=%s name=%s retry_after=%.0fs", client_ip, name_key[1], retry_after)
            await self._delay(start)
            raise AuthThrottled(retry_after)
        principal = await self._check(username, password, authzid)
        if principal is None:
            self._throttle.record_failure(ip_key, name_key)
            await self._delay(start)
            raise AuthFailed()
        self._throttle.clear(name_key)
        return principal

    async def _check(self, username: str, password: str, authzid: str | None) -> Principal | None:
        """The principal, or None for any failure (the reason is logged, never returned)."""
        try:
            login = parse_login(username, authzid)
        except InvalidAddress as err:
            log.info("auth failed: bad login name (%s)", err)
            await self._hasher.dummy_verify()
            return None
        user = await self._directory.get_account(login.user)
        if user is None or not may_log_in(user):
            reason = (
                "unknown" if user is None
                else f"not a user ({user.kind})" if user.kind is not AccountKind.USER
                else "disabled" if not user.enabled
                else "unlicensed"
            )
            log.info("auth failed for %s: %s", login.user, reason)
            await self._hasher.dummy_verify()
            return None
        result = await self._hasher.verify(password, user.password_hash)
        if not result.ok:
            log.info("auth failed for %s: wrong password", login.user)
            return None
        mailbox = user
        if login.target is not None:
            target = await self._directory.resolve(login.target)
            if (
                target is None
                or target.kind not in DELEGATE_TARGET_KINDS
                or not target.enabled
                or Right.FULL_ACCESS not in await self._directory.rights(target.address, user.address)
            ):
                log.info("auth failed for %s: may not open %s", login.user, login.target)
                return None
            mailbox = target
        if result.new_hash is not None:
            try:
                await self._directory.set_password_hash(user.address, result.new_hash)
                log.info("password hash of %s upgraded to the current policy", user.address)
            except StorageError as err:  # the login stands; the upgrade waits for the next one
                log.warning("could not store the upgraded hash of %s: %s", user.address, err)
        return Principal(user, mailbox)

    async def _delay(self, start: float) -> None:
        """Sleep until ``start + failure_delay`` so every failure takes the same time."""
        remaining = start + self._policy.failure_delay - self._clock()
        if remaining > 0:
            await self._sleep(remaining)


def _name_key(username: str) -> str:
    """The account name an attempt counts against: the user part, normalised if it can be."""
    user_text = username.partition(DELEGATE_SEPARATOR)[0][:MAX_LOGIN_NAME]
    try:
        return normalize_address(user_text)
    except InvalidAddress:
        return user_text.strip().lower()
