"""Opaque list cursors (a direction plus the index entry at the edge of the page they continue from) and paging."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from gateway.errors import BadRequest
from gateway.store import IndexEntry

DIRECTIONS = ("next", "previous")


def encode_cursor(direction: str, entry: IndexEntry) -> str:
    raw = orjson.dumps({"d": direction, "t": entry.created_ms, "i": entry.id})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, IndexEntry]:
    """`(direction, edge)`; anything not made by `encode_cursor` is a BadRequest."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        direction, entry = data["d"], IndexEntry(str(data["i"]), int(data["t"]))
    except (ValueError, KeyError, TypeError, OverflowError, binascii.Error):
        raise BadRequest("The cursor is not valid; use the next or previous URL as given") from None
    if direction not in DIRECTIONS:
        raise BadRequest("The cursor is not valid; use the next or previous URL as given")
    return direction, entry


@dataclass(frozen=True)
class Window:
    """One page of index entries, newest first, and the cursors of the pages on either side (None at an end)."""

    entries: list[IndexEntry]
    next_cursor: str | None
    previous_cursor: str | None


Older = Callable[[IndexEntry | None, int], Awaitable[list[IndexEntry]]]
Newer = Callable[[IndexEntry, int], Awaitable[list[IndexEntry]]]


async def window(cursor: str | None, size: int, older: Older, newer: Newer) -> Window:
    """The page `cursor` points at, read through `older` (newest first) and `newer` (oldest first) index scans."""
    if cursor is None:
        entries = await older(None, size + 1)
        return _window(entries[:size], more_older=len(entries) > size, more_newer=False)
    direction, edge = decode_cursor(cursor)
    if direction == "next":
        entries = await older(edge, size + 1)
        return _window(entries[:size], more_older=len(entries) > size, more_newer=True)
    entries = await newer(edge, size + 1)
    return _window(entries[:size][::-1], more_older=True, more_newer=len(entries) > size)


def _window(entries: list[IndexEntry], *, more_older: bool, more_newer: bool) -> Window:
    return Window(
        entries,
        encode_cursor("next", entries[-1]) if more_older and entries else None,
        encode_cursor("previous", entries[0]) if more_newer and entries else None,
    )
