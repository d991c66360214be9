"""Money as the gateway counts it: whole nano-units (10⁻⁹ of the currency), exact, never a float."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from gateway.store import Periods

NANOS = 10**9


def to_nanos(amount: Decimal) -> int:
    """`amount` in nano-units, rounded half up (prices and costs finer than a nano-unit round once, here)."""
    return int((amount * NANOS).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def amount_text(nanos: int) -> str:
    """An exact decimal string with nine places, e.g. `0.002300000`."""
    return format(Decimal(nanos).scaleb(-9), ".9f")


def periods_of(epoch_ms: int) -> Periods:
    """The UTC day and month an instant falls in, as spending periods are named."""
    when = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return Periods(day=when.strftime("d%Y%m%d"), month=when.strftime("m%Y%m"))


def period_end(epoch_ms: int, period: str) -> datetime:
    """When the UTC day (`d`) or month (`m`) holding `epoch_ms` ends."""
    when = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    start = when.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "d":
        return datetime.fromtimestamp(start.timestamp() + 86_400, UTC)
    days = calendar.monthrange(when.year, when.month)[1]
    return datetime.fromtimestamp(start.replace(day=1).timestamp() + days * 86_400, UTC)
