"""The gateway's JSON responses are the bytes starlette's JSONResponse writes, whatever orjson cannot write too."""

from typing import Any

import pytest
from starlette import responses

from gateway.api.responses import JSONResponse


@pytest.mark.parametrize(
    "content",
    [
        {"id": "p1", "input": {"prompt": "un chat à Zürich ☕", "n": 3, "scale": 7.5, "ok": True, "none": None}},
        [1, -2.25, "a\"b\\c\n", {"nested": [[], {}]}],
        {"huge": 2**70},  # beyond orjson's 64 bits: written by the standard library
    ],
)
def test_the_body_is_what_starlette_writes(content: Any) -> None:
    assert JSONResponse(content).body == responses.JSONResponse(content).body
