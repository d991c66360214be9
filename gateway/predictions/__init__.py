"""Predictions: the service, the apply path every change takes, new records, and requests to upstreams."""

from gateway.predictions.idempotency import Created, IdempotencyKey, IdempotentCreates
from gateway.predictions.records import CreateOptions, new_prediction_id
from gateway.predictions.requests import UpstreamRequests
from gateway.predictions.service import PAGE_SIZE, Page, Predictions
from gateway.predictions.tracking import Tracker

__all__ = [
    "PAGE_SIZE",
    "CreateOptions",
    "Created",
    "IdempotencyKey",
    "IdempotentCreates",
    "Page",
    "Predictions",
    "Tracker",
    "UpstreamRequests",
    "new_prediction_id",
]
