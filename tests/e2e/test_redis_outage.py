"""Redis going away and coming back: clear 503s meanwhile, then everything as it was (append-only file)."""

from pathlib import Path

import httpx

from tests.conftest import INPAINTING_VERSION, Upstream, gateway_on_own_redis, inpainting_input


def test_an_outage_gives_503_problems_and_loses_nothing(tmp_path: Path, catalog_path: Path, replicate_upstream: Upstream) -> None:
    with gateway_on_own_redis(tmp_path, catalog_path, key_cache_seconds=0) as (server, gateway):
        token, _ = gateway.new_key()
        with gateway.client(token) as api:
            created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
            assert httpx.get(f"{gateway.url}/health/ready").json() == {"status": "ready"}
            server.stop()
            ready = httpx.get(f"{gateway.url}/health/ready")
            assert ready.status_code == 503 and ready.headers["content-type"] == "application/problem+json"
            assert ready.json()["detail"].startswith("The gateway's state store is unavailable")
            assert httpx.get(f"{gateway.url}/health").status_code == 200  # liveness does not depend on Redis
            down = api.get(f"/predictions/{created['id']}")
            assert down.status_code == 503 and down.headers["content-type"] == "application/problem+json"
            assert down.json()["detail"].startswith("The gateway's state store is unavailable")
            assert str(server.port) not in down.text
            server.start()  # same port, same data directory
            assert httpx.get(f"{gateway.url}/health/ready").status_code == 200
            assert api.get(f"/predictions/{created['id']}").json()["id"] == created["id"]
            again = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()})
            assert again.status_code == 201
            assert {p["id"] for p in api.get("/predictions").json()["results"]} == {created["id"], again.json()["id"]}
