"""Every SMTP reply the server sends, as data.

One table: a name shows the code and the enhanced status code (``R550_5_1_1_...``),
``tests/delivery/test_replies.py`` checks each name against its value. Text may hold
``str.format`` fields, filled with :meth:`Reply.format`. Client-facing text is short and
generic: it never names configuration or internals.

Reply codes: RFC 5321 §4.2 and §4.2.3; enhanced status codes: RFC 3463 and the IANA
registry (RFC 5248); ``5.7.60``, ``5.7.124`` and ``5.7.133`` are Exchange's codes, kept so
that clients and people see what Exchange would have said (mission-semantics §1.3, §3.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.errors import StorageError, StorageFull


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: ``code``, enhanced status code (None for replies that carry
    none: greeting, 354, 334) and text."""

    code: int
    enhanced: str | None
    text: str

    def format(self, **fields: object) -> Reply:
        """This reply with the text's ``{fields}`` filled in."""
        return Reply(self.code, self.enhanced, self.text.format(**fields))

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 400

    def line(self) -> str:
        """The reply as one line without CRLF (RFC 5321 §4.2, RFC 2034 §4)."""
        if self.enhanced:
            return f"{self.code} {self.enhanced} {self.text}"
        return f"{self.code} {self.text}"

    def __str__(self) -> str:
        return self.line()


class ReplyError(Exception):
    """A decision that ends the command with ``reply``; the one catcher writes it."""

    def __init__(self, reply: Reply, detail: str = "") -> None:
        super().__init__(detail or reply.line())
        self.reply = reply


# --- 2xx / 3xx: success and intermediate (RFC 5321 §4.2.2)
R220_READY = Reply(220, None, "{hostname} ESMTP ready")
R220_2_0_0_READY_FOR_TLS = Reply(220, "2.0.0", "Ready to start TLS")
R221_2_0_0_BYE = Reply(221, "2.0.0", "Bye")
R235_2_7_0_AUTH_OK = Reply(235, "2.7.0", "Authentication successful")  # RFC 4954 §6
R250_2_0_0_OK = Reply(250, "2.0.0", "OK")
R250_2_1_0_SENDER_OK = Reply(250, "2.1.0", "Sender OK")
R250_2_1_5_RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
R250_2_0_0_STORED = Reply(250, "2.0.0", "OK: message {id} stored")
R252_2_5_0_CANNOT_VRFY = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
R354_START_INPUT = Reply(354, None, "End data with <CR><LF>.<CR><LF>")

# --- 4xx: temporary (RFC 5321 §4.2.2)
R421_4_3_2_SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")
# RFC 5321 §3.8: the server closes only after a 421. RFC 3463 X.4.2 "bad connection".
R421_4_4_2_TIMEOUT = Reply(421, "4.4.2", "Timeout exceeded, closing connection")
R421_4_7_0_TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections from your address")
R421_4_7_0_LINE_TOO_LONG = Reply(421, "4.7.0", "Line too long, closing connection")
R421_4_7_0_TOO_MANY_UNRECOGNIZED = Reply(421, "4.7.0", "Too many unrecognized commands, closing connection")
R451_4_3_0_LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing, try again later")
R452_4_5_3_TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")  # RFC 5321 §4.5.3.1.10
# RFC 5321 §4.2.3 452 "insufficient system storage"; RFC 3463 X.3.1 "mail system full".
R452_4_3_1_STORAGE_FULL = Reply(452, "4.3.1", "Insufficient system storage, try again later")
# Throttled authentication: temporary (RFC 4954 §6 allows 454 4.7.0 "Temporary
# authentication failure"); the client may try again after the lockout.
R454_4_7_0_AUTH_THROTTLED = Reply(454, "4.7.0", "Temporary authentication failure, try again later")
R454_4_7_0_TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")

# --- 5xx: permanent, syntax and sequence (RFC 5321 §4.2.2, §4.3.2)
R500_5_5_2_SYNTAX_ERROR = Reply(500, "5.5.2", "Syntax error, command unrecognized")
R500_5_5_2_LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
R500_5_5_6_DATA_LINE_TOO_LONG = Reply(500, "5.5.6", "Line too long in message data")  # RFC 5321 §4.5.3.1.6
R501_5_5_4_SYNTAX_PARAMS = Reply(501, "5.5.4", "Syntax: {syntax}")
R501_5_5_2_CANNOT_DECODE = Reply(501, "5.5.2", "Cannot decode response")
R501_5_7_0_AUTH_ABORTED = Reply(501, "5.7.0", "Authentication aborted")  # RFC 4954 §4 "*"
R502_5_5_1_NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
R503_5_5_1_NEED_EHLO = Reply(503, "5.5.1", "Send EHLO or HELO first")
R503_5_5_1_NEED_MAIL = Reply(503, "5.5.1", "Need MAIL command")
R503_5_5_1_NEED_RCPT = Reply(503, "5.5.1", "Need RCPT command")
R503_5_5_1_NESTED_MAIL = Reply(503, "5.5.1", "Nested MAIL command")
R503_5_5_1_ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Already authenticated")
R503_5_5_1_AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH not allowed during a mail transaction")  # RFC 4954 §4
R504_5_5_4_AUTH_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")
R530_5_7_0_AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")  # RFC 4954 §6
# The session's login stopped being valid (user disabled, unlicensed or removed since
# AUTH): the client must authenticate again, which then fails like a wrong password.
R530_5_7_0_LOGIN_REVOKED = Reply(530, "5.7.0", "Authentication required: this login is no longer valid")
R535_5_7_8_AUTH_INVALID = Reply(535, "5.7.8", "Authentication credentials invalid")  # RFC 4954 §6
R538_5_7_11_ENCRYPTION_REQUIRED = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
# RFC 5321 §4.1.2 path syntax; RFC 3463 §3.2: X.1.3 for a recipient, X.1.7 for the sender.
R553_5_1_3_BAD_ADDRESS = Reply(553, "5.1.3", "Malformed address")
R553_5_1_7_BAD_SENDER_ADDRESS = Reply(553, "5.1.7", "Malformed sender address")
# RFC 5321 §4.5.3.1.10 ("501 Path too long"); {detail} names the limit passed.
R501_5_1_3_ADDRESS_TOO_LONG = Reply(501, "5.1.3", "Address too long: {detail}")
R501_5_1_7_SENDER_TOO_LONG = Reply(501, "5.1.7", "Sender address too long: {detail}")
R555_5_5_4_UNKNOWN_PARAMETER = Reply(555, "5.5.4", "Parameter not recognized or not implemented: {param}")
R553_5_6_7_SMTPUTF8_REQUIRED = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")  # RFC 6531 §3.5

# --- 5xx: recipients (RESOLVER texts follow Postfix / Exchange)
R550_5_1_1_USER_UNKNOWN = Reply(550, "5.1.1", "<{address}>: Recipient address rejected: User unknown")
R550_5_2_1_MAILBOX_UNAVAILABLE = Reply(550, "5.2.1", "Mailbox unavailable")
R554_5_7_1_RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
# RFC 5321 §4.1.3 address literals (user@[192.0.2.1]) are never routed, even for an
# authenticated sender: outbound delivery goes by MX only, and a literal could aim the
# queue at loopback or internal hosts (Exchange refuses them by default as well).
R550_5_7_1_ADDRESS_LITERAL_DENIED = Reply(550, "5.7.1", "Address literals are not accepted")
R550_5_7_133_LIST_SENDER_NOT_AUTHENTICATED = Reply(550, "5.7.133", "Sender not authenticated for group")
R550_5_7_124_LIST_SENDER_NOT_ALLOWED = Reply(550, "5.7.124", "Sender not in allowed-senders list")
R550_5_7_1_LIST_DELIVERY_NOT_AUTHORIZED = Reply(550, "5.7.1", "Delivery not authorized")

# --- 5xx: sender (mission-semantics §1.3, §1.5)
R550_5_7_60_SEND_AS_DENIED = Reply(550, "5.7.60", "SMTP; Client does not have permissions to send as this sender")
R554_5_6_0_NO_FROM = Reply(554, "5.6.0", "Message has no From: header")  # RFC 5322 §3.6
R554_5_6_0_SEVERAL_FROM = Reply(554, "5.6.0", "Message has more than one From: address")
R554_5_6_0_BAD_FROM = Reply(554, "5.6.0", "Message has an unparsable From: header")
R554_5_6_0_BAD_SENDER = Reply(554, "5.6.0", "Message has an unparsable Sender: header")
R554_5_6_0_LEADING_CONTINUATION = Reply(554, "5.6.0", "Message header section begins with a continuation line")

# --- 5xx: message content (RFC 5321 §4.5.3.1.7, §6.3; RFC 1870 §6)
R552_5_3_4_MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
R552_5_3_4_HEADER_TOO_BIG = Reply(552, "5.3.4", "Message header section exceeds the size limit")
R554_5_4_6_ROUTING_LOOP = Reply(554, "5.4.6", "Routing loop detected")


def for_storage_error(err: StorageError) -> Reply:
    """The temporary reply for a store that failed: 452 4.3.1 when it is full (the
    sender keeps the message and retries, RFC 5321 §4.2.3), 451 4.3.0 for anything
    else (unreachable, busy, an I/O error). Never a 5xx: the message is not at fault."""
    if isinstance(err, StorageFull):
        return R452_4_3_1_STORAGE_FULL
    return R451_4_3_0_LOCAL_ERROR
