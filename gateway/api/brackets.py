"""Nested values from bracketed form field names, as generated clients (Stainless) send an object in a multipart form.

`metadata[purpose]=x`, `metadata[limits][n]=1` and `metadata[tags][]=a` stand for
`{"purpose": "x", "limits": {"n": "1"}, "tags": ["a"]}`: every leaf is a string, as the form carried it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MAX_DEPTH = 32
_SEGMENTS = re.compile(r"\[([^\[\]]*)\]")


class BracketError(ValueError):
    """The bracketed fields do not describe one value (a key used both as a leaf and as an object, say)."""


def bracketed(name: str, fields: Iterable[tuple[str, str]]) -> dict[str, Any] | None:
    """The object the `name[…]` fields among `fields` describe, in their order; None when there are none."""
    found: dict[str, Any] | None = None
    for field, value in fields:
        path = _path(name, field)
        if path is not None:
            found = {} if found is None else found
            _place(found, path, value)
    return found


def _path(name: str, field: str) -> list[str] | None:
    """The segments of `name[a][b][]` (`["a", "b", ""]`); None for a field of another name or with stray text."""
    if not field.startswith(name + "["):
        return None
    rest = field[len(name) :]
    segments = _SEGMENTS.findall(rest)
    if "".join(f"[{segment}]" for segment in segments) != rest:
        return None
    if len(segments) > MAX_DEPTH:
        raise BracketError(f"Must be nested at most {MAX_DEPTH} levels deep")
    return segments


def _place(container: dict[str, Any], path: list[str], value: str) -> None:
    """Put `value` at `path` under `container`; `[]` appends to a list (an inner one starts a new item)."""
    node: dict[str, Any] | list[Any] = container
    for index, segment in enumerate(path[:-1]):
        node = _child(node, segment, [] if path[index + 1] == "" else {})
    _set(node, path[-1], value)


def _child(node: dict[str, Any] | list[Any], segment: str, empty: dict[str, Any] | list[Any]) -> dict[str, Any] | list[Any]:
    if isinstance(node, list):
        _check_item(segment)
        node.append(empty)
        return empty
    _check_key(segment)
    existing: dict[str, Any] | list[Any] = node.setdefault(segment, empty)
    if type(existing) is not type(empty):
        raise BracketError(f"{segment} is given both as a value and as an object or a list")
    return existing


def _set(node: dict[str, Any] | list[Any], segment: str, value: str) -> None:
    if isinstance(node, list):
        _check_item(segment)
        node.append(value)
        return
    _check_key(segment)
    if segment in node:
        raise BracketError(f"{segment} is given more than once")
    node[segment] = value


def _check_item(segment: str) -> None:
    if segment:
        raise BracketError(f"{segment} names an item of a list, whose items are named []")


def _check_key(segment: str) -> None:
    if not segment:
        raise BracketError("[] names an item of an object, whose items are named [key]")
