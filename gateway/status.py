"""The prediction state machine: statuses, their order, and which transitions are allowed."""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    """Replicate's prediction statuses. `aborted` is never emitted: PY 1.0.7 rejects it and JS polls forever."""

    STARTING = "starting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def rank(self) -> int:
        return 2 if self.terminal else (1 if self is Status.PROCESSING else 0)


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED})


def can_transition(current: Status, new: Status) -> bool:
    """Monotonic: never out of a terminal state, never backwards; a non-terminal state may repeat (new logs)."""
    return not current.terminal and new.rank >= current.rank


def allowed_sources(new: Status) -> list[Status]:
    """Every status from which `new` may be reached (what the store's compare-and-set checks)."""
    return [s for s in Status if can_transition(s, new)]


def parse_status(value: object) -> Status:
    """An upstream's status string; `aborted` (never started, then cut off) is reported as `canceled`."""
    if value == "aborted":
        return Status.CANCELED
    if isinstance(value, str) and value in _BY_VALUE:
        return _BY_VALUE[value]
    raise ValueError(f"unknown prediction status {value!r}")


_BY_VALUE = {status.value: status for status in Status}
