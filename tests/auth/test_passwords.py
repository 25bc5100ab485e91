"""Password hashing policy: argon2 by default, imported hashes verify and get upgraded."""

from __future__ import annotations

import re

import pytest
from passlib.hash import argon2, bcrypt, sha512_crypt

from auth.passwords import MAX_PASSWORD_LENGTH, PasswordHasher


async def test_production_default_is_real_argon2() -> None:
    """Without fast=True new hashes are argon2id with passlib's production cost (64 MiB, t>=2)."""
    hasher = PasswordHasher()
    assert hasher.default_scheme == "argon2"
    h = await hasher.hash("correct horse")
    m = re.match(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$", h)
    assert m is not None, h
    assert int(m.group(1)) >= 65536 and int(m.group(2)) >= 2


async def test_fast_hash_verifies_and_needs_no_update(hasher: PasswordHasher) -> None:
    """A hash made under the current policy verifies and returns no replacement."""
    h = await hasher.hash("s3cret")
    assert h.startswith("$argon2id$")
    result = await hasher.verify("s3cret", h)
    assert result.ok and result.new_hash is None


async def test_wrong_password_fails(hasher: PasswordHasher) -> None:
    """A wrong password gives ok=False and never a new hash."""
    h = await hasher.hash("s3cret")
    result = await hasher.verify("S3cret", h)
    assert not result.ok and result.new_hash is None


@pytest.mark.parametrize(
    "imported",
    [
        bcrypt.using(rounds=4).hash("imported pw"),
        sha512_crypt.using(rounds=1000).hash("imported pw"),
        argon2.using(rounds=2, memory_cost=16, parallelism=1).hash("imported pw"),
    ],
    ids=["bcrypt", "sha512_crypt", "argon2-other-params"],
)
async def test_imported_hash_verifies_and_is_upgraded(hasher: PasswordHasher, imported: str) -> None:
    """bcrypt, sha512_crypt and differently-tuned argon2 hashes verify and come back with a current argon2 hash."""
    assert hasher.needs_update(imported)
    result = await hasher.verify("imported pw", imported)
    assert result.ok
    assert result.new_hash is not None and result.new_hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert not hasher.needs_update(result.new_hash)
    again = await hasher.verify("imported pw", result.new_hash)
    assert again.ok and again.new_hash is None


async def test_imported_hash_wrong_password_gets_no_upgrade(hasher: PasswordHasher) -> None:
    """A failed check of an old-scheme hash does not hand out a new hash."""
    result = await hasher.verify("wrong", bcrypt.using(rounds=4).hash("right"))
    assert not result.ok and result.new_hash is None


@pytest.mark.parametrize("stored", [None, "", "garbage", "$argon2id$v=19$m=8,t=1,p=1$broken"])
async def test_missing_or_malformed_hash_fails_without_raising(hasher: PasswordHasher, stored: str | None) -> None:
    """No hash, an unknown format or a corrupt hash is a plain failure, not an exception."""
    result = await hasher.verify("anything", stored)
    assert not result.ok and result.new_hash is None


async def test_password_length_limits(hasher: PasswordHasher) -> None:
    """Empty and over-long passwords are refused for hashing; an over-long one never verifies."""
    with pytest.raises(ValueError, match="empty"):
        await hasher.hash("")
    with pytest.raises(ValueError, match="longer than"):
        await hasher.hash("x" * (MAX_PASSWORD_LENGTH + 1))
    h = await hasher.hash("x" * MAX_PASSWORD_LENGTH)
    assert (await hasher.verify("x" * MAX_PASSWORD_LENGTH, h)).ok
    assert not (await hasher.verify("x" * (MAX_PASSWORD_LENGTH + 1), h)).ok


async def test_dummy_verify_runs_a_real_verification(hasher: PasswordHasher) -> None:
    """dummy_verify works before any hash was made and prepares its own dummy hash."""
    fresh = PasswordHasher(fast=True)
    await fresh.dummy_verify()
    assert fresh._dummy_hash is not None and fresh._dummy_hash.startswith("$argon2id$")
