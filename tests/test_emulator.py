"""The Replicate emulator, exercised over real HTTP with httpx and the unmodified replicate client."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from replicate.client import Client
from replicate.exceptions import ModelError, ReplicateError
from replicate.webhook import Webhooks, WebhookSigningSecret
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.emulator import (
    WEBHOOK_SECRET,
    EmulatedModel,
    EmulatorControls,
    Fault,
    create_replicate_emulator,
)
from tests.emulator.predictions import output_bytes
from tests.servers import serve_in_thread
from tests.sse import read_events

TOKEN = "r8_upstream_secret"
OWNER, NAME = "stability-ai", "stable-diffusion-inpainting"
VERSION = "95b7223104132402a9ae91cc677285bc5eb997834bd2349fa486f53910fd68b3"
SCHEMA: dict[str, Any] = {
    "openapi": "3.0.2",
    "info": {"title": "Cog", "version": "0.1.0"},
    "paths": {},
    "components": {
        "schemas": {
            "Input": {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    "prompt": {"type": "string"},
                    "num_outputs": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
                    "seed": {"type": "integer"},
                },
            },
            "Output": {"type": "array", "items": {"type": "string", "format": "uri"}},
        }
    },
}
PREDICTION_ID = re.compile(r"[a-z2-7]{26}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z")
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def app() -> Starlette:
    model = EmulatedModel(owner=OWNER, name=NAME, versions={VERSION: SCHEMA}, deployments=["acme/inpaint-prod"])
    return create_replicate_emulator(tokens=[TOKEN], models=[model])


@pytest.fixture(scope="module")
def root(app: Starlette) -> Iterator[str]:
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def emulator(app: Starlette, root: str) -> EmulatorControls:
    controls: EmulatorControls = app.state.emulator
    controls.reset()
    return controls


@pytest.fixture
def api(root: str, emulator: EmulatorControls) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{root}/v1", headers=AUTH, trust_env=False) as client:
        yield client


@pytest.fixture
def client(root: str, emulator: EmulatorControls) -> Client:
    return Client(api_token=TOKEN, base_url=root, trust_env=False)


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def emulator_root(prediction: dict) -> str:
    return str(prediction["urls"]["web"]).rsplit("/p/", 1)[0]


def test_run_end_to_end(client: Client, emulator: EmulatorControls) -> None:
    output = client.run(f"{OWNER}/{NAME}:{VERSION}", input={"prompt": "a corgi", "num_outputs": 2})
    prediction = emulator.predictions()[0]
    root = emulator_root(prediction)
    assert output == [f"{root}/delivery/{prediction['id']}/out-{index}.png" for index in range(2)]  # http: plain strings
    create, version_get = emulator.requests()
    assert httpx.get(output[0], headers=AUTH).content == output_bytes(prediction["id"], "out-0.png")
    assert httpx.get(output[0]).status_code == 401
    assert create.path == "/v1/predictions" and create.headers["prefer"] == "wait"
    assert create.json == {"input": {"prompt": "a corgi", "num_outputs": 2}, "version": VERSION}
    assert version_get.path == f"/v1/models/{OWNER}/{NAME}/versions/{VERSION}"
    emulator.reset()
    by_model = client.run(f"{OWNER}/{NAME}", input={"prompt": "by model"})
    assert isinstance(by_model, list) and by_model[0].endswith("/out-0.png")
    assert emulator.requests()[-1].path == f"/v1/models/{OWNER}/{NAME}/predictions"


def test_prediction_object_and_lifecycle(client: Client, root: str) -> None:
    prediction = client.predictions.create(version=VERSION, input={"seed": 7, "prompt": "x"})
    created_status = prediction.status
    assert PREDICTION_ID.fullmatch(prediction.id) and created_status == "starting"
    assert prediction.urls == {
        "get": f"{root}/v1/predictions/{prediction.id}",
        "cancel": f"{root}/v1/predictions/{prediction.id}/cancel",
        "web": f"{root}/p/{prediction.id}",
    }
    prediction.wait()
    assert prediction.status == "succeeded" and prediction.output == [f"{root}/delivery/{prediction.id}/out-0.png"]
    assert prediction.logs is not None and prediction.logs.startswith("Using seed: 7\n")
    assert prediction.metrics is not None and set(prediction.metrics) == {"predict_time", "total_time"}
    fetched = httpx.get(prediction.urls["get"], headers=AUTH).json()
    assert fetched["input"] == {"prompt": "x", "seed": 7} and list(fetched["input"]) == ["prompt", "seed"]
    assert fetched["data_removed"] is False and fetched["source"] == "api" and fetched["error"] is None
    for key in ("created_at", "started_at", "completed_at"):
        assert TIMESTAMP.fullmatch(fetched[key])


def test_cancel_and_cancel_again(client: Client, emulator: EmulatorControls) -> None:
    emulator.configure(run_seconds=5)
    prediction = client.predictions.create(version=VERSION, input={"prompt": "x"})
    canceled = client.predictions.cancel(prediction.id)
    assert canceled.status == "canceled" and canceled.output is None and canceled.completed_at
    again = client.predictions.cancel(prediction.id)
    assert (again.status, again.completed_at) == ("canceled", canceled.completed_at)
    time.sleep(0.1)
    assert client.predictions.get(prediction.id).status == "canceled"


def test_list_pages_newest_first(client: Client, api: httpx.Client, emulator: EmulatorControls) -> None:
    emulator.configure(page_size=2)
    ids = [client.predictions.create(version=VERSION, input={"prompt": str(n)}).id for n in range(3)]
    first = api.get("/predictions").json()
    assert [item["id"] for item in first["results"]] == ids[:0:-1] and first["previous"] is None
    assert first["next"].startswith(f"{api.base_url}predictions?cursor=")
    second = api.get(first["next"]).json()
    assert [item["id"] for item in second["results"]] == ids[:1] and second["next"] is None
    assert [item["id"] for item in api.get(second["previous"]).json()["results"]] == ids[:0:-1]
    page = client.predictions.list()
    assert [p.id for p in page.results] == ids[:0:-1]
    assert [p.id for p in client.predictions.list(page.next).results] == ids[:1]


def test_deployment_model_version_and_account(client: Client) -> None:
    prediction = client.deployments.predictions.create("acme/inpaint-prod", input={"prompt": "x"})
    assert (prediction.model, prediction.version) == (f"{OWNER}/{NAME}", VERSION)
    model = client.models.get(f"{OWNER}/{NAME}")
    assert model.run_count == 1 and model.visibility == "public" and model.latest_version is not None
    version = model.versions.get(VERSION)
    assert version.cog_version == "0.9.4" and version.openapi_schema == SCHEMA
    assert client.accounts.current().username == "acme"
    with pytest.raises(ReplicateError) as missing:
        client.models.get("nobody/nothing")
    assert (missing.value.status, missing.value.detail) == (404, "Not found.")


def test_unauthenticated(root: str) -> None:
    with pytest.raises(ReplicateError) as error:
        Client(api_token="r8_wrong", base_url=root).predictions.get("abc")
    assert (error.value.status, error.value.title) == (401, "Unauthenticated")
    response = httpx.get(f"{root}/v1/account", headers={"Authorization": "Token r8_wrong"})
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "title": "Unauthenticated",
        "detail": "You did not pass a valid authentication token",
        "status": 401,
    }
    assert httpx.get(f"{root}/v1/account", headers={"Authorization": f"Token {TOKEN}"}).status_code == 200


def test_invalid_version_and_input(api: httpx.Client) -> None:
    bad_version = api.post("/predictions", json={"version": "0" * 64, "input": {"prompt": "x"}})
    assert bad_version.status_code == 422 and bad_version.json()["title"] == "Invalid version or not permitted"
    invalid = api.post("/predictions", json={"version": f"{OWNER}/{NAME}:{VERSION}", "input": {"num_outputs": 9}})
    assert invalid.status_code == 422
    assert invalid.json() == {
        "title": "Input validation failed",
        "detail": "- input: prompt is required\n- input.num_outputs: Must be less than or equal to 4\n",
        "status": 422,
        "invalid_fields": [
            {"type": "required", "field": "input", "description": "prompt is required"},
            {"type": "number_lte", "field": "input.num_outputs", "description": "Must be less than or equal to 4"},
        ],
    }


def test_status_fault_with_retry_after(client: Client, api: httpx.Client, emulator: EmulatorControls) -> None:
    prediction_id = client.predictions.create(version=VERSION, input={"prompt": "x"}).id
    emulator.inject(Fault(route="get", status=503, retry_after=0, times=3))
    response = api.get(f"/predictions/{prediction_id}")
    assert response.status_code == 503 and response.headers["retry-after"] == "0"
    assert response.json()["status"] == 503
    assert client.predictions.get(prediction_id).id == prediction_id  # two more 503s, retried by the client
    assert [r.method for r in emulator.requests()].count("GET") == 4


def test_delay_fault(api: httpx.Client, emulator: EmulatorControls) -> None:
    emulator.inject(Fault(route="account", delay=0.5))
    with pytest.raises(httpx.ReadTimeout):
        api.get("/account", timeout=0.1)
    assert api.get("/account").json()["name"] == "Acme Corp, Inc."


def test_drop_connection_fault(api: httpx.Client, emulator: EmulatorControls) -> None:
    emulator.inject(Fault(route="create", drop_connection=True))
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/predictions", json={"version": VERSION, "input": {"prompt": "x"}})
    assert emulator.predictions() == []
    assert api.post("/predictions", json={"version": VERSION, "input": {"prompt": "x"}}).status_code == 201


def test_fail_next_and_prefer_wait(client: Client, api: httpx.Client, emulator: EmulatorControls) -> None:
    emulator.fail_next("CUDA out of memory")
    with pytest.raises(ModelError) as failed:
        client.run(f"{OWNER}/{NAME}:{VERSION}", input={"prompt": "x"})
    assert failed.value.prediction.status == "failed" and failed.value.prediction.error == "CUDA out of memory"
    emulator.configure(run_seconds=3)
    started = time.monotonic()
    body = {"version": VERSION, "input": {"prompt": "x"}}
    response = api.post("/predictions", json=body, headers={"Prefer": "wait=1"})
    assert 0.9 < time.monotonic() - started < 2
    assert response.status_code == 201 and response.headers["preference-applied"] == "wait=1"
    assert response.json()["status"] == "starting"


def test_webhooks_signed_filtered_and_retried(api: httpx.Client, emulator: EmulatorControls) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: Request) -> Response:
        received.append((dict(request.headers), await request.body()))
        terminal_deliveries = sum(b'"status":"succeeded"' in body for _, body in received)
        return Response(status_code=500 if terminal_deliveries == 1 else 204)

    with serve_in_thread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as receiver:
        body = {"version": VERSION, "input": {"prompt": "x"}, "webhook": f"{receiver}/hook"}
        api.post("/predictions", json={**body, "webhook_events_filter": ["start", "completed"]})
        eventually(lambda: len(received) == 3)
        emulator.drop_webhooks(True)
        api.post("/predictions", json=body)
        eventually(lambda: emulator.predictions()[-1]["status"] == "succeeded")
        time.sleep(0.1)
    assert len(received) == 3
    statuses = [json.loads(raw)["status"] for _, raw in received]
    assert statuses == ["processing", "succeeded", "succeeded"]
    assert received[1][0]["webhook-id"] == received[2][0]["webhook-id"]
    secret = WebhookSigningSecret(key=WEBHOOK_SECRET)
    for headers, raw in received:
        Webhooks.validate(headers=headers, body=raw.decode(), secret=secret)
        assert b", " not in raw


def test_http_controls(root: str, api: httpx.Client, emulator: EmulatorControls) -> None:
    controls = f"{root}/v1/_emulator"
    assert httpx.post(f"{controls}/faults", json={"route": "list", "status": 429, "retry_after": 3}).status_code == 204
    throttled = api.get("/predictions")
    assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "3")
    assert httpx.post(f"{controls}/faults", json={"route": "nope"}).status_code == 400
    recorded = httpx.get(f"{controls}/requests").json()
    assert [(r["method"], r["path"]) for r in recorded] == [("GET", "/v1/predictions")]
    assert recorded[0]["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert httpx.post(f"{controls}/configure", json={"page_size": 1}).status_code == 204
    assert emulator.config.page_size == 1
    assert httpx.post(f"{controls}/reset").status_code == 204
    assert emulator.requests() == [] and emulator.config.page_size == 100
    assert api.get("/predictions/doesnotexist").json()["detail"] == "Not found."


def test_aggregator_prefix() -> None:
    model = EmulatedModel(owner=OWNER, name=NAME, versions={VERSION: SCHEMA})
    app = create_replicate_emulator(tokens=[TOKEN], models=[model], prefix="/replicate/v1")
    with serve_in_thread(app) as root:
        body = {"version": f"{OWNER}/{NAME}:{VERSION}", "input": {"prompt": "x"}}
        created = httpx.post(f"{root}/replicate/v1/predictions", json=body, headers=AUTH).json()
        assert created["urls"]["get"] == f"{root}/replicate/v1/predictions/{created['id']}"
        assert httpx.get(f"{root}/v1/account", headers=AUTH).status_code == 404


STREAM_SCHEMA: dict[str, Any] = {
    **SCHEMA,
    "components": {
        "schemas": {
            "Input": {"type": "object", "required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
            "Output": {"type": "array", "items": {"type": "string"}, "x-cog-array-type": "iterator"},
        }
    },
}


@pytest.fixture(scope="module")
def streaming_root() -> Iterator[str]:
    model = EmulatedModel(owner="meta", name="llama", versions={"cd" * 32: STREAM_SCHEMA})
    with serve_in_thread(create_replicate_emulator(tokens=[TOKEN], models=[model])) as url:
        yield url


def _raw_stream(url: str, headers: dict[str, str] | None = None) -> str:
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream", **(headers or {})}, timeout=10) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        return response.read().decode()


def test_a_model_whose_output_is_an_iterator_streams_its_tokens(streaming_root: str, api: httpx.Client) -> None:
    plain = api.post("/predictions", json={"version": VERSION, "input": {"prompt": "a corgi"}}).json()
    assert "stream" not in plain["urls"]
    with httpx.Client(base_url=f"{streaming_root}/v1", headers=AUTH) as llama:
        created = llama.post("/predictions", json={"version": "cd" * 32, "input": {"prompt": "one two\nthree"}}).json()
    assert created["urls"]["stream"] == f"{streaming_root}/streams/{created['id']}"
    body = _raw_stream(created["urls"]["stream"])  # no key: Replicate's stream URLs are capabilities
    assert body.startswith(": hi\n\n")
    events = read_events(created["urls"]["stream"])
    assert [event_id for _, event_id, _ in events] == [f"{created['id']}:{index}" for index in range(len(events))]
    assert [data for name, _, data in events if name == "output"] == ["one", " two\nthree"]
    assert "data:  two\ndata: three\n\n" in body  # a line break in the data: one data line each
    assert events[-1] == ("done", f"{created['id']}:{len(events) - 1}", "{}")
    resumed = _raw_stream(created["urls"]["stream"], {"Last-Event-ID": events[-2][1]})
    assert resumed == f": hi\n\nevent: done\nid: {events[-1][1]}\ndata: {{}}\n\n"


def test_the_python_client_streams_from_the_emulator(streaming_root: str) -> None:
    client = Client(api_token=TOKEN, base_url=streaming_root, trust_env=False)
    events = list(client.stream(f"meta/llama:{'cd' * 32}", input={"prompt": "hello streaming world"}))
    assert "".join(str(event) for event in events) == "hello streaming world"


def test_a_fault_with_a_token_applies_only_to_requests_carrying_that_token() -> None:
    other = "r8_other_token"
    app = create_replicate_emulator(tokens=[TOKEN, other], models=[EmulatedModel(OWNER, NAME, {VERSION: SCHEMA})])
    app.state.emulator.inject(Fault(route="get", status=429, retry_after=3, token=TOKEN))
    with serve_in_thread(app) as url:
        assert httpx.get(f"{url}/v1/predictions/x", headers={"Authorization": f"Bearer {other}"}).status_code == 404
        throttled = httpx.get(f"{url}/v1/predictions/x", headers=AUTH)
        assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "3")


def test_an_accounts_predictions_are_not_found_with_another_accounts_token() -> None:
    """As on Replicate: tokens of separate accounts see only their own account's predictions."""
    other = "r8_other_account"
    model = EmulatedModel(OWNER, NAME, {VERSION: SCHEMA})
    app = create_replicate_emulator(tokens=[TOKEN, other], models=[model], accounts={other: "other"})
    with serve_in_thread(app) as url, httpx.Client(base_url=f"{url}/v1") as http:
        theirs = {"Authorization": f"Bearer {other}"}
        created = http.post("/predictions", json={"version": VERSION, "input": {"prompt": "x"}}, headers=AUTH).json()
        assert http.get(f"/predictions/{created['id']}", headers=AUTH).status_code == 200
        assert http.get(f"/predictions/{created['id']}", headers=theirs).status_code == 404
        assert http.post(f"/predictions/{created['id']}/cancel", headers=theirs).status_code == 404
        assert http.get("/predictions", headers=theirs).json()["results"] == []
        assert [p["id"] for p in http.get("/predictions", headers=AUTH).json()["results"]] == [created["id"]]


def test_training_lifecycle_with_the_official_client(client: Client, root: str, emulator: EmulatorControls) -> None:
    training = client.trainings.create(
        model=f"{OWNER}/{NAME}", version=VERSION, input={"train_data": "https://x.test/d.zip"}, destination="acme/corgi"
    )
    assert PREDICTION_ID.fullmatch(training.id) and training.status == "starting"
    assert training.urls == {"get": f"{root}/v1/trainings/{training.id}", "cancel": f"{root}/v1/trainings/{training.id}/cancel"}
    created = emulator.requests()[-1]
    assert created.path == f"/v1/models/{OWNER}/{NAME}/versions/{VERSION}/trainings"
    assert created.json == {"destination": "acme/corgi", "input": {"train_data": "https://x.test/d.zip"}}
    eventually(lambda: client.trainings.get(training.id).status == "succeeded")
    done = client.trainings.get(training.id)
    version = hashlib.sha256(f"acme/corgi:{training.id}".encode()).hexdigest()
    assert done.output == {"version": f"acme/corgi:{version}", "weights": f"{root}/delivery/{training.id}/weights.tar"}
    assert httpx.get(done.output["weights"], headers=AUTH).status_code == 200
    assert [t.id for t in client.trainings.list().results] == [training.id]
    assert client.predictions.list().results == []  # and the trainings list shows no prediction


def test_training_document_leaves_out_what_has_no_value(api: httpx.Client, emulator: EmulatorControls) -> None:
    emulator.configure(start_delay=5)
    created = api.post(f"/models/{OWNER}/{NAME}/versions/{VERSION}/trainings", json={"destination": "a/b", "input": {}})
    assert created.status_code == 201
    assert set(created.json()) == {"id", "model", "version", "input", "logs", "error", "status", "created_at", "source", "urls"}
    canceled = api.post(f"/trainings/{created.json()['id']}/cancel").json()
    assert canceled["status"] == "canceled" and "started_at" not in canceled and "output" not in canceled
    assert set(canceled["metrics"]) == {"predict_time", "total_time"}


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (f"/models/{OWNER}/{NAME}/versions/{'0' * 64}/trainings", {"destination": "a/b", "input": {}}, 404),
        (f"/models/{OWNER}/{NAME}/versions/{VERSION}/trainings", {"input": {}}, 422),
        (f"/models/{OWNER}/{NAME}/versions/{VERSION}/trainings", {"destination": "no-slash", "input": {}}, 422),
        (f"/models/{OWNER}/{NAME}/versions/{VERSION}/trainings", {"destination": "a/b", "input": {}, "x": 1}, 422),
    ],
)
def test_training_create_refusals(api: httpx.Client, path: str, body: dict[str, Any], status: int) -> None:
    refused = api.post(path, json=body)
    assert refused.status_code == status and refused.headers["content-type"] == "application/problem+json"


def test_trainings_are_the_creating_accounts_and_send_webhooks() -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append(await request.json())
        return Response(status_code=204)

    model = EmulatedModel(owner=OWNER, name=NAME, versions={VERSION: SCHEMA})
    app = create_replicate_emulator(tokens=[TOKEN, "r8_other"], models=[model], accounts={"r8_other": "other"})
    receiver_app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with serve_in_thread(app) as root, serve_in_thread(receiver_app) as receiver:
        body = {"destination": "a/b", "input": {}, "webhook": f"{receiver}/hook", "webhook_events_filter": ["completed"]}
        path = f"{root}/v1/models/{OWNER}/{NAME}/versions/{VERSION}/trainings"
        training = httpx.post(path, json=body, headers=AUTH, trust_env=False).json()
        eventually(lambda: len(received) == 1)
        other = {"Authorization": "Bearer r8_other"}
        assert httpx.get(f"{root}/v1/trainings/{training['id']}", headers=other, trust_env=False).status_code == 404
        assert httpx.post(f"{root}/v1/trainings/{training['id']}/cancel", headers=other, trust_env=False).status_code == 404
        assert httpx.get(f"{root}/v1/trainings", headers=other, trust_env=False).json()["results"] == []
    assert received[0]["id"] == training["id"] and received[0]["status"] == "succeeded"
    assert received[0]["webhook_events_filter"] == ["completed"]
