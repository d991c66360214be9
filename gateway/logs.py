"""Logging set-up for `gateway serve`: capability tokens in URLs never reach a log line."""

from __future__ import annotations

import logging
import re

# Webhook and upload tokens, download signatures: anyone holding one of these URLs can use it.
_SECRETS = (
    (re.compile(r"([?&](?:token|signature)=)[^&\s\"]+"), r"\1[redacted]"),
    (re.compile(r"(/download/\d+/)[^/\s\"?]+"), r"\1[redacted]"),
    (re.compile(r"(/uploads/)[^/\s\"?]+"), r"\1[redacted]"),
)


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message arguments (uvicorn's access log passes the path as one) with `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def configure(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("uvicorn.access", "uvicorn.error", "gateway"):
        logging.getLogger(name).addFilter(RedactingFilter())
