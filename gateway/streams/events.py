"""Replicate's server-sent events (`output`, `logs`, `error`, `done`) and their translation from a prediction.

A translated event's id is the stream position after it: outputs sent and characters of logs sent
(`3-120`); logs go one line an event, without the line break, as upstreams stream them. A reconnecting
client's `Last-Event-ID` is thus enough to resume on any gateway process from the stored record alone. Events
relayed from an upstream's own stream carry the upstream's id after the position (`3-120-<upstream id>`), so
that a resume can continue the upstream stream, or this one if that has gone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from gateway.status import Status

EventName = Literal["output", "logs", "error", "done"]
EVENT_NAMES: frozenset[str] = frozenset({"output", "logs", "error", "done"})
KEEPALIVE = b": keep-alive\n\n"  # a comment: clients ignore it; it tells idle proxies the stream lives

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_COUNT = re.compile(r"[0-9]{1,15}")  # ASCII digits (str.isdigit() takes others), few enough for int()
_ENDINGS = {Status.SUCCEEDED: {}, Status.CANCELED: {"reason": "canceled"}, Status.FAILED: {"reason": "error"}}


@dataclass(frozen=True)
class Position:
    """How much of a prediction a stream has sent: output elements, and characters of logs."""

    outputs: int = 0
    logs: int = 0
    upstream_id: str | None = None  # the id of the last event relayed from the upstream's own stream

    @property
    def event_id(self) -> str:
        position = f"{self.outputs}-{self.logs}"
        return position if self.upstream_id is None else f"{position}-{self.upstream_id}"

    @classmethod
    def parse(cls, event_id: str | None) -> Position:
        """The position a `Last-Event-ID` names; the start for none, or for one this gateway did not make."""
        outputs, _, rest = (event_id or "").partition("-")
        logs, dash, upstream_id = rest.partition("-")
        if not (_COUNT.fullmatch(outputs) and _COUNT.fullmatch(logs)):
            return cls()
        return cls(int(outputs), int(logs), upstream_id if dash else None)


@dataclass(frozen=True)
class Event:
    name: EventName
    data: str
    id: str

    def encode(self) -> bytes:
        """The wire form: an explicit `event:` and `id:` (the Python client drops events without them) and
        one `data:` line per line of data (clients join them with newlines)."""
        lines = [f"event: {self.name}", f"id: {self.id}"]
        lines += [f"data: {line}" for line in _LINE_BREAK.split(self.data)]
        return ("\n".join(lines) + "\n\n").encode()


def progress(doc: dict[str, Any], position: Position) -> tuple[list[Event], Position]:
    """The events for what a public prediction document holds beyond `position` (appended logs, new output
    elements, and once it has finished its outcome), and the position after them."""
    events: list[Event] = []
    status = Status(doc["status"])
    for line, sent in _new_log_lines(doc.get("logs") or "", position.logs, status.terminal):
        position = replace(position, logs=sent, upstream_id=None)
        events.append(Event("logs", line, position.event_id))
    for element in _new_outputs(doc.get("output"), position.outputs, status.terminal):
        position = replace(position, outputs=position.outputs + 1, upstream_id=None)
        events.append(Event("output", element, position.event_id))
    if status.terminal:
        events += ending(status, doc.get("error"), position)
    return events, position


def _new_log_lines(logs: str, sent: int, finished: bool) -> list[tuple[str, int]]:
    """Each whole line of `logs` after the first `sent` characters, without its line break, with the characters
    sent once it is: one event a line, as upstreams stream logs, so that a stream resumed from the record reads
    like the relayed one. A last line without a break waits for it, unless the prediction has finished."""
    end = len(logs) if finished else max(logs.rfind("\n", sent) + 1, sent)
    lines = []
    for line in logs[sent:end].splitlines(keepends=True):
        sent += len(line)
        lines.append((line.rstrip("\r\n"), sent))
    return lines


def ending(status: Status, error: Any, position: Position) -> list[Event]:
    """An `error` event (on failure) and the `done` event that closes a stream."""
    events = [Event("error", json.dumps({"detail": str(error or "Prediction failed")}), position.event_id)]
    done = Event("done", json.dumps(_ENDINGS.get(status, {"reason": "error"})), position.event_id)
    return [*events, done] if status is Status.FAILED else [done]


def _new_outputs(output: Any, sent: int, finished: bool) -> list[str]:
    """Output elements not yet sent: an iterator's output is a list that grows while the model runs; any other
    output is one element, sent once the prediction has finished (it may still change before)."""
    if isinstance(output, list):
        return [_text(element) for element in output[sent:]]
    if finished and output is not None and sent == 0:
        return [_text(output)]
    return []


def _text(element: Any) -> str:
    return element if isinstance(element, str) else json.dumps(element, separators=(",", ":"))
