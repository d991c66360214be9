"""The receiver upstreams call back: it checks the capability token, then lets the prediction's adapter
decide between trusting the payload (Cog, whose bearer token it checks; Replicate, whose signature it checks)
and re-reading upstream."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import request_context
from gateway.api.requests import parse_json, services
from gateway.errors import NotFound
from gateway.providers import Callback


async def upstream_webhook(request: Request) -> Response:
    prediction_id = request.path_params["prediction_id"]
    if not services(request).links.callbacks.verify(prediction_id, request.query_params.get("token", "")):
        raise NotFound("The requested resource does not exist")
    request_context.tag(prediction_id=prediction_id)
    body = await request.body()
    try:
        payload = parse_json(body)
    except ValueError:
        payload = None
    callback = Callback(payload, body, {name.lower(): value for name, value in request.headers.items()})
    await services(request).predictions.on_upstream_webhook(prediction_id, callback)
    return Response(status_code=204)


routes = [Route("/webhooks/upstream/{prediction_id}", upstream_webhook, methods=["POST"])]
