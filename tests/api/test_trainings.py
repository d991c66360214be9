"""Trainings through the gateway: on a trainable catalog version, run on the Replicate emulator into a model of
the operator's account, kept apart per tenant and from predictions."""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import replicate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.store.embedded import EmbeddedRedis
from tests.conftest import (
    INPAINTING_VERSION,
    ROOT,
    Gateway,
    Upstream,
    gateway_settings,
    inpainting_input,
    run_gateway,
)
from tests.servers import free_port, serve_in_thread
from tests.usage.conftest import settled

OPERATOR = "operator-account"
INPAINTING = "stability-ai/stable-diffusion-inpainting"
FIXED = "a" * 64  # a version of the same model that is not trainable
CATALOG = f"""
[providers.replicate]
kind = "replicate"
base_url = "{{replicate}}/v1"
token_env = ["UPSTREAM_TOKEN"]
timeout = 3
training_destination_owner = "{OPERATOR}"

[[models]]
name = "{INPAINTING}"

[[models.versions]]
id = "{INPAINTING_VERSION}"
schema = "{ROOT}/config/schemas/stable-diffusion-inpainting.json"
trainable = true
routes = [{{ provider = "replicate", version = "{INPAINTING_VERSION}" }}]

[[models.versions]]
id = "{FIXED}"
schema = "{ROOT}/config/schemas/stable-diffusion-inpainting.json"
routes = [{{ provider = "replicate", version = "{INPAINTING_VERSION}" }}]
"""
DEEP: list[Any] = functools.reduce(lambda inner, _: [inner], range(40), [])  # deeper than any input may nest
TRAIN_PATH = f"/models/{INPAINTING}/versions/{INPAINTING_VERSION}/trainings"
BODY = {"destination": "tenant-owner/corgi", "input": {"train_data": "https://example.com/data.zip"}}


@pytest.fixture(scope="module")
def trainer(replicate_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway on a Redis of its own: follow-ups and webhook deliveries are shared by every gateway on a Redis,
    and the suite's others may neither poll this catalog's trainings nor reach its local webhook receivers."""
    scratch = tmp_path_factory.mktemp("trainings")
    path = scratch / "catalog.toml"
    path.write_text(CATALOG.replace("{replicate}", replicate_upstream.url))
    with EmbeddedRedis(scratch / "redis") as server:
        settings = gateway_settings(
            server.url, path, free_port(), poll_first_seconds=0.2, poll_longest_seconds=0.5, webhook_allowed_networks="127.0.0.0/8"
        )
        with run_gateway(settings) as running:
            yield running


@pytest.fixture
def api(trainer: Gateway, replicate_upstream: Upstream) -> Iterator[httpx.Client]:
    with trainer.client(trainer.new_key()[0]) as client:
        yield client


def eventually(read: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not done(latest := read()):
        assert time.monotonic() < deadline, f"not reached in time: {latest}"
        time.sleep(0.05)
    return latest


def test_a_training_runs_upstream_into_the_operators_account_and_finishes(trainer: Gateway, replicate_upstream: Upstream) -> None:
    tenant = f"t-{time.monotonic_ns()}"
    with trainer.client(trainer.new_key(tenant)[0]) as api:
        created = api.post(TRAIN_PATH, json=BODY)
        assert created.status_code == 201, created.text
        training = created.json()
        done = eventually(lambda: api.get(f"/trainings/{training['id']}").json(), lambda t: t["status"] == "succeeded")
    upstream = replicate_upstream.controls.trainings.snapshots()
    assert len(upstream) == 1 and upstream[0]["id"] != training["id"]  # the gateway's own id
    sent = replicate_upstream.requests("POST", "/trainings")[-1]
    tag = hashlib.sha256(tenant.encode()).hexdigest()[:12]
    assert sent.json == {"destination": f"{OPERATOR}/{tag}--tenant-owner--corgi", "input": BODY["input"]}
    url = f"{trainer.url}/v1/trainings/{training['id']}"
    assert training["urls"] == {"get": url, "cancel": f"{url}/cancel"} and created.headers["location"] == url
    assert set(training) == {"id", "model", "version", "input", "logs", "error", "status", "created_at", "source", "urls"}
    assert done["output"]["version"].startswith("tenant-owner/corgi:") and len(done["output"]["version"]) == 19 + 64
    weights = httpx.get(done["output"]["weights"])  # a signed gateway link to the upstream's file
    assert done["output"]["weights"].startswith(f"{trainer.url}/v1/predictions/") and weights.status_code == 200
    assert set(done["metrics"]) >= {"predict_time", "total_time"} and done["completed_at"] and done["started_at"]


def test_trainings_and_predictions_are_listed_apart_on_both_prefixes(trainer: Gateway) -> None:
    token = trainer.new_key()[0]
    with trainer.client(token) as v1, trainer.client(token, "/replicate/v1") as aggregator:
        training = v1.post(TRAIN_PATH, json=BODY).json()
        prediction = v1.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
        newer = aggregator.post(TRAIN_PATH, json=BODY).json()
        assert newer["urls"]["get"] == f"{trainer.url}/replicate/v1/trainings/{newer['id']}"
        listed = aggregator.get("/trainings").json()
        assert [t["id"] for t in listed["results"]] == [newer["id"], training["id"]] and listed["next"] is None
        assert listed["results"][1]["urls"]["get"].startswith(f"{trainer.url}/replicate/v1/trainings/")
        assert [p["id"] for p in v1.get("/predictions").json()["results"]] == [prediction["id"]]
        assert v1.get(f"/predictions/{training['id']}").status_code == 404
        assert v1.get(f"/trainings/{prediction['id']}").status_code == 404
        assert aggregator.get(f"/trainings/{training['id']}").json()["id"] == training["id"]


def test_a_training_is_canceled_upstream(api: httpx.Client, replicate_upstream: Upstream) -> None:
    replicate_upstream.controls.configure(start_delay=5)
    training = api.post(TRAIN_PATH, json=BODY).json()
    canceled = api.post(f"/trainings/{training['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert replicate_upstream.controls.trainings.snapshots()[0]["status"] == "canceled"
    assert api.get(f"/trainings/{training['id']}").json()["status"] == "canceled"


def test_another_tenants_training_is_not_found(trainer: Gateway, api: httpx.Client) -> None:
    training = api.post(TRAIN_PATH, json=BODY).json()
    with trainer.client(trainer.new_key()[0]) as other:
        for answer in (other.get(f"/trainings/{training['id']}"), other.post(f"/trainings/{training['id']}/cancel")):
            assert answer.status_code == 404 and answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["detail"] == "The requested training does not exist"
        assert other.get("/trainings").json()["results"] == []
    assert api.get(f"/trainings/{training['id']}").json()["status"] != "canceled"


@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        (f"/models/{INPAINTING}/versions/{FIXED}/trainings", BODY, f"Version {FIXED} of model {INPAINTING} cannot be trained"),
        (f"/models/{INPAINTING}/versions/{'b' * 64}/trainings", BODY, None),
        (TRAIN_PATH, {**BODY, "destination": "Not/Lowercase"}, "- destination: destination must be a lowercase owner/name\n"),
        (TRAIN_PATH, {"input": {}}, "- destination is required\n"),
        (TRAIN_PATH, {**BODY, "input": {"deep": DEEP}}, "- input.deep: Must not be nested more than 32 levels deep\n"),
    ],
)
def test_refused_trainings_are_422_and_reach_no_upstream(
    api: httpx.Client, replicate_upstream: Upstream, path: str, body: dict[str, Any], detail: str | None
) -> None:
    refused = api.post(path, json=body)
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    if detail is not None:
        assert refused.json()["detail"] == detail
    assert replicate_upstream.requests("POST", "/trainings") == []


def test_a_version_outside_the_keys_allow_list_is_not_permitted(trainer: Gateway) -> None:
    with trainer.client(trainer.new_key(models=["acme/*"])[0]) as limited:
        refused = limited.post(TRAIN_PATH, json=BODY)
    assert (refused.status_code, refused.json()["title"]) == (422, "Invalid version or not permitted")


def test_the_tenant_gets_its_webhooks(trainer: Gateway, api: httpx.Client) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append(await request.json())
        return Response(status_code=204)

    with serve_in_thread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as receiver:
        body = {**BODY, "webhook": f"{receiver}/hook", "webhook_events_filter": ["completed"]}
        training = api.post(TRAIN_PATH, json=body).json()
        eventually(lambda: {"n": len(received)}, lambda seen: seen["n"] == 1)
    assert received[0]["id"] == training["id"] and received[0]["status"] == "succeeded"
    assert received[0]["urls"]["get"].endswith(f"/v1/trainings/{training['id']}")
    assert received[0]["output"]["version"].startswith("tenant-owner/corgi:")


def test_the_official_client_trains_with_only_the_base_url_changed(trainer: Gateway) -> None:
    client = replicate.Client(api_token=trainer.new_key()[0], base_url=trainer.url)
    training = client.trainings.create(
        model=INPAINTING, version=INPAINTING_VERSION, input=BODY["input"], destination="tenant-owner/corgi"
    )
    assert training.status == "starting"
    assert [t.id for t in client.trainings.list().results] == [training.id]
    done = eventually(lambda: client.trainings.get(training.id).dict(), lambda t: t["status"] == "succeeded")
    assert done["output"]["version"].startswith("tenant-owner/corgi:")
    other = client.trainings.create(model=INPAINTING, version=INPAINTING_VERSION, input={}, destination="tenant-owner/b")
    client.trainings.cancel(other.id)
    assert client.trainings.get(other.id).status == "canceled"


def test_each_finished_training_is_metered_once(trainer: Gateway, replicate_upstream: Upstream) -> None:
    token, key = trainer.new_key()
    with trainer.client(token) as api:
        done = api.post(TRAIN_PATH, json=BODY).json()
        replicate_upstream.controls.configure(start_delay=5)
        canceled = api.post(TRAIN_PATH, json=BODY).json()
        api.post(f"/trainings/{canceled['id']}/cancel")
        eventually(lambda: api.get(f"/trainings/{done['id']}").json(), lambda t: t["status"] == "succeeded")
    settled(trainer.admin, key["tenant"], 2)
    time.sleep(1.5)  # the follow-ups settle finished records again: that must not count twice
    rows = trainer.admin.get("/usage/rows", params={"tenant": key["tenant"]}).json()["results"]
    assert sorted((row["id"], row["status"]) for row in rows) == sorted([(done["id"], "succeeded"), (canceled["id"], "canceled")])
