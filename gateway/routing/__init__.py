"""Which upstream routes a prediction is sent to, in what order, and when one is left alone for a while: route
order, and circuit breakers shared by every gateway process."""

from gateway.routing.breakers import Breakers, BreakerState, CircuitState, Ticket
from gateway.routing.gauges import BreakerGauges
from gateway.routing.order import Router

__all__ = ["BreakerGauges", "BreakerState", "Breakers", "CircuitState", "Router", "Ticket"]
