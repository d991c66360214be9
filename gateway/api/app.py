"""The application factory: the one place where routes, middleware and services are put together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from gateway.api import admin, callbacks, files, models, openapi, predictions
from gateway.api.body_limit import BodyLimitMiddleware
from gateway.api.problems import EXCEPTION_HANDLERS
from gateway.api.timing import TimingMiddleware
from gateway.catalog import Catalog
from gateway.config import Settings
from gateway.metrics import Metrics
from gateway.services import open_services

API_PREFIXES = ("/v1", "/replicate/v1")


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    return Response(request.state.services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings, catalog: Catalog) -> Starlette:
    """The gateway as an ASGI app; Redis and upstream pools open in its lifespan."""

    recorder = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        async with open_services(settings, catalog, recorder) as services:
            app.state.services = services  # for code embedding the app (and tests); endpoints use request.state
            yield {"services": services}

    api_routes = predictions.routes + models.routes + files.routes
    routes = [
        *(Mount(prefix, routes=api_routes) for prefix in API_PREFIXES),
        Mount("/admin/v1", routes=admin.routes),
        *callbacks.routes,
        *files.upload_routes,
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *openapi.routes(API_PREFIXES),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(TimingMiddleware, metrics=recorder),
            Middleware(
                BodyLimitMiddleware,
                max_bytes=settings.max_body_bytes,
                path_limits=files.body_limits(API_PREFIXES, settings.file_max_bytes),
            ),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
