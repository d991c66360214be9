"""`gateway usage` prints the usage API's report as a table (or CSV, JSON); `gateway limits` sets, shows and
removes limits and tops up balances, and a running gateway honours them."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

from tests.conftest import INPAINTING, Gateway, Upstream
from tests.usage.conftest import create_body, estimate, finished, settled


def _run(redis_url: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--redis-url", redis_url, *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_cli_prints_the_same_usage_as_the_api(gateway: Gateway, replicate_upstream: Upstream, redis_url: str) -> None:
    token, key = gateway.new_key()
    with gateway.client(token) as api:
        for _ in range(2):
            finished(api, api.post("/predictions", json=create_body("cli")).json()["id"])
    report = settled(gateway.admin, key["tenant"], 2, group_by="key,model")

    as_json = json.loads(_run(redis_url, "usage", "--tenant", key["tenant"], "--group-by", "key,model", "--format", "json"))
    assert as_json["results"] == report["results"] and as_json["totals"] == report["totals"]

    lines = _run(redis_url, "usage", "--tenant", key["tenant"], "--group-by", "key,model").splitlines()
    assert lines[0].startswith("usage from ") and lines[0].endswith("(USD)")
    assert lines[1].split() == [
        "key_id",
        "model",
        "predictions",
        "succeeded",
        "failed",
        "canceled",
        "predict_time",
        "total_time",
        "outputs",
        "cost",
    ]
    row = lines[3].split()
    assert row[:4] == [key["key_id"], INPAINTING, "2", "2"] and row[-1] == report["totals"]["cost"]
    assert lines[-1].split()[0] == "total" and lines[-1].split()[-1] == report["totals"]["cost"]

    as_csv = _run(redis_url, "usage", "--tenant", key["tenant"], "--group-by", "model", "--format", "csv").splitlines()
    assert as_csv[0].startswith("model,predictions,") and as_csv[1].startswith(f"{INPAINTING},2,2,0,0,")


def test_the_cli_sets_limits_a_running_gateway_honours(gateway: Gateway, redis_url: str) -> None:
    token, key = gateway.new_key()
    entry = json.loads(_run(redis_url, "limits", "set", "--key-id", key["key_id"], "--creates-per-minute", "1", "--prepaid"))
    assert entry["limits"]["creates_per_minute"] == 1 and entry["limits"]["prepaid"] is True
    topped = json.loads(_run(redis_url, "limits", "top-up", "--key-id", key["key_id"], str(estimate() * 3)))
    assert Decimal(topped["state"]["balance"]) == estimate() * 3
    with gateway.client(token) as api:
        assert [api.post("/predictions", json=create_body("cli limits")).status_code for _ in range(2)] == [201, 429]
    shown = json.loads(_run(redis_url, "limits", "show", "--tenant", key["tenant"]))
    assert [(e["scope"], e["id"]) for e in shown] == [("tenant", key["tenant"]), ("key", key["key_id"])]
    removed = json.loads(_run(redis_url, "limits", "remove", "--key-id", key["key_id"]))
    assert removed["limits"]["creates_per_minute"] is None
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--redis-url", redis_url, "limits", "top-up", "--tenant", "x", "ten"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "is not an amount" in result.stderr
