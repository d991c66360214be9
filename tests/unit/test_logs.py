import io
import logging

import pytest

from gateway.logs import RedactingFilter, configure, redact


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
