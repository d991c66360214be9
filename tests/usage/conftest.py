"""Helpers of the usage and limits tests: reports read through the admin API, and the exact cost of a prediction
worked out independently of the gateway's code, from the catalog's price and the prediction as served."""

from __future__ import annotations

import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx

from tests.conftest import INPAINTING_PRICE, INPAINTING_VERSION, inpainting_input

NANO = Decimal("0.000000001")


def usage(admin: httpx.Client, **params: str) -> dict[str, Any]:
    response = admin.get("/usage", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def settled(admin: httpx.Client, tenant: str, count: int, seconds: float = 30, **params: str) -> dict[str, Any]:
    """The tenant's usage once `count` predictions are recorded (fails if more are, or fewer after `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        report = usage(admin, tenant=tenant, **params)
        recorded = report["totals"]["predictions"]
        assert recorded <= count, f"{recorded} predictions recorded for {count} finished ones"
        if recorded == count:
            return report
        assert time.monotonic() < deadline, f"only {recorded} of {count} predictions recorded after {seconds} s"
        time.sleep(0.1)


def cost_of(doc: dict[str, Any]) -> Decimal:
    """What a finished inpainting prediction costs: run time at any outcome, the rest only when it succeeded."""
    price = {name: Decimal(value) for name, value in INPAINTING_PRICE.items()}
    seconds = Decimal(round(doc["metrics"]["predict_time"] * 1_000_000)) / 1_000_000
    amount = price["per_second"] * seconds
    if doc["status"] == "succeeded":
        amount += price["per_prediction"] + price["per_output"] * len(doc["output"])
    return amount.quantize(NANO, rounding=ROUND_HALF_UP)


def estimate(num_outputs: int = 1) -> Decimal:
    """What a create pre-charges (the test catalog sets no estimated run time)."""
    return Decimal(INPAINTING_PRICE["per_prediction"]) + Decimal(INPAINTING_PRICE["per_output"]) * num_outputs


PIXEL = "data:image/png;base64,iVBORw0KGgo="  # inline files: gateway processes of their own resolve no test hosts


def create_body(tag: str, **extra: Any) -> dict[str, Any]:
    return {"version": INPAINTING_VERSION, "input": inpainting_input(image=PIXEL, mask=PIXEL, prompt=tag, **extra)}


def finished(api: httpx.Client, prediction_id: str, seconds: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        doc: dict[str, Any] = api.get(f"/predictions/{prediction_id}").json()
        if doc["status"] in ("succeeded", "failed", "canceled"):
            return doc
        assert time.monotonic() < deadline, f"{prediction_id} still {doc['status']}"
        time.sleep(0.1)
