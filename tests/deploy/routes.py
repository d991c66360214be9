"""Whether the gateway app serves a path: for probes and scrape targets that deployments point at."""

from __future__ import annotations

from functools import cache

from starlette.applications import Starlette
from starlette.routing import Match, Route

from gateway.api.app import create_app
from gateway.catalog import Catalog
from gateway.config import Settings, load_catalog
from tests.deploy.dockerfile import ROOT


@cache
def _app() -> Starlette:
    # Building the app opens nothing: Redis and the upstreams are opened by its lifespan, which never runs here.
    settings = Settings(_env_file=None)
    return create_app(settings, Catalog(load_catalog(ROOT / "config" / "catalog.toml", environ={})))


def serves_get(path: str) -> bool:
    """Whether a route of the app's own table (not a mounted prefix) answers GET `path`."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": ""}
    return any(isinstance(route, Route) and route.matches(scope)[0] == Match.FULL for route in _app().routes)
