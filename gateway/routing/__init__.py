"""Choosing upstream routes: circuit breakers shared by every gateway process."""

from gateway.routing.breakers import Breakers, BreakerState, CircuitState, Ticket
from gateway.routing.gauges import BreakerGauges

__all__ = ["BreakerGauges", "BreakerState", "Breakers", "CircuitState", "Ticket"]
