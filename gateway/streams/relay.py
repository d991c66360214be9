"""An upstream's own Replicate event stream, read as events: the parsing half of the proxy."""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

_LINE = re.compile(rb"\r\n|\r|\n")


@dataclass
class UpstreamEvent:
    """One dispatched event of an upstream stream; `id` is the last id the stream set (SSE keeps it)."""

    name: str
    data: str
    id: str | None


@dataclass
class _Pending:
    name: str = ""
    data: list[str] = field(default_factory=list)


async def upstream_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[UpstreamEvent]:
    """The events of an SSE body as the WHATWG parsing rules give them (comments and `retry` ignored)."""
    buffer, pending, last_id = b"", _Pending(), None
    async for chunk in chunks:
        buffer += chunk
        held = b"\r" if buffer.endswith(b"\r") else b""  # maybe half of a CRLF: wait for the next chunk
        *lines, rest = _LINE.split(buffer[: len(buffer) - len(held)])
        buffer = rest + held
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if line:
                last_id = _field(line, pending, last_id)
                continue
            if pending.data:
                yield UpstreamEvent(pending.name or "message", "\n".join(pending.data), last_id)
            pending = _Pending()


def _field(line: str, pending: _Pending, last_id: str | None) -> str | None:
    """Take one field line into `pending`; the stream's last event id afterwards."""
    if line.startswith(":"):
        return last_id
    name, _, value = line.partition(":")
    value = value.removeprefix(" ")
    if name == "event":
        pending.name = value
    elif name == "data":
        pending.data.append(value)
    elif name == "id" and "\0" not in value:
        return value
    return last_id
