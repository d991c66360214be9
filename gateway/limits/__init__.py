"""Rate, concurrency and spending limits of keys and tenants."""

from gateway.limits.rules import Budget, Limits
from gateway.limits.service import Admission, LimitsService

__all__ = ["Admission", "Budget", "Limits", "LimitsService"]
