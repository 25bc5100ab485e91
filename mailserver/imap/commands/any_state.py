"""CAPABILITY, NOOP, LOGOUT, ID, STARTTLS, LOGIN, AUTHENTICATE, ENABLE, NAMESPACE."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from auth.errors import AuthError
from mailserver.imap import parser as p
from mailserver.imap.namespace import SEPARATOR, SHARED_PREFIX
from mailserver.imap.parser import encode
from mailserver.imap.responses import LIMIT, PRIVACYREQUIRED, auth_failed, bad, no
from mailserver.imap.session import Closed

if TYPE_CHECKING:
    from mailserver.imap.session import Session

#: RFC 2971 §3.3: what we tell clients about ourselves.
SERVER_ID = (("name", "mailserver"), ("vendor", "mailserver"))


async def capability(s: Session, cmd: p.Capability) -> str:
    """RFC 3501 §6.1.1."""
    s.send(b"* CAPABILITY " + " ".join(s.capabilities()).encode() + b"\r\n")
    return "CAPABILITY completed"


async def noop(s: Session, cmd: p.Noop) -> str:
    """RFC 3501 §6.1.2: updates are sent by the session after every command."""
    return "NOOP completed"


async def logout(s: Session, cmd: p.Logout) -> str:
    """RFC 3501 §6.1.3: BYE, then the tagged OK, then close."""
    s.send(b"* BYE Logging out\r\n")
    s.send(f"{cmd.tag} OK LOGOUT completed\r\n".encode())
    await s.flush(True)
    raise Closed()


async def id_(s: Session, cmd: p.Id) -> str:
    """RFC 2971."""
    fields = b" ".join(encode.string(k) + b" " + encode.string(v) for k, v in SERVER_ID)
    s.send(b"* ID (" + fields + b")\r\n")
    return "ID completed"


async def starttls(s: Session, cmd: p.StartTLS) -> str | None:
    """RFC 3501 §6.2.1."""
    if not s.starttls_offered or s.tls:
        raise bad("TLS is already active" if s.tls else "STARTTLS not available here")
    s.send(f"{cmd.tag} OK Begin TLS negotiation now\r\n".encode())
    await s.start_tls()
    return None  # the tagged OK was sent before the handshake


async def _login(s: Session, username: str, password: str, authzid: str | None) -> str:
    if not s.plaintext_ok:
        raise no("Log in over TLS (STARTTLS or port 993)", PRIVACYREQUIRED)  # RFC 3501 §6.2.3
    try:
        principal = await s.app.authenticator.authenticate(
            username, password, authzid=authzid, client_ip=s.client_ip
        )
    except AuthError:
        raise auth_failed() from None
    if not s.registry.add_user(s, principal.user.id):
        raise no("Too many connections for this user", LIMIT)
    s.login(principal)
    return "[CAPABILITY " + " ".join(s.capabilities()) + "] Logged in"


async def login(s: Session, cmd: p.Login) -> str:
    """RFC 3501 §6.2.3; ``user\\shared`` opens a shared mailbox (mission-semantics §2.3)."""
    return await _login(s, cmd.userid, cmd.password, None)


async def authenticate(s: Session, cmd: p.Authenticate) -> str:
    """RFC 3501 §6.2.2 with SASL-IR (RFC 4959) and PLAIN (RFC 4616, authzid honoured)."""
    if cmd.mechanism != "PLAIN":
        raise no("Unsupported authentication mechanism")
    if not s.plaintext_ok:
        raise no("Log in over TLS (STARTTLS or port 993)", PRIVACYREQUIRED)
    response = cmd.initial_response
    if response is None:
        s.send(b"+ \r\n")
        await s.flush(True)
        line = await s.read_raw_line()
        if line.strip() == b"*":
            raise bad("Authentication cancelled")  # RFC 3501 §6.2.2
        try:
            response = base64.b64decode(line.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise bad("Invalid base64") from None
    parts = response.split(b"\0")
    if len(parts) != 3:
        raise auth_failed()
    try:
        authzid, authcid, password = (x.decode("utf-8") for x in parts)
    except UnicodeDecodeError:
        raise auth_failed() from None
    return await _login(s, authcid, password, authzid or None)


async def enable(s: Session, cmd: p.Enable) -> str:
    """RFC 5161: only CONDSTORE is an extension we can enable."""
    enabled = []
    if "CONDSTORE" in cmd.capabilities and not s.condstore:
        s.enable_condstore()
        enabled.append("CONDSTORE")
    s.send(("* ENABLED " + " ".join(enabled)).rstrip().encode() + b"\r\n")
    return "ENABLE completed"


async def namespace(s: Session, cmd: p.Namespace) -> str:
    """RFC 2342: personal "" and, outside delegate sessions, other users "Shared/"."""
    assert s.namespace is not None
    sep = encode.quoted(SEPARATOR.encode())
    personal = b'(("" ' + sep + b"))"
    other = b'(("' + SHARED_PREFIX.encode() + sep[1:-1] + b'" ' + sep + b"))" if s.namespace.offers_shared else b"NIL"
    s.send(b"* NAMESPACE " + personal + b" " + other + b" NIL\r\n")
    return "NAMESPACE completed"
