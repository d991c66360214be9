"""Breakers across real OS processes, and the breaker metrics of a real gateway, on the suite's Valkey."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from gateway.metrics import Metrics
from gateway.routing import Breakers, CircuitState, Ticket
from gateway.store import BreakerStore
from tests.conftest import Gateway
from tests.routing import flapper
from tests.routing.conftest import POLICY, eventually

ROOT = Path(__file__).parents[2]


def _run_flappers(redis_url: str, route: str, count: int) -> list[list[dict[str, Any]]]:
    """`count` flapper processes on `route`: failing for the first 1.1 s, then healthy, until 2.2 s; they start
    together once all are ready."""
    command = [sys.executable, "-m", "tests.routing.flapper", redis_url, route, "1.1", "2.2"]
    running = [subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(count)]
    for process in running:
        assert process.stdout is not None and json.loads(process.stdout.readline()) == {"kind": "ready"}
    start = f"{time.time() + 0.2}\n".encode()
    for process in running:  # all at once: `communicate` returns only when its process has ended
        assert process.stdin is not None
        process.stdin.write(start)
        process.stdin.flush()
    outputs = [process.communicate(timeout=30)[0] for process in running]
    assert [process.returncode for process in running] == [0] * count
    return [[json.loads(line) for line in output.decode().splitlines()] for output in outputs]


def test_two_processes_on_a_flapping_route_open_it_once_probe_one_at_a_time_and_agree(redis_url: str) -> None:
    route = f"flapping:version:{uuid.uuid4().hex}"
    lines = [line for output in _run_flappers(redis_url, route, 2) for line in output]

    transitions = sorted((line["at"], line["state"]) for line in lines if line["kind"] == "transition")
    probes = sorted((line["start"], line["end"], line["ok"]) for line in lines if line["kind"] == "probe")
    finals = [line["state"] for line in lines if line["kind"] == "final"]
    assert finals == ["closed", "closed"]
    # Opened once by the failures; every probe while the route still failed opened it again; the first probe
    # after it recovered closed it, for good.
    failed_probes = [probe for probe in probes if not probe[2]]
    assert probes[-1][2] and len(probes) == len(failed_probes) + 1 and len(failed_probes) >= 1
    expected = ["open"] + ["half_open", "open"] * len(failed_probes) + ["half_open", "closed"]
    assert [state for _, state in transitions] == expected
    for earlier, later in itertools.pairwise(probes):
        assert earlier[1] < later[0]  # never two probes at a time
        assert later[0] - earlier[1] >= flapper.POLICY.open_ms / 1000 * 0.9  # nor one before the open period ended


async def test_the_state_gauge_reads_the_shared_state_and_transitions_count_where_they_happen(
    redis_url: str, gateway: Gateway, route: str
) -> None:
    metrics, redis = Metrics(), aioredis.Redis.from_url(redis_url, decode_responses=True)
    elsewhere = Breakers(BreakerStore(redis), POLICY, metrics.breaker_transition)  # a process other than the gateway
    for _ in range(POLICY.failures):
        await elsewhere.failed(Ticket(route), "http_503")

    async def scraped() -> str:
        return (await asyncio.to_thread(gateway.admin.get, f"{gateway.url}/metrics")).text

    assert f'gateway_breaker_state{{route="{route}"}} 2.0' in await scraped()
    assert "gateway_breaker_states_up 1.0" in await scraped()
    await eventually(lambda: gateway.services.breakers.local_state(route) is CircuitState.OPEN)  # announced to it too
    await asyncio.sleep(POLICY.open_ms / 1000 + 0.1)
    probe = await elsewhere.admit(route)
    assert probe is not None and probe.probe
    assert f'gateway_breaker_state{{route="{route}"}} 1.0' in await scraped()
    await elsewhere.succeeded(probe)
    assert f'gateway_breaker_state{{route="{route}"}} 0.0' in await scraped()

    def transitions(registry: CollectorRegistry, state: str) -> float | None:
        return registry.get_sample_value("gateway_breaker_transitions_total", {"route": route, "state": state})

    assert [transitions(metrics.registry, state) for state in ("open", "half_open", "closed")] == [1, 1, 1]
    assert transitions(gateway.services.metrics.registry, "open") is None  # the gateway made none of them
    await redis.aclose()
