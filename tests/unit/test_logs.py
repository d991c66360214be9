import io
import json
import logging

import pytest

from gateway import request_context
from gateway.logs import TEXT_FORMAT, JsonFormatter, RedactingFilter, RequestFieldsFilter, configure, redact


@pytest.mark.parametrize(
    "line,expected",
    [
        ("POST /webhooks/upstream/abc?token=8d13 HTTP/1.1", "POST /webhooks/upstream/abc?token=[redacted] HTTP/1.1"),
        ("GET /v1/files/f1/download/1795/xVC_Xm-7/out-0.png", "GET /v1/files/f1/download/1795/[redacted]/out-0.png"),
        (
            "GET /v1/files/f1/download?owner=acme&expiry=1&signature=a%2Bb",
            "GET /v1/files/f1/download?owner=acme&expiry=1&signature=[redacted]",
        ),
        ("PUT /uploads/aHR0cDo.1d0e/out-0.png", "PUT /uploads/[redacted]/out-0.png"),
        ("GET /v1/predictions/p1/outputs/0/1795/5f2a9c/out.png", "GET /v1/predictions/p1/outputs/0/1795/[redacted]/out.png"),
        ("GET /v1/predictions/p1/stream/87cb5aeb HTTP/1.1", "GET /v1/predictions/p1/stream/[redacted] HTTP/1.1"),
        ("GET /replicate/v1/predictions/p1/stream/87cb5aeb", "GET /replicate/v1/predictions/p1/stream/[redacted]"),
        ("GET /v1/predictions/abc", "GET /v1/predictions/abc"),
    ],
)
def test_capability_tokens_are_redacted(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_the_filter_rewrites_uvicorns_access_log_arguments(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.access")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "POST", "/webhooks/upstream/x?token=secret", "1.1", 204)
    assert "secret" not in caplog.text and "token=[redacted]" in caplog.text


def test_every_logger_is_redacted_once_configured_even_children_and_tracebacks() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    try:
        configure("info")
        logging.getLogger("gateway.api.problems").warning("PUT %s -> 403", "/uploads/aHR0cDo.1d0e/out-0.png")
        logging.getLogger("uvicorn.access").info('"GET %s HTTP/1.1" 200', "/v1/predictions/p/outputs/0/1795/5f2a9c/out.png")
        try:
            raise RuntimeError("failed to call http://gw/webhooks/upstream/p?token=8d13")
        except RuntimeError:
            logging.getLogger("gateway.providers").exception("callback failed")
    finally:
        root.removeHandler(handler)
    text = stream.getvalue()
    assert "aHR0cDo" not in text and "5f2a9c" not in text and "8d13" not in text
    assert text.count("[redacted]") == 3


def test_a_json_line_carries_the_requests_fields_under_its_own_and_redacts_every_string() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestFieldsFilter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.json")
    logger.addHandler(handler)
    try:
        with request_context.serving("r-1"):
            request_context.tag(key_id="k1", tenant="t1", upstream_status=500)
            extra = {"path": "/webhooks/upstream/p?token=s3cr3t", "upstream_status": 201, "unlisted": "left out"}
            logger.warning("PUT %s", "/uploads/aHR0cDo.1d0e/out-0.png", extra=extra)
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert inside.pop("time").endswith("+00:00") and outside.pop("time")
    assert inside == {
        "level": "warning",
        "logger": "test.json",
        "message": "PUT /uploads/[redacted]/out-0.png",
        "request_id": "r-1",
        "key_id": "k1",
        "tenant": "t1",
        "upstream_status": 201,
        "path": "/webhooks/upstream/p?token=[redacted]",
    }
    assert outside == {"level": "warning", "logger": "test.json", "message": "outside"}


def test_text_lines_name_the_request_or_none() -> None:
    formatter = logging.Formatter(TEXT_FORMAT, defaults={"request_id": "-"})
    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "GET /health", None, None)
    assert formatter.format(record).endswith(" INFO gateway.access [-]: GET /health")
    with request_context.serving("r-2"):
        RequestFieldsFilter().filter(record)
    assert formatter.format(record).endswith(" INFO gateway.access [r-2]: GET /health")
