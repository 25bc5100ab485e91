"""Sans-IO IMAP4rev1 command parser (no sockets, no asyncio).

Typical use by a server::

    reader = CommandReader(max_literal=limits.message_size)
    reader.feed(data)
    while (event := reader.next_event()) is not NEED_DATA:
        match event:
            case NeedsContinuation(): send(b"+ Ready\\r\\n")
            case LiteralTooBig(tag=tag): send(tag, b"NO [TOOBIG] ...")  # BAD + BYE for {n+}
            case BadCommand(tag=tag, text=text): send(tag or "*", b"BAD " + text)
            case CommandRejected(): ...  # tagged NO [code] text
            case Command(): dispatch(event)

The response-side primitives are in :mod:`.encode`.
"""

from .commands import (
    Append,
    AppendMessage,
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    Copy,
    Create,
    Delete,
    Enable,
    Examine,
    Expunge,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    Rename,
    Select,
    StartTLS,
    Status,
    Store,
    StoreMode,
    Subscribe,
    Unselect,
    Unsubscribe,
)
from .dates import format_date_time
from .events import (
    NEED_DATA,
    BadCommand,
    CommandRejected,
    LiteralTooBig,
    NeedData,
    NeedsContinuation,
)
from .fetch import Fetch, FetchAttr, Section
from .grammar import decode_sasl, parse_command
from .lexer import ParseError
from .mutf7 import MUTF7Error, decode_mutf7, encode_mutf7
from .reader import (
    DEFAULT_MAX_LITERAL,
    MAX_COMMAND_TEXT,
    MAX_LINE_LENGTH,
    MAX_SIZE_DIGITS,
    UNREADABLE_SIZE,
    CommandReader,
    Event,
)
from .search import (
    DateRelation,
    Search,
    SearchAll,
    SearchAnd,
    SearchBody,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchSequence,
    SearchSize,
    SearchText,
)
from .sequence import SequenceSet, parse_sequence_set

__all__ = [
    "NEED_DATA", "DEFAULT_MAX_LITERAL", "MAX_COMMAND_TEXT", "MAX_LINE_LENGTH", "MAX_SIZE_DIGITS", "UNREADABLE_SIZE",
    "Append", "AppendMessage", "Authenticate", "BadCommand", "Capability", "Check", "Close",
    "Command", "CommandReader", "CommandRejected", "Copy", "Create", "DateRelation", "Delete",
    "Enable", "Event", "Examine", "Expunge", "Fetch", "FetchAttr", "Id", "Idle", "List",
    "LiteralTooBig", "Login", "Logout", "Lsub", "MUTF7Error", "Move", "Namespace", "NeedData",
    "NeedsContinuation", "Noop", "ParseError", "Rename", "Search", "SearchAll", "SearchAnd",
    "SearchBody", "SearchDate", "SearchFlag", "SearchHeader", "SearchKey", "SearchModSeq",
    "SearchNot", "SearchOr", "SearchSequence", "SearchSize", "SearchText", "Section", "Select",
    "SequenceSet", "StartTLS", "Status", "Store", "StoreMode", "Subscribe", "Unselect",
    "Unsubscribe", "decode_mutf7", "decode_sasl", "encode_mutf7", "format_date_time",
    "parse_command", "parse_sequence_set",
]
