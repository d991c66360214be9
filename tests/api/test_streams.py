"""Event streams (`urls.stream`): the official clients read them, with or without a key, on any gateway process."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
import replicate

from tests.conftest import (
    INPAINTING_VERSION,
    STORY,
    STORY_MUTED_VERSION,
    STORY_VERSION,
    UPSTREAM_TOKEN,
    Gateway,
    Upstream,
    inpainting_input,
)
from tests.emulator import Fault
from tests.sse import Event, read_events

PROMPT = "Once upon a time\nthere was a gateway"
WORDS = ["Once", " upon", " a", " time\nthere", " was", " a", " gateway"]

def create_story(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post("/predictions", json={"version": f"{STORY}:{STORY_VERSION}", "input": {"prompt": PROMPT}, **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_python_client_streams_and_the_url_works_without_a_key(gateway: Gateway, tenant_key: str) -> None:
    client = replicate.Client(api_token=tenant_key, base_url=gateway.url)
    created = client.predictions.create(version=STORY_VERSION, input={"prompt": PROMPT}, stream=True)
    unauthenticated: list[Event] = []
    reader = threading.Thread(target=lambda: unauthenticated.extend(read_events(created.urls["stream"])))
    reader.start()
    events = list(created.stream())  # with the tenant's Bearer, as the Python client sends it
    reader.join(timeout=15)
    assert [str(event) for event in events if event.event.value == "output"] == WORDS
    assert (events[-1].event.value, events[-1].data) == ("done", "{}")
    assert [(e.event.value, e.id, str(e.data)) for e in events] == unauthenticated
    assert "/v1/files/" not in created.urls["stream"]


def test_replicate_stream_runs_a_model_end_to_end(gateway: Gateway, tenant_key: str) -> None:
    client = replicate.Client(api_token=tenant_key, base_url=gateway.url)
    events = list(client.stream(f"{STORY}:{STORY_VERSION}", input={"prompt": PROMPT}))
    assert "".join(str(event) for event in events) == "".join(WORDS)
    assert [event.event.value for event in events if event.event.value != "logs"] == ["output"] * 7 + ["done"]


def test_the_translated_stream_sends_what_the_record_holds(api: httpx.Client, replicate_upstream: Upstream) -> None:
    replicate_upstream.controls.inject(Fault(route="stream", status=503, times=5))  # no upstream stream to relay
    events = read_events(create_story(api)["urls"]["stream"])
    assert [data for name, _, data in events if name == "output"] == WORDS
    lines = [data for name, _, data in events if name == "logs"]  # one event a line, as the upstream streams them
    assert lines[0].startswith("Using seed: ") and lines[1:] == [
        f"{25 * n:3d}%|{'#' * (10 * n // 4):<10}| {n}/4" for n in range(1, 5)
    ]
    logs = "".join(f"{line}\n" for line in lines)
    assert events[-1] == ("done", f"7-{len(logs)}", "{}")  # the position: outputs and characters of logs sent
    assert len({event_id for _, event_id, _ in events}) == len(events) - 1  # ids move on with every event but done


def test_a_relayed_stream_resumes_from_the_record_when_the_upstream_stream_has_gone(
    api: httpx.Client, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=1)
    created = create_story(api)
    url = created["urls"]["stream"]
    first = read_events(url, limit=4)  # relayed: ids carry the upstream's
    assert first[-1][1].count("-") >= 2
    [upstream] = replicate_upstream.requests("GET", "/streams/" + first[-1][1].split("-", 2)[2].split(":")[0])
    assert upstream.headers["accept"] == "text/event-stream" and "last-event-id" not in upstream.headers
    assert upstream.headers["authorization"] == f"Bearer {UPSTREAM_TOKEN}"  # the upstream's own host
    assert replicate_upstream.url not in json.dumps(api.get(f"/predictions/{created['id']}").json())
    replicate_upstream.controls.inject(Fault(route="stream", status=503))
    rest = read_events(url, headers={"Last-Event-ID": first[-1][1]})  # translated from the same position
    assert rest[0][1].count("-") == 1
    assert [data for name, _, data in first + rest if name == "output"] == WORDS
    logs = [data.rstrip("\n") for name, _, data in first + rest if name == "logs"]
    assert "\n".join(logs).splitlines() == ["Using seed: " + logs[0].split(": ")[1]] + [
        f"{25 * n:3d}%|{'#' * (10 * n // 4):<10}| {n}/4" for n in range(1, 5)
    ]


@pytest.mark.parametrize("relayed", [True, False], ids=["relayed", "translated"])
def test_last_event_id_resumes_after_that_event(api: httpx.Client, replicate_upstream: Upstream, relayed: bool) -> None:
    if not relayed:
        replicate_upstream.controls.inject(Fault(route="stream", status=503, times=5))
    url = create_story(api)["urls"]["stream"]
    whole: list[Event] = []
    reader = threading.Thread(target=lambda: whole.extend(read_events(url)))
    reader.start()
    first = read_events(url, limit=3)
    rest = read_events(url, headers={"Last-Event-ID": first[-1][1]})
    reader.join(timeout=15)
    outputs = [data for name, _, data in first + rest if name == "output"]
    assert outputs == WORDS and rest[-1][0] == "done"
    assert "".join(d for n, _, d in first + rest if n == "logs") == "".join(d for n, _, d in whole if n == "logs")


def test_a_failed_prediction_ends_with_error_then_done(api: httpx.Client, replicate_upstream: Upstream) -> None:
    replicate_upstream.controls.fail_next("CUDA out of memory")
    url = create_story(api)["urls"]["stream"]
    ending = [("error", json.dumps({"detail": "CUDA out of memory"})), ("done", json.dumps({"reason": "error"}))]
    assert [(name, data) for name, _, data in read_events(url)[-2:]] == ending  # relayed while it ran
    assert [(name, data) for name, _, data in read_events(url)[-2:]] == ending  # translated once it has finished


def test_a_canceled_prediction_ends_with_done_canceled(api: httpx.Client, replicate_upstream: Upstream) -> None:
    replicate_upstream.controls.configure(run_seconds=5)
    created = create_story(api)
    assert api.post(f"/predictions/{created['id']}/cancel").status_code == 200
    assert read_events(created["urls"]["stream"])[-1][::2] == ("done", json.dumps({"reason": "canceled"}))


def test_stream_urls_come_with_every_prediction_of_a_model_that_streams(gateway: Gateway, api: httpx.Client) -> None:
    plain = create_story(api)  # as the JS client creates: no `stream` flag
    legacy = create_story(api, stream=True)
    assert plain["urls"]["stream"].startswith(f"{gateway.url}/v1/predictions/{plain['id']}/stream/")
    assert api.get(f"/predictions/{legacy['id']}").json()["urls"]["stream"] == legacy["urls"]["stream"]
    other = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input(), "stream": True}).json()
    assert "stream" not in other["urls"]  # its output is not an iterator
    muted = api.post("/predictions", json={"version": STORY_MUTED_VERSION, "input": {"prompt": PROMPT}}).json()
    assert "stream" not in muted["urls"]  # the catalog says no, whatever the schema says
    aggregated = api.get(f"{gateway.url}/replicate/v1/predictions/{plain['id']}").json()["urls"]["stream"]
    assert aggregated.startswith(f"{gateway.url}/replicate/v1/predictions/{plain['id']}/stream/")
    assert read_events(aggregated)[-1][0] == "done"


def test_a_stream_url_is_a_capability(gateway: Gateway, api: httpx.Client) -> None:
    url = create_story(api)["urls"]["stream"]
    forged = url[:-1] + ("0" if url[-1] != "0" else "1")
    response = httpx.get(forged)
    assert (response.status_code, response.headers["content-type"]) == (404, "application/problem+json")
    other_id = create_story(api)["id"]
    assert httpx.get(url.replace(url.split("/")[-3], other_id)).status_code == 404  # the signature names one prediction
    assert httpx.get(url, headers={"Authorization": "Bearer gwk_unrelated_key"}, timeout=15).status_code == 200


def test_the_stream_url_dies_with_the_key_that_created_it(gateway: Gateway) -> None:
    token, key = gateway.new_key()
    with gateway.client(token) as api:
        url = create_story(api)["urls"]["stream"]
    assert read_events(url)[-1][0] == "done"
    assert gateway.admin.post(f"/keys/{key['key_id']}/disable").status_code == 200
    assert httpx.get(url).status_code == 404


def _open_streams(gateway: Gateway, source: str) -> float:
    for line in httpx.get(f"{gateway.url}/metrics").text.splitlines():
        if line.startswith(f'gateway_open_streams{{source="{source}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("source", ["relayed", "translated"])
def test_a_stream_ends_when_its_client_leaves(gateway: Gateway, api: httpx.Client, replicate_upstream: Upstream, source: str) -> None:
    replicate_upstream.controls.configure(start_delay=30)  # nothing happens while the client is there
    if source == "translated":
        replicate_upstream.controls.inject(Fault(route="stream", status=503))
    before = _open_streams(gateway, source)
    with httpx.stream("GET", create_story(api)["urls"]["stream"], timeout=5) as response:
        assert response.status_code == 200
        deadline = time.monotonic() + 5
        while _open_streams(gateway, source) != before + 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    deadline = time.monotonic() + 2
    while _open_streams(gateway, source) != before:
        assert time.monotonic() < deadline, "the stream outlived its client"
        time.sleep(0.05)


def test_an_upstream_file_url_in_a_relayed_stream_reaches_the_client_as_a_gateway_link(
    gateway: Gateway, api: httpx.Client, replicate_upstream: Upstream
) -> None:
    prompt = "https://cdn.example.com/frame.png"  # the emulated model yields its prompt: here, a file URL
    response = api.post("/predictions", json={"version": f"{STORY}:{STORY_VERSION}", "input": {"prompt": prompt}})
    created = response.json()
    events = read_events(created["urls"]["stream"])
    [output] = [data for name, _, data in events if name == "output"]
    assert output.startswith(f"{gateway.url}/v1/predictions/{created['id']}/outputs/0/") and output.endswith("/frame.png")
    assert "cdn.example.com" not in "".join(data for _, _, data in events)
