"""Logging: one line per event on stderr, as text or JSON (server.log_format)."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # one event, one line: fold tracebacks onto the line
        return super().format(record).replace("\n", " | ")


def setup(fmt: str = "text", level: str = "info") -> logging.Logger:
    """Configure the root 'mailserver' logger for the daemon; return it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiosmtpd logs every command at INFO; keep its chatter at our level of detail
    logging.getLogger("mail.log").setLevel(max(logging.WARNING, root.level))
    return logging.getLogger("mailserver")
