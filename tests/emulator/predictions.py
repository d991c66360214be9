"""Prediction objects, their real-time lifecycle and webhook delivery, as Replicate runs them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import hmac
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
WEBHOOK_EVENTS = ("start", "output", "logs", "completed")
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PROGRESS_STEPS = 4
THROTTLED_EVENTS = frozenset({"output", "logs"})
THROTTLE_SECONDS = 0.5
TERMINAL_WEBHOOK_ATTEMPTS = 5
DEFAULT_ACCOUNT = "acme"  # the account of every token not given one of its own

Prediction = dict[str, Any]
Outbox = asyncio.Queue[tuple[str, Prediction] | None]


def new_prediction_id() -> str:
    """A 26-character lowercase base32 id, the way cog recommends."""
    return base64.b32encode(uuid.uuid4().bytes).decode().lower().rstrip("=")


def timestamp(moment: datetime | None = None) -> str:
    """RFC3339 UTC with a `Z` and microseconds."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_timestamp(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass
class PredictionRun:
    """One prediction: its public object plus what drives its lifecycle."""

    data: Prediction
    start_delay: float
    run_seconds: float
    failure: str | None = None
    webhook: str | None = None
    events: frozenset[str] = frozenset(WEBHOOK_EVENTS)
    outputs: tuple[str, ...] = ()  # empty: files on the emulator's delivery host
    result: dict[str, Any] | None = None  # a training's output, in place of output files
    tokens: tuple[str, ...] = ()  # a streaming model's output, yielded while it runs
    account: str = DEFAULT_ACCOUNT  # the account of the API token that created it
    seq: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    outbox: Outbox = field(default_factory=asyncio.Queue)
    last_sent: dict[str, float] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None
    stream: list[tuple[str, str]] = field(default_factory=list)  # (event, data) served at `urls.stream`
    streamed: asyncio.Event = field(default_factory=asyncio.Event)  # set (and replaced) on each new one

    @property
    def terminal(self) -> bool:
        return self.data["status"] in TERMINAL_STATUSES

    def stop(self) -> None:
        """Cancel this run's tasks from any thread."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        for task in self.tasks:
            loop.call_soon_threadsafe(task.cancel)


def new_prediction(
    *,
    host_url: str,
    api_url: str,
    model: str,
    version: str,
    inputs: dict[str, Any],
    deployment: str | None,
    streams: bool = False,
) -> Prediction:
    """A freshly created prediction in `starting`; urls are under `api_url`, the web page and (for a model that
    streams) the event stream under `host_url`, as Replicate's streams are on a host of their own."""
    prediction_id = new_prediction_id()
    data: Prediction = {
        "id": prediction_id,
        "model": model,
        "version": version,
        "input": dict(sorted(inputs.items())),
        "logs": "",
        "output": None,
        "data_removed": False,
        "error": None,
        "status": "starting",
        "created_at": timestamp(),
        "started_at": None,
        "completed_at": None,
        "source": "api",
        "urls": {
            "cancel": f"{api_url}/predictions/{prediction_id}/cancel",
            "get": f"{api_url}/predictions/{prediction_id}",
            "web": f"{host_url}/p/{prediction_id}",
        },
    }
    if streams:
        data["urls"]["stream"] = f"{host_url}/streams/{prediction_id}"
    if deployment is not None:
        data["deployment"] = deployment
    return data


class PredictionStore:
    """Thread-safe storage of prediction runs; every mutation goes through it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, PredictionRun] = {}
        self._seq = 0

    def add(self, run: PredictionRun) -> None:
        with self._lock:
            self._seq += 1
            run.seq = self._seq
            self._runs[run.data["id"]] = run

    def find(self, prediction_id: str) -> PredictionRun | None:
        with self._lock:
            return self._runs.get(prediction_id)

    def snapshot(self, run: PredictionRun) -> Prediction:
        with self._lock:
            return copy.deepcopy(run.data)

    def update(self, run: PredictionRun, **changes: Any) -> Prediction:
        with self._lock:
            run.data.update(changes)
            return copy.deepcopy(run.data)

    def finish(self, run: PredictionRun, status: str, **changes: Any) -> Prediction | None:
        """Move a run to a terminal status once; None if it already was terminal."""
        with self._lock:
            if run.terminal:
                return None
            completed = datetime.now(UTC)
            run.data.update(changes, status=status, completed_at=timestamp(completed))
            run.data["metrics"] = _metrics(run.data, completed)
            return copy.deepcopy(run.data)

    def snapshots(self) -> list[Prediction]:
        """All predictions, oldest first."""
        with self._lock:
            return [copy.deepcopy(run.data) for run in self._runs.values()]

    def count(self, model: str) -> int:
        with self._lock:
            return sum(1 for run in self._runs.values() if run.data["model"] == model)

    def page(
        self, older_than: int | None, newer_than: int | None, size: int, account: str
    ) -> tuple[list[PredictionRun], bool, bool]:
        """A newest-first page of the account's runs, and whether newer and older ones exist beyond it."""
        with self._lock:
            runs = sorted((r for r in self._runs.values() if r.account == account), key=lambda run: run.seq, reverse=True)
        if newer_than is not None:
            newer = [run for run in runs if run.seq > newer_than]
            chosen = newer[-size:]
        else:
            chosen = [run for run in runs if older_than is None or run.seq < older_than][:size]
        if not chosen:
            return [], False, False
        return chosen, runs[0].seq > chosen[0].seq, runs[-1].seq < chosen[-1].seq

    def clear(self) -> list[PredictionRun]:
        with self._lock:
            runs = list(self._runs.values())
            self._runs.clear()
            return runs


def _metrics(data: Prediction, completed: datetime) -> dict[str, float]:
    created = _parse_timestamp(data["created_at"])
    started = _parse_timestamp(data["started_at"]) if data.get("started_at") else completed
    return {
        "predict_time": round((completed - started).total_seconds(), 6),
        "total_time": round((completed - created).total_seconds(), 6),
    }


def launch(store: PredictionStore, run: PredictionRun, webhooks_dropped: Callable[[], bool]) -> None:
    """Store the run and start its lifecycle (and webhook sender) in the running loop."""
    run.loop = asyncio.get_running_loop()
    store.add(run)
    run.tasks.append(asyncio.create_task(_lifecycle(store, run)))
    if run.webhook:
        run.tasks.append(asyncio.create_task(_deliver_webhooks(run, webhooks_dropped)))


async def wait_for(store: PredictionStore, run: PredictionRun, seconds: float) -> Prediction:
    """Hold until the run is terminal or `seconds` pass; an unfinished one reads as `starting`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run.done.wait(), seconds)
    data = store.snapshot(run)
    if data["status"] not in TERMINAL_STATUSES:
        data["status"] = "starting"
    return data


def cancel(store: PredictionStore, run: PredictionRun) -> Prediction:
    """Cancel a running prediction; a terminal one comes back unchanged."""
    data = store.finish(run, "canceled")
    if data is None:
        return store.snapshot(run)
    run.tasks[0].cancel()  # the lifecycle; the webhook sender still delivers `completed`
    _complete(run, data)
    return data


async def _lifecycle(store: PredictionStore, run: PredictionRun) -> None:
    await asyncio.sleep(run.start_delay)
    seed = run.data["input"].get("seed")
    seed = random.randint(1, 2**16) if seed is None else seed
    data = store.update(run, status="processing", started_at=timestamp(), logs=f"Using seed: {seed}\n")
    _emit(run, "start", data)
    _emit(run, "logs", data)
    _publish(run, "logs", f"Using seed: {seed}")
    for step in range(1, PROGRESS_STEPS + 1):
        await asyncio.sleep(run.run_seconds / PROGRESS_STEPS)
        data = store.update(run, logs=data["logs"] + _progress_line(step))
        _emit(run, "logs", data)
        _publish(run, "logs", _progress_line(step).rstrip("\n"))
        if run.tokens:
            data = _yield_tokens(store, run, data, step)
    if run.failure is not None:
        finished = store.finish(run, "failed", error=run.failure)
    elif run.tokens:
        finished = store.finish(run, "succeeded")
    elif run.result is not None:
        finished = store.finish(run, "succeeded", output=run.result)
    else:
        finished = store.finish(run, "succeeded", output=list(run.outputs) or _outputs(run.data))
        if finished is not None:
            _emit(run, "output", finished)
            for url in finished["output"]:
                _publish(run, "output", url)
    if finished is not None:
        _complete(run, finished)


def _yield_tokens(store: PredictionStore, run: PredictionRun, data: Prediction, step: int) -> Prediction:
    """A streaming model's output for one progress step: its share of the tokens, appended to the output list."""
    per_step = -(-len(run.tokens) // PROGRESS_STEPS)
    for token in run.tokens[(step - 1) * per_step : step * per_step]:
        data = store.update(run, output=[*(data["output"] or []), token])
        _emit(run, "output", data)
        _publish(run, "output", token)
    return data


def _publish(run: PredictionRun, event: str, data: str) -> None:
    """Add an event to the prediction's stream (when it has one) and wake its readers."""
    if "stream" not in run.data["urls"]:
        return
    run.stream.append((event, data))
    woken, run.streamed = run.streamed, asyncio.Event()
    woken.set()


def stream_ending(data: Prediction) -> list[tuple[str, str]]:
    """The last events of a finished prediction's stream: `error` on failure, then `done`."""
    if data["status"] == "succeeded":
        return [("done", "{}")]
    if data["status"] == "canceled":
        return [("done", json.dumps({"reason": "canceled"}))]
    return [("error", json.dumps({"detail": data["error"]})), ("done", json.dumps({"reason": "error"}))]


def _progress_line(step: int) -> str:
    percent = 100 * step // PROGRESS_STEPS
    bar = "#" * (10 * step // PROGRESS_STEPS)
    return f"{percent:3d}%|{bar:<10}| {step}/{PROGRESS_STEPS}\n"


def _outputs(data: Prediction) -> list[str]:
    """Output files on the emulator's own delivery host (like replicate.delivery: readable with the API token)."""
    count = data["input"].get("num_outputs", 1)
    count = count if isinstance(count, int) and not isinstance(count, bool) else 1
    host = data["urls"]["web"].rsplit("/p/", 1)[0]
    return [f"{host}/delivery/{data['id']}/out-{index}.png" for index in range(count)]


def output_bytes(prediction_id: str, name: str) -> bytes:
    """The content of an output file: distinct per prediction and file, so a test can tell them apart."""
    return f"emulated output {name} of {prediction_id}\n".encode()


def _complete(run: PredictionRun, data: Prediction) -> None:
    for event, payload in stream_ending(data):
        _publish(run, event, payload)
    _emit(run, "completed", data)
    run.outbox.put_nowait(None)
    run.done.set()


def _emit(run: PredictionRun, event: str, data: Prediction) -> None:
    """Queue a webhook for `event` if asked for; output/logs at most every 500 ms."""
    if not run.webhook or event not in run.events:
        return
    now = time.monotonic()
    if event in THROTTLED_EVENTS and now - run.last_sent.get(event, -THROTTLE_SECONDS) < THROTTLE_SECONDS:
        return
    run.last_sent[event] = now
    run.outbox.put_nowait((event, copy.deepcopy(data)))


async def _deliver_webhooks(run: PredictionRun, webhooks_dropped: Callable[[], bool]) -> None:
    """Send queued webhooks in order; only the terminal one is retried."""
    assert run.webhook is not None
    client = _webhook_client()
    while (item := await run.outbox.get()) is not None:
        event, data = item
        if webhooks_dropped():
            continue
        attempts = TERMINAL_WEBHOOK_ATTEMPTS if event == "completed" else 1
        await _post_webhook(client, run.webhook, data, attempts)


_webhook_clients: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


def _webhook_client() -> aiohttp.ClientSession:
    """One pooled client per event loop for every run's webhooks: a client each (its TLS context alone costs
    milliseconds of CPU) made a thousand concurrent predictions starve the emulator. aiohttp, not httpx: httpx's
    pool scans every connection for each request, which kept the emulator's core busy with two thousand runs
    delivering at once. Closed with the app."""
    loop = asyncio.get_running_loop()
    client = _webhook_clients.get(loop)
    if client is None:  # once closed with the app, it stays closed: runs still going then send nothing
        connector = aiohttp.TCPConnector(limit=500, limit_per_host=500)
        client = _webhook_clients[loop] = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=5.0), trust_env=False
        )
    return client


async def _post_webhook(client: aiohttp.ClientSession, url: str, data: Prediction, attempts: int) -> None:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    headers = signed_headers(f"msg_{new_prediction_id()}", int(time.time()), body)
    headers["content-type"] = "application/json"
    for attempt in range(attempts):
        try:
            async with client.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status < 400:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        except RuntimeError:  # the client was closed with the app
            return
        if attempt + 1 < attempts:
            await asyncio.sleep(0.1 * 2**attempt)


def signed_headers(message_id: str, sent_at: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers signed with WEBHOOK_SECRET."""
    key = base64.b64decode(WEBHOOK_SECRET.split("_", 1)[1])
    signed = f"{message_id}.{sent_at}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(sent_at),
        "webhook-signature": f"v1,{signature}",
    }


async def close_webhook_client() -> None:
    """Close the running loop's webhook client (its connections must not outlive the loop)."""
    client = _webhook_clients.get(asyncio.get_running_loop())
    if client is not None:
        await client.close()
