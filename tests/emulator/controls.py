"""The emulator's catalogue and test controls: models, faults, configuration, recorded requests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulator.predictions import DEFAULT_ACCOUNT, Prediction, PredictionStore

FAULT_ROUTES = frozenset(
    {"create", "get", "cancel", "list", "model", "version", "account", "webhook_secret", "delivery", "stream"}
)


@dataclass(frozen=True)
class EmulatedModel:
    """A public model; its latest version is the last key of `versions` (id -> OpenAPI document)."""

    owner: str
    name: str
    versions: dict[str, dict[str, Any]]
    deployments: list[str] = field(default_factory=list)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.versions:
            raise ValueError(f"model {self.full_name} needs at least one version")

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def latest_version(self) -> str:
        return list(self.versions)[-1]


@dataclass(frozen=True)
class Fault:
    """A misbehaviour for the next `times` requests to `route` (only those carrying `token`, when given: a
    rate limit is per token; only those whose path ends with `path`, when given: one prediction's reads)."""

    route: str
    status: int | None = None
    delay: float = 0.0
    times: int = 1
    retry_after: int | None = None
    drop_connection: bool = False
    body: dict[str, Any] | None = None
    token: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.route not in FAULT_ROUTES:
            raise ValueError(f"unknown route {self.route!r}; expected one of {sorted(FAULT_ROUTES)}")
        if self.times < 1:
            raise ValueError("times must be at least 1")


@dataclass(frozen=True)
class RecordedRequest:
    """A request the emulator received (control requests excluded)."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass(frozen=True)
class EmulatorConfig:
    """Timing of new predictions, the list page size, and output URLs to hand out instead of the emulator's own."""

    start_delay: float = 0.05
    run_seconds: float = 0.2
    page_size: int = 100
    outputs: tuple[str, ...] = ()


class EmulatorControls:
    """Thread-safe state shared by the request handlers and the tests (as `app.state.emulator`)."""

    def __init__(
        self, tokens: Iterable[str], models: Iterable[EmulatedModel], prefix: str, accounts: Mapping[str, str] | None = None
    ) -> None:
        self.tokens = frozenset(tokens)
        self.accounts = dict(accounts or {})  # token -> account name; others belong to DEFAULT_ACCOUNT
        self.models = tuple(models)
        self.prefix = prefix
        self.store = PredictionStore()
        self.trainings = PredictionStore()  # listed apart: a training is never among the predictions
        self._lock = threading.Lock()
        self._config = EmulatorConfig()
        self._faults: list[tuple[Fault, int]] = []
        self._requests: list[RecordedRequest] = []
        self._failures: list[str] = []
        self._drop_webhooks = False

    def configure(
        self, start_delay: float = 0.05, run_seconds: float = 0.2, page_size: int = 100, outputs: Iterable[str] = ()
    ) -> None:
        """Set the timing (and, if given, the output URLs) of predictions created from now on, and the page size."""
        with self._lock:
            self._config = EmulatorConfig(start_delay, run_seconds, page_size, tuple(outputs))

    @property
    def config(self) -> EmulatorConfig:
        with self._lock:
            return self._config

    def inject(self, fault: Fault) -> None:
        """Queue a fault; faults on the same route apply in the order injected."""
        with self._lock:
            self._faults.append((fault, fault.times))

    def clear_faults(self) -> None:
        """Forget the faults not used up yet."""
        with self._lock:
            self._faults.clear()

    def take_fault(self, route: str, authorization: str | None = None, path: str = "") -> Fault | None:
        """The fault that applies to this request to `route`, using up one of its `times`."""
        token = token_of(authorization)
        with self._lock:
            for index, (fault, remaining) in enumerate(self._faults):
                if fault.route != route or fault.token not in (None, token):
                    continue
                if fault.path is not None and not path.endswith(fault.path):
                    continue
                if remaining > 1:
                    self._faults[index] = (fault, remaining - 1)
                else:
                    del self._faults[index]
                return fault
        return None

    def fail_next(self, error: str) -> None:
        """Make the next created prediction end `failed` with `error`."""
        with self._lock:
            self._failures.append(error)

    def take_failure(self) -> str | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def drop_webhooks(self, flag: bool) -> None:
        """Skip (True) or resume (False) webhook delivery."""
        with self._lock:
            self._drop_webhooks = flag

    def webhooks_dropped(self) -> bool:
        with self._lock:
            return self._drop_webhooks

    def authorized(self, authorization: str | None) -> bool:
        """Whether an Authorization header carries an accepted token (Bearer or Token scheme)."""
        return token_of(authorization) in self.tokens

    def account(self, authorization: str | None) -> str:
        """The account an (accepted) Authorization header's token belongs to: it sees only its own predictions."""
        return self.accounts.get(token_of(authorization) or "", DEFAULT_ACCOUNT)

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def requests(self) -> list[RecordedRequest]:
        """Requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def predictions(self) -> list[Prediction]:
        """Current state of every prediction, oldest first."""
        return self.store.snapshots()

    def reset(self) -> None:
        """Forget predictions, requests and faults; restore the default configuration."""
        for run in [*self.store.clear(), *self.trainings.clear()]:
            run.stop()
        with self._lock:
            self._config = EmulatorConfig()
            self._faults.clear()
            self._requests.clear()
            self._failures.clear()
            self._drop_webhooks = False


def token_of(authorization: str | None) -> str | None:
    """The token of a Bearer or Token Authorization header."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() in {"bearer", "token"} else None


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, or None if it is empty or malformed."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def control_routes(base: str) -> list[Route]:
    """Unauthenticated routes that drive `app.state.emulator` from another process."""
    actions: dict[str, Callable[[EmulatorControls, dict[str, Any]], None]] = {
        "faults": lambda controls, body: controls.inject(Fault(**body)),
        "reset": lambda controls, body: controls.reset(),
        "configure": lambda controls, body: controls.configure(**body),
        "fail_next": lambda controls, body: controls.fail_next(str(body["error"])),
        "drop_webhooks": lambda controls, body: controls.drop_webhooks(bool(body["drop"])),
    }
    routes = [Route(f"{base}/{name}", _control_endpoint(action), methods=["POST"]) for name, action in actions.items()]
    return [
        *routes,
        Route(f"{base}/requests", _recorded_requests, methods=["GET"]),
        Route(f"{base}/predictions", _current_predictions, methods=["GET"]),
    ]


def _control_endpoint(action: Callable[[EmulatorControls, dict[str, Any]], None]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        body = parse_json(await request.body())
        try:
            action(request.app.state.emulator, body if isinstance(body, dict) else {})
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse(
                {"title": "Bad request", "detail": str(exc), "status": 400},
                status_code=400,
                media_type="application/problem+json",
            )
        return Response(status_code=204)

    return endpoint


async def _recorded_requests(request: Request) -> Response:
    return JSONResponse([asdict(recorded) for recorded in request.app.state.emulator.requests()])


async def _current_predictions(request: Request) -> Response:
    return JSONResponse(request.app.state.emulator.predictions())
