"""The limits an admin may set on a key or a tenant, and how they read as the store's script arguments."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.store import ScopeLimits
from gateway.usage.money import period_end, to_nanos

_MONEY_PLACES = 9


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Decimal = Field(ge=0, decimal_places=_MONEY_PLACES, max_digits=_MONEY_PLACES + 10)
    period: Literal["day", "month"]


class Limits(BaseModel):
    """Unset (null) means unlimited. `prepaid`: creates draw on a balance an admin tops up, and are refused when
    it cannot cover their estimate. `budget`: money spent per UTC day or month, pre-charges included."""

    model_config = ConfigDict(extra="forbid")

    creates_per_minute: int | None = Field(default=None, ge=0)
    reads_per_minute: int | None = Field(default=None, ge=0)
    concurrent_predictions: int | None = Field(default=None, ge=0)
    budget: Budget | None = None
    prepaid: bool = False

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def for_script(self, now_ms: int) -> ScopeLimits:
        budget = self.budget
        period = "-" if budget is None else budget.period[0]
        return ScopeLimits(
            creates_per_minute=_or_none(self.creates_per_minute),
            reads_per_minute=_or_none(self.reads_per_minute),
            concurrent=_or_none(self.concurrent_predictions),
            prepaid=self.prepaid,
            budget=-1 if budget is None else to_nanos(budget.amount),
            budget_period=period,
            period_left_ms=-1 if budget is None else int(period_end(now_ms, period).timestamp() * 1000) - now_ms,
        )


NO_LIMITS = Limits()


def _or_none(value: int | None) -> int:
    return -1 if value is None else value
