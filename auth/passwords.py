"""Password hashing through passlib's CryptContext, off the event loop.

Policy: new hashes are argon2 (argon2id, passlib's defaults unless ``fast=True``);
bcrypt and sha512_crypt hashes imported from other systems still verify, and a
successful verification of any hash that does not match the current policy (other
scheme, or other argon2 parameters) returns a replacement hash to store.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from passlib.context import CryptContext

#: Schemes accepted for verification; the first is used for new hashes.
SCHEMES = ("argon2", "bcrypt", "sha512_crypt")

#: Longest password accepted, in characters. Real passphrases are far shorter; the cap
#: keeps a client from making us hash megabytes per attempt.
MAX_PASSWORD_LENGTH = 1024

#: Hashes computed at the same time. Default argon2 takes 64 MiB per hash, so this bounds
#: memory under a burst of logins (and leaves the default executor's other threads free).
MAX_CONCURRENT_HASHES = 4

# Cheap argon2 parameters for tests only: 1 pass over 8 KiB, one lane (the minimum
# argon2 accepts). Never use in production.
_FAST_ARGON2 = {"argon2__rounds": 1, "argon2__memory_cost": 8, "argon2__parallelism": 1}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of :meth:`PasswordHasher.verify`.

    ``new_hash`` is set only when ``ok`` and the stored hash should be replaced (the
    policy changed since it was made); the caller stores it.
    """

    ok: bool
    new_hash: str | None = None


class PasswordHasher:
    """Hash and verify passwords without blocking the event loop.

    ``fast=True`` selects argon2 parameters cheap enough for test suites; the default is
    argon2 with passlib's (production) defaults.
    """

    def __init__(self, *, fast: bool = False) -> None:
        settings: dict[str, object] = dict(_FAST_ARGON2) if fast else {}
        self._context = CryptContext(
            schemes=list(SCHEMES),
            default=SCHEMES[0],
            deprecated=list(SCHEMES[1:]),
            **settings,
        )
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_HASHES)
        self._dummy_hash: str | None = None

    @property
    def default_scheme(self) -> str:
        """The scheme new hashes use (``"argon2"``)."""
        return str(self._context.default_scheme())

    async def hash(self, password: str) -> str:
        """Return a new hash of ``password`` under the current policy.

        Raises ValueError when the password is empty or longer than MAX_PASSWORD_LENGTH.
        """
        if not password:
            raise ValueError("the password is empty")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise ValueError(f"the password is longer than {MAX_PASSWORD_LENGTH} characters")
        async with self._limit:
            return await asyncio.to_thread(self._context.hash, password)

    async def verify(self, password: str, stored_hash: str | None) -> VerifyResult:
        """Check ``password`` against ``stored_hash``.

        Never raises for bad input: an unknown or malformed hash, a missing hash, or an
        over-long password give ``ok=False`` after about the same work as a real check.
        """
        if stored_hash is None or self._context.identify(stored_hash) is None:
            await self.dummy_verify()
            return VerifyResult(False)
        if len(password) > MAX_PASSWORD_LENGTH:
            await self.dummy_verify()
            return VerifyResult(False)
        async with self._limit:
            try:
                ok, new_hash = await asyncio.to_thread(
                    self._context.verify_and_update, password, stored_hash
                )
            except ValueError:  # malformed hash of a known scheme
                return VerifyResult(False)
        return VerifyResult(bool(ok), new_hash if ok else None)

    def needs_update(self, stored_hash: str) -> bool:
        """True when ``stored_hash`` is not what the current policy would produce."""
        return bool(self._context.needs_update(stored_hash))

    async def dummy_verify(self) -> None:
        """Spend the time of one real verification, for accounts that have no hash.

        Used so that "no such user" costs what "wrong password" costs.
        """
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        async with self._limit:
            await asyncio.to_thread(
                self._context.verify, secrets.token_urlsafe(16), self._dummy_hash
            )
