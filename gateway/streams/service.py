"""Event streams of predictions: relayed from the upstream's own stream when it has one, else translated from
the stored record, which every gateway process sees change (so a client may read from any of them)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, cast

from gateway.errors import GatewayError, NotFound, StoreError
from gateway.metrics import Metrics
from gateway.predictions import Predictions
from gateway.providers import Provider, UpstreamStream
from gateway.store import PredictionStore, StoredPrediction
from gateway.streams.events import EVENT_NAMES, KEEPALIVE, Event, EventName, Position, progress
from gateway.streams.relay import UpstreamEvent, upstream_events

logger = logging.getLogger(__name__)

_KEEPALIVE_SECONDS = 15.0  # a quiet stream sends a comment this often
_STORE_RETRY_SECONDS = 1.0

Render = Callable[[StoredPrediction], dict[str, Any]]
"""The public prediction document of a record (its output files as links on the reader's address)."""
KeyActive = Callable[[str], Awaitable[bool]]


class Streams:
    def __init__(
        self, store: PredictionStore, predictions: Predictions, providers: dict[str, Provider], metrics: Metrics
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._predictions = predictions
        self._providers = providers
        self._relays: set[UpstreamStream] = set()  # open upstream streams, ended together at shutdown

    def end_relays(self) -> None:
        """Stop relaying upstream streams (the process is shutting down): each stream goes on from its record,
        which ends it at once, cleanly, for the client to resume elsewhere with `Last-Event-ID`."""
        for stream in list(self._relays):
            stream.close()

    async def open(
        self, prediction_id: str, last_event_id: str | None, key_active: KeyActive, render: Render
    ) -> AsyncIterator[bytes]:
        """The encoded events of a prediction's stream after `last_event_id`, ending with `done`, for a caller
        holding its signed URL; the URL dies with the key that created the prediction."""
        record = await self._store.get(prediction_id)
        if record is None or record.provisional or not record.streams or not await key_active(record.key_id):
            raise NotFound("The requested stream does not exist")
        return self._events(record, Position.parse(last_event_id), render)

    async def _events(self, record: StoredPrediction, position: Position, render: Render) -> AsyncIterator[bytes]:
        if self._relayable(record, position):
            try:
                with self._metrics.streaming("relayed"):
                    async for event in self._relayed(record, position):
                        yield event.encode()
                        position = Position.parse(event.id)
                        if event.name == "done":
                            return
            except GatewayError as exc:  # the record has it all too: go on from there
                logger.info("the upstream stream of prediction %s failed (%s): translating its record", record.id, exc.detail)
        with self._metrics.streaming("translated"):
            async for chunk in self._translated(record, position, render):
                yield chunk

    def _relayable(self, record: StoredPrediction, position: Position) -> bool:
        """Relay the upstream's stream while the prediction runs, unless the client resumes a translated one (or
        the process shuts down: the record's events so far are sent, and the stream ends)."""
        resumes_translated = position != Position() and position.upstream_id is None
        running = not record.status.terminal and not self._predictions.shutting_down
        return bool(record.upstream_stream) and running and not resumes_translated

    async def _relayed(self, record: StoredPrediction, position: Position) -> AsyncIterator[Event]:
        """The upstream's events as the gateway's, until one carries an upstream file URL (the translated
        stream shows that as a gateway link) or the upstream stream ends."""
        stream = await self._providers[record.provider].open_stream(record.upstream_stream, position.upstream_id)
        self._relays.add(stream)
        try:
            async for upstream in upstream_events(stream.chunks()):
                if upstream.name not in EVENT_NAMES:
                    continue
                if upstream.name == "output" and upstream.data.startswith(("https://", "http://")):
                    return
                position = _advanced(position, upstream)
                yield Event(cast(EventName, upstream.name), upstream.data, position.event_id)
        finally:
            self._relays.discard(stream)
            stream.close()

    async def _translated(self, record: StoredPrediction, position: Position, render: Render) -> AsyncIterator[bytes]:
        events, position = progress(render(record), position)
        for event in events:
            yield event.encode()
        quiet_since = time.monotonic()
        while not record.status.terminal and not self._predictions.shutting_down:
            try:
                async for latest in self._predictions.watch(record):
                    record = latest
                    events, position = progress(render(record), position)
                    for event in events:
                        yield event.encode()
                    if events:
                        quiet_since = time.monotonic()
                    elif time.monotonic() - quiet_since >= _KEEPALIVE_SECONDS:
                        yield KEEPALIVE
                        quiet_since = time.monotonic()
            except StoreError as exc:  # Redis is away for a moment: keep the client, and read again shortly
                logger.warning("the stream of prediction %s waits for the store: %s", record.id, exc.detail)
                await asyncio.sleep(_STORE_RETRY_SECONDS)


def _advanced(position: Position, event: UpstreamEvent) -> Position:
    """The position after relaying `event`, carrying the upstream's id for a resume. Replicate streams its logs a
    line at a time, without the line break the prediction's `logs` keeps, so that positions match either way."""
    outputs = position.outputs + (event.name == "output")
    logs = position.logs + (len(event.data) + 1 if event.name == "logs" else 0)
    return replace(position, outputs=outputs, logs=logs, upstream_id=event.id or position.upstream_id or "")
