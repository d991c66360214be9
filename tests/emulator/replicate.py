"""An HTTP emulator of Replicate's predictions API with fault injection, served as a Starlette app."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.emulator.controls import (
    EmulatedModel,
    EmulatorControls,
    Fault,
    RecordedRequest,
    control_routes,
    parse_json,
)
from tests.emulator.predictions import (
    WEBHOOK_SECRET,
    Prediction,
    PredictionRun,
    cancel,
    close_webhook_client,
    launch,
    new_prediction,
    output_bytes,
    timestamp,
    wait_for,
)
from tests.emulator.responses import (
    api_base,
    event_filter,
    host_url,
    json_response,
    not_found,
    page,
    problem,
    validation_problem,
)
from tests.emulator.trainings import cancel_training, create_training, get_training, list_trainings
from tests.emulator.validation import body_issues, input_issues

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, EmulatorControls, Any], Awaitable[Response]]

TRANSPORT_KEY = "replicate_emulator.transport"
CREATE_FIELDS = frozenset({"version", "input", "webhook", "webhook_events_filter", "stream", "webhook_completed"})
MODEL_CREATE_FIELDS = CREATE_FIELDS - {"version"}
RATE_LIMIT_REMAINING = {"create": "599", "get": "59999"}
WAIT_PATTERN = re.compile(r"wait(?:=(\d+))?")
MAX_WAIT_SECONDS = 60
VERSIONS_EPOCH = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ACCOUNT = {
    "type": "organization",
    "username": "acme",
    "name": "Acme Corp, Inc.",
    "github_url": None,
    "avatar_url": None,
}
THROTTLED_DETAIL = "Request was throttled. Your rate limit resets in ~30s."
INVALID_VERSION_DETAIL = "The specified version does not exist (or perhaps you don't have permission to use it?)"


class ReplicateEmulatorApp(Starlette):
    """Starlette app that keeps each connection's transport in the scope, so a fault can drop it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[TRANSPORT_KEY] = getattr(getattr(send, "__self__", None), "transport", None)
        await super().__call__(scope, receive, send)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await close_webhook_client()


def create_replicate_emulator(
    tokens: Iterable[str], models: Iterable[EmulatedModel], prefix: str = "/v1", accounts: Mapping[str, str] | None = None
) -> ReplicateEmulatorApp:
    """A Replicate API app under `prefix`; its controls are `app.state.emulator`. `accounts` maps tokens to
    accounts of their own (as on Replicate, an account's predictions are 404 to the others); by default every
    token is one account's."""
    prefix = prefix.rstrip("/")
    app = ReplicateEmulatorApp(
        routes=_api_routes(prefix)
        + control_routes(f"{prefix}/_emulator")
        + [
            Route("/delivery/{prediction_id}/{name}", _api("delivery", _get_output), methods=["GET"]),
            Route("/streams/{prediction_id}", _stream_endpoint, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error},
        lifespan=_lifespan,
    )
    app.state.emulator = EmulatorControls(tokens, models, prefix, accounts)
    return app


def _api_routes(prefix: str) -> list[Route]:
    table: list[tuple[str, str, str, Handler]] = [
        ("/predictions", "POST", "create", _create_prediction),
        ("/predictions", "GET", "list", _list_predictions),
        ("/predictions/{prediction_id}", "GET", "get", _get_prediction),
        ("/predictions/{prediction_id}/cancel", "POST", "cancel", _cancel_prediction),
        ("/models/{owner}/{name}/predictions", "POST", "create", _create_model_prediction),
        ("/deployments/{owner}/{name}/predictions", "POST", "create", _create_deployment_prediction),
        ("/models/{owner}/{name}", "GET", "model", _get_model),
        ("/models/{owner}/{name}/versions/{version_id}", "GET", "version", _get_version),
        ("/account", "GET", "account", _get_account),
        ("/webhooks/default/secret", "GET", "webhook_secret", _get_webhook_secret),
        ("/models/{owner}/{name}/versions/{version_id}/trainings", "POST", "create_training", create_training),
        ("/trainings", "GET", "list_trainings", list_trainings),
        ("/trainings/{training_id}", "GET", "get_training", get_training),
        ("/trainings/{training_id}/cancel", "POST", "cancel_training", cancel_training),
    ]
    return [Route(prefix + path, _api(route, handler), methods=[method]) for path, method, route, handler in table]


def _api(route: str, handler: Handler) -> Endpoint:
    """Wrap a handler with request recording, fault injection, authentication and rate-limit headers."""

    async def endpoint(request: Request) -> Response:
        controls = _controls(request)
        payload = parse_json(await request.body())
        controls.record(RecordedRequest(request.method, request.url.path, dict(request.headers), payload))
        fault = controls.take_fault(route, request.headers.get("authorization"), request.url.path)
        response = await _apply_fault(request, fault) if fault else None
        if response is None and not controls.authorized(request.headers.get("authorization")):
            response = problem(401, "You did not pass a valid authentication token", "Unauthenticated")
        if response is None:
            response = await handler(request, controls, payload)
        response.headers.setdefault("ratelimit-remaining", RATE_LIMIT_REMAINING.get(route, "2999"))
        response.headers.setdefault("ratelimit-reset", "1")
        return response

    return endpoint


async def _get_output(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    prediction_id, name = request.path_params["prediction_id"], request.path_params["name"]
    if controls.store.find(prediction_id) is None and controls.trainings.find(prediction_id) is None:
        return not_found()
    return Response(output_bytes(prediction_id, name), media_type="image/png")


async def _stream_endpoint(request: Request) -> Response:
    """A prediction's event stream, on a path of its own like Replicate's stream host: no key needed (the JS
    client sends none), recorded and open to faults like the API."""
    controls = _controls(request)
    controls.record(RecordedRequest(request.method, request.url.path, dict(request.headers), None))
    fault = controls.take_fault("stream", request.headers.get("authorization"))
    response = await _apply_fault(request, fault) if fault else None
    if response is not None:
        return response
    run = controls.store.find(request.path_params["prediction_id"])
    if run is None or "stream" not in run.data["urls"]:
        return not_found()
    after = _stream_index(request.headers.get("last-event-id"), run.data["id"])
    return StreamingResponse(_stream_events(run, after), media_type="text/event-stream")


def _stream_index(last_event_id: str | None, prediction_id: str) -> int:
    """The index of the next event after `Last-Event-ID` (`<prediction id>:<index>`); 0 for none or a foreign one."""
    name, _, index = (last_event_id or "").rpartition(":")
    return int(index) + 1 if name == prediction_id and index.isdigit() else 0


async def _stream_events(run: PredictionRun, index: int) -> AsyncIterator[bytes]:
    """`: hi` (as Replicate's nchan streams open), then every event from `index` on, until `done`."""
    yield b": hi\n\n"
    while True:
        for event, data in run.stream[index:]:
            lines = "".join(f"data: {line}\n" for line in data.split("\n"))
            yield f"event: {event}\nid: {run.data['id']}:{index}\n{lines}\n".encode()
            index += 1
            if event == "done":
                return
        await run.streamed.wait()


def _controls(request: Request) -> EmulatorControls:
    controls: EmulatorControls = request.app.state.emulator
    return controls


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (unknown path, wrong method) as problem+json."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = "Not found." if status == 404 else http.client.responses.get(status, "Error")
    return problem(status, detail, http.client.responses.get(status, "Error"))


async def _apply_fault(request: Request, fault: Fault) -> Response | None:
    """Delay, then drop the connection or answer the fault's status; None lets the real handler run."""
    await asyncio.sleep(fault.delay)
    if fault.drop_connection:
        await _drop_connection(request)
        return Response()
    if fault.status is None:
        return None
    phrase = http.client.responses.get(fault.status, "Error")
    body = fault.body or {
        "title": phrase,
        "detail": THROTTLED_DETAIL if fault.status == 429 else phrase,
        "status": fault.status,
    }
    headers = {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else None
    return JSONResponse(body, status_code=fault.status, headers=headers, media_type="application/problem+json")


async def _drop_connection(request: Request) -> None:
    """Close the socket before any response bytes, then wait until the server has noticed."""
    transport: asyncio.BaseTransport | None = request.scope.get(TRANSPORT_KEY)
    if transport is None:
        raise RuntimeError("drop_connection needs the app served by uvicorn")
    transport.close()
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _create_prediction(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    if (error := _body_error(payload, CREATE_FIELDS, ("version", "input"))) is not None:
        return error
    found = _resolve_version(controls.models, payload["version"])
    if found is None:
        return problem(422, INVALID_VERSION_DETAIL, "Invalid version or not permitted")
    return await _create(request, controls, payload, *found)


async def _create_model_prediction(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    model = _find_model(controls, request)
    if model is None:
        return not_found()
    if (error := _body_error(payload, MODEL_CREATE_FIELDS, ("input",))) is not None:
        return error
    return await _create(request, controls, payload, model, model.latest_version)


async def _create_deployment_prediction(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    deployment = "{owner}/{name}".format(**request.path_params)
    model = next((model for model in controls.models if deployment in model.deployments), None)
    if model is None:
        return not_found()
    if (error := _body_error(payload, MODEL_CREATE_FIELDS, ("input",))) is not None:
        return error
    return await _create(request, controls, payload, model, model.latest_version, deployment)


def _body_error(payload: Any, allowed: frozenset[str], required: tuple[str, ...]) -> Response | None:
    if not isinstance(payload, dict):
        return problem(400, "The request body must be a JSON object.", "Bad request")
    issues = body_issues(payload, allowed, required)
    return validation_problem(issues) if issues else None


def _resolve_version(models: Iterable[EmulatedModel], ref: Any) -> tuple[EmulatedModel, str] | None:
    """The model and version id for `<id>` or `owner/name:<id>`."""
    if not isinstance(ref, str):
        return None
    owner_name, _, version_id = ref.rpartition(":")
    for model in models:
        if version_id in model.versions and owner_name in ("", model.full_name):
            return model, version_id
    return None


def _find_model(controls: EmulatorControls, request: Request) -> EmulatedModel | None:
    full_name = "{owner}/{name}".format(**request.path_params)
    return next((model for model in controls.models if model.full_name == full_name), None)


async def _create(
    request: Request,
    controls: EmulatorControls,
    payload: dict[str, Any],
    model: EmulatedModel,
    version_id: str,
    deployment: str | None = None,
) -> Response:
    """Validate the input, start the prediction, and answer 201 (after `Prefer: wait` if asked)."""
    issues = input_issues(model.versions[version_id], payload["input"])
    if issues:
        return validation_problem(issues)
    config = controls.config
    data = new_prediction(
        host_url=host_url(request),
        api_url=api_base(request, controls),
        model=model.full_name,
        version=version_id,
        inputs=payload["input"],
        deployment=deployment,
        streams=_streams(model.versions[version_id]),
    )
    if payload.get("webhook"):  # echoed, as Replicate's prediction objects do (its JS and Go clients' types)
        data["webhook"] = payload["webhook"]
        data["webhook_events_filter"] = sorted(event_filter(payload.get("webhook_events_filter")))
    run = PredictionRun(
        data,
        start_delay=config.start_delay,
        run_seconds=config.run_seconds,
        failure=controls.take_failure(),
        webhook=payload.get("webhook") or None,
        events=event_filter(payload.get("webhook_events_filter")),
        outputs=config.outputs,
        tokens=_tokens(data) if "stream" in data["urls"] else (),
        account=controls.account(request.headers.get("authorization")),
    )
    launch(controls.store, run, controls.webhooks_dropped)
    wait = _prefer_wait(request.headers.get("prefer"))
    if wait is None:
        return json_response(controls.store.snapshot(run), 201)
    seconds, applied = wait
    return json_response(await wait_for(controls.store, run, seconds), 201, {"preference-applied": applied})


def _streams(schema: dict[str, Any]) -> bool:
    """Whether a version streams: its output is an iterator, as Cog describes a `predict` that yields."""
    output = schema.get("components", {}).get("schemas", {}).get("Output", {})
    return bool(output.get("type") == "array" and output.get("x-cog-array-type") == "iterator")


def _tokens(data: Prediction) -> tuple[str, ...]:
    """What a streaming model yields: its prompt, word by word (each after the first with its leading space)."""
    words = str(data["input"].get("prompt", "")).split(" ")
    return tuple(word if index == 0 else f" {word}" for index, word in enumerate(words))


def _prefer_wait(header: str | None) -> tuple[float, str] | None:
    """Seconds to hold a create and the `Preference-Applied` value, from `Prefer: wait[=n]`."""
    for token in (header or "").split(","):
        match = WAIT_PATTERN.fullmatch(token.strip())
        if match is None:
            continue
        if match.group(1) is None:
            return float(MAX_WAIT_SECONDS), "wait"
        seconds = min(int(match.group(1)), MAX_WAIT_SECONDS)
        return (float(seconds), f"wait={seconds}") if seconds >= 1 else None
    return None


def _find_run(request: Request, controls: EmulatorControls) -> PredictionRun | None:
    """The prediction, if the caller's account owns it."""
    run = controls.store.find(request.path_params["prediction_id"])
    return run if run is not None and run.account == controls.account(request.headers.get("authorization")) else None


async def _get_prediction(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    run = _find_run(request, controls)
    return json_response(controls.store.snapshot(run)) if run else not_found()


async def _cancel_prediction(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    run = _find_run(request, controls)
    return json_response(cancel(controls.store, run)) if run else not_found()


async def _list_predictions(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    return page(request, controls, controls.store, "/predictions", _list_item)


def _list_item(data: Prediction) -> Prediction:
    return {key: value for key, value in data.items() if key != "logs"}


async def _get_model(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    model = _find_model(controls, request)
    if model is None:
        return not_found()
    return json_response(
        {
            "url": f"https://replicate.com/{model.full_name}",
            "owner": model.owner,
            "name": model.name,
            "description": model.description,
            "visibility": "public",
            "github_url": None,
            "paper_url": None,
            "license_url": None,
            "run_count": controls.store.count(model.full_name),
            "cover_image_url": None,
            "default_example": None,
            "latest_version": _version_object(model, model.latest_version),
            "is_official": False,
        }
    )


async def _get_version(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    model = _find_model(controls, request)
    version_id = request.path_params["version_id"]
    if model is None or version_id not in model.versions:
        return not_found()
    return json_response(_version_object(model, version_id))


def _version_object(model: EmulatedModel, version_id: str) -> dict[str, Any]:
    created = VERSIONS_EPOCH + timedelta(days=list(model.versions).index(version_id))
    return {
        "id": version_id,
        "created_at": timestamp(created),
        "cog_version": "0.9.4",
        "openapi_schema": model.versions[version_id],
    }


async def _get_account(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    return json_response(ACCOUNT)


async def _get_webhook_secret(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    return json_response({"key": WEBHOOK_SECRET})
