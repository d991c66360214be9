"""Which upstream routes a prediction is sent to, in what order, and when one is left alone for a while."""

from gateway.routing.order import Router, may_fail_over

__all__ = ["Router", "may_fail_over"]
