"""Output links are capabilities with limits: they expire, die with the key that created the prediction, and
never let a browser run what an upstream sent."""

from __future__ import annotations

import asyncio
import time

import httpx

from gateway.api.urls import Links
from gateway.signing import SECRET_NAME, Signer
from gateway.store import Store
from tests.api.test_predictions import _wait_done
from tests.conftest import INPAINTING_VERSION, Gateway, inpainting_input


def _finished_output(gateway: Gateway, token: str) -> tuple[str, str]:
    with gateway.client(token) as api:
        created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
        return created["id"], _wait_done(api, created["id"])["output"][0]


def test_an_output_is_served_as_untrusted_content(gateway: Gateway) -> None:
    token, _ = gateway.new_key()
    _, link = _finished_output(gateway, token)
    response = httpx.get(link)
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "sandbox"


def test_a_link_stops_working_when_the_key_that_made_the_prediction_is_disabled(gateway: Gateway) -> None:
    token, key = gateway.new_key()
    _, link = _finished_output(gateway, token)
    assert httpx.get(link).status_code == 200
    gateway.admin.post(f"/keys/{key['key_id']}/disable")
    assert httpx.get(link).status_code == 404


def test_an_expired_link_is_refused_even_with_a_valid_signature(gateway: Gateway, redis_url: str) -> None:
    token, _ = gateway.new_key()
    prediction_id, link = _finished_output(gateway, token)

    async def signer() -> Signer:
        store = Store.connect(redis_url, prediction_retention_seconds=3600, audit_retention_seconds=3600)
        try:
            return Signer(await store.shared_secret(SECRET_NAME))
        finally:
            await store.aclose()

    links = Links(asyncio.run(signer()), gateway.url, gateway.url)
    expired = links.output(f"{gateway.url}/v1", prediction_id, 0, link.rsplit("/", 1)[1], int(time.time()) - 1)
    response = httpx.get(expired)
    assert (response.status_code, response.json()["detail"]) == (
        403,
        "The output link has expired; read the prediction again for a fresh one",
    )
