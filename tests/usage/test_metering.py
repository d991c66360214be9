"""Usage records: every finished prediction once, with its exact run time, outputs and cost; reports grouped
and filtered, as JSON and CSV; a tenant sees its own usage only; the usage metrics per key."""

from __future__ import annotations

import csv
import io
import time
from decimal import Decimal
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_TOKEN, INPAINTING, INPAINTING_VERSION, Gateway, Upstream, gateway_settings, run_gateway
from tests.servers import free_port
from tests.usage.conftest import cost_of, create_body, finished, settled, usage

AFTER_FOLLOW_UPS_SECONDS = 3.0  # the follow-ups visit each finished prediction again (and settle it again) by then


def _mixed_outcomes(gateway: Gateway, upstream: Upstream, token: str) -> list[dict]:
    """Three succeeded predictions (1, 2 and 3 outputs), one failed and one canceled, as finally served."""
    ids = []
    with gateway.client(token) as api:
        for outputs in (1, 2, 3):
            ids.append(api.post("/predictions", json=create_body("ok", num_outputs=outputs)).json()["id"])
        upstream.controls.fail_next("CUDA out of memory")
        ids.append(api.post("/predictions", json=create_body("fails")).json()["id"])
        upstream.controls.configure(run_seconds=30)
        slow = api.post("/predictions", json=create_body("canceled")).json()["id"]
        upstream.controls.configure()
        time.sleep(0.5)  # running, so it has a run time to pay for
        assert api.post(f"/predictions/{slow}/cancel").status_code == 200
        ids.append(slow)
        return [finished(api, prediction_id) for prediction_id in ids]


def test_every_finished_prediction_is_recorded_once_with_its_exact_cost(gateway: Gateway, replicate_upstream: Upstream) -> None:
    token, key = gateway.new_key()
    docs = _mixed_outcomes(gateway, replicate_upstream, token)
    assert [d["status"] for d in docs] == ["succeeded"] * 3 + ["failed", "canceled"]
    settled(gateway.admin, key["tenant"], len(docs))
    time.sleep(AFTER_FOLLOW_UPS_SECONDS)  # settled again by the follow-ups: must not count twice

    totals = usage(gateway.admin, tenant=key["tenant"])["totals"]
    assert totals == {
        "predictions": 5,
        "succeeded": 3,
        "failed": 1,
        "canceled": 1,
        "predict_time": round(sum(round(d["metrics"]["predict_time"] * 1e6) for d in docs) / 1e6, 6),
        "total_time": totals["total_time"],
        "outputs": 6,
        "cost": str(sum((cost_of(d) for d in docs), Decimal(0))),
    }
    assert totals["total_time"] >= totals["predict_time"] > 0

    rows = gateway.admin.get("/usage/rows", params={"tenant": key["tenant"]}).json()["results"]
    assert sorted(row["id"] for row in rows) == sorted(d["id"] for d in docs)
    by_id = {row["id"]: row for row in rows}
    for doc in docs:
        assert by_id[doc["id"]]["status"] == doc["status"]
        assert Decimal(by_id[doc["id"]]["cost"]) == cost_of(doc)
        assert by_id[doc["id"]]["key_id"] == key["key_id"]


def test_reports_group_by_period_key_and_model_as_json_and_csv(gateway: Gateway, replicate_upstream: Upstream) -> None:
    first_token, first = gateway.new_key()
    second_token, second = gateway.new_key(tenant=first["tenant"])
    docs = []
    for token, count in ((first_token, 2), (second_token, 1)):
        with gateway.client(token) as api:
            for _ in range(count):
                created = api.post("/predictions", json=create_body("grouped"), headers={"Prefer": "wait=10"}).json()
                docs.append(finished(api, created["id"]))
    settled(gateway.admin, first["tenant"], 3)

    by_key = usage(gateway.admin, tenant=first["tenant"], group_by="key,model")
    assert by_key["group_by"] == ["key", "model"]
    assert {(r["key_id"], r["model"], r["predictions"]) for r in by_key["results"]} == {
        (first["key_id"], INPAINTING, 2),
        (second["key_id"], INPAINTING, 1),
    }
    hourly = usage(gateway.admin, tenant=first["tenant"], group_by="hour,version,provider")
    assert [(r["version"], r["provider"]) for r in hourly["results"]] == [(INPAINTING_VERSION, "replicate")] * len(
        hourly["results"]
    )
    assert all(r["period"].endswith(":00:00.000000Z") for r in hourly["results"])
    only_second = usage(gateway.admin, tenant=first["tenant"], key_id=second["key_id"])
    assert only_second["totals"]["predictions"] == 1

    as_csv = gateway.admin.get("/usage", params={"tenant": first["tenant"], "group_by": "key", "format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert {row["key_id"]: int(row["predictions"]) for row in rows} == {first["key_id"]: 2, second["key_id"]: 1}
    assert sum(Decimal(row["cost"]) for row in rows) == sum((cost_of(d) for d in docs), Decimal(0))
    assert all(row["currency"] == "USD" for row in rows)

    bad = gateway.admin.get("/usage", params={"group_by": "color"})
    assert bad.status_code == 400 and "group_by" in bad.json()["detail"]


def test_a_tenant_sees_its_own_usage_only(gateway: Gateway, replicate_upstream: Upstream) -> None:
    token, key = gateway.new_key()
    other_token, other = gateway.new_key()
    with gateway.client(other_token) as api:
        finished(api, api.post("/predictions", json=create_body("other")).json()["id"])
    with gateway.client(token) as api:
        finished(api, api.post("/predictions", json=create_body("mine")).json()["id"])
        settled(gateway.admin, key["tenant"], 1)
        settled(gateway.admin, other["tenant"], 1)
        own = api.get("/usage", params={"group_by": "tenant", "tenant": other["tenant"]})
        assert own.status_code == 200
        assert [(r["tenant"], r["predictions"]) for r in own.json()["results"]] == [(key["tenant"], 1)]
        assert api.get("/usage", params={"key_id": other["key_id"]}).json()["totals"]["predictions"] == 0
    assert httpx.get(f"{gateway.url}/v1/usage").status_code == 401


def test_usage_metrics_carry_key_and_tenant_and_need_the_admin_token(gateway: Gateway, replicate_upstream: Upstream) -> None:
    token, key = gateway.new_key()
    with gateway.client(token) as api:
        docs = [finished(api, api.post("/predictions", json=create_body("metrics")).json()["id"]) for _ in range(2)]
    report = settled(gateway.admin, key["tenant"], 2)
    assert httpx.get(f"{gateway.url}/metrics/usage").status_code == 401
    text = httpx.get(f"{gateway.url}/metrics/usage", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
    samples = usage_samples(text)
    labels = {"tenant": key["tenant"], "key_id": key["key_id"], "model": INPAINTING}
    assert samples[("gateway_usage_predictions_total", _labels(labels, status="succeeded"))] == 2
    assert samples[("gateway_usage_predictions_total", _labels(labels, status="failed"))] == 0
    assert samples[("gateway_usage_outputs_total", _labels(labels))] == report["totals"]["outputs"]
    cost = sum((cost_of(d) for d in docs), Decimal(0))
    assert samples[("gateway_usage_cost_total", _labels(labels, currency="USD"))] == float(cost)
    assert samples[("gateway_usage_predict_seconds_total", _labels(labels))] == report["totals"]["predict_time"]
    assert token not in text and ADMIN_TOKEN not in text


def _labels(labels: dict[str, str], **more: str) -> frozenset[tuple[str, str]]:
    return frozenset({**labels, **more}.items())


def usage_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_per_tenant_usage_metrics_leave_the_key_out(
    gateway: Gateway, replicate_upstream: Upstream, redis_url: str, catalog_path: Path
) -> None:
    token, key = gateway.new_key()
    with gateway.client(token) as api:
        finished(api, api.post("/predictions", json=create_body("per tenant")).json()["id"])
    settled(gateway.admin, key["tenant"], 1)
    settings = gateway_settings(redis_url, catalog_path, free_port(), usage_metrics_by="tenant")
    with run_gateway(settings) as per_tenant:
        text = httpx.get(f"{per_tenant.url}/metrics/usage", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
    samples = usage_samples(text)
    labels = {"tenant": key["tenant"], "model": INPAINTING}
    assert samples[("gateway_usage_predictions_total", _labels(labels, status="succeeded"))] == 1
    assert not any("key_id" in dict(found) for _, found in samples)
    assert key["key_id"] not in text
