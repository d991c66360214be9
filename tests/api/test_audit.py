"""The audit log through the admin API: every key action recorded once with before and after, no secret in it
(neither in the answers nor in the raw Redis stream), filters, paging and the request id."""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from gateway.keys import hash_secret
from tests.conftest import Gateway

ACTIONS_NEWEST_FIRST = ["key.delete", "key.rotate", "key.disable", "key.update", "key.create"]


def _audit(gateway: Gateway, **params: Any) -> dict[str, Any]:
    response = gateway.admin.get("/audit", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _raw_stream(redis_url: str) -> str:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        entries = client.xrange("gw:audit")
    return "\n".join(f"{entry_id} {name}={value}" for entry_id, fields in entries for name, value in fields.items())


def _every_action(gateway: Gateway, tenant: str) -> tuple[str, list[str]]:
    """Create, update, disable, rotate (with a grace period) and delete one key; its id and every token it had."""
    created = gateway.admin.post("/keys", json={"tenant": tenant, "name": "first"}, headers={"X-Request-Id": "req-create-1"})
    assert created.status_code == 201 and created.headers["x-request-id"] == "req-create-1"
    key_id, first_token = created.json()["key"]["key_id"], created.json()["token"]
    assert gateway.admin.patch(f"/keys/{key_id}", json={"name": "second"}).status_code == 200
    assert gateway.admin.post(f"/keys/{key_id}/disable").status_code == 200
    rotated = gateway.admin.post(f"/keys/{key_id}/rotate", json={"grace_seconds": 60})
    assert rotated.status_code == 200
    assert gateway.admin.delete(f"/keys/{key_id}").status_code == 204
    return key_id, [first_token, rotated.json()["token"]]


def test_each_key_action_is_recorded_once_with_actor_before_and_after(gateway: Gateway) -> None:
    tenant = f"audit-{uuid.uuid4().hex[:8]}"
    key_id, _ = _every_action(gateway, tenant)
    entries = _audit(gateway, key_id=key_id)["results"]
    assert [e["action"] for e in entries] == ACTIONS_NEWEST_FIRST
    delete, rotate, disable, update, create = entries
    for entry in entries:
        assert entry["subject"] == {"kind": "key", "id": key_id} and entry["tenants"] == [tenant]
        assert entry["actor"] == {"kind": "admin-token", "source": "127.0.0.1"}
    assert create["request_id"] == "req-create-1" and create["before"] is None
    assert (create["after"]["name"], create["after"]["tenant"], create["after"]["disabled"]) == ("first", tenant, False)
    assert (update["before"]["name"], update["after"]["name"]) == ("first", "second")
    assert (disable["before"]["disabled"], disable["after"]["disabled"]) == (False, True)
    assert rotate["before"]["previous_valid_until"] is None and rotate["after"]["previous_valid_until"] > time.time()
    assert delete["before"]["name"] == "second" and delete["after"] is None
    assert len({e["request_id"] for e in entries}) == 5


def test_no_secret_reaches_the_audit_log_or_its_stream(gateway: Gateway, redis_url: str) -> None:
    key_id, tokens = _every_action(gateway, f"audit-{uuid.uuid4().hex[:8]}")
    secrets = [token.split("_")[2] for token in tokens]
    shown = gateway.admin.get("/audit", params={"key_id": key_id}).text
    raw = _raw_stream(redis_url)
    assert f"subject_id={key_id}" in raw and '"name":"second"' in raw  # the entries are there, in full
    for text in (shown, raw):
        for secret in [*tokens, *secrets, *(hash_secret(s) for s in secrets)]:
            assert secret not in text
        for name in ("secret_hash", "secret_hint", "token_hint", '"token"', "gwk_"):
            assert name not in text


def test_a_failed_action_is_not_recorded(gateway: Gateway) -> None:
    missing = f"m{uuid.uuid4().hex[:11]}"
    assert gateway.admin.patch(f"/keys/{missing}", json={"name": "x"}).status_code == 404
    assert gateway.admin.post(f"/keys/{missing}/rotate").status_code == 404
    assert gateway.admin.delete(f"/keys/{missing}").status_code == 404
    _, key = gateway.new_key()
    assert gateway.admin.patch(f"/keys/{key['key_id']}", json={"models": ["not a pattern"]}).status_code == 422
    assert _audit(gateway, key_id=missing)["results"] == []
    assert [e["action"] for e in _audit(gateway, key_id=key["key_id"])["results"]] == ["key.create"]


def test_the_request_id_is_the_clients_when_sane_else_a_new_one(gateway: Gateway) -> None:
    for given in ("has space", "x" * 129, "semi;colon", ""):
        response = gateway.admin.post("/keys", json={"tenant": "audit-ids"}, headers={"X-Request-Id": given})
        generated = response.headers["x-request-id"]
        assert response.status_code == 201 and generated != given and len(generated) == 32
        [entry] = _audit(gateway, key_id=response.json()["key"]["key_id"])["results"]
        assert entry["request_id"] == generated
    assert httpx.get(f"{gateway.url}/health", headers={"X-Request-Id": "trace-1.2:3"}).headers["x-request-id"] == "trace-1.2:3"


def test_filters_by_tenant_action_and_time(gateway: Gateway) -> None:
    tenant, other = f"audit-{uuid.uuid4().hex[:8]}", f"audit-{uuid.uuid4().hex[:8]}"
    _, first = gateway.new_key(tenant)
    _, second = gateway.new_key(tenant)
    gateway.new_key(other)
    time.sleep(0.01)
    middle = _now_iso()
    time.sleep(0.01)
    assert gateway.admin.post(f"/keys/{first['key_id']}/disable").status_code == 200
    assert gateway.admin.patch(f"/keys/{second['key_id']}", json={"tenant": other}).status_code == 200
    by_tenant = _audit(gateway, tenant=tenant)["results"]
    assert [(e["action"], e["subject"]["id"]) for e in by_tenant] == [
        ("key.update", second["key_id"]),
        ("key.disable", first["key_id"]),
        ("key.create", second["key_id"]),
        ("key.create", first["key_id"]),
    ]
    assert by_tenant[0]["tenants"] == sorted([tenant, other])  # a key moved between tenants shows under both
    creates = _audit(gateway, tenant=tenant, action="key.create")["results"]
    assert [e["subject"]["id"] for e in creates] == [second["key_id"], first["key_id"]]
    since = _audit(gateway, tenant=tenant, since=middle)["results"]
    assert [e["action"] for e in since] == ["key.update", "key.disable"]
    until = _audit(gateway, tenant=tenant, until=middle)["results"]
    assert [e["action"] for e in until] == ["key.create", "key.create"]
    assert [e["action"] for e in _audit(gateway, tenant=other)["results"]] == ["key.update", "key.create"]


def test_pages_run_newest_first_with_a_cursor(gateway: Gateway) -> None:
    tenant = f"audit-{uuid.uuid4().hex[:8]}"
    key_ids = [gateway.new_key(tenant)[1]["key_id"] for _ in range(5)]
    page = _audit(gateway, tenant=tenant, limit=2)
    seen = []
    while True:
        seen += [e["subject"]["id"] for e in page["results"]]
        if page["next"] is None:
            break
        assert page["next"].startswith(f"{gateway.url}/admin/v1/audit?") and f"tenant={tenant}" in page["next"]
        response = gateway.admin.get(page["next"])
        assert response.status_code == 200
        page = response.json()
    assert seen == key_ids[::-1]
    assert [len(_audit(gateway, tenant=tenant, limit=n)["results"]) for n in (1, 5, 6)] == [1, 5, 5]
    assert _audit(gateway, tenant=tenant, limit=5)["next"] is None


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"since": "yesterday"}, "since must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z"),
        ({"until": "2026-13-01"}, "until must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z"),
        ({"limit": "0"}, "limit must be a whole number from 1 to 1000"),
        ({"limit": "ten"}, "limit must be a whole number from 1 to 1000"),
        ({"cursor": "not-a-cursor"}, "The cursor is not valid; use the next URL as given"),
    ],
)
def test_bad_filters_are_400_problems_not_unfiltered_pages(gateway: Gateway, params: dict[str, str], detail: str) -> None:
    key_id = gateway.new_key()[1]["key_id"]
    response = gateway.admin.get("/audit", params={"key_id": key_id, **params})
    assert response.status_code == 400 and response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == detail and key_id not in response.text
    assert [e["action"] for e in _audit(gateway, key_id=key_id)["results"]] == ["key.create"]


def test_the_audit_log_needs_the_admin_token(gateway: Gateway, tenant_key: str) -> None:
    key_id = gateway.new_key()[1]["key_id"]
    for headers in ({}, {"Authorization": f"Bearer {tenant_key}"}):
        response = httpx.get(f"{gateway.url}/admin/v1/audit", params={"key_id": key_id}, headers=headers)
        assert response.status_code == 401 and key_id not in response.text
    assert [e["subject"]["id"] for e in _audit(gateway, key_id=key_id)["results"]] == [key_id]


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


def test_concurrent_updates_each_record_exactly_what_they_replaced(gateway: Gateway) -> None:
    key_id = gateway.new_key(name="v0")[1]["key_id"]
    names = [f"v{i}" for i in range(1, 13)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda name: gateway.admin.patch(f"/keys/{key_id}", json={"name": name}).status_code, names))
    assert statuses == [200] * len(names)
    updates = _audit(gateway, key_id=key_id, action="key.update")["results"][::-1]
    assert sorted(e["after"]["name"] for e in updates) == sorted(names)
    chain = ["v0", *(e["after"]["name"] for e in updates)]
    assert [e["before"]["name"] for e in updates] == chain[:-1]  # no update lost or recorded against a stale record
    assert gateway.admin.get(f"/keys/{key_id}").json()["name"] == chain[-1]
