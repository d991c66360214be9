"""`GET /admin/v1/providers`: each upstream provider's credentials and routes, with their health as every
gateway process sees it (credential cooling and circuit breakers are shared through Redis)."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.admin import authorize
from gateway.api.requests import services
from gateway.api.responses import JSONResponse
from gateway.routing import BreakerState, CircuitState


async def list_providers(request: Request) -> Response:
    authorize(request)
    gateway = services(request)
    breakers = {state.route: state for state in await gateway.breakers.states()}
    models: dict[str, dict[str, set[str]]] = {}  # provider -> route label -> models it serves
    for route, model in gateway.catalog.routes():
        models.setdefault(route.provider, {}).setdefault(route.label, set()).add(model)
    listed = []
    for name, provider in gateway.providers.items():
        routes = models.get(name, {})
        listed.append(
            {
                "name": name,
                "kind": gateway.catalog.providers[name].kind,
                "usable": provider.usable,
                "credentials": [credential.public() for credential in await provider.credentials()],
                "routes": [_route(label, sorted(routes[label]), breakers.get(label)) for label in sorted(routes)],
            }
        )
    return JSONResponse({"providers": listed})


def _route(label: str, models: list[str], breaker: BreakerState | None) -> dict[str, Any]:
    """A route and its breaker (closed, with no failures, when it has never failed)."""
    breaker = breaker or BreakerState(label, CircuitState.CLOSED, 0, None, None, None, None)
    shown = {name: value for name, value in dataclasses.asdict(breaker).items() if name != "route"}
    return {"route": label, "models": models, "breaker": {**shown, "state": breaker.state.value}}


routes = [Route("/providers", list_providers, methods=["GET"])]
