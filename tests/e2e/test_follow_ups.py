"""Predictions nobody reads, on an upstream whose webhooks never arrive, still reach their end: gateway processes
sharing one Redis poll them in turn, never two at once, and a process killed mid-poll leaves its work to another.

The gateways here have no public address, so the upstream is never given a webhook URL; the emulator drops its
webhooks as well. They share a Redis of their own, which no other gateway of the suite polls. The tests read the
outcome straight from Redis: a GET would refresh the prediction itself.
"""

import itertools
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from gateway.store.embedded import EmbeddedRedis
from tests.conftest import ADMIN_TOKEN, INPAINTING_VERSION, Upstream, gateway_process, inpainting_input
from tests.emulator import Fault

# Inline files: a gateway process resolves host names with the system's resolver, which knows no example.com.
INPUT = inpainting_input(image="data:image/png;base64,iVBORw0KGgo=", mask="data:image/png;base64,iVBORw0KGgo=")
FAST_POLLING = {"poll_first_seconds": "0.2", "poll_ratio": "0.1", "poll_longest_seconds": "0.3"}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedRedis(tmp_path_factory.mktemp("follow-ups-redis")) as server:
        yield server.url


@pytest.fixture
def quiet_upstream(replicate_upstream: Upstream) -> Upstream:
    replicate_upstream.controls.drop_webhooks(True)  # until the next test resets the emulator
    return replicate_upstream


def _field(redis_url: str, prediction_id: str, name: str) -> str | None:
    """A field of the prediction's record, read straight from Redis."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        return client.hget(f"gw:pred:{{{prediction_id}}}", name)


def _status(redis_url: str, prediction_id: str) -> str | None:
    return _field(redis_url, prediction_id, "status")


def _until_status(redis_url: str, prediction_id: str, expected: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (status := _status(redis_url, prediction_id)) != expected:
        assert time.monotonic() < deadline, f"{prediction_id} is still {status} after {seconds}s"
        time.sleep(0.05)


def _new_key(url: str) -> str:
    response = httpx.post(f"{url}/admin/v1/keys", json={"tenant": "polled"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def _create(url: str, token: str) -> str:
    response = httpx.post(
        f"{url}/v1/predictions",
        json={"version": INPAINTING_VERSION, "input": INPUT},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _upstream_id(redis_url: str, prediction_id: str) -> str:
    return str(_field(redis_url, prediction_id, "upstream_id"))


def test_a_prediction_nobody_reads_reaches_its_end_by_polling_with_few_upstream_reads(
    redis_url: str, catalog_path: Path, tmp_path: Path, quiet_upstream: Upstream
) -> None:
    quiet_upstream.controls.configure(run_seconds=2.0)
    with gateway_process(redis_url, catalog_path, tmp_path, poll_first_seconds="0.5") as (url, _, _):
        token = _new_key(url)
        ids = [_create(url, token) for _ in range(5)]
        for prediction_id in ids:
            _until_status(redis_url, prediction_id, "succeeded", 15)
    for prediction_id in ids:
        reads = quiet_upstream.requests("GET", f"/predictions/{_upstream_id(redis_url, prediction_id)}")
        # About 2 s of running, polled after 0.5 s and then every half of the prediction's age: a handful of reads
        # (about 5; more when a slow machine stretches the run).
        assert 1 <= len(reads) <= 8, [r.at for r in reads]


def test_two_processes_never_poll_one_prediction_at_the_same_time(
    redis_url: str, catalog_path: Path, tmp_path: Path, quiet_upstream: Upstream
) -> None:
    quiet_upstream.controls.configure(run_seconds=3.0)
    upstream_delay = 0.3  # every upstream read takes this long: two polls at once would arrive closer together
    quiet_upstream.controls.inject(Fault(route="get", delay=upstream_delay, times=1000))
    with (
        gateway_process(redis_url, catalog_path, tmp_path / "a", **FAST_POLLING) as (first, _, _),
        gateway_process(redis_url, catalog_path, tmp_path / "b", **FAST_POLLING) as (second, _, _),
    ):
        token = _new_key(first)
        ids = [_create(root, token) for root in (first, second) for _ in range(3)]
        for prediction_id in ids:
            _until_status(redis_url, prediction_id, "succeeded", 20)
    for prediction_id in ids:
        reads = quiet_upstream.requests("GET", f"/predictions/{_upstream_id(redis_url, prediction_id)}")
        assert len(reads) >= 3  # polled again and again while it ran
        gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(reads)]
        assert min(gaps) >= upstream_delay * 0.9, f"overlapping polls of {prediction_id}: {gaps}"


def test_a_process_killed_while_polling_leaves_the_prediction_to_another(
    redis_url: str, catalog_path: Path, tmp_path: Path, quiet_upstream: Upstream
) -> None:
    quiet_upstream.controls.configure(run_seconds=0.5)
    settings = {**FAST_POLLING, "follow_up_lease_seconds": "2"}
    with gateway_process(redis_url, catalog_path, tmp_path / "a", **settings) as (first, _, process):
        token = _new_key(first)
        # Polls hang (the emulator is shared: any reader's GET uses a fault up, hence many) until the kill.
        quiet_upstream.controls.inject(Fault(route="get", delay=30, times=100))
        prediction_id = _create(first, token)
        upstream_id = _upstream_id(redis_url, prediction_id)
        deadline = time.monotonic() + 10
        while not quiet_upstream.requests("GET", f"/predictions/{upstream_id}"):  # the first process is polling it
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
    quiet_upstream.controls.clear_faults()
    assert _status(redis_url, prediction_id) == "starting"  # the poll that would have seen it run never ended
    with gateway_process(redis_url, catalog_path, tmp_path / "b", **settings):
        _until_status(redis_url, prediction_id, "succeeded", 15)


def test_a_prediction_whose_upstream_sends_news_is_not_polled(
    redis_url: str, catalog_path: Path, tmp_path: Path, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=3.0)  # a webhook with new logs every 0.75 s
    with gateway_process(redis_url, catalog_path, tmp_path, public_base_url="self") as (url, _, _):
        prediction_id = _create(url, _new_key(url))
        _until_status(redis_url, prediction_id, "succeeded", 15)
    assert replicate_upstream.requests("POST", "/predictions")[-1].json["webhook"].startswith(url)
    assert replicate_upstream.requests("GET", f"/predictions/{_upstream_id(redis_url, prediction_id)}") == []
