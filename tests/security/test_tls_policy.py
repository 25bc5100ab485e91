"""Issue 10 §5, TLS: no protocol below TLS 1.2 on any TLS listener, and AUTH is never
offered on a plaintext connection that does not come from loopback.

* Every TLS way in (implicit TLS on submissions and imaps, STARTTLS on smtp, submission
  and imap) refuses a client that can only speak TLS 1.0 or 1.1 and serves TLS 1.2 and
  1.3. A control server proves that this machine's OpenSSL can speak the old versions at
  all (with ``@SECLEVEL=0``); where it cannot, the server context's ``minimum_version`` is
  checked instead.
* The daemon's smtp, submission and imap listeners are bound on one end of a veth pair;
  a client in a network namespace of our own, at the other end, sees no AUTH before
  STARTTLS (EHLO without AUTH, ``538 5.7.11``; IMAP LOGINDISABLED and
  ``NO [PRIVACYREQUIRED]``) and logs in after it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import pytest_asyncio

from delivery import replies as R
from mailserver import reload as reload_mod
from tests.conftest import RunningServer
from tests.helpers import HOSTNAME, CertAuthority, unavailable
from tests.security.test_permission_matrix import running_server

PASSWORD = "tls password 2"
ALICE = "alice@example.test"

V = ssl.TLSVersion
OLD_VERSIONS = ("TLSv1", "TLSv1_1")
#: listener -> (protocol, how TLS starts there)
LISTENERS = {
    "submissions": ("smtp", "implicit"),  # RFC 8314
    "imaps": ("imap", "implicit"),
    "smtp": ("smtp", "starttls"),  # RFC 3207
    "submission": ("smtp", "starttls"),
    "imap": ("imap", "starttls"),  # RFC 3501 §6.2.1
}
#: Seconds any single exchange may take before the test fails instead of hanging.
STEP_TIMEOUT = 10.0


def client_context(ca: CertAuthority, version: str) -> ssl.SSLContext:
    """A client that speaks exactly ``version`` (old ones at OpenSSL security level 0,
    where this OpenSSL still offers them)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.ca.configure_trust(ctx)
    with warnings.catch_warnings():  # TLSVersion.TLSv1/TLSv1_1 are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = V[version]
    if version in OLD_VERSIONS:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


@cache
def old_tls_possible(version: str) -> bool:
    """True when this machine's OpenSSL completes a ``version`` handshake with a server
    that allows it (a control, so that "refused" below means the daemon refused)."""
    import trustme

    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server_ctx.minimum_version = V.TLSv1
    server_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client.minimum_version = client.maximum_version = V[version]
        client.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        return False
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=STEP_TIMEOUT) as raw, \
                    client.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.version() == {"TLSv1": "TLSv1", "TLSv1_1": "TLSv1.1"}[version]
        except (ssl.SSLError, OSError):
            return False
        finally:
            thread.join(STEP_TIMEOUT)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority) -> AsyncIterator[RunningServer]:
    """One daemon, every listener on loopback, with alice."""
    async with running_server(tmp_path_factory.mktemp("tls"), test_ca) as srv:
        await srv.accounts.add_user(ALICE, "Alice", PASSWORD)
        yield srv


async def _reply(reader: asyncio.StreamReader) -> bytes:
    """One SMTP reply (all its lines)."""
    out = b""
    while True:
        line = await asyncio.wait_for(reader.readline(), STEP_TIMEOUT)
        out += line
        if not line or line[3:4] != b"-":
            return out


async def _tagged(reader: asyncio.StreamReader, tag: bytes) -> bytes:
    out = b""
    while True:
        line = await asyncio.wait_for(reader.readline(), STEP_TIMEOUT)
        out += line
        if not line or line.startswith(tag + b" "):
            return out


async def tls_session(port: int, protocol: str, how: str, ctx: ssl.SSLContext) -> str:
    """Start TLS the listener's way with ``ctx``, check that the protocol works over it
    (AUTH offered), and return the negotiated version. Raises ssl.SSLError (or a
    connection error) when the handshake is refused."""
    implicit = how == "implicit"
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx if implicit else None, server_hostname=HOSTNAME if implicit else None,
    ), STEP_TIMEOUT)
    try:
        if protocol == "smtp":
            assert (await _reply(reader)).startswith(b"220")
            if not implicit:
                writer.write(b"EHLO client.example.net\r\n")
                assert b"STARTTLS" in await _reply(reader)
                writer.write(b"STARTTLS\r\n")
                assert (await _reply(reader)).startswith(b"220")
                await asyncio.wait_for(writer.start_tls(ctx, server_hostname=HOSTNAME), STEP_TIMEOUT)
            writer.write(b"EHLO client.example.net\r\n")
            assert b"AUTH PLAIN LOGIN" in await _reply(reader)
        else:
            assert (await asyncio.wait_for(reader.readline(), STEP_TIMEOUT)).startswith(b"* OK")
            if not implicit:
                writer.write(b"s1 STARTTLS\r\n")
                assert (await _tagged(reader, b"s1")).startswith(b"s1 OK")
                await asyncio.wait_for(writer.start_tls(ctx, server_hostname=HOSTNAME), STEP_TIMEOUT)
            writer.write(b"c1 CAPABILITY\r\n")
            answer = await _tagged(reader, b"c1")
            assert b"AUTH=PLAIN" in answer and b"c1 OK" in answer, answer
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object is not None
        return str(ssl_object.version())
    finally:
        writer.close()


def _cases() -> list[object]:
    return [pytest.param(listener, version, id=f"{listener}-{version}")
            for listener in LISTENERS for version in ("TLSv1", "TLSv1_1", "TLSv1_2", "TLSv1_3")]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("listener", "version"), _cases())
async def test_tls_version_policy(server: RunningServer, test_ca: CertAuthority, listener: str, version: str) -> None:
    """TLS 1.0 and 1.1 handshakes are refused on every TLS listener; 1.2 and 1.3 are served."""
    port = server.port(listener)
    ctx = client_context(test_ca, version)
    if version in OLD_VERSIONS:
        if not old_tls_possible(version):
            # This OpenSSL cannot speak it at all: check the server's own floor instead.
            assert server.app.ssl_context.minimum_version >= V.TLSv1_2
            return
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await tls_session(port, *LISTENERS[listener], ctx)
        return
    negotiated = await tls_session(port, *LISTENERS[listener], ctx)
    assert negotiated == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version]


@pytest.mark.asyncio(loop_scope="module")
async def test_server_context_floor_is_tls12(server: RunningServer) -> None:
    """The server context states TLS 1.2 as its minimum (not left to OpenSSL's defaults)."""
    assert server.app.ssl_context.minimum_version == V.TLSv1_2


@pytest.mark.asyncio(loop_scope="module")
async def test_tls11_still_refused_after_certificate_reload(server: RunningServer, test_ca: CertAuthority) -> None:
    """A SIGHUP reload (new context behind the SNI callback) keeps the TLS 1.2 floor."""
    assert reload_mod.reload(server.app).applied
    if not old_tls_possible("TLSv1_1"):
        unavailable("this OpenSSL cannot speak TLS 1.1 even at security level 0")
    for listener in ("imaps", "submission"):
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await tls_session(server.port(listener), *LISTENERS[listener], client_context(test_ca, "TLSv1_1"))
    ctx = client_context(test_ca, "TLSv1_3")
    assert await tls_session(server.port("submissions"), *LISTENERS["submissions"], ctx) == "TLSv1.3"


# ----------------------------------------------------------------------------- AUTH off loopback


@dataclass(frozen=True, slots=True)
class VethPair:
    namespace: str
    host_address: str  # our end, in the root namespace: the daemon binds here
    client_address: str  # the namespace's end


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=STEP_TIMEOUT)


@contextmanager
def veth_namespace() -> Iterator[VethPair]:
    """A network namespace joined to the root namespace by a veth pair on a random
    10.210.x.y/30 (names and subnet unique per run); removed afterwards."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        unavailable("network namespaces need root and iproute2 (ip)")
    tag = f"{os.getpid() % 100000}{random.randrange(16 ** 3):03x}"
    namespace, host_if, ns_if = f"mstls{tag}", f"mt{tag}a", f"mt{tag}b"
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, timeout=STEP_TIMEOUT).stdout
    while True:
        third, fourth = random.randrange(256), random.randrange(0, 256, 4)
        if f"10.210.{third}." not in used:
            break
    host_address, client_address = f"10.210.{third}.{fourth + 1}", f"10.210.{third}.{fourth + 2}"
    try:
        _ip("netns", "add", namespace)
    except (subprocess.CalledProcessError, OSError) as err:
        unavailable(f"cannot create a network namespace: {err}")
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", namespace)
        _ip("addr", "add", f"{host_address}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", namespace, "ip", "addr", "add", f"{client_address}/30", "dev", ns_if)
        _ip("netns", "exec", namespace, "ip", "link", "set", ns_if, "up")
        yield VethPair(namespace, host_address, client_address)
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=STEP_TIMEOUT)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=STEP_TIMEOUT)


#: Runs inside the namespace: talks to the three plaintext listeners before and after
#: STARTTLS and prints what the server said, as JSON.
CLIENT = r'''
import base64, json, socket, ssl, sys
host, smtp_port, submission_port, imap_port, ca_file, user, password = sys.argv[1:8]
ctx = ssl.create_default_context(cafile=ca_file)
plain = base64.b64encode(f"\0{user}\0{password}".encode()).decode()

class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.file = self.sock.makefile("rb")
        self.peer = self.sock.getsockname()[0]
    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
    def line(self):
        return self.file.readline().decode().rstrip("\r\n")
    def reply(self):
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return lines
    def tagged(self, tag):
        lines = [self.line()]
        while not lines[-1].startswith(tag + " "):
            lines.append(self.line())
        return lines
    def starttls(self):
        self.file = None
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mail.example.test")
        self.file = self.sock.makefile("rb")

out = {}
for name, port in (("smtp", smtp_port), ("submission", submission_port)):
    c = Conn(port)
    r = {"client": c.peer, "greeting": c.reply()}
    c.send("EHLO client.example.net"); r["ehlo"] = c.reply()
    c.send("AUTH PLAIN " + plain); r["auth"] = c.reply()
    c.send("AUTH LOGIN"); r["auth_login"] = c.reply()
    c.send("STARTTLS"); r["starttls"] = c.reply()
    c.starttls(); r["tls"] = c.sock.version()
    c.send("EHLO client.example.net"); r["ehlo_tls"] = c.reply()
    c.send("AUTH PLAIN " + plain); r["auth_tls"] = c.reply()
    out[name] = r
c = Conn(imap_port)
r = {"client": c.peer, "greeting": c.line()}
c.send("a1 CAPABILITY"); r["capability"] = c.tagged("a1")
c.send(f'a2 LOGIN "{user}" "{password}"'); r["login"] = c.tagged("a2")
c.send("a3 AUTHENTICATE PLAIN " + plain); r["authenticate"] = c.tagged("a3")
c.send("a4 STARTTLS"); r["starttls"] = c.tagged("a4")
c.starttls(); r["tls"] = c.sock.version()
c.send("a5 CAPABILITY"); r["capability_tls"] = c.tagged("a5")
c.send(f'a6 LOGIN "{user}" "{password}"'); r["login_tls"] = c.tagged("a6")
out["imap"] = r
print(json.dumps(out))
'''


@pytest.mark.asyncio(loop_scope="module")
async def test_no_auth_before_starttls_off_loopback(tmp_path: Path, test_ca: CertAuthority) -> None:
    """From a non-loopback address (a namespace behind a veth pair): EHLO lists no AUTH and
    AUTH gets 538 5.7.11 before STARTTLS; IMAP says LOGINDISABLED and LOGIN/AUTHENTICATE get
    NO [PRIVACYREQUIRED]; after STARTTLS both offer AUTH and log alice in."""
    with veth_namespace() as veth:
        bound = {f"listeners.{name}.host": veth.host_address for name in ("smtp", "submission", "imap")}
        async with running_server(tmp_path, test_ca, **{k.replace(".", "__"): v for k, v in bound.items()}) as srv:
            await srv.accounts.add_user(ALICE, "Alice", PASSWORD)
            assert srv.app.config["auth.allow_plaintext_on_loopback"]  # only the address decides
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", veth.namespace, sys.executable, "-c", CLIENT,
                veth.host_address, str(srv.port("smtp")), str(srv.port("submission")), str(srv.port("imap")),
                str(test_ca.ca_file), ALICE, PASSWORD,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, stderr.decode()
    seen = json.loads(stdout)
    encryption_required = R.R538_5_7_11_ENCRYPTION_REQUIRED.line()
    for name in ("smtp", "submission"):
        r = seen[name]
        assert r["client"] == veth.client_address  # the traffic went over the veth pair
        ehlo = [line[4:] for line in r["ehlo"]]
        assert "STARTTLS" in ehlo and not any(e.upper().startswith("AUTH") for e in ehlo), r
        assert r["auth"] == [encryption_required] and r["auth_login"] == [encryption_required], r
        assert r["starttls"][0].startswith("220") and r["tls"] in ("TLSv1.2", "TLSv1.3"), r
        assert "AUTH PLAIN LOGIN" in [line[4:] for line in r["ehlo_tls"]], r
        assert r["auth_tls"] == [R.R235_2_7_0_AUTH_OK.line()], r
    r = seen["imap"]
    assert r["client"] == veth.client_address
    for capabilities in (r["greeting"], r["capability"][0]):
        caps = capabilities.replace("[", " ").replace("]", " ").split()
        assert "LOGINDISABLED" in caps and "STARTTLS" in caps and "AUTH=PLAIN" not in caps, r
    assert r["login"][-1].startswith("a2 NO [PRIVACYREQUIRED]"), r
    assert r["authenticate"][-1].startswith("a3 NO [PRIVACYREQUIRED]"), r
    assert r["starttls"][-1].startswith("a4 OK") and r["tls"] in ("TLSv1.2", "TLSv1.3"), r
    caps = r["capability_tls"][0].split()
    assert "AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps and "STARTTLS" not in caps, r
    assert r["login_tls"][-1].startswith("a6 OK"), r
