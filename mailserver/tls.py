"""TLS: the server context, and a self-signed certificate when the config names none."""

from __future__ import annotations

import asyncio.sslproto
import datetime as dt
import ipaddress
import os
import ssl
from pathlib import Path

from mailserver.config import Config

#: A generated certificate is valid this long; regenerate by deleting data/tls/.
SELF_SIGNED_DAYS = 825  # the longest validity Apple clients accept for server certificates


class TLSError(Exception):
    """Certificate or key cannot be used; str() is one operator-readable line."""


def cert_paths(config: Config) -> tuple[Path, Path]:
    """The certificate and key files in use: configured ones, or data_dir/tls/."""
    cert, key = config["tls.cert_file"], config["tls.key_file"]
    if bool(cert) != bool(key):
        raise TLSError(f"{config.path}: tls.cert_file and tls.key_file must be given together")
    if cert:
        return Path(cert), Path(key)
    tls_dir = config.data_dir / "tls"
    return tls_dir / "cert.pem", tls_dir / "key.pem"


def ensure_certificate(config: Config) -> tuple[Path, Path, bool]:
    """Return (cert, key, generated): create a self-signed pair for server.hostname when
    no certificate is configured and none was generated before."""
    cert, key = cert_paths(config)
    if config["tls.cert_file"] or (cert.exists() and key.exists()):
        return cert, key, False
    write_self_signed(config.hostname, cert, key)
    return cert, key, True


def write_self_signed(hostname: str, cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost")]
    sans += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


#: Octets asyncio's TLS transport reads from a socket at once. asyncio keeps a buffer of
#: that size (SSLProtocol.max_size, 256 KiB by default, zero-filled) for every TLS
#: connection for its whole life: an idle IMAPS connection cost 286 KiB of daemon RSS
#: (bench/abuse/idle_connections.py --tls). A TLS record carries at most 16 KiB of
#: plaintext (RFC 8446 §5.1), so bigger reads gain nothing measurable (a 20 MB APPEND
#: over IMAPS took the same time); with 16 KiB an idle IMAPS connection costs 46 KiB.
TLS_READ_BUFFER = 16 * 1024


def limit_tls_read_buffer() -> None:
    """Make every asyncio TLS transport of this process (listeners, STARTTLS, outbound
    clients) read TLS_READ_BUFFER octets at a time; see there."""
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context. Raises TLSError naming the file on failure.

    Also applies :func:`limit_tls_read_buffer`: whoever serves TLS needs it."""
    limit_tls_read_buffer()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in (cert, key):
        if not path.is_file():  # ssl's FileNotFoundError does not name the file
            raise TLSError(f"TLS file not found: {path}")
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise TLSError(f"cannot load TLS certificate {cert} / key {key}: {e}") from None
    return ctx
