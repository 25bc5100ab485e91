"""Errors raised by the auth package.

None of them carries a protocol reply: SMTP, IMAP and the CLI each turn them into their
own answer (``535 5.7.8``, ``NO [AUTHENTICATIONFAILED]``, one line on stderr).
"""

from __future__ import annotations


class AccountError(Exception):
    """An operator action was refused. ``str(err)`` is one line saying why."""


class AuthError(Exception):
    """Base of the two login outcomes that are not a success."""


class AuthFailed(AuthError):
    """Authentication failed.

    Deliberately uniform: raised with the same text, after the same delay, whether the
    account is unknown, not a user, unlicensed, disabled, or the password is wrong, or a
    delegation target may not be opened. The reason is never told to the client.
    """

    def __init__(self) -> None:
        super().__init__("authentication failed")


class AuthThrottled(AuthError):
    """Too many recent failures from this client address or against this account name.

    The password was not checked. ``retry_after`` is the number of seconds until the
    lockout ends (for logs; clients should not be told).
    """

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many failed authentication attempts")
        self.retry_after = retry_after
