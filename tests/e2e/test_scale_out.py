"""Three `gateway serve` processes on one 3-primary Valkey Cluster in front of the Replicate emulator, under
steady load from the official `replicate` client with client webhooks; mid-run one process is killed (SIGKILL)
and another restarted (SIGTERM, then started again). Every prediction a create answered reaches a terminal state,
its terminal webhook arrives exactly once, usage equals the emulator's own record exactly, a rate limit admits
exactly its number across the processes, and a revoked key is refused by every process within 5 s."""

from __future__ import annotations

import contextlib
import itertools
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import replicate
from replicate.exceptions import ReplicateError

from tests.conftest import ADMIN_TOKEN, INPAINTING_VERSION, TEST_CATALOG, gateway_process, inpainting_input
from tests.deliveries.conftest import Hook, Receiver, receiver  # noqa: F401  # the receiver fixture
from tests.emulator.process import emulator_process
from tests.topologies import Topology
from tests.usage.conftest import PIXEL, cost_of, settled

THREADS = 6
CREATES_PER_THREAD = 25  # 150 predictions
RATE_LIMIT = 10
# Within 5 s is what every process promises; with keys cached for 5 s, sooner than this shows the revocation
# came over pub/sub rather than by the cache running out.
REVOKED_WITHIN = 2.5
SETTLED_WITHIN = 60.0
# A terminal webhook's retries run up to GATEWAY_WEBHOOK_RETRY_SECONDS (60) after it was queued, backing off as they
# double; one whose attempts met the killed process can take that long plus a lease and an attempt's timeout.
DELIVERED_WITHIN = 120.0
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
_SETTINGS = {
    "public_base_url": "self",
    "webhook_allowed_networks": "127.0.0.0/8",
    "webhook_first_retry_seconds": "0.2",
    "webhook_lease_seconds": "2",  # work of the killed process is taken over this soon
    "follow_up_lease_seconds": "2",
    "key_cache_seconds": "5",
}


class Fleet:
    """The gateway processes, by slot; a slot's URL changes when its process is restarted."""

    def __init__(self, cluster_url: str, catalog: Path, scratch: Path, stack: contextlib.ExitStack) -> None:
        self._args = (cluster_url, catalog, scratch)
        self._stack = stack
        self._runs = itertools.count()
        self.urls: list[str | None] = [None, None, None]
        self.processes: list[Any] = [None, None, None]
        self._lock = threading.Lock()
        for slot in range(3):
            self.start(slot)

    def start(self, slot: int) -> None:
        cluster_url, catalog, scratch = self._args
        url, _, process = self._stack.enter_context(
            # a process started mid-run shares two cores with the load, the others and the cluster
            gateway_process(cluster_url, catalog, scratch / f"gateway-{next(self._runs)}", ready_seconds=60, **_SETTINGS)
        )
        with self._lock:
            self.urls[slot], self.processes[slot] = url, process

    def stop(self, slot: int, sig: signal.Signals) -> None:
        with self._lock:
            process, self.urls[slot] = self.processes[slot], None
        process.send_signal(sig)
        process.wait(timeout=30)

    def live(self) -> list[str]:
        with self._lock:
            return [url for url in self.urls if url is not None]


@pytest.fixture
def fleet(redis_cluster: Topology, tmp_path: Path) -> Iterator[tuple[Fleet, str]]:
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(emulator_process())
        catalog = tmp_path / "catalog.toml"
        catalog.write_text(TEST_CATALOG.replace("{replicate}", upstream).replace("{aggregator}", upstream))
        yield Fleet(redis_cluster.url, catalog, tmp_path, stack), upstream


def _create(fleet: Fleet, token: str, hook: Hook, tag: str, turn: int) -> str | None:
    """A create through the client on the next live process; its id, or None when its process died under it (it
    may still have run: the usage check counts it through the emulator)."""
    live = fleet.live()
    client = replicate.Client(api_token=token, base_url=live[turn % len(live)])
    body = inpainting_input(image=PIXEL, mask=PIXEL, prompt=tag)
    try:
        prediction = client.predictions.create(
            version=INPAINTING_VERSION, input=body, webhook=hook.url, webhook_events_filter=["completed"]
        )
    except (httpx.TransportError, ReplicateError):
        return None
    return prediction.id


def _load(fleet: Fleet, token: str, hook: Hook, tenant: str, thread: int) -> list[str | None]:
    return [_create(fleet, token, hook, f"{tenant}/{thread}/{n}", thread + n) for n in range(CREATES_PER_THREAD)]


def _terminal(fleet: Fleet, token: str, prediction_id: str, seconds: float = SETTLED_WITHIN) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        doc = httpx.get(f"{fleet.live()[0]}/v1/predictions/{prediction_id}", headers={"Authorization": f"Bearer {token}"}).json()
        if doc.get("status") in ("succeeded", "failed", "canceled"):
            return doc  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{prediction_id} still {doc.get('status')}"
        time.sleep(0.2)


def _ledger(upstream: str, tenant: str) -> list[dict[str, Any]]:
    everything = httpx.get(f"{upstream}/v1/_emulator/predictions", timeout=30).json()
    return [p for p in everything if p["input"]["prompt"].startswith(f"{tenant}/")]


def test_three_processes_on_a_cluster_survive_a_kill_and_a_restart_under_load(
    fleet: tuple[Fleet, str], receiver: Receiver  # noqa: F811
) -> None:
    processes, upstream = fleet
    tenant = f"scale-{time.time_ns()}"
    admin = httpx.Client(base_url=f"{processes.live()[0]}/admin/v1", headers=ADMIN, timeout=10)
    token = admin.post("/keys", json={"tenant": tenant}).json()["token"]
    hook = receiver.hook()
    with ThreadPoolExecutor(THREADS) as pool:
        runs = [pool.submit(_load, processes, token, hook, tenant, thread) for thread in range(THREADS)]
        time.sleep(3)
        processes.stop(0, signal.SIGKILL)
        time.sleep(3)
        processes.stop(1, signal.SIGTERM)
        stopped = time.time()  # the process has exited: nothing it sent arrives after this
        processes.start(1)
        admin = httpx.Client(base_url=f"{processes.live()[0]}/admin/v1", headers=ADMIN, timeout=10)
        _revocation_reaches_every_process(processes, admin)  # before the load threads are done, as a rule
        ids = [prediction_id for run in runs for prediction_id in run.result()]
    answered = [prediction_id for prediction_id in ids if prediction_id is not None]
    assert len(answered) >= len(ids) * 0.9, f"only {len(answered)} of {len(ids)} creates answered"

    docs = {prediction_id: _terminal(processes, token, prediction_id) for prediction_id in answered}
    ran = [p for p in _ledger(upstream, tenant) if p["status"] in ("succeeded", "failed", "canceled")]
    report = settled(admin, tenant, len(ran), seconds=SETTLED_WITHIN)
    assert Decimal(report["totals"]["cost"]) == sum((cost_of(p) for p in ran), Decimal(0))
    assert report["totals"]["succeeded"] == sum(1 for p in ran if p["status"] == "succeeded")

    hook.until(lambda got: set(answered) <= {r.json["id"] for r in got if r.terminal}, DELIVERED_WITHIN)
    time.sleep(2)  # a second delivery of any of them would arrive by now
    _delivered_once(hook, answered, stopped)
    assert all(docs[i]["status"] == "succeeded" for i in answered)
    _rate_limit_holds(processes, admin)


def _delivered_once(hook: Hook, answered: list[str], stopped: float) -> None:
    """One terminal webhook per prediction, under one `webhook-id`. A process stopped between a receiver's 2xx
    and its acknowledgement leaves that delivery to another process, which sends it again under the same id (no
    sender can tell an unacknowledged delivery from an unsent one): only such a copy may repeat, and only for a
    webhook that first arrived before the last process stopped."""
    terminal = [r for r in hook.received if r.terminal]
    ids: dict[str, set[str]] = {}
    for received in terminal:
        ids.setdefault(received.json["id"], set()).add(received.headers["webhook-id"])
    assert {prediction_id: len(ids.get(prediction_id, ())) for prediction_id in answered} == dict.fromkeys(answered, 1)
    copies = Counter(r.json["id"] for r in terminal)
    first = {r.json["id"]: r.at for r in reversed(terminal)}
    assert all(first[i] <= stopped for i, n in copies.items() if n > 1), copies.most_common(3)


def _rate_limit_holds(processes: Fleet, admin: httpx.Client) -> None:
    created = admin.post("/keys", json={"tenant": f"rate-{time.time_ns()}"}).json()
    token, key_id = created["token"], created["key"]["key_id"]
    assert admin.put(f"/keys/{key_id}/limits", json={"creates_per_minute": RATE_LIMIT}).status_code == 200
    time.sleep(0.5)  # the limit's change reaches every process's settings cache over pub/sub
    urls = processes.live()

    def create(n: int) -> int:
        body = {"version": INPAINTING_VERSION, "input": inpainting_input(image=PIXEL, mask=PIXEL, prompt=f"rate/{n}")}
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.post(f"{urls[n % len(urls)]}/v1/predictions", json=body, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = Counter(pool.map(create, range(RATE_LIMIT * 3)))
    assert statuses == {201: RATE_LIMIT, 429: RATE_LIMIT * 2}


def _revocation_reaches_every_process(processes: Fleet, admin: httpx.Client) -> None:
    created = admin.post("/keys", json={"tenant": f"revoked-{time.time_ns()}"}).json()
    token, key_id = created["token"], created["key"]["key_id"]
    urls = processes.live()
    headers = {"Authorization": f"Bearer {token}"}
    assert [httpx.get(f"{url}/v1/predictions", headers=headers).status_code for url in urls] == [200] * len(urls)
    assert admin.delete(f"/keys/{key_id}").status_code in (200, 204)
    revoked = time.monotonic()
    for url in urls:
        while httpx.get(f"{url}/v1/predictions", headers=headers).status_code != 401:
            assert time.monotonic() - revoked < REVOKED_WITHIN, f"{url} still admits the revoked key"
            time.sleep(0.05)
