"""Every mapping table, enumerated: upstream HTTP statuses per adapter, transport and Redis failures, and the
status vocabularies of both upstream kinds. A class or status nobody mapped shows up here, not in production."""

from __future__ import annotations

import asyncio
import inspect
import json

import aiohttp
import pytest
import redis.exceptions

from gateway.errors import GatewayError, InvalidInput, StoreError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.providers.cog.adapter import Health, ServerBusy, ServerStatus, _health, _raise_for_status
from gateway.providers.http import UpstreamResponse, _mapped_errors, failure_kind
from gateway.providers.replicate import _error
from gateway.ssrf import AddressRefused
from gateway.status import Status, parse_status
from gateway.store.redis import connect, mapped_errors

ERROR_STATUSES = range(400, 600)
REDIS_ERROR_KINDS = {"timeout", "loading", "pool_exhausted", "connection", "read_only", "no_script", "response", "cluster", "other"}
# What a tenant may see when an upstream fails: its own input problem, or the gateway's 502/503/504.
TENANT_STATUSES = {422, 502, 503, 504}
SECRET_HOST = "secret-upstream.internal"

REPLICATE_ERRORS: dict[int, type[GatewayError]] = {
    422: InvalidInput,  # with the upstream's invalid_fields; without them, a plain UpstreamError
    429: UpstreamUnavailable,
    503: UpstreamUnavailable,
    504: UpstreamTimeout,
}
COG_ERRORS: dict[int, type[GatewayError]] = {409: ServerBusy, 503: ServerBusy, 422: InvalidInput}


def _response(status: int, body: object, headers: dict[str, str] | None = None) -> UpstreamResponse:
    return UpstreamResponse(status, headers or {}, json.dumps(body).encode())


def _problem(status: int) -> dict[str, object]:
    fields = [{"type": "required", "field": "input", "description": "mask is required"}]
    return {"status": status, "detail": f"failed at https://{SECRET_HOST}/v1", "invalid_fields": fields}


@pytest.mark.parametrize("status", ERROR_STATUSES)
def test_every_replicate_error_status_maps_to_a_tenant_safe_error(status: int) -> None:
    mapped = _error(_response(status, _problem(status), {"retry-after": "3"}))
    assert type(mapped) is REPLICATE_ERRORS.get(status, UpstreamError)
    assert mapped.status in TENANT_STATUSES
    assert SECRET_HOST not in mapped.detail
    if isinstance(mapped, UpstreamUnavailable):
        assert mapped.headers() == {"Retry-After": "3"}


def test_a_replicate_422_without_invalid_fields_is_the_gateways_502() -> None:
    mapped = _error(_response(422, {"detail": "no"}))
    assert (type(mapped), mapped.status) == (UpstreamError, 502)


@pytest.mark.parametrize("status", ERROR_STATUSES)
def test_every_cog_error_status_maps_to_a_tenant_safe_error(status: int) -> None:
    with pytest.raises(GatewayError) as raised:
        _raise_for_status(_response(status, _problem(status)))
    assert type(raised.value) is COG_ERRORS.get(status, UpstreamError)
    assert raised.value.status in TENANT_STATUSES
    assert SECRET_HOST not in raised.value.detail


@pytest.mark.parametrize("status", range(200, 400))
def test_cog_success_statuses_raise_nothing(status: int) -> None:
    _raise_for_status(_response(status, {}))


def _subclasses(root: type[BaseException]) -> list[type[BaseException]]:
    found, pending = [], [root]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _aiohttp_errors() -> list[type[BaseException]]:
    public = [getattr(aiohttp, name) for name in dir(aiohttp)]
    return [cls for cls in public if inspect.isclass(cls) and issubclass(cls, aiohttp.ClientError)]


@pytest.mark.parametrize(
    "kind", [*_aiohttp_errors(), asyncio.TimeoutError, OSError, ConnectionResetError], ids=lambda c: c.__name__
)
async def test_every_transport_failure_becomes_an_upstream_error_chained_to_its_cause(kind: type[BaseException]) -> None:
    cause = kind.__new__(kind)
    with pytest.raises(UpstreamError) as raised, _mapped_errors(3.0):
        raise cause
    assert raised.value.__cause__ is cause
    expected = UpstreamTimeout if issubclass(kind, asyncio.TimeoutError) else UpstreamError
    assert type(raised.value) is expected
    assert raised.value.status in TENANT_STATUSES


@pytest.mark.parametrize(
    "kind",
    [*_subclasses(redis.exceptions.RedisError), *_subclasses(redis.exceptions.RedisClusterException)],
    ids=lambda c: c.__name__,
)
async def test_every_redis_failure_becomes_a_store_error_without_the_servers_address_and_is_observed(
    kind: type[BaseException],
) -> None:
    cause = kind.__new__(kind)  # some (cluster redirections) parse their message when built normally
    cause.args = ("Error connecting to redis://:s3cret@10.0.0.5:6379",)
    observed: list[str] = []
    client = connect("redis://:s3cret@10.0.0.5:6379", observed.append)  # connects on first use: never here
    with pytest.raises(StoreError) as raised, mapped_errors(client):
        raise cause
    await client.aclose()
    assert raised.value.__cause__ is cause and raised.value.status == 503
    assert "10.0.0.5" not in raised.value.detail and "s3cret" not in raised.value.detail
    assert len(observed) == 1 and observed[0] in REDIS_ERROR_KINDS


@pytest.mark.parametrize("value", [*(s.value for s in Status), "aborted"])
def test_every_replicate_status_is_understood(value: str) -> None:
    assert parse_status(value) is (Status.CANCELED if value == "aborted" else Status(value))


@pytest.mark.parametrize("value", [None, 1, "", "queued", "SUCCEEDED", ["succeeded"]])
def test_anything_else_is_not_a_status(value: object) -> None:
    with pytest.raises(ValueError, match="unknown prediction status"):
        parse_status(value)


@pytest.mark.parametrize("status", list(ServerStatus))
def test_every_cog_health_status_is_understood_and_garbage_is_unreachable(status: ServerStatus) -> None:
    reported = {"status": status.value, "setup": {"logs": "loading weights"}}
    assert _health(reported) == Health(status, "loading weights")
    assert _health({"status": "EXPLODED"}).status is ServerStatus.UNREACHABLE
    assert _health(["READY"]).status is ServerStatus.UNREACHABLE
    assert status.serving == (status in (ServerStatus.READY, ServerStatus.BUSY))
    assert status.failed == (status in (ServerStatus.SETUP_FAILED, ServerStatus.DEFUNCT))


@pytest.mark.parametrize(
    "status,error,kind",
    [
        (200, None, None),
        (201, None, None),
        (304, None, None),
        (400, None, "http_4xx"),
        (404, None, "http_4xx"),
        (409, None, "http_4xx"),
        (429, None, "http_429"),
        (500, None, "http_5xx"),
        (503, None, "http_5xx"),
        (None, UpstreamTimeout("late"), "timeout"),
        (None, UpstreamError("reset"), "connection"),
        (None, AddressRefused("10.0.0.1"), "refused"),
    ],
)
def test_every_upstream_outcome_has_one_failure_kind_for_the_metrics(
    status: int | None, error: BaseException | None, kind: str | None
) -> None:
    assert failure_kind(status, error) == kind
