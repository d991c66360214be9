"""The usage dashboard in a real Chromium against a real gateway: usage made by real predictions with real keys,
read back from the charts, the totals and the limits table the page drew."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ADMIN_TOKEN, INPAINTING, INPAINTING_VERSION, STORY, STORY_VERSION, Gateway, Upstream, inpainting_input


@dataclass(frozen=True)
class Usage:
    """Two tenants' predictions: `acme` made 2 inpaintings (key one, with a daily budget) and 1 failed story (key
    two); `other` 1 story."""

    acme: str
    acme_keys: tuple[str, str]
    acme_token: str
    other: str
    other_key: str
    other_token: str


def _finish(gateway: Gateway, token: str, version: str, prediction_input: dict[str, Any]) -> dict[str, Any]:
    with gateway.client(token) as api:
        created = api.post("/predictions", json={"version": version, "input": prediction_input}, headers={"Prefer": "wait=10"})
    assert created.status_code == 201, created.text
    assert created.json()["status"] in ("succeeded", "failed"), created.json()
    return created.json()  # type: ignore[no-any-return]


def _wait_for_usage(gateway: Gateway, tenant: str, predictions: int) -> None:
    """Until the usage endpoint counts the tenant's finished predictions (metering may trail the prediction)."""
    deadline = time.monotonic() + 15
    while True:
        response = gateway.admin.get("/usage", params={"tenant": tenant})
        assert response.status_code == 200, response.text
        if response.json()["totals"]["predictions"] == predictions or time.monotonic() > deadline:
            assert response.json()["totals"]["predictions"] == predictions, response.json()
            return
        time.sleep(0.2)


@pytest.fixture(scope="module")
def usage(gateway: Gateway, replicate_upstream: Upstream) -> Usage:
    acme, other = f"acme-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    one_token, one = gateway.new_key(acme, name="one")
    two_token, two = gateway.new_key(acme, name="two")
    other_token, other_key = gateway.new_key(other, name="solo")
    limits = {"creates_per_minute": 60, "concurrent_predictions": 5, "budget": {"amount": "10.00", "period": "day"}}
    assert gateway.admin.put(f"/keys/{one['key_id']}/limits", json=limits).status_code == 200
    for _ in range(2):
        assert _finish(gateway, one_token, INPAINTING_VERSION, inpainting_input())["status"] == "succeeded"
    replicate_upstream.controls.fail_next("CUDA out of memory")
    assert _finish(gateway, two_token, STORY_VERSION, {"prompt": "hi"})["status"] == "failed"
    assert _finish(gateway, other_token, STORY_VERSION, {"prompt": "hello"})["status"] == "succeeded"
    _wait_for_usage(gateway, acme, 3)
    _wait_for_usage(gateway, other, 1)
    return Usage(acme, (one["key_id"], two["key_id"]), one_token, other, other_key["key_id"], other_token)


def _log_in(page: Page, gateway: Gateway, token: str, state: str = "ready") -> None:
    page.goto(f"{gateway.url}/dashboard")
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    expect(page.locator(f"body[data-state={state}]")).to_have_count(1)


def _filter_tenant(page: Page, tenant: str) -> None:
    page.fill("#tenant", tenant)
    page.click("#filters button[type=submit]")
    expect(page.locator("body[data-state=ready]")).to_have_count(1)
    expect(page.locator("#tenant")).to_have_value(tenant)


def _chart(page: Page, canvas_id: str) -> dict[str, list[float]]:
    """The chart's datasets as the page handed them to Chart.js: label -> one value per period."""
    datasets = page.evaluate("id => Chart.getChart(id).data.datasets.map(d => [d.label, d.data])", canvas_id)
    return {label: data for label, data in datasets}


def _painted_pixels(page: Page, canvas_id: str) -> int:
    script = """id => {
        const canvas = document.getElementById(id);
        const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
        return painted;
    }"""
    return int(page.evaluate(script, canvas_id))


def _money(amount: str) -> str:
    """An exact decimal as the page shows it: "9.990000000" -> "9.99 USD"."""
    whole, _, fraction = amount.partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')} USD"


def _totals(page: Page) -> dict[str, str]:
    names = ("predictions", "succeeded", "failed", "canceled", "error-rate")
    return {name: page.locator(f"#total-{name}").inner_text() for name in names}


def test_the_admin_sees_each_tenants_usage_per_key_and_model_and_the_keys_limits(
    page: Page, gateway: Gateway, usage: Usage, artifacts: Path
) -> None:
    _log_in(page, gateway, ADMIN_TOKEN)
    _filter_tenant(page, usage.acme)
    assert _totals(page) == {"predictions": "3", "succeeded": "2", "failed": "1", "canceled": "0", "error-rate": "33.3 %"}
    one, two = usage.acme_keys
    assert _chart(page, "chart-keys") == {f"one ({one})": [2], f"two ({two})": [1]}
    assert _chart(page, "chart-models") == {INPAINTING: [2], STORY: [1]}
    assert _chart(page, "chart-errors") == {"Error rate (%)": [pytest.approx(100 / 3)]}
    for canvas in ("chart-keys", "chart-models", "chart-spend", "chart-errors"):
        assert _painted_pixels(page, canvas) > 1000, canvas
    spent = gateway.admin.get("/usage", params={"tenant": usage.acme}).json()["totals"]["cost"]
    assert _chart(page, "chart-spend") == {"Spend (USD)": [pytest.approx(float(spent))]}
    key_rows = page.locator('#limits tbody tr[data-scope="key"]')
    assert sorted(key_rows.evaluate_all("rows => rows.map(r => r.dataset.id)")) == sorted(usage.acme_keys)
    [state] = [row["state"] for row in gateway.admin.get("/limits", params={"tenant": usage.acme}).json()["results"] if row["id"] == one]
    cells = page.locator(f'#limits tr[data-id="{one}"] td').all_inner_texts()
    assert cells[3:10] == ["one", "active", "60", "0 of 5", "10.00 USD per day", _money(state["spent"]), _money(state["remaining"])]
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)

    page.select_option("#bucket", "hour")
    _filter_tenant(page, usage.acme)
    hours = page.evaluate("Chart.getChart('chart-keys').data.labels")
    assert hours and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:00", hour) for hour in hours)
    assert {label: sum(data) for label, data in _chart(page, "chart-keys").items()} == {f"one ({one})": 2, f"two ({two})": 1}

    _filter_tenant(page, "")
    keys = _chart(page, "chart-keys")
    assert sum(keys[f"solo ({usage.other_key})"]) == 1 and sum(keys[f"one ({one})"]) == 2
    assert int(page.locator("#total-predictions").inner_text()) >= 4


def test_the_token_lasts_as_long_as_the_tab_and_log_out_forgets_it(page: Page, gateway: Gateway, usage: Usage) -> None:
    _log_in(page, gateway, usage.acme_token)
    page.reload()
    expect(page.locator("body[data-state=ready]")).to_have_count(1)
    expect(page.locator("#total-predictions")).to_have_text("3")
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#board")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_tenant_key_shows_only_its_tenants_usage_and_limits(page: Page, gateway: Gateway, usage: Usage) -> None:
    _log_in(page, gateway, usage.other_token)
    assert _totals(page) == {"predictions": "1", "succeeded": "1", "failed": "0", "canceled": "0", "error-rate": "0.0 %"}
    assert _chart(page, "chart-keys") == {usage.other_key: [1]}
    assert _chart(page, "chart-models") == {STORY: [1]}
    assert _painted_pixels(page, "chart-keys") > 1000
    expect(page.locator("#tenant-filter")).to_be_hidden()
    expect(page.locator("#who")).to_have_text(f"Tenant {usage.other} · key {usage.other_key}")
    ids = page.locator("#limits tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert usage.other_key in ids and not set(ids) & set(usage.acme_keys)
    text = page.locator("body").inner_text()
    assert usage.acme not in text and all(key not in text for key in usage.acme_keys)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("gwk_abcdefghijkl_not-a-real-secret", "Unauthenticated: You did not pass a valid authentication token (HTTP 401)"),
        ("not-the-admin-token", "Unauthenticated: You did not pass a valid admin token (HTTP 401)"),
    ],
)
def test_a_wrong_token_shows_the_gateways_problem_and_the_login_form_again(
    page: Page, gateway: Gateway, token: str, message: str
) -> None:
    _log_in(page, gateway, token, state="error")
    expect(page.locator("#error")).to_have_text(message)
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#board")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_the_page_and_its_assets_are_served_with_their_types_under_a_strict_policy(gateway: Gateway) -> None:
    expected = {
        "/dashboard": "text/html; charset=utf-8",
        "/dashboard/static/dashboard.js": "text/javascript; charset=utf-8",
        "/dashboard/static/chart.umd.min.js": "text/javascript; charset=utf-8",
        "/dashboard/static/dashboard.css": "text/css; charset=utf-8",
    }
    for path, media_type in expected.items():
        response = httpx.get(gateway.url + path)
        assert response.status_code == 200
        assert response.headers["content-type"] == media_type
        assert response.headers["x-content-type-options"] == "nosniff"
        policy = response.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "default-src 'none';" in policy and "unsafe" not in policy
    slashed = httpx.get(f"{gateway.url}/dashboard/")  # the page's relative links hold only without the slash
    assert slashed.status_code == 307 and slashed.headers["location"] == f"{gateway.url}/dashboard"
    missing = httpx.get(f"{gateway.url}/dashboard/static/..%2Fapi%2Fdashboard.py")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
