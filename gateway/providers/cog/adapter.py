"""Cog's wire format: one prediction slot per server, async runs reported by webhook.

Cog differs from Replicate: no GET by id, 409 when its slot is busy, FastAPI-style 422 bodies, webhook
payloads without timestamps, and intermediate output wrapped in a list. This module translates all of it.
The upstream id of a Cog prediction is `<server url>|<prediction id>`: the server is part of the identity.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError, InvalidInput, Unauthenticated, UpstreamError, UpstreamUnavailable
from gateway.providers.base import WEBHOOK_EVENTS, CreateRequest, UpstreamPrediction, identify
from gateway.providers.http import UpstreamClient, UpstreamResponse
from gateway.signing import same_text

_HEALTH_TIMEOUT_SECONDS = 2.0


class ServerBusy(UpstreamUnavailable):
    """The server's single slot is taken (409) or it is not ready yet (503): try again later."""


class ServerStatus(enum.Enum):
    """What a server's `/health-check` reports; UNREACHABLE when it does not answer with one."""

    STARTING = "STARTING"
    READY = "READY"
    BUSY = "BUSY"  # set up and running a prediction
    SETUP_FAILED = "SETUP_FAILED"
    DEFUNCT = "DEFUNCT"
    UNREACHABLE = "UNREACHABLE"

    @property
    def serving(self) -> bool:
        return self in (ServerStatus.READY, ServerStatus.BUSY)

    @property
    def failed(self) -> bool:
        return self in (ServerStatus.SETUP_FAILED, ServerStatus.DEFUNCT)


@dataclass(frozen=True)
class Health:
    status: ServerStatus
    setup_logs: str = ""


def upstream_id(server: str, prediction_id: str) -> str:
    return f"{server}|{prediction_id}"


def split_upstream_id(value: str) -> tuple[str, str]:
    server, _, prediction_id = value.rpartition("|")
    return server, prediction_id


class CogAdapter:
    """Calls to Cog servers over one pooled client, and the checks of what they send back."""

    def __init__(self, client: UpstreamClient, server_tokens: Mapping[str, str]) -> None:
        self._client = client
        # The bearer token each server sends with its webhooks (WEBHOOK_AUTH_TOKEN).
        self._server_tokens = server_tokens
        self._output_is_array: bool | None = None  # learned from the model's schema

    async def start(self, request: CreateRequest, server: str) -> UpstreamPrediction:
        """Start the prediction on `server` under the gateway's own id (PUT is idempotent in flight)."""
        body: dict[str, Any] = {"id": request.prediction_id, "input": request.input}
        if request.webhook:
            body.update(webhook=request.webhook, webhook_events_filter=WEBHOOK_EVENTS)
        headers = {"Content-Type": "application/json", "Prefer": "respond-async"}
        response = await self._client.request(
            "PUT", f"{server}/predictions/{request.prediction_id}", headers=headers, json_body=body, operation="create"
        )
        _raise_for_status(response)
        return from_cog(response.json(), server)

    async def cancel(self, upstream: str) -> None:
        """Ask the server to stop; the outcome arrives by webhook. A 404 means it is not running there."""
        server, prediction_id = split_upstream_id(upstream)
        url = f"{server}/predictions/{prediction_id}/cancel"
        response = await self._client.request("POST", url, headers={}, operation="cancel")
        if response.status != 404:
            _raise_for_status(response)

    async def health(self, server: str) -> Health:
        try:
            url = f"{server}/health-check"
            response = await self._client.request("GET", url, headers={}, timeout=_HEALTH_TIMEOUT_SECONDS, operation="health")
            data = response.json()
        except GatewayError:
            return Health(ServerStatus.UNREACHABLE)
        return _health(data)

    async def openapi(self, servers: list[str]) -> dict[str, Any] | None:
        """The model's OpenAPI document, as the first server that answers publishes it."""
        for server in servers:
            try:
                response = await self._client.request(
                    "GET", f"{server}/openapi.json", headers={}, timeout=_HEALTH_TIMEOUT_SECONDS, operation="schema"
                )
                document = response.json() if response.status == 200 else None
            except GatewayError:
                continue
            if isinstance(document, dict):
                output = document.get("components", {}).get("schemas", {}).get("Output", {})
                self._output_is_array = isinstance(output, dict) and output.get("type") == "array"
                return document
        return None

    def parse_webhook(self, payload: Any, upstream: str, authorization: str | None) -> UpstreamPrediction:
        server, _ = split_upstream_id(upstream)
        expected = self._server_tokens.get(server)
        if expected is not None and not same_text(f"Bearer {expected}", authorization or ""):
            raise Unauthenticated("The webhook did not come from the model server running this prediction")
        return from_cog(payload, server, output_is_array=self._output_is_array)

    async def aclose(self) -> None:
        await self._client.aclose()


def from_cog(data: Any, server: str, *, output_is_array: bool | None = None) -> UpstreamPrediction:
    """A coglet response or webhook payload, in Replicate's terms.

    coglet reports the output of a model whose output is a single value as a one-item list while the
    prediction runs; when the schema says the output is not an array, that list is unwrapped.
    """
    prediction_id, status = identify(data, "The model server")
    error = data.get("error")
    if isinstance(error, str):
        error = error.removeprefix("Prediction failed: ")
    output = data.get("output")
    if output_is_array is False and not status.terminal and isinstance(output, list):
        output = output[-1] if output else None
    return UpstreamPrediction(
        id=upstream_id(server, prediction_id),
        status=status,
        output=output,
        logs=data.get("logs"),
        error=error,
        metrics=data.get("metrics") or None,
    )


def _health(data: Any) -> Health:
    if not isinstance(data, dict):
        return Health(ServerStatus.UNREACHABLE)
    try:
        status = ServerStatus(data.get("status"))
    except ValueError:
        status = ServerStatus.UNREACHABLE
    setup = data.get("setup")
    logs = setup.get("logs") if isinstance(setup, dict) else None
    return Health(status, str(logs or ""))


# Cog's error statuses: the slot is taken or the server is not ready (try again later), or the input is refused.
_BUSY_STATUSES = (409, 503)
_INVALID_STATUS = 422


def _raise_for_status(response: UpstreamResponse) -> None:
    if response.status < 400:
        return
    if response.status in _BUSY_STATUSES:
        raise ServerBusy("The model server is busy")
    if response.status == _INVALID_STATUS:
        raise InvalidInput(_invalid_fields(response))
    raise UpstreamError(f"The model server failed with HTTP {response.status}")


def _invalid_fields(response: UpstreamResponse) -> list[dict[str, str]]:
    """FastAPI-style `{"detail": [{"loc": ["body", "input", name], "msg", "type"}]}` as Replicate's invalid_fields."""
    try:
        detail = response.json().get("detail")
    except (UpstreamError, AttributeError):
        detail = None
    fields = []
    for item in detail if isinstance(detail, list) else []:
        location = [str(part) for part in item.get("loc", []) if part != "body"]
        name = location[-1] if location else "input"
        if item.get("type") == "value_error.missing":
            fields.append({"type": "required", "field": ".".join(location[:-1]) or "input", "description": f"{name} is required"})
        else:
            fields.append(
                {"type": str(item.get("type", "invalid")), "field": ".".join(location), "description": str(item.get("msg", ""))}
            )
    return fields or [{"type": "invalid", "field": "input", "description": "The model server rejected the input"}]
