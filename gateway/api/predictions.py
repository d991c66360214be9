"""Prediction endpoints: create (three ways), get, list, cancel."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlencode

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway import request_context
from gateway.api.idempotency import REPLAYED_HEADER, idempotency_key
from gateway.api.requests import api_root, caller, json_object, reader, services
from gateway.api.responses import JSONResponse
from gateway.catalog import Reference, RefKind
from gateway.errors import BadRequest, Forbidden, InvalidInput, NotFound
from gateway.predictions import CreateOptions
from gateway.providers.base import WEBHOOK_EVENTS
from gateway.store import StoredPrediction
from gateway.timestamps import parse_timestamp

_BODY_FIELDS = {"version", "input", "webhook", "webhook_events_filter", "webhook_completed", "stream"}
_WEBHOOK_EVENTS = frozenset(WEBHOOK_EVENTS)
_REQUIRED_FIELDS = frozenset({"version", "input"})  # null is not a value for these
MAX_WAIT_SECONDS = 60
_SECONDS = re.compile(r"[0-9]{1,6}")  # ASCII digits only: str.isdigit() also takes '²', which int() refuses
MIN_CANCEL_AFTER_SECONDS = 5
_DURATION = re.compile(r"(?:([0-9]{1,6})h)?(?:([0-9]{1,6})m)?(?:([0-9]{1,9}(?:\.[0-9]{1,6})?)s)?|([0-9]{1,9})")
_WAIT_MARGIN_SECONDS = 0.25  # answer before the client's own timeout (the Python client allows n + 0.5 s)
# An upstream chooses the content type: never let a browser run what it sends on the gateway's origin.
_UNTRUSTED_CONTENT = {"x-content-type-options": "nosniff", "content-security-policy": "sandbox"}
_PASSED_HEADERS = {"content-type", "content-length", "etag", "last-modified", "cache-control"}


def prediction_json(record: StoredPrediction, request: Request) -> dict[str, Any]:
    """The public prediction object: the stored document plus absolute URLs on the address the tenant used."""
    return services(request).links.prediction(record, api_root(request))


async def get_output(request: Request) -> Response:
    """An output file kept by the upstream, streamed through; the signed link is the only credential needed."""
    params, gateway = request.path_params, services(request)
    prediction_id, index, expiry = params["prediction_id"], params["index"], params["expiry"]
    if not gateway.links.outputs.verify(prediction_id, index, expiry, params["signature"]):
        raise NotFound("The requested output does not exist")
    request_context.tag(prediction_id=prediction_id)
    if expiry <= time.time():
        raise Forbidden("The output link has expired; read the prediction again for a fresh one")
    stream = await gateway.predictions.open_output(prediction_id, index, gateway.auth.active)
    headers = {k: v for k, v in stream.headers.items() if k in _PASSED_HEADERS}
    headers.update(_UNTRUSTED_CONTENT)
    return StreamingResponse(stream.chunks(), headers=headers, background=BackgroundTask(stream.close))


async def create_prediction(request: Request) -> Response:
    return await _create(request, RefKind.VERSION)


async def create_model_prediction(request: Request) -> Response:
    return await _create(request, RefKind.MODEL)


async def create_deployment_prediction(request: Request) -> Response:
    return await _create(request, RefKind.DEPLOYMENT)


async def get_prediction(request: Request) -> Response:
    key, count = await reader(request)
    record = _logged(await services(request).predictions.get(key, request.path_params["prediction_id"], count=count))
    return JSONResponse(prediction_json(record, request))


async def cancel_prediction(request: Request) -> Response:
    key = await caller(request, "predict")
    record = _logged(await services(request).predictions.cancel(key, request.path_params["prediction_id"]))
    return JSONResponse(prediction_json(record, request))


async def list_predictions(request: Request) -> Response:
    key = await caller(request, "read")
    query = request.query_params
    after, before = _instant(query.get("created_after")), _instant(query.get("created_before"))
    page = await services(request).predictions.list(key, query.get("cursor"), after, before)
    root = api_root(request)
    return JSONResponse(
        {
            "next": _page_url(root, page.next_cursor, query),
            "previous": _page_url(root, page.previous_cursor, query),
            "results": [prediction_json(p, request) for p in page.predictions],
        }
    )


async def _create(request: Request, kind: RefKind) -> Response:
    key = await caller(request, "predict", counted=False)
    body = await json_object(request)
    idempotency = idempotency_key(request, body)
    options = _create_options(body, _cancel_after(request.headers.get("cancel-after")), kind is RefKind.VERSION)
    wait = _preferred_wait(request.headers.get("prefer"))  # read before anything runs upstream
    name = body["version"] if kind is RefKind.VERSION else _path_name(request)
    created = await services(request).creates.create(key, Reference(kind, name), options, idempotency)
    record, headers = _logged(created.record), {REPLAYED_HEADER: "true"} if created.replayed else {}
    if wait is not None:
        seconds, headers["Preference-Applied"] = wait
        record = await services(request).predictions.wait(record, seconds - _WAIT_MARGIN_SECONDS, request.is_disconnected)
    doc = prediction_json(record, request)
    if wait is not None and not record.status.terminal:
        # Every official client treats any status but `starting` as final: an unfinished one must say so.
        doc["status"] = "starting"
    return JSONResponse(doc, status_code=201, headers={"Location": doc["urls"]["get"], **headers})


def _logged(record: StoredPrediction) -> StoredPrediction:
    """`record`, its id and provider now on the request's log lines."""
    request_context.tag(prediction_id=record.id, provider=record.provider)
    return record


def _preferred_wait(prefer: str | None) -> tuple[int, str] | None:
    """`Prefer: wait` (60 s) or `wait=n`, capped at 60 s as Replicate does: (seconds, Preference-Applied)."""
    for preference in (prefer or "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        if not value.strip():
            return MAX_WAIT_SECONDS, "wait"
        if _SECONDS.fullmatch(value.strip()) and int(value) > 0:
            seconds = min(int(value), MAX_WAIT_SECONDS)
            return seconds, f"wait={seconds}"
    return None


def _path_name(request: Request) -> str:
    return f"{request.path_params['owner']}/{request.path_params['name']}"


def _cancel_after(header: str | None) -> float | None:
    """`Cancel-After`: seconds as `30`, `30s`, `5m`, `1h30m45s` (a bare number is seconds), at least 5 s."""
    if header is None:
        return None
    match = _DURATION.fullmatch(header.strip())
    if match is None or not any(match.groups()):
        raise BadRequest(f"Cancel-After must be a duration such as 30, 30s, 5m or 1h30m45s, not {header[:40]!r}")
    hours, minutes, seconds, bare = (float(part) if part else 0.0 for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds + bare
    if total < MIN_CANCEL_AFTER_SECONDS:
        raise BadRequest(f"Cancel-After must be at least {MIN_CANCEL_AFTER_SECONDS} seconds")
    return total


def _create_options(body: dict[str, Any], cancel_after: float | None, version_required: bool) -> CreateOptions:
    """Check the top-level body the way Replicate does (additionalProperties: false) and pick out the options."""
    allowed = _BODY_FIELDS if version_required else _BODY_FIELDS - {"version"}
    problems = [
        _problem("required", "(root)", f"{f} is required") for f in ("version", "input") if f in allowed and f not in body
    ]
    problems += [
        _problem("additional_property_not_allowed", "(root)", f"Additional property {name} is not allowed")
        for name in body
        if name not in allowed
    ]
    problems += _type_problems(body)
    if problems:
        raise InvalidInput(problems)
    return CreateOptions(
        input=body["input"],
        webhook=body.get("webhook") or body.get("webhook_completed"),
        webhook_events_filter=body.get("webhook_events_filter") or (["completed"] if body.get("webhook_completed") else None),
        cancel_after=cancel_after,
    )


def _type_problems(body: dict[str, Any]) -> list[dict[str, str]]:
    expected = {
        "version": str,
        "input": dict,
        "webhook": str,
        "webhook_completed": str,
        "webhook_events_filter": list,
        "stream": bool,
    }
    names = {str: "string", dict: "object", list: "array", bool: "boolean"}
    problems = [
        _problem("invalid_type", name, f"Invalid type. Expected: {names[kind]}, given: {_json_type(body[name])}")
        for name, kind in expected.items()
        if name in body and (body[name] is not None or name in _REQUIRED_FIELDS) and not isinstance(body[name], kind)
    ]
    events = body.get("webhook_events_filter")
    if isinstance(events, list) and not all(isinstance(event, str) and event in _WEBHOOK_EVENTS for event in events):
        allowed = ", ".join(f'"{e}"' for e in sorted(_WEBHOOK_EVENTS))
        problems.append(
            _problem("enum", "webhook_events_filter", f"webhook_events_filter must be one of the following: {allowed}")
        )
    for name in ("webhook", "webhook_completed"):
        if isinstance(body.get(name), str) and body[name] and not body[name].startswith(("https://", "http://")):
            problems.append(_problem("format", name, "Does not match format 'uri'"))
    return problems


def _problem(kind: str, field: str, description: str) -> dict[str, str]:
    return {"type": kind, "field": field, "description": description}


def _json_type(value: Any) -> str:
    return {str: "string", dict: "object", list: "array", bool: "boolean", int: "integer", float: "number"}.get(
        type(value), "null"
    )


def _instant(value: str | None) -> float | None:
    epoch = parse_timestamp(value)
    if value and epoch is None:
        raise BadRequest(f"{value!r} is not an ISO 8601 date-time")
    return epoch


def _page_url(root: str, cursor: str | None, query: Any) -> str | None:
    if cursor is None:
        return None
    params = {k: v for k, v in query.items() if k in ("created_after", "created_before")}
    return f"{root}/predictions?{urlencode({**params, 'cursor': cursor})}"


# Also served at the host root, with no version prefix: the paths some Replicate-compatible aggregators document.
root_routes = [
    Route("/predictions", create_prediction, methods=["POST"]),
    Route("/predictions", list_predictions, methods=["GET"]),
    Route("/predictions/{prediction_id}", get_prediction, methods=["GET"]),
    Route("/predictions/{prediction_id}/cancel", cancel_prediction, methods=["POST"]),
]
routes = [
    *root_routes,
    Route("/predictions/{prediction_id}/outputs/{index:int}/{expiry:int}/{signature}/{name}", get_output, methods=["GET"]),
    Route("/models/{owner}/{name}/predictions", create_model_prediction, methods=["POST"]),
    Route("/deployments/{owner}/{name}/predictions", create_deployment_prediction, methods=["POST"]),
]
