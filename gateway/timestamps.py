"""RFC 3339 timestamps as Replicate writes them (UTC, `Z`, microseconds) and the ISO 8601 ones it reads."""

from __future__ import annotations

from datetime import UTC, datetime


def timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(value: str | None) -> float | None:
    """Seconds since the epoch, or None when `value` is empty or not ISO 8601; a value without a zone is UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
