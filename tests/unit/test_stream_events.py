"""The translation of a prediction document into stream events, event ids as positions, and the SSE parser
that reads an upstream's stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.streams.events import Event, Position, progress
from gateway.streams.relay import UpstreamEvent, upstream_events


def _doc(status: str = "processing", output: Any = None, logs: str = "", error: Any = None) -> dict[str, Any]:
    return {"status": status, "output": output, "logs": logs, "error": error}


@pytest.mark.parametrize(
    ("doc", "position", "events", "after"),
    [
        (_doc(), Position(), [], Position()),
        (_doc(logs="a\n"), Position(), [("logs", "a", "0-2")], Position(0, 2)),
        (_doc(logs="a\nb\n", output=["x"]), Position(0, 2), [("logs", "b", "0-4"), ("output", "x", "1-4")], Position(1, 4)),
        # One event a line, without its break; a line still being written waits for its break...
        (_doc(logs="a\r\nb\npart"), Position(), [("logs", "a", "0-3"), ("logs", "b", "0-5")], Position(0, 5)),
        # ...unless the prediction has finished.
        (_doc("succeeded", logs="a\npart"), Position(0, 2), [("logs", "part", "0-6"), ("done", "{}", "0-6")], Position(0, 6)),
        (_doc(output=["x", "y"]), Position(1, 0), [("output", "y", "2-0")], Position(2, 0)),
        (_doc(output="partial"), Position(), [], Position()),  # a single value is sent once it is final
        (_doc("succeeded", output="whole"), Position(), [("output", "whole", "1-0"), ("done", "{}", "1-0")], Position(1, 0)),
        (_doc("succeeded", output={"n": 1}), Position(1, 0), [("done", "{}", "1-0")], Position(1, 0)),
        (_doc("succeeded", output=[1, {"a": None}]), Position(), [("output", "1", "1-0"), ("output", '{"a":null}', "2-0"), ("done", "{}", "2-0")], Position(2, 0)),
        (
            _doc("failed", error="boom"),
            Position(),
            [("error", '{"detail": "boom"}', "0-0"), ("done", '{"reason": "error"}', "0-0")],
            Position(),
        ),
        (_doc("canceled", logs=None), Position(0, 5), [("done", '{"reason": "canceled"}', "0-5")], Position(0, 5)),
    ],
)
def test_progress_sends_what_is_new_and_then_the_end(
    doc: dict[str, Any], position: Position, events: list[tuple[str, str, str]], after: Position
) -> None:
    sent, moved = progress(doc, position)
    assert [(e.name, e.data, e.id) for e in sent] == events
    assert moved == after


@pytest.mark.parametrize(
    ("event_id", "position"),
    [
        (None, Position()),
        ("3-120", Position(3, 120)),
        ("3-120-p1:7", Position(3, 120, "p1:7")),
        ("3-120-a-b", Position(3, 120, "a-b")),
        ("1690212292:0", Position()),  # not one of ours: from the start
        ("-1-2", Position()),
        ("٣-1", Position()),  # digits, but not ASCII ones
        ("9" * 5000 + "-1", Position()),  # more digits than int() takes
    ],
)
def test_an_event_id_names_a_position(event_id: str | None, position: Position) -> None:
    assert Position.parse(event_id) == position
    if event_id and position != Position():
        assert position.event_id == event_id


def test_an_event_is_written_with_its_name_id_and_one_data_line_per_line() -> None:
    assert Event("output", "a\nb\r\nc\rd", "1-0").encode() == b"event: output\nid: 1-0\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    assert Event("logs", "x\n", "0-2").encode() == b"event: logs\nid: 0-2\ndata: x\ndata: \n\n"


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_the_parser_reads_events_split_anywhere() -> None:
    body = b": hi\n\nevent: output\nid: p:0\ndata: a\ndata: b\n\nevent: done\r\nid: p:1\r\ndata: {}\r\n\r\n"
    for cut in range(len(body) + 1):
        events = [e async for e in upstream_events(_chunks(body[:cut], body[cut:]))]
        assert events == [UpstreamEvent("output", "a\nb", "p:0"), UpstreamEvent("done", "{}", "p:1")], cut


async def test_the_parser_keeps_the_last_id_and_skips_empty_events() -> None:
    body = b"id: 7\n\nevent: logs\ndata: x\n\ndata\n\nretry: 5\n\n"
    events = [e async for e in upstream_events(_chunks(body))]
    assert events == [UpstreamEvent("logs", "x", "7"), UpstreamEvent("message", "", "7")]
