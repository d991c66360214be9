"""`Idempotency-Key` on creates: a repeat gets the first prediction, made and charged once, on every process."""

import contextlib
import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import INPAINTING, INPAINTING_VERSION, Gateway, Upstream, gateway_process, inpainting_input
from tests.emulator import Fault
from tests.usage.conftest import create_body

RACERS = 12  # concurrent requests with one key
ROUNDS = 5  # keys raced for, one after another


def _body(prompt: str) -> dict[str, Any]:
    return {"version": INPAINTING_VERSION, "input": inpainting_input(prompt=prompt)}


def _creates(upstream: Upstream, prompt: str) -> list[Any]:
    """The upstream creates of predictions with this prompt (other tests' creates left out)."""
    return [r for r in upstream.requests("POST", "/predictions") if r.json["input"]["prompt"] == prompt]


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def test_a_repeat_answers_the_first_prediction_made_and_charged_once(gateway: Gateway, replicate_upstream: Upstream) -> None:
    token, key = gateway.new_key()
    assert gateway.admin.put(f"/keys/{key['key_id']}/limits", json={"creates_per_minute": 2}).status_code == 200
    prompt, headers = f"once {uuid.uuid4()}", _key()
    with gateway.client(token) as api:
        first = api.post("/predictions", json=_body(prompt), headers=headers)
        repeats = [api.post("/predictions", json=_body(prompt), headers=headers) for _ in range(3)]
        assert first.status_code == 201 and "idempotent-replayed" not in first.headers
        for repeat in repeats:
            assert repeat.status_code == 201, repeat.text
            assert repeat.headers["idempotent-replayed"] == "true"
            assert repeat.json()["id"] == first.json()["id"]
            assert repeat.headers["location"] == first.headers["location"]
            assert repeat.json()["urls"] == first.json()["urls"]
        assert len(_creates(replicate_upstream, prompt)) == 1
        # The repeats took nothing from the limit of two creates a minute: one more create fits, then no more.
        assert api.post("/predictions", json=_body(prompt)).status_code == 201
        assert api.post("/predictions", json=_body(prompt)).status_code == 429


def test_a_repeat_answers_the_prediction_as_it_is_now(api: httpx.Client) -> None:
    headers = _key()
    first = api.post("/predictions", json=_body("now"), headers=headers).json()
    canceled = api.post(f"/predictions/{first['id']}/cancel").json()
    repeat = api.post("/predictions", json=_body("now"), headers=headers)
    assert repeat.status_code == 201
    assert canceled["status"] == "canceled" and repeat.json() == canceled


_CREATE_ROUTES = [
    *((prefix, path) for prefix in ("/v1", "/replicate/v1") for path in ("/predictions", f"/models/{INPAINTING}/predictions")),
    *((prefix, "/deployments/acme/inpaint-prod/predictions") for prefix in ("/v1", "/replicate/v1")),
    ("", "/predictions"),  # the host root serves only this one
]


@pytest.mark.parametrize(("prefix", "path"), _CREATE_ROUTES)
def test_every_create_route_takes_a_key(gateway: Gateway, tenant_key: str, prefix: str, path: str) -> None:
    body = _body("routes") if path == "/predictions" else {"input": inpainting_input(prompt="routes")}
    headers = _key()
    with gateway.client(tenant_key, prefix) as api:
        first = api.post(path, json=body, headers=headers)
        repeat = api.post(path, json=body, headers=headers)
    assert first.status_code == repeat.status_code == 201
    assert repeat.headers["idempotent-replayed"] == "true" and repeat.json()["id"] == first.json()["id"]


def test_the_key_with_another_request_is_refused(api: httpx.Client) -> None:
    headers = _key()
    assert api.post("/predictions", json=_body("first"), headers=headers).status_code == 201
    refused = api.post("/predictions", json=_body("second"), headers=headers)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json() == {
        "title": "Idempotency key reused",
        "detail": "This Idempotency-Key was already used with a different request; use a new key",
        "status": 422,
    }
    # The same body on another create route is another request too.
    assert (
        api.post(
            f"/models/{INPAINTING}/predictions", json={"input": inpainting_input(prompt="first")}, headers=headers
        ).status_code
        == 422
    )


@pytest.mark.parametrize("value", [b"", b"k" * 256, b"caf\xe9"])
def test_a_malformed_key_is_a_bad_request(api: httpx.Client, value: bytes) -> None:
    refused = api.post("/predictions", json=_body("malformed"), headers={b"Idempotency-Key": value})
    assert refused.status_code == 400
    assert refused.json()["detail"] == "Idempotency-Key must be 1 to 255 printable ASCII characters"


def test_a_failed_create_frees_its_key(api: httpx.Client, replicate_upstream: Upstream) -> None:
    headers = _key()
    invalid = {"version": INPAINTING_VERSION, "input": {"prompt": "no image"}}
    assert api.post("/predictions", json=invalid, headers=headers).status_code == 422
    replicate_upstream.controls.inject(Fault(route="create", status=500))
    assert api.post("/predictions", json=_body("freed"), headers=headers).status_code >= 500
    created = api.post("/predictions", json=_body("freed"), headers=headers)
    assert created.status_code == 201 and "idempotent-replayed" not in created.headers
    assert api.post("/predictions", json=_body("freed"), headers=headers).json()["id"] == created.json()["id"]


def test_a_key_is_busy_while_its_first_request_is_in_progress(api: httpx.Client, replicate_upstream: Upstream) -> None:
    replicate_upstream.controls.inject(Fault(route="create", delay=1.5))
    prompt, headers = f"slow {uuid.uuid4()}", _key()
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(api.post, "/predictions", json=_body(prompt), headers=headers)
        while not replicate_upstream.requests("POST", "/predictions"):
            time.sleep(0.01)  # until the first request has claimed its key and gone upstream
        busy = api.post("/predictions", json=_body(prompt), headers=headers)
        assert slow.result().status_code == 201
    assert busy.status_code == 409
    assert busy.headers["retry-after"] == "1"
    assert busy.headers["content-type"] == "application/problem+json"
    assert busy.json()["detail"] == "A request with this Idempotency-Key is still in progress; try again shortly"


def _racing(clients: list[httpx.Client], body: dict[str, Any]) -> list[httpx.Response]:
    """Every client sends the same create with one new key, all at the same instant."""
    headers, start = _key(), threading.Barrier(len(clients))

    def send(client: httpx.Client) -> httpx.Response:
        start.wait()
        return client.post("/predictions", json=body, headers=headers)

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(send, clients))


def _assert_one_prediction(answers: list[httpx.Response]) -> None:
    """One request created, the others were told it is in progress or answered its prediction."""
    assert all(a.status_code in (201, 409) for a in answers), [a.text for a in answers]
    created = [a for a in answers if a.status_code == 201 and "idempotent-replayed" not in a.headers]
    assert len(created) == 1, [a.json()["id"] for a in created]
    assert {a.json()["id"] for a in answers if a.status_code == 201} == {created[0].json()["id"]}


@contextlib.contextmanager
def _clients(bases: list[str], token: str) -> Iterator[list[httpx.Client]]:
    """Connected clients, whose key each gateway process has seen already: the race starts at the claim."""
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})) for base in bases
        ]
        for client in clients:
            assert client.get("/predictions").status_code == 200
        yield clients


def test_concurrent_requests_with_one_key_create_one_prediction(gateway: Gateway, replicate_upstream: Upstream) -> None:
    with _clients([f"{gateway.url}/v1"] * RACERS, gateway.new_key()[0]) as clients:
        for _ in range(ROUNDS):
            prompt = f"race {uuid.uuid4()}"
            _assert_one_prediction(_racing(clients, _body(prompt)))
            assert len(_creates(replicate_upstream, prompt)) == 1


def test_two_tenants_with_one_key_get_a_prediction_each(gateway: Gateway, replicate_upstream: Upstream) -> None:
    prompt, headers = f"tenants {uuid.uuid4()}", {"Idempotency-Key": "shared-key"}
    with gateway.client(gateway.new_key()[0]) as one, gateway.client(gateway.new_key()[0]) as other:
        first = one.post("/predictions", json=_body(prompt), headers=headers)
        second = other.post("/predictions", json=_body(prompt), headers=headers)
        assert first.status_code == second.status_code == 201
        assert "idempotent-replayed" not in second.headers
        assert first.json()["id"] != second.json()["id"]
        assert other.get(f"/predictions/{first.json()['id']}").status_code == 404
    assert len(_creates(replicate_upstream, prompt)) == 2


def test_two_processes_racing_one_key_create_one_prediction(
    redis_url: str, catalog_path: Path, tmp_path: Path, gateway: Gateway, replicate_upstream: Upstream
) -> None:
    with (
        gateway_process(redis_url, catalog_path, tmp_path / "one", public_base_url="self") as (one, _, _),
        gateway_process(redis_url, catalog_path, tmp_path / "two", public_base_url="self") as (two, _, _),
        _clients([f"{(one, two)[i % 2]}/v1" for i in range(RACERS)], gateway.new_key()[0]) as clients,
    ):
        for _ in range(ROUNDS):
            prompt = f"processes {uuid.uuid4()}"
            _assert_one_prediction(_racing(clients, create_body(prompt)))
            assert len(_creates(replicate_upstream, prompt)) == 1


def test_a_create_whose_process_died_holds_its_key_for_the_lease_only(
    gateway: Gateway, redis_url: str, replicate_upstream: Upstream
) -> None:
    token, key = gateway.new_key()
    prompt, headers = f"died {uuid.uuid4()}", _key()
    stored = f"gw:idem:{{{key['tenant']}}}:{hashlib.sha256(headers['Idempotency-Key'].encode()).hexdigest()}"
    with gateway.client(token) as api, redis.Redis.from_url(redis_url) as client:
        first = api.post("/predictions", json=_body(prompt), headers=headers).json()
        # As if the process had died after its claim, before writing its record: the claim holds, for its lease.
        client.hdel(stored, "prediction")
        assert api.post("/predictions", json=_body(prompt), headers=headers).status_code == 409
        client.pexpire(stored, 1)
        time.sleep(0.01)
        second = api.post("/predictions", json=_body(prompt), headers=headers)
        assert second.status_code == 201 and "idempotent-replayed" not in second.headers
        # As if it had died after writing its record, which then expired unfinished: the next request creates anew.
        client.delete(f"gw:pred:{{{second.json()['id']}}}")
        third = api.post("/predictions", json=_body(prompt), headers=headers)
        assert third.status_code == 201 and "idempotent-replayed" not in third.headers
        assert len({first["id"], second.json()["id"], third.json()["id"]}) == 3
        assert api.post("/predictions", json=_body(prompt), headers=headers).json()["id"] == third.json()["id"]
    assert len(_creates(replicate_upstream, prompt)) == 3
