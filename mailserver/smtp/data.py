"""Sans-IO reader for the SMTP DATA section (RFC 5321 §4.1.1.4, §4.5.2).

Feed it the bytes that follow the ``354`` reply, in blocks of any size; it finds the
end-of-data marker, undoes dot-stuffing on whole buffers, and enforces the size and
line-length limits without keeping unbounded input.

Guarantees (the same as a line-by-line reader that splits on CRLF only):

* only ``CRLF . CRLF`` ends the data, counting the CRLF that ended the DATA command;
  bare LF, bare CR and the published SMTP smuggling sequences (``LF . LF``,
  ``CR . LF``, ``LF . CRLF``, ``CR . CR LF`` ...) are message content;
* a line is what lies between two CRLFs: a leading ``.`` is removed from each line
  (transparency), so the stored message is the client's message byte for byte;
* :meth:`DataReader.feed` never consumes past the end marker, so pipelined commands
  after it stay with the caller.
"""

from __future__ import annotations

import enum

#: RFC 5321 §4.1.1.4: the data ends with a line holding one period.
END_MARKER = b"\r\n.\r\n"
CRLF = b"\r\n"


class DataError(enum.Enum):
    """Why the data was read to its end but not kept."""

    TOO_BIG = "too_big"  # more octets than the size limit (RFC 1870 §6, 552)
    LINE_TOO_LONG = "line_too_long"  # a line longer than the line limit (RFC 5321 §4.5.3.1.6)


class DataReader:
    """Collects one DATA section.

    ``max_size``: most octets of data kept (as sent: transparency dots count, the
    final ``.CRLF`` does not; RFC 1870 §6 only asks for a limit the server names);
    ``max_line``: longest line in octets, CRLF excluded (a transparency dot does not
    count). Once a limit is passed the data read so far is dropped and the reader only
    looks for the end marker; :attr:`error` says which limit.
    """

    def __init__(self, max_size: int, max_line: int) -> None:
        self._max_size = max_size
        # A stuffed line carries one extra dot (RFC 5321 §4.5.3.1.6 counts 1000 + dot).
        self._max_raw_line = max_line + 1
        # The CRLF that ended the DATA command begins the first line.
        self._raw = bytearray(CRLF)
        self._line_start = len(CRLF)  # offset in _raw of the current line
        self._fed = 0  # octets of the DATA section received so far (the end marker too)
        self.done = False
        self.error: DataError | None = None
        self._message: bytes | None = None

    def feed(self, data: bytes) -> int:
        """Take bytes; return how many were part of the DATA section.

        When the end marker is among them, :attr:`done` becomes True and the returned
        count stops right after it: the rest belongs to the next command.
        """
        if self.done:
            return 0
        raw = self._raw
        before = len(raw)
        raw += data
        end = raw.find(END_MARKER, max(0, before - len(END_MARKER) + 1))
        if end >= 0:
            used = end + len(END_MARKER) - before
            del raw[end + len(END_MARKER):]
            body_end = end + len(CRLF)  # the data keeps the CRLF before the dot
            size = self._fed + used - len(b".\r\n")
        else:
            used = len(data)
            body_end = len(raw)
            # A "." or ".CR" after the last CRLF may be the end marker's: not counted yet,
            # or a message of exactly max_size whose marker arrives in two reads was refused.
            size = self._fed + used - (2 if raw.endswith(b"\r\n.\r") else 1 if raw.endswith(b"\r\n.") else 0)
        self._fed += used
        if self.error is None:
            self._check_lines(body_end)
        if self.error is None and size > self._max_size:
            self._fail(DataError.TOO_BIG)
        if end >= 0:
            self.done = True
            if self.error is None:
                # RFC 5321 §4.5.2: remove the leading period of every line (the CRLF
                # kept in front makes the first line one like the others).
                del raw[body_end:]
                self._message = memoryview(raw.replace(b"\r\n.", CRLF))[len(CRLF):].tobytes()
            self._raw = bytearray()
        elif self.error is not None:
            # Keep only what could still be the start of the end marker.
            keep = raw[-(len(END_MARKER) - 1):]
            self._raw = bytearray(keep)
        return used

    def _check_lines(self, body_end: int) -> None:
        """Check the lines completed in ``_raw[_line_start:body_end]`` and the one still open."""
        raw = self._raw
        start = self._line_start
        if not self._lines_short(start, body_end):
            # Exact check, only when the quick one could not vouch for every line.
            lines = raw[start:body_end].split(CRLF)
            if lines[-1].endswith(b"\r"):  # maybe the first half of a CRLF still to come
                lines[-1] = lines[-1][:-1]
            if max(map(len, lines)) > self._max_raw_line:
                self._fail(DataError.LINE_TOO_LONG)
                return
        last = raw.rfind(CRLF, start, body_end)
        if last >= 0:
            self._line_start = last + len(CRLF)

    def _lines_short(self, start: int, end: int) -> bool:
        """True when every line in ``_raw[start:end]`` (the open one too) is surely within
        the limit: each stride of ``half`` octets holds the start of a CRLF, so two
        CRLFs are never more than ``2 * half - 1`` apart and no line is longer than
        ``2 * half - 3`` < the limit. One C-level search per stride instead of one
        object per line (issue 9 profile: line splitting was the DATA reader's cost).
        False means "not sure", never "too long"."""
        half = self._max_raw_line // 2
        find = self._raw.find
        for stride in range(start, end - half + 1, half):
            if find(CRLF, stride, stride + half + 1) < 0:
                return False
        return True

    def _fail(self, error: DataError) -> None:
        self.error = error

    @property
    def message(self) -> bytes:
        """The message, transparency removed. Only valid when done without error."""
        if not self.done or self.error is not None or self._message is None:
            raise ValueError("no message: DATA not finished or refused")
        return self._message
