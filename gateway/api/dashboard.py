"""The usage dashboard at /dashboard: one static page and its assets, under a strict content security policy.

The server keeps no login state for it. The page asks for the admin token or a tenant key, keeps it in the tab's
`sessionStorage` and calls the JSON endpoints (`/admin/v1/usage|limits|keys`, `/v1/usage|limits`) with it,
so the dashboard can do nothing its user could not do with curl.
"""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import NotFound

# No inline script or style, nothing from elsewhere; the page talks only to the gateway that served it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_PAGE = "index.html"
# The files served under /dashboard/static/, by name, with their media types; any other name is a 404.
_ASSET_TYPES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "chart.umd.min.js": "text/javascript; charset=utf-8",
    "chart.js-LICENSE.md": "text/plain; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def _read(name: str) -> bytes:
    return files("gateway.dashboard").joinpath(name).read_bytes()


def routes() -> list[Route]:
    """The page and its assets, read from the installed package once, when the app is built."""
    page = _read(_PAGE)
    assets = {name: (_read(f"static/{name}"), media_type) for name, media_type in _ASSET_TYPES.items()}

    async def dashboard(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=_HEADERS)

    async def asset(request: Request) -> Response:
        found = assets.get(request.path_params["name"])
        if found is None:
            raise NotFound("No such dashboard file")
        body, media_type = found
        return Response(body, media_type=media_type, headers=_HEADERS)

    return [
        Route("/dashboard", dashboard, methods=["GET"]),
        Route("/dashboard/static/{name}", asset, methods=["GET"]),
    ]
