"""Client webhooks as Replicate sends them: the official client verifies them, the body is what a GET returns,
events follow the filter, output and logs are throttled, and only the terminal one is retried."""

from __future__ import annotations

import itertools
import math
import re
import time
from typing import Any

import httpx
import orjson
import pytest
from replicate.webhook import InvalidSignatureError, Webhooks, WebhookSigningSecret
from standardwebhooks import Webhook

from tests.conftest import INPAINTING_VERSION, Gateway, Upstream, inpainting_input
from tests.deliveries.conftest import FIRST_RETRY_SECONDS, RETRY_SECONDS, Hook, Receiver
from tests.emulator.predictions import signed_headers
from tests.openapi_documents import replicate_document


@pytest.fixture
def api(hooked: Gateway) -> Any:
    with hooked.client(hooked.new_key()[0]) as client:
        yield client


def _create(api: httpx.Client, hook: Hook, **fields: Any) -> dict[str, Any]:
    response = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input(), "webhook": hook.url, **fields})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_the_official_client_verifies_every_delivery_with_the_secret_from_the_secret_endpoint(
    api: httpx.Client, receiver: Receiver
) -> None:
    hook = receiver.hook()
    created = _create(api, hook, webhook_events_filter=["start", "output", "logs", "completed"])
    received = hook.terminal()
    secret = api.get("/webhooks/default/secret").json()["key"]
    assert len(received) >= 2  # the start and the end at least
    for delivery in received:
        Webhooks.validate(headers=delivery.headers, body=delivery.body.decode(), secret=WebhookSigningSecret(key=secret), tolerance=60)
        Webhook(secret).verify(delivery.body, delivery.headers)  # the Standard Webhooks reference, with its timestamp check
        assert delivery.headers["content-type"] == "application/json"
        assert delivery.body == orjson.dumps(delivery.json)  # compact UTF-8 JSON, as the JS client re-serialises it
    forged = received[-1].body.replace(b'"status":', b'"status" :')
    with pytest.raises(InvalidSignatureError):
        Webhooks.validate(headers=received[-1].headers, body=forged.decode(), secret=WebhookSigningSecret(key=secret))
    [terminal] = [r for r in received if r.terminal]
    assert terminal.json == api.get(f"/predictions/{created['id']}").json()
    assert terminal.json["webhook"] == hook.url and terminal.json["urls"]["get"] == created["urls"]["get"]
    assert len({r.headers["webhook-id"] for r in received}) == len(received)  # one message per event


def test_every_delivery_is_a_prediction_replicates_document_accepts(api: httpx.Client, receiver: Receiver) -> None:
    replicate = replicate_document()
    hook = receiver.hook()
    _create(api, hook, webhook_events_filter=["start", "output", "logs", "completed"])
    received = hook.terminal()
    prediction = {"$ref": "#/components/schemas/schemas_prediction_response"}
    errors = [error for r in received for error in replicate.body_errors(f"webhook {r.json['status']}", prediction, r.json)]
    assert not errors, "\n".join(errors)
    assert len(received) >= 2 and "completed_at" not in received[0].json  # an unfinished one leaves it out, not null


def test_without_a_filter_only_new_output_and_the_completion_are_sent(api: httpx.Client, receiver: Receiver) -> None:
    hook = receiver.hook()
    created = _create(api, hook)
    assert created["webhook_events_filter"] == ["output", "completed"]
    received = hook.terminal()
    time.sleep(0.5)  # nothing else follows
    # The emulator's output appears with its completion, and logs and the start alone are not asked for.
    assert [r.json["status"] for r in hook.received] == ["succeeded"] and received[0].json["output"]


def test_a_filter_of_start_and_completed_sends_exactly_those(api: httpx.Client, receiver: Receiver) -> None:
    hook = receiver.hook()
    _create(api, hook, webhook_events_filter=["start", "completed"])
    hook.terminal()
    time.sleep(0.5)
    assert [r.json["status"] for r in hook.received] == ["processing", "succeeded"]


def test_an_intermediate_webhook_that_fails_is_not_retried(api: httpx.Client, receiver: Receiver) -> None:
    hook = receiver.hook(failures=1)  # the start
    _create(api, hook, webhook_events_filter=["start", "completed"])
    hook.terminal()
    time.sleep(FIRST_RETRY_SECONDS * 4)
    assert [(r.json["status"], r.answered) for r in hook.received] == [("processing", 500), ("succeeded", 204)]


def _attempts(gateway: Gateway) -> dict[str, float]:
    """The gateway's webhook attempts by outcome, from its /metrics."""
    pattern = re.compile(r'^gateway_webhook_attempts_total\{outcome="(\w+)"\} (\S+)$', re.MULTILINE)
    return {outcome: float(value) for outcome, value in pattern.findall(httpx.get(f"{gateway.url}/metrics").text)}


def test_a_receiver_failing_twice_gets_one_successful_terminal_delivery_under_one_webhook_id(
    hooked: Gateway, api: httpx.Client, receiver: Receiver
) -> None:
    hook = receiver.hook(failures=2)
    before = _attempts(hooked)
    _create(api, hook, webhook_events_filter=["completed"])
    hook.terminal()
    time.sleep(FIRST_RETRY_SECONDS * 8)  # well past the next retry a repeat would be sent at
    after = _attempts(hooked)
    assert (after["failed"] - before.get("failed", 0), after["delivered"] - before.get("delivered", 0)) == (2, 1)
    attempts = hook.received
    assert [r.answered for r in attempts] == [500, 500, 204]
    assert len({r.headers["webhook-id"] for r in attempts}) == 1
    assert len({r.body for r in attempts}) == 1  # the state at completion, whenever it is sent
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= FIRST_RETRY_SECONDS * 0.8 and gaps[1] >= 2 * FIRST_RETRY_SECONDS * 0.8  # backing off


def test_a_terminal_webhook_is_retried_for_the_window_then_given_up(api: httpx.Client, receiver: Receiver) -> None:
    hook = receiver.hook(failing=True)
    _create(api, hook, webhook_events_filter=["completed"])
    hook.until(lambda got: len(got) >= 1)
    time.sleep(RETRY_SECONDS + 1.5)
    attempts = list(hook.received)
    # At once, then 0.3, 0.6, 1.2 s later (2.1 s in), then one last time at the end of the 4 s window.
    assert len(attempts) == 5, [round(r.at - attempts[0].at, 2) for r in attempts]
    assert attempts[-1].at - attempts[0].at == pytest.approx(RETRY_SECONDS, abs=0.5)
    time.sleep(1)
    assert len(hook.received) == 5


def test_output_and_logs_are_sent_at_most_every_500_ms(
    api: httpx.Client, receiver: Receiver, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=30)
    replicate_upstream.controls.drop_webhooks(True)  # the test reports the upstream's progress itself, quickly
    hook = receiver.hook()
    created = _create(api, hook, webhook_events_filter=["logs"])
    [sent] = [r.json for r in replicate_upstream.requests("POST", "/v1/predictions") if created["id"] in r.json["webhook"]]
    [upstream] = replicate_upstream.controls.predictions()
    started = time.monotonic()
    for step in range(40):  # a new log line every 50 ms (or as fast as the gateway takes them), in signed callbacks
        report = {**upstream, "status": "processing", "logs": "".join(f"step {i}\n" for i in range(step + 1))}
        payload = orjson.dumps(report)
        headers = signed_headers(f"msg_{step}", int(time.time()), payload)
        assert httpx.post(sent["webhook"], content=payload, headers=headers).status_code == 204
        time.sleep(max(started + (step + 1) * 0.05 - time.monotonic(), 0))
    reporting = time.monotonic() - started
    time.sleep(0.5)
    arrivals = [r.at for r in hook.received]
    assert 3 <= len(arrivals) <= math.ceil(reporting / 0.5) + 1, (reporting, arrivals)  # one per 500 ms
    assert all(b - a >= 0.4 for a, b in itertools.pairwise(arrivals)), arrivals
    assert hook.received[0].json["logs"] == "step 0\n"


def test_loopback_is_allowed_by_the_operators_networks_but_metadata_never_is(api: httpx.Client, receiver: Receiver) -> None:
    body = {"version": INPAINTING_VERSION, "input": inpainting_input(), "webhook_events_filter": ["start"]}
    assert api.post("/predictions", json={**body, "webhook": receiver.hook().url}).status_code == 201
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/", "http://10.1.2.3/hook"):
        response = api.post("/predictions", json={**body, "webhook": url})
        assert response.status_code == 422 and response.json()["invalid_fields"][0]["field"] == "webhook"
