"""Translations of coglet's wire format into Replicate's, table-driven."""

import json

import pytest

from gateway.errors import InvalidInput, UpstreamError
from gateway.providers.cog.adapter import ServerBusy, _raise_for_status, from_cog, split_upstream_id
from gateway.providers.http import UpstreamResponse
from gateway.status import Status

SERVER = "http://127.0.0.1:5100"


@pytest.mark.parametrize(
    "payload,output_is_array,expected",
    [
        ({"id": "p1", "status": "processing", "logs": "", "metrics": {}}, None, (Status.PROCESSING, None, None, "")),
        (
            {"id": "p1", "status": "processing", "output": ["data:a"], "logs": "x\n"},
            False,
            (Status.PROCESSING, "data:a", None, "x\n"),
        ),
        (
            {"id": "p1", "status": "processing", "output": ["data:a"], "logs": "x\n"},
            True,
            (Status.PROCESSING, ["data:a"], None, "x\n"),
        ),
        ({"id": "p1", "status": "processing", "output": ["data:a"]}, None, (Status.PROCESSING, ["data:a"], None, None)),
        (
            {"id": "p1", "status": "succeeded", "output": "data:b", "metrics": {"predict_time": 0.1}},
            False,
            (Status.SUCCEEDED, "data:b", None, None),
        ),
        (
            {"id": "p1", "status": "failed", "error": "Prediction failed: ValueError: bad image"},
            None,
            (Status.FAILED, None, "ValueError: bad image", None),
        ),
        ({"id": "p1", "status": "canceled", "metrics": {"predict_time": 1.2}}, None, (Status.CANCELED, None, None, None)),
    ],
)
def test_webhook_payloads_become_replicate_predictions(payload: dict, output_is_array: bool | None, expected: tuple) -> None:
    prediction = from_cog(payload, SERVER, output_is_array=output_is_array)
    assert (prediction.status, prediction.output, prediction.error, prediction.logs) == expected
    assert prediction.id == f"{SERVER}|p1"
    assert split_upstream_id(prediction.id) == (SERVER, "p1")


@pytest.mark.parametrize("payload", [[], {"status": "succeeded"}, {"id": "p1", "status": "exploded"}])
def test_malformed_payloads_are_upstream_errors(payload: object) -> None:
    with pytest.raises(UpstreamError):
        from_cog(payload, SERVER)


def _response(status: int, body: object) -> UpstreamResponse:
    return UpstreamResponse(status, {}, json.dumps(body).encode())


def test_busy_and_not_ready_servers_are_retryable() -> None:
    for status in (409, 503):
        with pytest.raises(ServerBusy):
            _raise_for_status(_response(status, {"error": "At capacity - all prediction slots busy", "status": "failed"}))


@pytest.mark.parametrize(
    "detail,expected",
    [
        (
            [{"loc": ["body", "input", "mask"], "msg": "Field required", "type": "value_error.missing"}],
            [{"type": "required", "field": "input", "description": "mask is required"}],
        ),
        (
            [{"loc": ["body", "input", "prompt"], "msg": '5 is not of type "string"', "type": "value_error"}],
            [{"type": "value_error", "field": "input.prompt", "description": '5 is not of type "string"'}],
        ),
        ("not a list", [{"type": "invalid", "field": "input", "description": "The model server rejected the input"}]),
    ],
)
def test_fastapi_style_422s_become_invalid_fields(detail: object, expected: list) -> None:
    with pytest.raises(InvalidInput) as caught:
        _raise_for_status(_response(422, {"detail": detail}))
    assert caught.value.invalid_fields == expected


def test_other_failures_are_bad_gateway_without_the_server_address() -> None:
    with pytest.raises(UpstreamError) as caught:
        _raise_for_status(_response(500, {}))
    assert caught.value.status == 502 and "127.0.0.1" not in caught.value.detail
