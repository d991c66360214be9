"""Logging set-up for `gateway serve`: text or JSON lines, each carrying the fields of the request being served
(`request_context`), and capability tokens in URLs never reach a log line."""

from __future__ import annotations

import datetime
import functools
import json
import logging
import re
from collections.abc import Callable
from typing import Any, Literal

from gateway import request_context

LogFormat = Literal["text", "json"]
Announce = Callable[[str], None]
PRINT: Announce = functools.partial(print, flush=True)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"

# Webhook and upload tokens, download, output-link and stream signatures: anyone holding one of these URLs can use it.
_SECRETS = (
    (re.compile(r"([?&](?:token|signature)=)[^&\s\"]+"), r"\1[redacted]"),
    (re.compile(r"(/download/\d+/)[^/\s\"?]+"), r"\1[redacted]"),
    (re.compile(r"(/uploads/)[^/\s\"?]+"), r"\1[redacted]"),
    (re.compile(r"(/outputs/\d+/\d+/)[^/\s\"?]+"), r"\1[redacted]"),
    (re.compile(r"(/predictions/[^/\s\"?]+/stream/)[^/\s\"?]+"), r"\1[redacted]"),
)
# Each secret above follows one of these: a line holding none of them holds no secret.
_MARKERS = ("token=", "signature=", "/download/", "/uploads/", "/outputs/", "/stream/")

# The structured fields a JSON line may carry, in this order: the request's (`request_context`), the access log's
# (`api/timing`) and an upstream call's (`providers/http`). Any other `extra` a caller passes is left out.
JSON_FIELDS = (
    "request_id",
    "key_id",
    "tenant",
    "prediction_id",
    "provider",
    "operation",
    "failure",
    "upstream_status",
    "upstream_latency_ms",
    "method",
    "path",
    "path_template",
    "status",
    "duration_ms",
    "client",
)


def redact(text: str) -> str:
    if not any(marker in text for marker in _MARKERS):  # most lines: no pattern to run (an access line costs 5 scans)
        return text
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


class RequestFieldsFilter(logging.Filter):
    """Puts the current request's fields on the record (a field the call itself passed in `extra` wins). Runs
    in the task that logs, so a line logged while a request is served carries that request's id."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in request_context.fields().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, the `JSON_FIELDS` the record has, and the
    traceback. String fields are redacted like the message: a path or an upstream's detail may hold a URL."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in JSON_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = redact(record.exc_text)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str, log_format: LogFormat = "text") -> None:
    """Log to stderr in `log_format` (unless the root logger already has handlers), every handler redacting and
    carrying the request's fields; warnings are logged too, so that in JSON mode every line is JSON."""
    handler = logging.StreamHandler()
    text = logging.Formatter(TEXT_FORMAT, defaults={"request_id": "-"})  # "-": a line logged outside any request
    handler.setFormatter(JsonFormatter() if log_format == "json" else text)
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # Neither format shows the thread, the process or the calling function: not looking them up on every record
    # (the logging HOWTO's "Optimization") takes about a fifth off each line, and there is one per request.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    logging.captureWarnings(True)
    filters = (RequestFieldsFilter(), RedactingFilter())
    for installed in logging.getLogger().handlers:
        for log_filter in filters:
            installed.addFilter(log_filter)


def announcer(log_format: LogFormat) -> Announce:
    """How `gateway serve` tells its operator something: a printed line for a person, or in JSON mode an INFO
    record of the `gateway` logger, so that every line of output is JSON."""
    return logging.getLogger("gateway").info if log_format == "json" else PRINT
