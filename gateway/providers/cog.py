"""Self-hosted Cog model servers (coglet): one prediction slot per server, async runs reported by webhook.

Cog differs from Replicate: no GET by id, 409 when its slot is busy, FastAPI-style 422 bodies, webhook
payloads without timestamps, and intermediate output wrapped in a list. This module translates all of it.
The upstream id of a Cog prediction is `<server url>|<prediction id>`: the server is part of the identity.
"""

from __future__ import annotations

import hmac
from typing import Any

from gateway.catalog import Route
from gateway.config import ProviderConfig
from gateway.errors import (
    GatewayError,
    InvalidInput,
    Unauthenticated,
    UpstreamError,
    UpstreamUnavailable,
)
from gateway.providers.base import (
    WEBHOOK_EVENTS,
    Capabilities,
    CreateRequest,
    Provider,
    UpstreamPrediction,
    identify,
)
from gateway.providers.client import UpstreamClient, UpstreamResponse

_HEALTH_TIMEOUT_SECONDS = 2.0


class ServerBusy(UpstreamUnavailable):
    """The server's single slot is taken (409) or it is not ready yet (503): try again later."""


class CogProvider(Provider):
    capabilities = Capabilities(get_by_id=False, cancel=True, slots=True)

    def __init__(self, name: str, config: ProviderConfig, client: UpstreamClient) -> None:
        self.name = name
        self.servers = config.server_urls()
        token = config.webhook_token.get_secret_value() if config.webhook_token else None
        # The bearer token each server sends with its webhooks (WEBHOOK_AUTH_TOKEN); managed servers get theirs
        # from the gateway when it starts them.
        self.server_tokens: dict[str, str] = {server: token for server in config.servers if token}
        self.run_timeout = config.run_timeout
        self._output_is_array: bool | None = None  # learned from the model's schema
        self._client = client

    async def create(self, request: CreateRequest) -> UpstreamPrediction:
        """Start the prediction on `request.server` under the gateway's own id (PUT is idempotent in flight)."""
        server = request.server or self.servers[0]
        body: dict[str, Any] = {"id": request.prediction_id, "input": request.input}
        if request.webhook:
            body.update(webhook=request.webhook, webhook_events_filter=WEBHOOK_EVENTS)
        headers = {"Content-Type": "application/json", "Prefer": "respond-async"}
        response = await self._client.request("PUT", f"{server}/predictions/{request.prediction_id}", headers=headers, json_body=body)
        _raise_for_status(response)
        return from_cog(response.json(), server)

    async def cancel(self, upstream_id: str) -> UpstreamPrediction | None:
        """Ask the server to stop; the outcome arrives by webhook. A 404 means it is not running there."""
        server, prediction_id = split_upstream_id(upstream_id)
        response = await self._client.request("POST", f"{server}/predictions/{prediction_id}/cancel", headers={})
        if response.status != 404:
            _raise_for_status(response)
        return None

    async def health(self, server: str) -> str | None:
        """The server's reported status (READY, BUSY, STARTING, ...), or None when it cannot be reached."""
        try:
            response = await self._client.request("GET", f"{server}/health-check", headers={}, timeout=_HEALTH_TIMEOUT_SECONDS)
            data = response.json()
        except GatewayError:
            return None
        return str(data.get("status")) if isinstance(data, dict) else None

    async def version_schema(self, model: str, route: Route) -> dict[str, Any] | None:
        """The model's OpenAPI document, as the first server that answers publishes it."""
        for server in self.servers:
            try:
                response = await self._client.request("GET", f"{server}/openapi.json", headers={}, timeout=_HEALTH_TIMEOUT_SECONDS)
                if response.status == 200 and isinstance(document := response.json(), dict):
                    output = document.get("components", {}).get("schemas", {}).get("Output", {})
                    self._output_is_array = isinstance(output, dict) and output.get("type") == "array"
                    return document
            except GatewayError:
                continue
        return None

    def parse_webhook(self, payload: Any, upstream_id: str, authorization: str | None = None) -> UpstreamPrediction:
        server, _ = split_upstream_id(upstream_id)
        expected = self.server_tokens.get(server)
        if expected is not None and not hmac.compare_digest(authorization or "", f"Bearer {expected}"):
            raise Unauthenticated("The webhook did not come from the model server running this prediction")
        return from_cog(payload, server, output_is_array=self._output_is_array)

    async def aclose(self) -> None:
        await self._client.aclose()


def split_upstream_id(upstream_id: str) -> tuple[str, str]:
    server, _, prediction_id = upstream_id.rpartition("|")
    return server, prediction_id


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
        id=f"{server}|{prediction_id}",
        status=status,
        output=output,
        logs=data.get("logs"),
        error=error,
        metrics=data.get("metrics") or None,
    )


def _raise_for_status(response: UpstreamResponse) -> None:
    if response.status < 400:
        return
    if response.status in (409, 503):
        raise ServerBusy("The model server is busy")
    if response.status == 422:
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
            fields.append({"type": str(item.get("type", "invalid")), "field": ".".join(location), "description": str(item.get("msg", ""))})
    return fields or [{"type": "invalid", "field": "input", "description": "The model server rejected the input"}]
