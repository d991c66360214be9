"""Trainings as Replicate runs them: created on a model version, run like predictions, finished with
`{version, weights}` (the version the training made on its destination model, and the weights file); they are
listed apart from predictions."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tests.emulator.controls import EmulatedModel, EmulatorControls
from tests.emulator.predictions import Prediction, PredictionRun, cancel, launch, new_prediction_id, timestamp
from tests.emulator.responses import api_base, event_filter, host_url, json_response, not_found, page, problem, validation_problem
from tests.emulator.validation import body_issues

CREATE_FIELDS = frozenset({"destination", "input", "webhook", "webhook_events_filter"})
DESTINATION = re.compile(r"[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*")


def new_training(api_url: str, model: str, version: str, inputs: dict[str, Any]) -> Prediction:
    """A training in `starting`: only the keys that have a value (the document allows no null but `error`)."""
    training_id = new_prediction_id()
    return {
        "id": training_id,
        "model": model,
        "version": version,
        "input": inputs,
        "logs": "",
        "error": None,
        "status": "starting",
        "created_at": timestamp(),
        "source": "api",
        "urls": {"get": f"{api_url}/trainings/{training_id}", "cancel": f"{api_url}/trainings/{training_id}/cancel"},
    }


def trained(host: str, training_id: str, destination: str) -> dict[str, str]:
    """The output of a training that succeeded: the new version as `owner/name:id` on the destination (the id
    derived from the training, so that a test can predict it; the official clients parse that form) and the
    weights on the delivery host."""
    version = hashlib.sha256(f"{destination}:{training_id}".encode()).hexdigest()
    return {"version": f"{destination}:{version}", "weights": f"{host}/delivery/{training_id}/weights.tar"}


async def create_training(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    """`POST /models/{owner}/{name}/versions/{version_id}/trainings`: every emulated version can be trained,
    into any well-formed destination (Replicate requires it to exist; the emulator keeps no other models)."""
    model = _version_model(request, controls)
    if model is None:
        return not_found()
    if not isinstance(payload, dict):
        return problem(400, "The request body must be a JSON object.", "Bad request")
    issues = body_issues(payload, CREATE_FIELDS, ("destination", "input"))
    if not issues and not (isinstance(payload["destination"], str) and DESTINATION.fullmatch(payload["destination"])):
        issues = [{"type": "format", "field": "destination", "description": "destination must be owner/name"}]
    if issues:
        return validation_problem(issues)
    data = new_training(api_base(request, controls), model.full_name, request.path_params["version_id"], payload["input"])
    if payload.get("webhook"):
        data["webhook"] = payload["webhook"]
        data["webhook_events_filter"] = sorted(event_filter(payload.get("webhook_events_filter")))
    config = controls.config
    run = PredictionRun(
        data,
        start_delay=config.start_delay,
        run_seconds=config.run_seconds,
        failure=controls.take_failure(),
        webhook=payload.get("webhook") or None,
        events=event_filter(payload.get("webhook_events_filter")),
        result=trained(host_url(request), data["id"], payload["destination"]),
        account=controls.account(request.headers.get("authorization")),
    )
    launch(controls.trainings, run, controls.webhooks_dropped)
    return json_response(controls.trainings.snapshot(run), 201)


async def get_training(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    run = _owned(request, controls)
    return json_response(controls.trainings.snapshot(run)) if run else not_found()


async def cancel_training(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    run = _owned(request, controls)
    return json_response(cancel(controls.trainings, run)) if run else not_found()


async def list_trainings(request: Request, controls: EmulatorControls, payload: Any) -> Response:
    return page(request, controls, controls.trainings, "/trainings", lambda data: data)


def _version_model(request: Request, controls: EmulatorControls) -> EmulatedModel | None:
    full_name, version_id = "{owner}/{name}".format(**request.path_params), request.path_params["version_id"]
    return next((m for m in controls.models if m.full_name == full_name and version_id in m.versions), None)


def _owned(request: Request, controls: EmulatorControls) -> PredictionRun | None:
    """The training, if the caller's account owns it."""
    run = controls.trainings.find(request.path_params["training_id"])
    return run if run is not None and run.account == controls.account(request.headers.get("authorization")) else None
