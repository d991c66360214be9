"""A gateway process killed (SIGKILL) after its create reached the upstream but before it recorded the answer:
the prediction runs upstream, so another process takes it over rather than dropping it, and the tenant sees it
finish and pays for it once. A create that never reached the upstream is still undone."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from gateway.store.embedded import EmbeddedRedis
from tests.conftest import ADMIN_TOKEN, TEST_CATALOG, Upstream, gateway_process
from tests.emulator import Fault
from tests.usage.conftest import create_body

# The test catalog's longest create: its upstream's 3 s timeout, then lookups (see `services.create_seconds`).
TAKEN_OVER_WITHIN = 60.0


def test_a_create_whose_process_died_after_the_upstream_took_it_is_taken_over(
    tmp_path: Path, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(TEST_CATALOG.replace("{replicate}", replicate_upstream.url).replace("{aggregator}", aggregator_upstream.url))
    replicate_upstream.controls.inject(Fault("create", delay=1.0))  # it takes the create, and answers a dead process
    replicate_upstream.controls.inject(Fault("create", status=500, delay=1.0))  # it refuses the other one
    with EmbeddedRedis(tmp_path / "redis") as server:
        with gateway_process(server.url, catalog, tmp_path / "doomed", public_base_url="self", follow_up_lease_seconds="2") as (doomed_url, _, doomed):
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            token = httpx.post(f"{doomed_url}/admin/v1/keys", json={"tenant": "victim"}, headers=admin).json()["token"]
            headers = {"Authorization": f"Bearer {token}"}

            def create(tag: str) -> int:
                try:
                    return httpx.post(f"{doomed_url}/v1/predictions", json=create_body(tag), headers=headers, timeout=10).status_code
                except httpx.TransportError:
                    return 0

            with ThreadPoolExecutor(2) as pool:
                taken = pool.submit(create, "taken")
                time.sleep(0.2)  # the faults apply in order of arrival
                refused = pool.submit(create, "refused")
                time.sleep(0.4)
                doomed.send_signal(signal.SIGKILL)
                assert (taken.result(), refused.result()) == (0, 0)
        time.sleep(1.0)  # the upstream takes the first create after its process died
        assert len(replicate_upstream.requests("POST", "/predictions")) == 2
        with gateway_process(server.url, catalog, tmp_path / "heir", public_base_url="self", follow_up_lease_seconds="2") as (heir, _, _):
            deadline = time.monotonic() + TAKEN_OVER_WITHIN
            with httpx.Client(base_url=f"{heir}/v1", headers=headers, timeout=10) as api:
                while not (listed := api.get("/predictions").json()["results"]):
                    assert time.monotonic() < deadline, "the create that reached the upstream was never taken over"
                    time.sleep(0.5)
                assert [p["input"]["prompt"] for p in listed] == ["taken"]  # the refused one was undone
                while (shown := api.get(f"/predictions/{listed[0]['id']}").json())["status"] != "succeeded":
                    assert time.monotonic() < deadline, shown
                    time.sleep(0.5)
                usage = api.get("/usage").json()
            assert usage["totals"]["predictions"] == 1 and usage["totals"]["succeeded"] == 1
