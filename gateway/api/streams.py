"""The event stream of a prediction (`urls.stream`): server-sent events behind a signed capability URL."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.api.requests import api_root, services
from gateway.errors import NotFound
from gateway.store import StoredPrediction

# No cache may keep or merge a live stream; proxies that buffer (nginx) are asked not to.
_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


async def get_stream(request: Request) -> Response:
    """Events `output`, `logs`, `error` and `done`; the URL is the credential, so any `Authorization` header
    (the Python client sends the tenant's key) is ignored. `Last-Event-ID` resumes after that event."""
    gateway, prediction_id = services(request), request.path_params["prediction_id"]
    if not gateway.links.streams.verify(prediction_id, request.path_params["signature"]):
        raise NotFound("The requested stream does not exist")
    root = api_root(request)

    def render(record: StoredPrediction) -> dict[str, object]:
        return gateway.links.prediction(record, root)

    events = await gateway.streams.open(prediction_id, request.headers.get("last-event-id"), gateway.auth.active, render)
    return StreamingResponse(events, media_type="text/event-stream", headers=_HEADERS)


routes = [Route("/predictions/{prediction_id}/stream/{signature}", get_stream, methods=["GET"])]
