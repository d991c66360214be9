"""Limits of a key or a tenant, set through the admin API: create and read rates, unfinished predictions, a
prepaid balance and a spending budget. Over a limit: 429 or 402 problem+json with Retry-After and RateLimit
fields; a create that never reached the upstream gives its pre-charge back."""

from __future__ import annotations

import re
import time
from decimal import Decimal

import httpx

from tests.conftest import Gateway, Upstream
from tests.emulator import Fault
from tests.usage.conftest import cost_of, create_body, estimate, finished, settled


def _limit_key(gateway: Gateway, key_id: str, **limits: object) -> dict:
    response = gateway.admin.put(f"/keys/{key_id}/limits", json=limits)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_create_rate_admits_its_number_per_minute_then_429s(gateway: Gateway, replicate_upstream: Upstream) -> None:
    token, key = gateway.new_key()
    _limit_key(gateway, key["key_id"], creates_per_minute=3)
    with gateway.client(token) as api:
        answers = [api.post("/predictions", json=create_body("rate")) for _ in range(5)]
        assert [a.status_code for a in answers] == [201, 201, 201, 429, 429]
        refused = answers[-1]
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["status"] == 429 and "3 predictions created per minute" in refused.json()["detail"]
        assert refused.headers["ratelimit-limit"] == "3" and refused.headers["ratelimit-remaining"] == "0"
        assert (
            1 <= int(refused.headers["retry-after"]) <= 60
            and refused.headers["ratelimit-reset"] == refused.headers["retry-after"]
        )
        assert api.get("/predictions").status_code == 200  # reads are counted apart
    assert len(replicate_upstream.requests("POST", "/predictions")) == 3
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert re.search(r'^gateway_limit_rejections_total\{reason="rate"\} [1-9]', metrics, re.MULTILINE)


def test_a_read_rate_counts_every_request_but_creates(gateway: Gateway) -> None:
    token, key = gateway.new_key()
    _limit_key(gateway, key["key_id"], reads_per_minute=2)
    with gateway.client(token) as api:
        assert [api.get("/predictions").status_code, api.get("/account").status_code] == [200, 200]
        refused = api.get("/predictions")
        assert refused.status_code == 429 and refused.json()["detail"].startswith("Request was throttled")
        assert api.post("/predictions", json=create_body("creates are apart")).status_code == 201


def test_a_read_of_one_prediction_is_counted_with_the_record_read_and_refused_before_it(gateway: Gateway) -> None:
    token, key = gateway.new_key()
    _limit_key(gateway, key["key_id"], reads_per_minute=2)
    with gateway.client(token) as api:
        created = api.post("/predictions", json=create_body("read me")).json()  # a create is not a read
        assert [api.get(f"/predictions/{created['id']}").status_code, api.get("/predictions/nonexistent").status_code] == [200, 404]
        refused = api.get(f"/predictions/{created['id']}")
        assert refused.status_code == 429 and refused.json()["detail"].startswith("Request was throttled")
        assert api.get("/predictions/nonexistent").status_code == 429  # the refusal, not the missing record


def test_a_tenant_limit_binds_all_its_keys(gateway: Gateway) -> None:
    first_token, first = gateway.new_key()
    second_token, _ = gateway.new_key(tenant=first["tenant"])
    assert gateway.admin.put(f"/tenants/{first['tenant']}/limits", json={"creates_per_minute": 2}).status_code == 200
    with gateway.client(first_token) as one, gateway.client(second_token) as two:
        assert one.post("/predictions", json=create_body("a")).status_code == 201
        assert two.post("/predictions", json=create_body("b")).status_code == 201
        refused = two.post("/predictions", json=create_body("c"))
        assert refused.status_code == 429 and "your account allows 2" in refused.json()["detail"]
    other_token, _ = gateway.new_key()
    with gateway.client(other_token) as other:  # another tenant is not slowed
        assert other.post("/predictions", json=create_body("d")).status_code == 201


def test_concurrent_predictions_are_capped_until_one_finishes(gateway: Gateway, replicate_upstream: Upstream) -> None:
    token, key = gateway.new_key()
    _limit_key(gateway, key["key_id"], concurrent_predictions=2)
    with gateway.client(token) as api:
        running = []
        for seconds in (1.0, 30.0):  # the first finishes soon, the second not during the test
            replicate_upstream.controls.configure(run_seconds=seconds)
            running.append(api.post("/predictions", json=create_body("slow")))
        replicate_upstream.controls.configure()
        assert [r.status_code for r in running] == [201, 201]
        refused = api.post("/predictions", json=create_body("one too many"))
        assert refused.status_code == 429 and "2 unfinished predictions" in refused.json()["detail"]
        assert refused.headers["retry-after"] == "1"
        state = gateway.admin.get("/limits", params={"tenant": key["tenant"]}).json()["results"]
        assert [e["state"]["concurrent"] for e in state if e["id"] == key["key_id"]] == [2]
        finished(api, running[0].json()["id"])
        settled(gateway.admin, key["tenant"], 1, seconds=10)
        assert api.post("/predictions", json=create_body("a slot is free")).status_code == 201
        assert api.post("/predictions", json=create_body("and taken again")).status_code == 429
        api.post(f"/predictions/{running[1].json()['id']}/cancel")


def test_a_prepaid_balance_admits_what_it_covers_and_settles_the_real_cost(
    gateway: Gateway, replicate_upstream: Upstream
) -> None:
    token, key = gateway.new_key()
    _limit_key(gateway, key["key_id"], prepaid=True)
    top_up = gateway.admin.post(f"/keys/{key['key_id']}/balance", json={"amount": str(estimate() * 2)})
    assert top_up.status_code == 200 and Decimal(top_up.json()["state"]["balance"]) == estimate() * 2
    with gateway.client(token) as api:
        admitted = [api.post("/predictions", json=create_body("paid")) for _ in range(2)]
        assert [a.status_code for a in admitted] == [201, 201]
        refused = api.post("/predictions", json=create_body("unpaid"))
        assert refused.status_code == 402 and refused.headers["content-type"] == "application/problem+json"
        assert "prepaid balance" in refused.json()["detail"] and "retry-after" not in refused.headers
        docs = [finished(api, a.json()["id"]) for a in admitted]
    settled(gateway.admin, key["tenant"], 2)
    entry = next(
        e for e in gateway.admin.get("/limits", params={"tenant": key["tenant"]}).json()["results"] if e["id"] == key["key_id"]
    )
    # Pre-charged two estimates; settled at the real cost, which adds the run time: the balance ends below zero by it.
    assert Decimal(entry["state"]["balance"]) == estimate() * 2 - sum((cost_of(d) for d in docs), Decimal(0))
    assert Decimal(entry["state"]["spent_today"]) == sum((cost_of(d) for d in docs), Decimal(0))
    audit = gateway.admin.get("/audit", params={"key_id": key["key_id"]}).json()["results"]
    assert {"limits.set", "balance.add"} <= {entry["action"] for entry in audit}


def test_a_daily_budget_refuses_what_would_exceed_it_until_the_day_ends(gateway: Gateway) -> None:
    token, key = gateway.new_key()
    budget = {"amount": str(estimate() * 2), "period": "day"}
    assert gateway.admin.put(f"/tenants/{key['tenant']}/limits", json={"budget": budget}).status_code == 200
    with gateway.client(token) as api:
        assert [api.post("/predictions", json=create_body("budget")).status_code for _ in range(2)] == [201, 201]
        refused = api.post("/predictions", json=create_body("over budget"))
        assert refused.status_code == 402 and "spending budget" in refused.json()["detail"]
        seconds_left = 86_400 - int(time.time()) % 86_400
        assert abs(int(refused.headers["retry-after"]) - seconds_left) <= 2
        own = api.get("/limits").json()["results"]
        assert [e["scope"] for e in own] == ["tenant", "key"] and own[0]["limits"]["budget"]["period"] == "day"


def test_a_create_the_upstream_refused_gives_back_its_pre_charge_and_slot(gateway: Gateway, replicate_upstream: Upstream) -> None:
    token, key = gateway.new_key()
    _limit_key(gateway, key["key_id"], prepaid=True, concurrent_predictions=1)
    gateway.admin.post(f"/keys/{key['key_id']}/balance", json={"amount": str(estimate())})
    replicate_upstream.controls.inject(Fault("create", status=500))
    with gateway.client(token) as api:
        failed = api.post("/predictions", json=create_body("upstream fails"))
        assert failed.status_code >= 500
        entry = next(e for e in api.get("/limits").json()["results"] if e["scope"] == "key")
        assert Decimal(entry["state"]["balance"]) == estimate() and entry["state"]["concurrent"] == 0
        assert api.post("/predictions", json=create_body("then works")).status_code == 201


def test_limits_and_balances_take_exact_decimals_and_refuse_bad_ones(gateway: Gateway) -> None:
    _, key = gateway.new_key()
    assert gateway.admin.put(f"/keys/{key['key_id']}/limits", json={"creates_per_minute": -1}).status_code == 422
    assert (
        gateway.admin.put(f"/keys/{key['key_id']}/limits", json={"budget": {"amount": "1", "period": "week"}}).status_code == 422
    )
    assert gateway.admin.post(f"/keys/{key['key_id']}/balance", json={"amount": "0.0000000001"}).status_code == 422
    assert gateway.admin.put("/keys/nosuchkey1234/limits", json={}).status_code == 404
    state = gateway.admin.post(f"/keys/{key['key_id']}/balance", json={"amount": "0.1"}).json()["state"]
    state = gateway.admin.post(f"/keys/{key['key_id']}/balance", json={"amount": "0.2"}).json()["state"]
    assert state["balance"] == "0.300000000"  # not 0.30000000000000004
