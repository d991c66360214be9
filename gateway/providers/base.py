"""The contract every upstream adapter implements, and the shapes that cross it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.catalog import Route
from gateway.errors import UpstreamError
from gateway.providers.credentials import CredentialPools, CredentialState
from gateway.providers.http import UpstreamStream
from gateway.status import Status, parse_status
from gateway.store import QueueStore, StoredPrediction

# Every event an upstream can report; the gateway asks for all of them and filters for tenants itself.
WEBHOOK_EVENTS = ("start", "output", "logs", "completed")


@dataclass(frozen=True)
class Capabilities:
    """What a kind of upstream can do; `predictions` consults this instead of catching 'unsupported' errors."""

    get_by_id: bool = True  # the upstream answers GET for a prediction: stale records are refreshed from it
    cancel: bool = True
    slots: bool = False  # each server runs one prediction at a time: create queues, the adapter dispatches
    remote_outputs: bool = False  # output files stay on the upstream; tenants get gateway links to them


@dataclass(frozen=True)
class CreateRequest:
    prediction_id: str
    model: str
    route: Route
    input: dict[str, Any]
    webhook: str | None = None
    tenant: str = ""  # who asked: slot queues take tenants in turn


@dataclass(frozen=True)
class TrainingRequest:
    """A training of the upstream `model`'s `version` into the upstream model `destination`."""

    model: str
    version: str
    destination: str
    input: dict[str, Any]


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
    stream_url: str | None = None  # the upstream's event stream of this prediction (its `urls.stream`)


@dataclass(frozen=True)
class Callback:
    """A webhook an upstream sent about one prediction: the parsed payload (None if it was not JSON), the raw
    body and the headers (names in lower case)."""

    payload: Any
    body: bytes
    headers: Mapping[str, str]


Report = Callable[[str, UpstreamPrediction], Awaitable[StoredPrediction | None]]
"""Apply what an upstream reported on a prediction (by id), as an upstream webhook is applied; the record as
now stored, or None when there is none."""
Prepare = Callable[[StoredPrediction], Awaitable[CreateRequest]]
"""The request that runs a queued prediction on a server (its input files made fetchable there)."""


@dataclass(frozen=True)
class Reporting:
    """What the gateway hands adapters: those that run predictions on their own schedule (slot queues, managed
    servers) report through `report`, the path webhooks take, and never call into the services above; those
    with upstream tokens take them from `pools`."""

    report: Report
    prepare: Prepare
    queue: Callable[[str], QueueStore]  # a consumer of the named durable queue
    server_token: Callable[[str], str]  # the webhook bearer token a managed server is started with
    upload_url: Callable[[str], str]  # where a managed server uploads its output files
    pools: CredentialPools | None = None  # credential pools shared by all processes; None: each adapter its own
    runs_servers: bool = True  # False: a supervising process runs the managed servers (`gateway serve --workers`)


class Provider:
    """One upstream. Subclasses implement the calls their `capabilities` allow.

    Lifecycle: `start()` once the gateway's services exist (background work, managed servers), `drain()` when
    the process begins to shut down, `aclose()` when it stops."""

    capabilities = Capabilities()

    @property
    def usable(self) -> bool:
        """Whether the provider can take predictions at all (a Replicate provider needs a token); a route on one
        that cannot is skipped."""
        return True

    async def create(self, request: CreateRequest) -> UpstreamPrediction | None:
        """Start the prediction upstream; None when it was queued instead (it is reported once it starts)."""
        raise NotImplementedError

    async def create_training(self, request: TrainingRequest) -> UpstreamPrediction:
        """Start a training upstream (only providers with a `training_destination_owner` are asked); its
        upstream id is then read and cancelled with `get` and `cancel` like a prediction's."""
        raise NotImplementedError

    async def get(self, upstream_id: str) -> UpstreamPrediction:
        raise NotImplementedError

    async def cancel(self, upstream_id: str) -> UpstreamPrediction | None:
        """Ask the upstream to stop; its state if it answers with one."""
        raise NotImplementedError

    async def find(self, callback: str, since: float) -> UpstreamPrediction | None:
        """The upstream prediction whose webhook URL ends with `callback` (the path and query the gateway gave
        it, which name one prediction whatever address the gateway had), created since `since` (Unix seconds);
        None when the upstream has none. How a create whose answer was lost is found out. An UpstreamError when
        the upstream cannot be asked, or cannot tell."""
        raise UpstreamError("The upstream provider cannot look up predictions")

    def parse_webhook(self, callback: Callback, upstream_id: str) -> UpstreamPrediction | None:
        """The state a webhook reports, when the adapter can tell the upstream sent it; None to re-read the
        prediction from the upstream instead.

        Raises Unauthenticated when the adapter can tell the sender is not the upstream."""
        return None

    async def finished(self, upstream_id: str) -> None:
        """The upstream reported the end of a run: release whatever the run held."""

    async def version_schema(self, model: str, route: Route) -> dict[str, Any] | None:
        """The OpenAPI document of the version a route runs, or None when the upstream cannot tell."""
        return None

    async def open_output(self, url: str) -> UpstreamStream:
        """Start reading an output file the upstream keeps (for `remote_outputs`); NotFound when it has gone."""
        raise NotImplementedError

    async def open_stream(self, url: str, last_event_id: str | None) -> UpstreamStream:
        """Start reading the upstream's event stream of a prediction (an `UpstreamPrediction.stream_url`),
        resuming after `last_event_id`; an UpstreamError when it is not available."""
        raise NotImplementedError

    async def credentials(self) -> list[CredentialState]:
        """The state of each upstream credential (for the admin API), read from the shared store; empty for a
        provider without credentials of its own."""
        return []

    async def start(self) -> None:
        pass

    async def start_servers(self) -> None:
        """Start what this provider runs on this machine (managed model servers) and wait until it is ready;
        `start()` does this too. A supervisor of several serving processes calls only this."""

    def drain(self) -> None:
        """Stop taking background work (the process is shutting down); what was taken goes back to Redis for
        another process. Only signals: `aclose()` waits for it."""

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
