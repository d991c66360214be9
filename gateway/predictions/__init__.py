"""Predictions (and trainings, run as predictions): the service, the apply path, new records, upstream requests."""

from gateway.predictions.idempotency import Created, IdempotencyKey, IdempotentCreates
from gateway.predictions.records import CreateOptions, new_prediction_id
from gateway.predictions.requests import UpstreamRequests
from gateway.predictions.service import PAGE_SIZE, Page, Predictions
from gateway.predictions.tracking import Tracker
from gateway.predictions.trainings import TrainingOptions, Trainings

__all__ = [
    "PAGE_SIZE",
    "CreateOptions",
    "Created",
    "IdempotencyKey",
    "IdempotentCreates",
    "Page",
    "Predictions",
    "Tracker",
    "TrainingOptions",
    "Trainings",
    "UpstreamRequests",
    "new_prediction_id",
]
