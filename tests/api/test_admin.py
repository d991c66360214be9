import time

import httpx

from tests.conftest import ADMIN_TOKEN, Gateway


def test_admin_api_needs_its_own_token(gateway: Gateway, tenant_key: str) -> None:
    for headers in ({}, {"Authorization": f"Bearer {tenant_key}"}, {"Authorization": "Bearer wrong"}):
        response = httpx.get(f"{gateway.url}/admin/v1/keys", headers=headers)
        assert response.status_code == 401 and response.headers["content-type"] == "application/problem+json"
    assert httpx.get(f"{gateway.url}/admin/v1/keys", headers={"Authorization": f"Token {ADMIN_TOKEN}"}).status_code == 200


def test_create_shows_the_secret_once_and_stores_only_a_hash(gateway: Gateway) -> None:
    created = gateway.admin.post(
        "/keys", json={"tenant": "acme-admin", "name": "ci", "models": ["stability-ai/*"], "scopes": ["read"]}
    )
    assert created.status_code == 201
    token, key = created.json()["token"], created.json()["key"]
    assert token.startswith(f"gwk_{key['key_id']}_") and key["token_hint"].endswith(token[-4:])
    assert (key["tenant"], key["name"], key["models"], key["scopes"], key["disabled"]) == (
        "acme-admin",
        "ci",
        ["stability-ai/*"],
        ["read"],
        False,
    )
    shown = gateway.admin.get(f"/keys/{key['key_id']}")
    assert shown.status_code == 200 and token.split("_")[2] not in shown.text and "hash" not in shown.text
    listed = gateway.admin.get("/keys", params={"tenant": "acme-admin"}).json()["results"]
    assert [k["key_id"] for k in listed] == [key["key_id"]]


def test_update_disable_delete(gateway: Gateway) -> None:
    token, key = gateway.new_key()
    url = f"/keys/{key['key_id']}"
    assert gateway.admin.patch(url, json={"name": "renamed", "models": ["a/b"]}).json()["name"] == "renamed"
    assert gateway.admin.patch(url, json={"models": ["not a pattern"]}).status_code == 422
    assert gateway.admin.patch(url, json={"secret_hash": "x"}).status_code == 422
    assert gateway.admin.post(f"{url}/disable").json()["disabled"] is True
    with gateway.client(token) as api:
        response = api.get("/account")
        assert response.status_code == 401 and response.json()["detail"] == "This API key has been disabled"
    assert gateway.admin.delete(url).status_code == 204
    assert gateway.admin.get(url).status_code == 404
    assert gateway.admin.delete(url).status_code == 404


def test_create_requires_a_valid_tenant(gateway: Gateway) -> None:
    for body in ({}, {"tenant": ""}, {"tenant": "has spaces"}, {"tenant": "ok", "unknown": 1}):
        response = gateway.admin.post("/keys", json=body)
        assert response.status_code == 422 and response.json()["invalid_fields"], body


def test_rotation_keeps_the_key_id_and_honours_the_grace_period(gateway: Gateway) -> None:
    old_token, key = gateway.new_key()
    rotated = gateway.admin.post(f"/keys/{key['key_id']}/rotate", json={"grace_seconds": 1.0})
    assert rotated.status_code == 200
    new_token = rotated.json()["token"]
    assert new_token != old_token and new_token.split("_")[1] == key["key_id"]
    with gateway.client(old_token) as old, gateway.client(new_token) as new:
        assert old.get("/account").status_code == 200 and new.get("/account").status_code == 200
        time.sleep(1.1)
        assert old.get("/account").status_code == 401 and new.get("/account").status_code == 200
    newest = gateway.admin.post(f"/keys/{key['key_id']}/rotate").json()["token"]
    with gateway.client(new_token) as previous, gateway.client(newest) as current:
        assert previous.get("/account").status_code == 401 and current.get("/account").status_code == 200


def test_expired_keys_stop_working(gateway: Gateway) -> None:
    token, _ = gateway.new_key(expires_at=time.time() - 1)
    with gateway.client(token) as api:
        assert api.get("/account").json()["detail"] == "This API key has expired"
