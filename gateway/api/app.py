"""The application factory: the one place where routes, middleware and services are put together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from gateway.api import (
    admin,
    callbacks,
    catalog_reads,
    dashboard,
    deployments,
    files,
    model_pages,
    models,
    openai_images,
    openapi,
    predictions,
    providers,
    streams,
    trainings,
    usage,
    webhooks,
)
from gateway.api.admin import authorize
from gateway.api.body_limit import BodyLimitMiddleware
from gateway.api.body_timeout import BodyTimeoutMiddleware
from gateway.api.problems import EXCEPTION_HANDLERS
from gateway.api.request_id import RequestIdMiddleware
from gateway.api.responses import JSONResponse
from gateway.api.timing import TimingMiddleware
from gateway.catalog import Catalog
from gateway.config import Settings
from gateway.draining import Draining
from gateway.metrics import Metrics
from gateway.services import open_services
from gateway.ssrf import Resolve, system_resolve
from gateway.usage.exposition import exposition

API_PREFIXES = ("/v1", "/replicate/v1")


async def health(request: Request) -> Response:
    """Liveness: the process serves requests, whatever the state of Redis and the upstreams."""
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """Readiness: 200 while Redis answers, else the store's 503 problem."""
    await request.state.services.ready()
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    """This process's metrics, with queue depths and breakers read from Redis now (left out if Redis does not
    answer quickly)."""
    services = request.state.services
    await services.metrics.depths.refresh(services.queue_depths)
    await services.metrics.breakers.refresh(services.breakers.states)
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


async def usage_metrics(request: Request) -> Response:
    """Usage counters per key (or tenant) from the shared totals: the same on every process; scrape one.
    Business data: only for the admin token (Prometheus sends it as a bearer credential)."""
    authorize(request)
    found = request.state.services
    totals = await found.usage.totals()
    body = exposition(totals, found.settings.usage_metrics_by, found.settings.currency)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def create_app(
    settings: Settings,
    catalog: Catalog,
    resolve: Resolve = system_resolve,
    *,
    runs_model_servers: bool = True,
    recorder: Metrics | None = None,
) -> Starlette:
    """The gateway as an ASGI app; Redis and upstream pools open in its lifespan. `resolve` names the hosts of
    input URLs (the system resolver; tests pass one that needs no DNS). `app.state.draining` is to be started
    by the server when its shutdown begins; without `runs_model_servers` a supervisor runs the managed Cog
    servers, and `recorder` may hold a worker's shared metrics."""

    recorder = recorder or Metrics()
    draining = Draining()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        services_opened = open_services(
            settings, catalog, recorder, resolve, draining=draining, runs_model_servers=runs_model_servers
        )
        async with services_opened as services:
            app.state.services = services  # for code embedding the app (and tests); endpoints use request.state
            yield {"services": services}

    api_routes = (
        predictions.routes + streams.routes + models.routes + files.routes + webhooks.routes + usage.routes
        + openai_images.routes + catalog_reads.routes + model_pages.routes + deployments.routes + trainings.routes
    )  # fmt: skip
    routes = [
        *(Mount(prefix, routes=api_routes) for prefix in API_PREFIXES),
        *predictions.root_routes,
        Mount("/admin/v1", routes=admin.routes + usage.admin_routes + providers.routes),
        *callbacks.routes,
        *files.upload_routes,
        Route("/health", health, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/metrics/usage", usage_metrics, methods=["GET"]),
        *openapi.routes(API_PREFIXES),
        *dashboard.routes(),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(TimingMiddleware, metrics=recorder),
            Middleware(BodyTimeoutMiddleware, seconds=settings.body_timeout_seconds),
            Middleware(
                BodyLimitMiddleware,
                max_bytes=settings.max_body_bytes,
                path_limits=[
                    *files.body_limits(API_PREFIXES, settings.file_max_bytes),
                    *openai_images.body_limits(API_PREFIXES, settings.file_max_bytes),
                ],
            ),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.draining = draining
    return app
