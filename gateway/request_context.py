"""The request being served, as a context variable: its id and what is learnt while serving it (the key, the
tenant, the prediction, the provider, the last upstream answer). The upstream client sends the id upstream and
the log filter puts every field on each log line, so neither needs the request passed down to it.

One request's fields are one dict: asyncio tasks started while serving it copy the context and so share that
dict (a refresh a GET starts sends the GET's id upstream, and what it learns reaches the GET's access log).
Work started outside a request (pollers, the Cog dispatcher) has no fields, and `tag` is then a no-op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

Field = str | int | float

_fields: ContextVar[dict[str, Field] | None] = ContextVar("gateway_request", default=None)


@contextlib.contextmanager
def serving(request_id: str | None) -> Iterator[None]:
    """Within the block, the current request is a new one with `request_id` (None: no request)."""
    token = _fields.set(None if request_id is None else {"request_id": request_id})
    try:
        yield
    finally:
        _fields.reset(token)


def request_id() -> str | None:
    current = _fields.get()
    return None if current is None else str(current["request_id"])


def tag(**fields: Field) -> None:
    """Add `fields` to the current request's; outside a request, nothing."""
    current = _fields.get()
    if current is not None:
        current.update(fields)


def fields() -> dict[str, Field]:
    """A copy of the current request's fields (empty outside a request)."""
    return dict(_fields.get() or {})
