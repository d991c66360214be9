"""The tenant's webhook signing secret, as Replicate serves it (`webhooks.default.secret.get`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.requests import caller, services
from gateway.api.responses import JSONResponse


async def get_secret(request: Request) -> Response:
    key = await caller(request, "read")
    return JSONResponse({"key": await services(request).webhooks.secrets.get(key.tenant)})


routes = [Route("/webhooks/default/secret", get_secret, methods=["GET"])]
