"""Logging set-up for `gateway serve`: capability tokens in URLs never reach a log line."""

from __future__ import annotations

import logging
import re

# Webhook and upload tokens, download, output-link and stream signatures: anyone holding one of these URLs can use it.
_SECRETS = (
    (re.compile(r"([?&](?:token|signature)=)[^&\s\"]+"), r"\1[redacted]"),
    (re.compile(r"(/download/\d+/)[^/\s\"?]+"), r"\1[redacted]"),
    (re.compile(r"(/uploads/)[^/\s\"?]+"), r"\1[redacted]"),
    (re.compile(r"(/outputs/\d+/\d+/)[^/\s\"?]+"), r"\1[redacted]"),
    (re.compile(r"(/predictions/[^/\s\"?]+/stream/)[^/\s\"?]+"), r"\1[redacted]"),
)


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's whole message (uvicorn's access log passes the path as an argument) and its
    traceback with `redact`. Installed on handlers, so that it sees the records of every logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def configure(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redacting = RedactingFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(redacting)
