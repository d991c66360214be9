"""The application factory: the one place where routes, middleware and services are put together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from gateway.api import admin, models, predictions, webhooks
from gateway.api.body_limit import BodyLimitMiddleware
from gateway.api.problems import EXCEPTION_HANDLERS
from gateway.catalog import Catalog
from gateway.config import Settings
from gateway.services import open_services

API_PREFIXES = ("/v1", "/replicate/v1")


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings, catalog: Catalog) -> Starlette:
    """The gateway as an ASGI app; Redis and upstream pools open in its lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        async with open_services(settings, catalog) as services:
            yield {"services": services}

    api_routes = predictions.routes + models.routes
    routes = [
        *(Mount(prefix, routes=api_routes) for prefix in API_PREFIXES),
        Mount("/admin/v1", routes=admin.routes),
        *webhooks.routes,
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
