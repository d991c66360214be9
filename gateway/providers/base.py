"""The contract every upstream adapter implements, and the shapes that cross it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.catalog import Route
from gateway.errors import UpstreamError
from gateway.providers.client import UpstreamStream
from gateway.state import Status, parse_status

# Every event an upstream can report; the gateway asks for all of them and filters for tenants itself.
WEBHOOK_EVENTS = ["start", "output", "logs", "completed"]


@dataclass(frozen=True)
class Capabilities:
    """What a kind of upstream can do; `predictions` consults this instead of catching 'unsupported' errors."""

    get_by_id: bool = True
    cancel: bool = True
    slots: bool = False  # each server runs one prediction at a time: predictions queue for a free slot
    remote_outputs: bool = False  # output files stay on the upstream; tenants get gateway links to them


@dataclass(frozen=True)
class CreateRequest:
    prediction_id: str
    model: str
    route: Route
    input: dict[str, Any]
    webhook: str | None = None
    server: str | None = None  # for slot-limited upstreams: the server chosen by the dispatcher


@dataclass(frozen=True)
class UpstreamPrediction:
    """An upstream's view of a prediction, already translated to Replicate's vocabulary."""

    id: str
    status: Status
    output: Any = None
    logs: str | None = None
    error: Any = None
    metrics: dict[str, Any] | None = None
    started_at: str | None = None
    completed_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Provider:
    """One upstream. Subclasses implement the calls their `capabilities` allow."""

    capabilities = Capabilities()

    async def create(self, request: CreateRequest) -> UpstreamPrediction:
        raise NotImplementedError

    async def get(self, upstream_id: str) -> UpstreamPrediction:
        raise NotImplementedError

    async def cancel(self, upstream_id: str) -> UpstreamPrediction | None:
        raise NotImplementedError

    def parse_webhook(self, payload: Any, upstream_id: str, authorization: str | None = None) -> UpstreamPrediction | None:
        """A webhook payload to trust as the new state, or None to re-read the prediction from the upstream.

        Raises Unauthenticated when the adapter can tell the sender is not the upstream."""
        return None

    async def version_schema(self, model: str, route: Route) -> dict[str, Any] | None:
        """The OpenAPI document of the version a route runs, or None when the upstream cannot tell."""
        return None

    async def open_output(self, url: str) -> UpstreamStream:
        """Start reading an output file the upstream keeps (for `remote_outputs`)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


def identify(data: Any, sender: str) -> tuple[str, Status]:
    """The id and status of an upstream prediction object; anything unusable is an UpstreamError."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise UpstreamError(f"{sender} sent a prediction without an id")
    try:
        return data["id"], parse_status(data.get("status"))
    except ValueError as exc:
        raise UpstreamError(f"{sender} sent an {exc}") from None
