"""The SMTP protocol: a thin subclass of aiosmtpd's :class:`~aiosmtpd.smtp.SMTP`.

What it changes in aiosmtpd, and why:

* TLS state: an implicit-TLS connection (RFC 8314) counts as encrypted, so AUTH is
  offered and works there (aiosmtpd only knows STARTTLS sessions);
* EHLO: the extensions we implement, AUTH only over TLS or on loopback when allowed;
* AUTH PLAIN honours the authorization identity (RFC 4616 §2), AUTH LOGIN takes both
  the two-step and the initial-response forms; answers come from our reply table;
* MAIL/RCPT: the null sender is accepted, parameters are checked (SIZE, BODY,
  SMTPUTF8), decisions are the handler's;
* DATA is read in blocks through :class:`~mailserver.smtp.data.DataReader` (only
  CRLF.CRLF ends it; bare LF and smuggling sequences are content);
* every reply carries an enhanced status code (RFC 2034 §3), also aiosmtpd's own;
* deadlines instead of aiosmtpd's idle timer alone (:class:`Deadlines`): a command line
  must be complete soon after its first byte, message data must keep a minimum average
  rate, silence is bounded; an open line longer than any command is not buffered; each
  ends with a 421 and the connection is closed (RFC 5321 §3.8);
* connections per client address are limited (:class:`~mailserver.connlimit.AddressLimiter`).

STARTTLS (RFC 3207 §4.2): aiosmtpd (1.4.6, CVE-2024-34083) drops whatever the client
sent after STARTTLS in clear text and starts a new session once TLS is up; we keep that.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException

from auth.addresses import InvalidAddress, parse_mailbox
from auth.login import Principal
from delivery import replies as R
from delivery.local import MailTransaction
from delivery.message import Trace
from delivery.replies import Reply
from mailserver import metrics
from mailserver.config import Config
from mailserver.connlimit import AddressLimiter
from mailserver.smtp.data import DataError, DataReader
from mailserver.smtp.handler import SmtpHandler

log = logging.getLogger("mailserver.smtp")

#: Bytes read from the socket per DATA step, and the stream buffer size: large enough
#: that a 64 KiB message is one or two reads (issue 9), small enough per connection.
DATA_BLOCK = 64 * 1024
#: RFC 5321 §4.5.3.1.4: 512 octets per command line, plus what extensions add
#: (RFC 1870 SIZE +26, RFC 6531 SMTPUTF8 +10, RFC 6152 BODY= +14).
MAIL_LINE_LIMIT = 512 + 26 + 10 + 14
#: RFC 4954 §4: an AUTH command with its initial response may be 12288 octets.
AUTH_LINE_LIMIT = 12288
#: An open (unterminated) line longer than this cannot become a valid command (AUTH
#: is the longest, RFC 4954 §4) nor a SASL response to a 334 challenge, and is not
#: buffered further: 421 and close.
OPEN_LINE_LIMIT = AUTH_LINE_LIMIT + 2
#: Seconds a 421 may take to reach a client that does not read before the socket is
#: aborted (close() alone waits for the send buffer to drain, forever if nobody reads).
CLOSE_GRACE_SECONDS = 5.0
#: Seconds a connection cut on plain TCP keeps reading (and dropping) what the client
#: still sends after our 421 and FIN: a socket closed with unread input sends RST, and
#: an RST can make the client lose the 421 it has not read yet.
LINGER_SECONDS = 1.0
#: How often a deadline that passed during a commit is looked at again.
COMMIT_RECHECK_SECONDS = 0.5
_ENHANCED = re.compile(r"^[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
#: The common path: ``<dot-atom@ldh.domain>`` and whatever follows (RFC 5321 §4.1.2
#: Mailbox with a Dot-string local part and a Domain). Anything else (quoted local
#: parts, source routes, address literals, UTF-8) goes through aiosmtpd's parser.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_SIMPLE_PATH = re.compile(
    rf"<({_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*(?![(\s])(.*)", re.DOTALL
)


def simple_path(arg: str) -> tuple[str, str] | None:
    """``(address, rest)`` for a plain ``<local@domain>`` path, None for anything else.

    Gives what aiosmtpd's ``_getaddr`` gives for the same text (a property test pins
    it) without its per-call cost (it runs the ``email`` header parser and defines a
    class on every call: a quarter of the event loop's time in the profile of issue 9).
    """
    m = _SIMPLE_PATH.match(arg)
    return None if m is None else (m.group(1), m.group(2))


@dataclass(frozen=True, slots=True)
class Deadlines:
    """How long a client may take (config ``smtp.*``); every limit ends in 421 4.4.2.

    ``idle``: silence while the server waits for a command or for more message data
    (RFC 5321 §4.5.3.2.7 asks servers for at least 5 minutes); ``command``: a command
    line must be complete this long after its first byte; ``data`` and
    ``min_data_rate``: DATA must end by ``start + data + received / min_data_rate``, a
    deadline that grows with every octet received, so a big message on a slow link
    passes and a trickle does not (Postfix's smtpd_min_data_rate works the same way);
    ``session``: the whole connection, whatever it does, so a client that keeps busy
    with slow but complete commands (NOOP, RSET, refused RCPTs) is cut too (Exchange's
    receive connector ConnectionTimeout does the same).
    """

    idle: float = 300.0
    command: float = 60.0
    data: float = 300.0
    min_data_rate: float = 500.0
    session: float = 1800.0

    @classmethod
    def from_config(cls, config: Config) -> Deadlines:
        return cls(
            idle=float(config["smtp.idle_timeout_seconds"]),
            command=float(config["smtp.command_timeout_seconds"]),
            data=float(config["smtp.data_timeout_seconds"]),
            min_data_rate=float(config["smtp.min_data_rate"]),
            session=float(config["smtp.session_timeout_seconds"]),
        )


class SmtpSession(Session):
    """aiosmtpd's session with who authenticated."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.principal: Principal | None = None


def _b64(text: str) -> bytes | None:
    """Decode a SASL response (RFC 4954 §4: "=" is an empty initial response)."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def with_enhanced_code(status: str, *, greeting: bool = False) -> str:
    """``status`` with an enhanced status code when it is a 2xx/4xx/5xx reply without
    one (aiosmtpd's own replies, e.g. its "220 Ready to start TLS"); RFC 2034 §3 asks
    for one in every such reply once ENHANCEDSTATUSCODES is offered, except the
    ``greeting``. 334/354 are left alone (RFC 3463 has no 3xx class)."""
    if greeting or _ENHANCED.match(status) or len(status) < 4 or status[:3] in ("334", "354"):
        return status
    code = status[:3]
    if not code.isdigit() or code[0] not in "245":
        return status
    enhanced = {
        "220": "2.0.0", "221": "2.0.0", "250": "2.0.0", "252": "2.5.0", "500": "5.5.2", "501": "5.5.4",
        "502": "5.5.1", "503": "5.5.1", "504": "5.5.4", "530": "5.7.0", "552": "5.3.4",
        "554": "5.0.0", "421": "4.3.2",
    }.get(code, f"{code[0]}.0.0")
    return f"{code}{status[3]}{enhanced} {status[4:]}"


#: What aiosmtpd says before it closes the connection after BOGUS_LIMIT unknown
#: commands; a server that closes must say 421 (RFC 5321 §3.8), so that goes instead.
_AIOSMTPD_BOGUS_GOODBYE = "502 5.5.1 Too many unrecognized commands"
#: Characters a reply line cannot carry (RFC 5321 §4.2: one line of text, then CRLF).
_NOT_TEXT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def reply_text(line: str) -> str:
    """``line`` fit to send as one reply line: client text echoed in a reply (an unknown
    parameter, an address) cannot bring CR, LF or other controls into it, nor the
    undecodable octets aiosmtpd keeps as surrogate escapes (they raised
    UnicodeEncodeError, and the command ended in 451); each becomes "?"."""
    return _NOT_TEXT.sub("?", line)


class SmtpProtocol(SMTP):
    """One SMTP connection. See the module docstring for what differs from aiosmtpd."""

    line_length_limit = DATA_BLOCK  # the StreamReader's buffer limit (aiosmtpd reads it)

    def __init__(
        self,
        handler: SmtpHandler,
        *,
        deadlines: Deadlines | None = None,
        limiter: AddressLimiter | None = None,
        **kwargs: Any,
    ) -> None:
        """``deadlines`` default to the app's config; ``limiter`` counts connections per
        client address (shared by the listeners of one daemon; None: no limit). A
        ``timeout`` keyword (aiosmtpd's) overrides ``deadlines.idle``."""
        policy = handler.policy
        # Set before aiosmtpd's __init__, which reads every attribute (inspect.getmembers).
        self.mail_handler = handler
        self.max_size: int = handler.max_message_size
        self.txn: MailTransaction | None = None
        self._registered: asyncio.BaseTransport | None = None
        self._deadlines = deadlines or Deadlines.from_config(handler.app.config)
        self._limiter = limiter
        self._admitted_ip: str | None = None  # counted in the limiter until released
        self._refused = False  # over the address limit: never became a session
        self._closing = False  # a closing 421 was sent
        self._idle_deadline = 0.0
        self._session_deadline = float("inf")  # set when the connection is admitted
        self._line_started: float | None = None  # first byte of the open command line
        self._line_bytes = 0  # octets of the open command line
        self._data_started: float | None = None  # while DATA content is being read
        self._data_bytes = 0
        self._committing = False  # between the end of DATA and its reply
        self._greeted = False  # the first line pushed is the greeting
        kwargs.setdefault("timeout", self._deadlines.idle)
        super().__init__(
            handler,
            data_size_limit=handler.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=handler.hostname,
            ident="ESMTP ready",
            tls_context=handler.app.ssl_context if policy.starttls else None,
            require_starttls=False,
            auth_required=False,  # checked at MAIL by the handler (530 5.7.0)
            auth_require_tls=True,
            **kwargs,
        )
        self.command_size_limits["MAIL"] = MAIL_LINE_LIMIT
        self.command_size_limits["RCPT"] = MAIL_LINE_LIMIT
        self.command_size_limits["AUTH"] = AUTH_LINE_LIMIT

    async def handle_exception(self, error: Exception) -> str:
        """An unexpected error inside a command: the cause is logged, the client gets a
        short temporary failure and may retry (nothing was committed, since 250 was not
        sent), never aiosmtpd's "500 Error: (Type) detail" that names internals and
        makes senders bounce the mail. The session stays usable."""
        peer = self.session.peer if self.session is not None else None
        if isinstance(error, TLSSetupException):
            # The client's side of a STARTTLS handshake failed (it went away, or spoke
            # clear text): not a server error. aiosmtpd closes the connection and sends
            # nothing, so no reply text is needed.
            log.info("SMTP %r: TLS handshake after STARTTLS failed: %r", peer, error.__cause__)
            return ""
        log.error("SMTP %r: unexpected error in a command", peer, exc_info=error)
        return R.R451_4_3_0_LOCAL_ERROR.line()

    # -- connection bookkeeping
    def _create_session(self) -> Session:
        return SmtpSession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._registered is None:
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
            if self._limiter is not None and not self._limiter.admit(ip):
                # Not a session: no greeting, no state, just the refusal (RFC 5321 §3.8).
                log.info("SMTP %s: too many connections from this address", ip)
                self._refused = True
                if isinstance(transport, asyncio.WriteTransport):
                    transport.write(R.R421_4_7_0_TOO_MANY_CONNECTIONS.line().encode() + b"\r\n")
                self._close_soon(transport)
                return
            self._admitted_ip = ip if self._limiter is not None else None
            self._session_deadline = self.loop.time() + self._deadlines.session
            self._registered = transport
            self.mail_handler.app.connections.add(transport)
            metrics.connection_opened(self.mail_handler.policy.name)
        # After STARTTLS aiosmtpd starts a new session and drops the buffered clear
        # text (RFC 3207 §4.2); no open line survives it either.
        self._line_started = None
        self._line_bytes = 0
        super().connection_made(transport)
        self._arm(self._session_deadline)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._admitted_ip is not None and self._limiter is not None:
            self._limiter.release(self._admitted_ip)
            self._admitted_ip = None
        if self._registered is not None:
            self.mail_handler.app.connections.discard(self._registered)
            metrics.connection_closed(self.mail_handler.policy.name)
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    def data_received(self, data: bytes) -> None:
        """Feed the stream, and time the open command line (not message data).

        The clock of a line starts at its first byte; an open line longer than any
        command is refused here, before it is buffered (the stream would keep up to
        twice its 64 KiB limit per connection)."""
        if self._refused or self._closing:
            return
        super().data_received(data)
        if self._data_started is not None:
            return  # DATA has its own deadline
        end = data.rfind(b"\n")
        if end < 0:
            if self._line_started is None:
                self._line_started = self.loop.time()
                self._arm(self._line_started + self._deadlines.command)
            self._line_bytes += len(data)
        elif end + 1 < len(data):
            self._line_started = self.loop.time()
            self._arm(self._line_started + self._deadlines.command)
            self._line_bytes = len(data) - end - 1
        else:
            self._line_started = None
            self._line_bytes = 0
        if self._line_bytes > OPEN_LINE_LIMIT:
            self._close_with(R.R421_4_7_0_LINE_TOO_LONG, "line too long")

    # -- deadlines: one timer per connection, re-armed when it fires early (aiosmtpd
    # cancels and creates a timer per command: ~7% of the loop's time in issue 9).
    def _reset_timeout(self, duration: float | None = None) -> None:
        """Push the idle deadline (aiosmtpd calls this after every command)."""
        self._idle_deadline = self.loop.time() + (duration or self._timeout_duration)
        self._arm(self._idle_deadline)

    def _arm(self, when: float) -> None:
        """Make sure the timer fires at ``when`` or earlier."""
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > when:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(when, self._check_deadline)

    def _deadline(self) -> tuple[float, str]:
        """The earliest deadline now in force, and what it is."""
        deadline, what = self._idle_deadline, "idle timeout"
        if self._session_deadline < deadline:
            deadline, what = self._session_deadline, "session too long"
        if self._data_started is not None:
            data = self._data_started + self._deadlines.data + self._data_bytes / self._deadlines.min_data_rate
            if data < deadline:
                deadline, what = data, "message data too slow"
        elif self._line_started is not None:
            line = self._line_started + self._deadlines.command
            if line < deadline:
                deadline, what = line, "command line too slow"
        return deadline, what

    def _check_deadline(self) -> None:
        deadline, what = self._deadline()
        now = self.loop.time()
        if now < deadline:
            self._timeout_handle = self.loop.call_at(deadline, self._check_deadline)
            return
        if self._committing:
            self._timeout_handle = self.loop.call_at(now + COMMIT_RECHECK_SECONDS, self._check_deadline)
            return
        self._close_with(R.R421_4_4_2_TIMEOUT, what)

    def _close_with(self, reply: Reply, why: str) -> None:
        """Send ``reply`` (a 421), stop the session and close the connection."""
        transport = self.transport
        if self._closing or not isinstance(transport, asyncio.WriteTransport):
            return
        if self._committing:  # see smtp_DATA: never cut a commit
            self.loop.call_later(COMMIT_RECHECK_SECONDS, self._close_with, reply, why)
            return
        self._closing = True  # from now on input is dropped and replies are not sent
        log.info("SMTP %s: %s; closing", self.client_ip, why)
        transport.write(reply.line().encode() + b"\r\n")
        if transport.can_write_eof():  # plain TCP: FIN now, close once the client had time
            transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self._stop, transport)
        else:  # TLS: close() sends close_notify after the 421
            self._stop(transport)

    def _stop(self, transport: asyncio.BaseTransport) -> None:
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()
        self._close_soon(transport)

    def _close_soon(self, transport: asyncio.BaseTransport) -> None:
        """Close after the pending reply is sent; abort if it cannot be sent in time."""
        transport.close()
        raw = self._original_transport or transport
        if isinstance(raw, asyncio.WriteTransport):
            self.loop.call_later(CLOSE_GRACE_SECONDS, raw.abort)

    def _set_post_data_state(self) -> None:
        super()._set_post_data_state()
        self.txn = None

    def _sess(self) -> SmtpSession:
        assert isinstance(self.session, SmtpSession)
        return self.session

    def _env(self) -> Envelope:
        assert self.envelope is not None
        return self.envelope

    @property
    def encrypted(self) -> bool:
        """True on implicit TLS and after STARTTLS."""
        return self.mail_handler.policy.implicit_tls or self._tls_protocol is not None

    @property
    def client_ip(self) -> str:
        peer = self.session.peer if self.session else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"

    @property
    def auth_allowed(self) -> bool:
        """RFC 4954 §4 / RFC 8314: AUTH only over TLS, or from loopback when configured."""
        if self.encrypted:
            return True
        if not self.mail_handler.allow_plaintext_on_loopback:
            return False
        try:
            return ipaddress.ip_address(self.client_ip).is_loopback
        except ValueError:
            return False

    async def push(self, status: str | bytes) -> None:
        if self._closing:
            return  # a command still running when the connection was cut: its reply is moot
        greeting, self._greeted = not self._greeted, True
        if isinstance(status, str):
            if status.startswith(_AIOSMTPD_BOGUS_GOODBYE):
                status = R.R421_4_7_0_TOO_MANY_UNRECOGNIZED.line()
            line = with_enhanced_code(status, greeting=greeting)
            if not (line.isascii() and line.isprintable()):
                line = reply_text(line)
            status = line.encode("utf-8")
        await super().push(status)

    async def reply(self, reply: Reply) -> None:
        await self.push(reply.line())

    # -- commands
    async def smtp_EHLO(self, hostname: str | None) -> None:
        """RFC 5321 §4.1.1.1; the extensions listed are the ones implemented."""
        if not hostname:
            await self.reply(R.R501_5_5_4_SYNTAX_PARAMS.format(syntax="EHLO hostname"))
            return
        self._set_rset_state()
        self._sess().extended_smtp = True
        self._sess().host_name = hostname
        lines = [
            self.hostname,
            f"SIZE {self.max_size}",  # RFC 1870
            "8BITMIME",  # RFC 6152
            "SMTPUTF8",  # RFC 6531
            "PIPELINING",  # RFC 2920
            "ENHANCEDSTATUSCODES",  # RFC 2034
        ]
        if self.tls_context and not self.encrypted:
            lines.append("STARTTLS")  # RFC 3207
        if self.auth_allowed and self._sess().principal is None:
            lines.append("AUTH PLAIN LOGIN")  # RFC 4954, RFC 4616
        lines.append("HELP")
        # RFC 2034 §3: no enhanced code in the EHLO reply (bytes bypass the fix-up).
        for line in lines[:-1]:
            await self.push(f"250-{line}".encode())
        await self.push(f"250 {lines[-1]}".encode())

    async def smtp_STARTTLS(self, arg: str | None) -> None:
        if self.encrypted or not self.tls_context:
            await self.reply(R.R454_4_7_0_TLS_UNAVAILABLE)
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_HELO(self, hostname: str | None) -> None:
        """RFC 5321 §4.1.1.1; RFC 2034 §3: the HELO reply carries no enhanced code."""
        if not hostname:
            await self.reply(R.R501_5_5_4_SYNTAX_PARAMS.format(syntax="HELO hostname"))
            return
        self._set_rset_state()
        self._sess().extended_smtp = False
        self._sess().host_name = hostname
        await self.push(f"250 {self.hostname}".encode())

    async def smtp_VRFY(self, arg: str | None) -> None:
        # RFC 5321 §3.5.3: 252, no address harvesting.
        await self.reply(R.R252_2_5_0_CANNOT_VRFY)

    async def smtp_AUTH(self, arg: str | None) -> None:
        """RFC 4954: AUTH PLAIN (RFC 4616) and LOGIN, with or without initial response."""
        if not self._sess().host_name or not self._sess().extended_smtp:
            await self.reply(R.R503_5_5_1_NEED_EHLO)
            return
        if not self.auth_allowed:
            await self.reply(R.R538_5_7_11_ENCRYPTION_REQUIRED)
            return
        if self._sess().principal is not None:
            await self.reply(R.R503_5_5_1_ALREADY_AUTHENTICATED)
            return
        if self.txn is not None:
            await self.reply(R.R503_5_5_1_AUTH_IN_TRANSACTION)
            return
        args = (arg or "").split()
        if not args or len(args) > 2:
            await self.reply(R.R501_5_5_4_SYNTAX_PARAMS.format(syntax="AUTH mechanism [initial-response]"))
            return
        mechanism = args[0].upper()
        initial = args[1] if len(args) == 2 else None
        if mechanism == "PLAIN":
            creds = await self._sasl_plain(initial)
        elif mechanism == "LOGIN":
            creds = await self._sasl_login(initial)
        else:
            await self.reply(R.R504_5_5_4_AUTH_MECHANISM)
            return
        if creds is None:
            return  # the reply was written
        authzid, username, password = creds
        outcome = await self.mail_handler.authenticate(username, password, authzid, self.client_ip)
        if outcome.principal is not None:
            self._sess().principal = outcome.principal
            self._sess().authenticated = True
            self._sess().login_data = outcome.principal.user.address
        await self.reply(outcome.reply)

    async def _challenge(self, prompt: bytes) -> bytes | None:
        """Send a 334 challenge and read the response; None after writing an error reply."""
        await self.push(b"334 " + base64.b64encode(prompt))
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            await self.reply(R.R500_5_5_2_LINE_TOO_LONG)
            return None
        text = line.strip().decode("ascii", "replace")
        if text == "*":
            await self.reply(R.R501_5_7_0_AUTH_ABORTED)
            return None
        decoded = _b64(text) if text != "=" else None
        if decoded is None:
            await self.reply(R.R501_5_5_2_CANNOT_DECODE)
        return decoded

    async def _sasl_plain(self, initial: str | None) -> tuple[str | None, str, str] | None:
        """RFC 4616 §2: message = [authzid] NUL authcid NUL passwd."""
        data = _b64(initial) if initial is not None else await self._challenge(b"")
        if data is None:
            if initial is not None:
                await self.reply(R.R501_5_5_2_CANNOT_DECODE)
            return None
        parts = data.split(b"\x00")
        if len(parts) != 3:
            await self.reply(R.R501_5_5_2_CANNOT_DECODE)
            return None
        try:
            authzid, authcid, password = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            await self.reply(R.R501_5_5_2_CANNOT_DECODE)
            return None
        return (authzid or None), authcid, password

    async def _sasl_login(self, initial: str | None) -> tuple[str | None, str, str] | None:
        """LOGIN (draft-murchison-sasl-login): username then password, each base64."""
        if initial is not None:
            username = _b64(initial)
            if username is None:
                await self.reply(R.R501_5_5_2_CANNOT_DECODE)
                return None
        else:
            username = await self._challenge(b"Username:")
            if username is None:
                return None
        password = await self._challenge(b"Password:")
        if password is None:
            return None
        try:
            return None, username.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            await self.reply(R.R501_5_5_2_CANNOT_DECODE)
            return None

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's path parser, with every parse failure a refusal: the ``email``
        header parser it calls raises IndexError (not HeaderParseError) for a path cut
        after the ``@`` (``<bob@``), which ended as a temporary 451 the sender retries."""
        try:
            return super()._getaddr(arg)
        except (IndexError, ValueError):
            return None, None

    def _path(self, arg: str | None, keyword: str) -> tuple[str, list[str]] | Reply:
        """Parse ``FROM:<path> params`` / ``TO:<path> params`` (RFC 5321 §4.1.2).

        The mailbox must follow RFC 5321's grammar and limits (:func:`parse_mailbox`);
        refusals carry X.1.7 for the sender and X.1.3 for a recipient (RFC 3463 §3.2).
        """
        sender = keyword == "FROM:"
        syntax = R.R501_5_5_4_SYNTAX_PARAMS.format(syntax=f"{'MAIL FROM' if sender else 'RCPT TO'}:<address>")
        bad = R.R553_5_1_7_BAD_SENDER_ADDRESS if sender else R.R553_5_1_3_BAD_ADDRESS
        if arg is None:
            return syntax
        rest = self._strip_command_keyword(keyword, arg)
        if rest is None or not rest.lstrip().startswith("<"):
            return syntax
        rest = rest.lstrip()
        if rest.startswith("<>"):
            return "", rest[2:].split()
        if not sender and rest[:12].lower() == "<postmaster>":
            return "postmaster", rest[12:].split()  # RFC 5321 §4.1.1.3: "Postmaster" without a domain
        simple = simple_path(rest)
        if simple is not None and not (
            self.local_part_limit and len(simple[0].rpartition("@")[0]) > self.local_part_limit
        ):
            address, params = simple
        else:
            parsed_address, parsed_params = self._getaddr(rest)
            if parsed_address is None:
                return bad
            address, params = parsed_address, parsed_params or ""
        try:
            parse_mailbox(address)
        except InvalidAddress as err:
            if not err.problem.too_long:
                return bad
            # RFC 5321 §4.5.3.1.10: "501 Path too long".
            too_long = R.R501_5_1_7_SENDER_TOO_LONG if sender else R.R501_5_1_3_ADDRESS_TOO_LONG
            return too_long.format(detail=err.problem.value)
        return address, params.split()

    async def smtp_MAIL(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.2 with SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531)."""
        if not self._sess().host_name:
            await self.reply(R.R503_5_5_1_NEED_EHLO)
            return
        if self.txn is not None:
            await self.reply(R.R503_5_5_1_NESTED_MAIL)
            return
        parsed = self._path(arg, "FROM:")
        if isinstance(parsed, Reply):
            await self.reply(parsed)
            return
        address, params = parsed
        if params and not self._sess().extended_smtp:
            await self.reply(R.R555_5_5_4_UNKNOWN_PARAMETER.format(param=params[0][:40]))
            return
        smtputf8 = False
        for param in params:
            key, _, value = param.partition("=")
            key = key.upper()
            if key == "SIZE" and value.isdigit():
                if int(value) > self.max_size:
                    await self.reply(R.R552_5_3_4_MESSAGE_TOO_BIG)  # RFC 1870 §6.2
                    return
            elif key == "BODY" and value.upper() in ("7BIT", "8BITMIME"):
                pass
            elif key == "SMTPUTF8" and not value:
                smtputf8 = True
            else:
                await self.reply(R.R555_5_5_4_UNKNOWN_PARAMETER.format(param=param[:40]))
                return
        if not address.isascii() and not smtputf8:
            await self.reply(R.R553_5_6_7_SMTPUTF8_REQUIRED)
            return
        reply, txn = await self.mail_handler.mail(address, self._sess().principal)
        if reply is R.R530_5_7_0_LOGIN_REVOKED:
            # The user was disabled, unlicensed or removed since AUTH: forget the login so
            # the client may AUTH again (and be refused like any wrong password).
            self._sess().principal = None
            self._sess().authenticated = False
            self._sess().login_data = None
        if txn is not None:
            self.txn = txn
            self._env().mail_from = address
            self._env().smtp_utf8 = smtputf8
            self._env().mail_options.extend(params)
        await self.reply(reply)
        if reply.code == 421:  # RFC 5321 §3.8: the server closes after a 421
            assert self._handler_coroutine is not None and self.transport is not None
            self._handler_coroutine.cancel()
            self.transport.close()

    async def smtp_RCPT(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.3; routing and its reply are the handler's."""
        if not self._sess().host_name:
            await self.reply(R.R503_5_5_1_NEED_EHLO)
            return
        if self.txn is None:
            await self.reply(R.R503_5_5_1_NEED_MAIL)
            return
        parsed = self._path(arg, "TO:")
        if isinstance(parsed, Reply):
            await self.reply(parsed)
            return
        address, params = parsed
        if not address:
            await self.reply(R.R553_5_1_3_BAD_ADDRESS)
            return
        if params:
            await self.reply(R.R555_5_5_4_UNKNOWN_PARAMETER.format(param=params[0][:40]))
            return
        if not address.isascii() and not self._env().smtp_utf8:
            await self.reply(R.R553_5_6_7_SMTPUTF8_REQUIRED)
            return
        reply = await self.mail_handler.rcpt(self.txn, address)
        if reply.is_success:
            self._env().rcpt_tos.append(address)
        await self.reply(reply)

    async def smtp_DATA(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.4, read in blocks; 250 only after the durable commit."""
        if not self._sess().host_name:
            await self.reply(R.R503_5_5_1_NEED_EHLO)
            return
        if self.txn is None:
            await self.reply(R.R503_5_5_1_NEED_MAIL)
            return
        if not self.txn.rcpts:
            await self.reply(R.R503_5_5_1_NEED_RCPT)
            return
        if arg:
            await self.reply(R.R501_5_5_4_SYNTAX_PARAMS.format(syntax="DATA"))
            return
        await self.reply(R.R354_START_INPUT)
        reader = DataReader(self.max_size, self.mail_handler.max_line_length)
        stream = self._reader
        self._data_started, self._data_bytes = self.loop.time(), 0
        self._line_started, self._line_bytes = None, 0
        self._arm(self._data_started + self._deadlines.data)
        try:
            while not reader.done:
                block = await stream.read(DATA_BLOCK)
                if not block:  # EOF: the client went away mid-message; nothing is stored
                    self._writer.close()
                    return
                used = reader.feed(block)
                self._data_bytes += used
                if used < len(block):
                    # Pipelined commands after the end marker (RFC 2920 §3.1) go back to
                    # the stream for the command loop.
                    stream._buffer[:0] = block[used:]  # type: ignore[attr-defined]  # aiosmtpd does the same
                self._reset_timeout()
        finally:
            self._data_started = None
            self._resume_line_clock()
        txn = self.txn
        if reader.error is not None:
            self._set_post_data_state()
            await self.reply(
                R.R552_5_3_4_MESSAGE_TOO_BIG if reader.error is DataError.TOO_BIG
                else R.R500_5_5_6_DATA_LINE_TOO_LONG
            )
            return
        # No deadline cuts a commit: a 421 after a commit that then succeeds would make
        # the sender retry and deliver the message twice.
        self._committing = True
        try:
            reply = await self.mail_handler.data(txn, reader.message, self._trace())
            self._set_post_data_state()
            await self.reply(reply)
        finally:
            self._committing = False

    def _resume_line_clock(self) -> None:
        """After DATA: an open line already buffered (pipelined) is timed from now."""
        buffered: bytearray = self._reader._buffer  # type: ignore[attr-defined]
        end = buffered.rfind(b"\n")
        if len(buffered) > end + 1:
            self._line_started = self.loop.time()
            self._line_bytes = len(buffered) - end - 1
            self._arm(self._line_started + self._deadlines.command)

    def _trace(self) -> Trace:
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        version = cipher = None
        if ssl_object is not None:
            version = ssl_object.version()
            cipher_info = ssl_object.cipher()
            cipher = cipher_info[0] if cipher_info else None
        principal = self._sess().principal
        return Trace(
            helo=self._sess().host_name or "unknown",
            client_ip=self.client_ip,
            hostname=self.hostname,
            esmtp=bool(self._sess().extended_smtp),
            tls_version=version,
            tls_cipher=cipher,
            authenticated_user=principal.user.address if principal else None,
            smtputf8=bool(self._env().smtp_utf8),
        )
