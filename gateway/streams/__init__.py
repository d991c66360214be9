"""Server-sent event streams of predictions (`urls.stream`): the wire events, their translation from stored
records, the relay of upstream streams, and the signatures that make stream URLs capabilities."""

from __future__ import annotations

from gateway.streams.events import Event, Position, progress
from gateway.streams.service import Streams
from gateway.streams.signatures import StreamSignatures

__all__ = ["Event", "Position", "StreamSignatures", "Streams", "progress"]
