"""DKIM keys and signing (RFC 6376) with dkimpy.

Keys live in ``<key_dir>/<domain>/<selector>.pem`` (PKCS#1 PEM, mode 0600). Outbound
mail is signed for the domain of its From: address when a key for that domain and the
configured selector exists; it is signed at send time, so the signature covers the
message exactly as queued (after the Send on Behalf Sender: header was set).
"""

from __future__ import annotations

import base64
import logging
import os
from email.parser import BytesHeaderParser
from email.policy import SMTP
from email.utils import getaddresses
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger(__name__)

#: RSA key size: RFC 8301 §3.2 requires at least 1024 and recommends 2048; 2048 keeps
#: the TXT record within what every DNS provider accepts.
KEY_BITS = 2048

#: Longest character-string in a TXT record (RFC 1035 §3.3.14).
TXT_CHUNK = 255


class DkimError(Exception):
    """A key that cannot be created or used; str() is one line."""


def key_path(key_dir: Path, domain: str, selector: str) -> Path:
    return key_dir / domain.lower() / f"{selector}.pem"


def _check_label(value: str, what: str) -> None:
    if not value or "/" in value or value.startswith(".") or any(c.isspace() for c in value):
        raise DkimError(f"invalid {what} {value!r}")


def generate_key(key_dir: Path, domain: str, selector: str) -> Path:
    """Create a new RSA key for ``domain``/``selector``. Raises DkimError when one exists
    (replacing a published key would break verification of mail in transit)."""
    _check_label(domain, "domain")
    _check_label(selector, "selector")
    path = key_path(key_dir, domain, selector)
    if path.exists():
        raise DkimError(f"a DKIM key for {domain} selector {selector} already exists: {path}")
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    except OSError as err:
        raise DkimError(f"cannot write DKIM key {path}: {err.strerror or err}") from None
    return path


def public_key_b64(key_file: Path) -> str:
    """The base64 SubjectPublicKeyInfo of the key, for the p= tag (RFC 6376 §3.6.1)."""
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError) as err:
        raise DkimError(f"cannot read DKIM key {key_file}: {err}") from None
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def txt_record(key_file: Path, domain: str, selector: str) -> str:
    """The zone-file line to publish: ``S._domainkey.D. IN TXT "v=DKIM1; k=rsa; p=..."``
    with the value split into 255-character strings."""
    value = f"v=DKIM1; k=rsa; p={public_key_b64(key_file)}"
    chunks = " ".join(f'"{value[i:i + TXT_CHUNK]}"' for i in range(0, len(value), TXT_CHUNK))
    return f"{selector}._domainkey.{domain.lower()}. IN TXT ( {chunks} )"


def from_domain(message: bytes) -> str | None:
    """The domain of the single From: address, lower-cased, or None."""
    headers = BytesHeaderParser(policy=SMTP).parsebytes(message, headersonly=True)
    values = headers.get_all("From") or []
    addresses = [a for _, a in getaddresses([str(v) for v in values]) if a]
    if len(addresses) != 1 or "@" not in addresses[0]:
        return None
    return addresses[0].rpartition("@")[2].lower()


class DkimSigner:
    """Signs for every domain that has a key under ``key_dir`` with ``selector``."""

    def __init__(self, key_dir: Path, selector: str) -> None:
        self._dir = key_dir
        self._selector = selector
        self._keys: dict[str, tuple[float, bytes]] = {}

    def _key(self, domain: str) -> bytes | None:
        path = key_path(self._dir, domain, self._selector)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None
        cached = self._keys.get(domain)
        if cached and cached[0] == mtime:
            return cached[1]
        data = path.read_bytes()
        self._keys[domain] = (mtime, data)
        return data

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature field prepended, or unchanged when its
        From: domain has no key. CPU-bound: call it off the event loop."""
        domain = from_domain(message)
        if domain is None:
            return message
        key = self._key(domain)
        if key is None:
            return message
        try:
            # RFC 6376 §3.4: relaxed/relaxed survives the header refolding relays do.
            field = dkim.sign(
                message, self._selector.encode(), domain.encode(), key,
                canonicalize=(b"relaxed", b"relaxed"),
            )
        except dkim.DKIMException as err:
            log.warning("DKIM signing for %s failed: %s", domain, err)
            return message
        return field + message
