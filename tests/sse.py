"""Server-sent events as a client without any library reads them: strict about what every event must carry."""

from __future__ import annotations

import httpx

Event = tuple[str, str, str]  # (event, id, data)


def read_events(url: str, headers: dict[str, str] | None = None, limit: int | None = None) -> list[Event]:
    """The events of a stream as a client without any library reads them, up to `done` (or `limit` events)."""
    events: list[Event] = []
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream", **(headers or {})}, timeout=15) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, list[str]] = {}
        for line in response.iter_lines():
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(":")
                fields.setdefault(name, []).append(value.removeprefix(" "))
                continue
            if fields:
                assert len(fields["event"]) == 1 and len(fields["id"]) == 1, fields  # explicit on every event
                events.append((fields["event"][0], fields["id"][0], "\n".join(fields.get("data", []))))
                fields = {}
            if events and (events[-1][0] == "done" or len(events) == limit):
                break
    return events
