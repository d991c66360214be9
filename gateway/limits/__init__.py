"""Rate, concurrency and spending limits of keys and tenants."""

from gateway.limits.rules import Budget, Limits
from gateway.limits.service import Admission, LimitsService, ReadCount

__all__ = ["Admission", "Budget", "Limits", "LimitsService", "ReadCount"]
