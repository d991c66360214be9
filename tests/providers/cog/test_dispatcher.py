"""The slot dispatcher on a real Redis queue and a real Cog server: a prediction that cannot be dispatched is
failed after a bounded number of attempts, and never holds up the other tenants' predictions meanwhile."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.catalog import Route, TargetKind
from gateway.providers import CreateRequest, UpstreamClient, UpstreamPrediction
from gateway.providers.cog import CogAdapter, CogServerPool
from gateway.providers.cog.dispatcher import MAX_DISPATCH_ATTEMPTS, SlotDispatcher
from gateway.status import Status
from gateway.store import Store, StoredPrediction
from tests.images import data_uri, mask_png, png_with_square
from tests.servers import free_port

in_module_loop = pytest.mark.asyncio(loop_scope="module")
MODEL_DIR = Path(__file__).parents[3] / "models" / "inpaint"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, CogAdapter]]:
    url = f"http://127.0.0.1:{free_port()}"
    adapter = CogAdapter(UpstreamClient(5.0, 10), {})
    pool = CogServerPool(MODEL_DIR, [url], adapter.health, log_dir=tmp_path_factory.mktemp("cog-logs"))
    await pool.start(ready_timeout=60)
    yield url, adapter
    await pool.stop()
    await adapter.aclose()


class Reports:
    """The dispatcher's reports, answered as the tracker would: the record with the reported status."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, UpstreamPrediction]] = []

    async def report(self, prediction_id: str, upstream: UpstreamPrediction) -> StoredPrediction:
        self.seen.append((prediction_id, upstream))
        return _record(prediction_id, upstream.status)

    def of(self, prediction_id: str) -> list[UpstreamPrediction]:
        return [upstream for reported, upstream in self.seen if reported == prediction_id]


def _record(prediction_id: str, status: Status) -> StoredPrediction:
    square = (24, 24, 40, 40)
    image = data_uri(png_with_square(64, 64, (255, 128, 0), (255, 255, 255), square))
    doc = {"model": "gateway-demo/inpaint", "input": {"image": image, "mask": data_uri(mask_png(64, 64, square))}}
    return StoredPrediction(prediction_id, f"tenant-of-{prediction_id}", "k", "cog", "", status, doc, 0, 0.0)


async def _prepare(record: StoredPrediction) -> CreateRequest:
    if record.id.startswith("poison"):
        raise RuntimeError("an input no code path foresaw")
    return CreateRequest(record.id, record.doc["model"], Route("cog", TargetKind.SERVER, ""), record.doc["input"])


@in_module_loop
async def test_a_prediction_that_keeps_failing_to_dispatch_is_failed_and_never_blocks_another_tenant(
    server: tuple[str, CogAdapter], redis_url: str
) -> None:
    url, adapter = server
    store = Store.connect(redis_url, prediction_retention_seconds=3600, audit_retention_seconds=3600)
    queue_name = f"poison-{uuid.uuid4().hex[:6]}"
    reports = Reports()
    dispatcher = SlotDispatcher("cog", adapter, [url], store.queue(queue_name), reports.report, _prepare, 60)
    poisoned, victim = f"poison-{uuid.uuid4().hex[:6]}", f"victim-{uuid.uuid4().hex[:6]}"
    await dispatcher.submit("poisoner", poisoned)
    await dispatcher.submit("victim", victim)
    running = asyncio.create_task(dispatcher.run())
    try:
        deadline = time.monotonic() + 20
        while not (_failed(reports.of(poisoned)) and _started(reports.of(victim))):
            assert time.monotonic() < deadline, [(p, u.status, u.error) for p, u in reports.seen]
            await asyncio.sleep(0.05)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await store.aclose()
    [failure] = _failed(reports.of(poisoned))
    assert (
        failure.error == f"The gateway could not hand this prediction to a model server ({MAX_DISPATCH_ATTEMPTS} attempts failed)"
    )
    claims = [u for u in reports.of(poisoned) if u.status is Status.STARTING]
    assert len(claims) == MAX_DISPATCH_ATTEMPTS  # tried exactly that often, then given up


def _failed(reported: list[UpstreamPrediction]) -> list[UpstreamPrediction]:
    return [upstream for upstream in reported if upstream.status is Status.FAILED]


def _started(reported: list[UpstreamPrediction]) -> bool:
    """Claimed, then accepted by the server: two reports (the run's own webhooks are not asked for here)."""
    return len(reported) >= 2 and reported[1].status is not Status.FAILED


@in_module_loop
async def test_a_stopping_dispatcher_gives_back_what_it_claimed_for_another_to_take_at_once(redis_url: str) -> None:
    store = Store.connect(redis_url, prediction_retention_seconds=3600, audit_retention_seconds=3600)
    queue_name = f"stopping-{uuid.uuid4().hex[:6]}"
    handing_over = asyncio.Event()

    async def report_forever(prediction_id: str, upstream: UpstreamPrediction) -> StoredPrediction:
        handing_over.set()
        await asyncio.Event().wait()  # a hand-over that never ends: cut after the dispatcher's grace
        raise AssertionError("unreachable")

    adapter = CogAdapter(UpstreamClient(5.0, 10), {})
    dispatcher = SlotDispatcher("cog", adapter, ["http://127.0.0.1:9"], store.queue(queue_name), report_forever, _prepare, 60)
    await dispatcher.submit("t1", "claimed")
    await dispatcher.submit("t1", "waiting")
    running = asyncio.create_task(dispatcher.run())
    try:
        await asyncio.wait_for(handing_over.wait(), 10)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        other = store.queue(queue_name)
        assert [await other.claim(), await other.claim(), await other.claim()] == ["claimed", "waiting", None]
    finally:
        await adapter.aclose()
        await store.aclose()
