"""A second gateway process sharing the Redis: key changes reach it over pub/sub at once, long before its
5 s key cache would let them; stale predictions are re-read upstream once between both; the CLI manages keys
and reads the audit log its actions are recorded in."""

import json
import os
import pwd
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, INPAINTING_VERSION, UPSTREAM_TOKEN, Gateway, Upstream, gateway_process, inpainting_input
from tests.emulator import Fault
from tests.servers import free_port

SECOND_KEY_CACHE_SECONDS = 5  # the longest allowed: a cached key record outlives every revocation bound below
REVOCATION_BOUND_SECONDS = 1.0  # only the pub/sub eviction can make a change reach the other process this soon
SECOND_REFRESH_AFTER_SECONDS = 0.1  # as the in-process gateway's


@pytest.fixture(scope="module")
def second_gateway(redis_url: str, catalog_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = {"key_cache_seconds": str(SECOND_KEY_CACHE_SECONDS), "refresh_after_seconds": str(SECOND_REFRESH_AFTER_SECONDS)}
    with gateway_process(redis_url, catalog_path, tmp_path_factory.mktemp("second"), **settings) as (url, output, _):
        yield url
    assert output and not any(UPSTREAM_TOKEN in line or ADMIN_TOKEN in line for line in output)


def _status_within(url: str, token: str, expected: int, seconds: float) -> float:
    """Seconds until `url` answers `expected` for `token`; fails after `seconds`."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if httpx.get(f"{url}/v1/account", headers={"Authorization": f"Bearer {token}"}).status_code == expected:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer {expected} within {seconds}s")


def test_a_disabled_key_stops_working_on_the_other_process_within_a_second(gateway: Gateway, second_gateway: str) -> None:
    token, key = gateway.new_key()
    _status_within(second_gateway, token, 200, 1)  # now cached there for 5 s
    assert gateway.admin.post(f"/keys/{key['key_id']}/disable").status_code == 200
    _status_within(second_gateway, token, 401, REVOCATION_BOUND_SECONDS)


def test_a_rotated_out_secret_stops_working_on_the_other_process_within_a_second(gateway: Gateway, second_gateway: str) -> None:
    token, key = gateway.new_key()
    _status_within(second_gateway, token, 200, 1)  # now cached there for 5 s
    new_token = gateway.admin.post(f"/keys/{key['key_id']}/rotate").json()["token"]
    _status_within(second_gateway, token, 401, REVOCATION_BOUND_SECONDS)
    _status_within(second_gateway, new_token, 200, REVOCATION_BOUND_SECONDS)


def test_a_prediction_created_on_one_process_is_read_on_the_other(gateway: Gateway, second_gateway: str) -> None:
    token, _ = gateway.new_key()
    headers = {"Authorization": f"Bearer {token}"}
    created = httpx.post(
        f"{gateway.url}/v1/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}, headers=headers
    ).json()
    read = httpx.get(f"{second_gateway}/v1/predictions/{created['id']}", headers=headers)
    assert read.status_code == 200 and read.json()["urls"]["get"].startswith(second_gateway)


def _cli(redis_url: str, *args: str) -> dict | list:
    return _gateway_cli(redis_url, "keys", *args)


def _gateway_cli(redis_url: str, *args: str) -> dict | list:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--redis-url", redis_url, *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_cli_manages_keys_and_a_running_gateway_honours_its_changes_within_a_second(
    gateway: Gateway, second_gateway: str, redis_url: str
) -> None:
    created = _cli(redis_url, "create", "--tenant", "cli-tenant", "--name", "from-cli", "--models", "stability-ai/*")
    assert isinstance(created, dict)
    token, key_id = created["token"], created["key"]["key_id"]
    with gateway.client(token) as api:
        assert api.get("/account").json()["username"] == "cli-tenant"
    listed = _cli(redis_url, "list", "--tenant", "cli-tenant")
    assert [k["key_id"] for k in listed] == [key_id]
    assert _cli(redis_url, "show", key_id)["name"] == "from-cli"
    _status_within(second_gateway, token, 200, 1)  # now cached there for 5 s
    rotated = _cli(redis_url, "rotate", key_id)
    assert rotated["key"]["key_id"] == key_id and rotated["token"] != token
    _status_within(second_gateway, token, 401, REVOCATION_BOUND_SECONDS)
    _status_within(second_gateway, rotated["token"], 200, REVOCATION_BOUND_SECONDS)  # cached there again
    assert _cli(redis_url, "disable", key_id)["disabled"] is True
    _status_within(second_gateway, rotated["token"], 401, REVOCATION_BOUND_SECONDS)


def test_each_cli_key_action_is_recorded_once_and_the_cli_prints_the_audit_log(gateway: Gateway, redis_url: str) -> None:
    tenant = f"cli-audit-{time.monotonic_ns()}"
    created = _cli(redis_url, "create", "--tenant", tenant, "--name", "first")
    assert isinstance(created, dict)
    key_id, tokens = created["key"]["key_id"], [created["token"]]
    _cli(redis_url, "update", key_id, "--name", "second")
    _cli(redis_url, "disable", key_id)
    tokens.append(_cli(redis_url, "rotate", key_id, "--grace-seconds", "60")["token"])
    _cli(redis_url, "delete", key_id)
    printed = _gateway_cli(redis_url, "audit", "--key-id", key_id)
    assert isinstance(printed, dict) and printed["next_cursor"] is None
    entries = printed["results"]
    assert [e["action"] for e in entries] == ["key.delete", "key.rotate", "key.disable", "key.update", "key.create"]
    user = pwd.getpwuid(os.geteuid()).pw_name
    assert all(e["actor"] == {"kind": "cli", "source": user} and e["tenants"] == [tenant] for e in entries)
    assert len({e["request_id"] for e in entries}) == 5
    delete, rotate, disable, update, create = entries
    assert create["before"] is None and create["after"]["name"] == "first" and delete["after"] is None
    assert (update["before"]["name"], update["after"]["name"], disable["after"]["disabled"]) == ("first", "second", True)
    assert rotate["before"]["previous_valid_until"] is None and rotate["after"]["previous_valid_until"] > time.time()
    text = json.dumps(printed)
    assert all(token not in text and token.split("_")[2] not in text for token in tokens) and "hash" not in text
    assert gateway.admin.get("/audit", params={"key_id": key_id}).json()["results"] == entries  # one log, two views


def test_the_cli_pages_and_filters_the_audit_log(redis_url: str) -> None:
    tenant = f"cli-audit-{time.monotonic_ns()}"
    key_ids = [_cli(redis_url, "create", "--tenant", tenant)["key"]["key_id"] for _ in range(3)]
    _cli(redis_url, "disable", key_ids[0])
    first = _gateway_cli(redis_url, "audit", "--tenant", tenant, "--limit", "3")
    assert isinstance(first, dict) and first["next_cursor"]
    rest = _gateway_cli(redis_url, "audit", "--tenant", tenant, "--limit", "3", "--cursor", first["next_cursor"])
    assert isinstance(rest, dict) and rest["next_cursor"] is None
    assert [(e["action"], e["subject"]["id"]) for e in first["results"] + rest["results"]] == [
        ("key.disable", key_ids[0]),
        *(("key.create", key_id) for key_id in key_ids[::-1]),
    ]
    disables = _gateway_cli(redis_url, "audit", "--tenant", tenant, "--action", "key.disable")
    assert [e["subject"]["id"] for e in disables["results"]] == [key_ids[0]]
    assert _gateway_cli(redis_url, "audit", "--tenant", tenant, "--since", "2999-01-01T00:00:00Z")["results"] == []
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--redis-url", redis_url, "audit", "--since", "yesterday"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "--since must be an ISO 8601 time" in result.stderr


def test_the_cli_reports_an_unknown_key_and_a_bad_catalog_clearly(redis_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--redis-url", redis_url, "keys", "show", "nosuchkey"], capture_output=True, text=True
    )
    assert result.returncode != 0 and "Key nosuchkey not found" in result.stderr
    bad = tmp_path / "catalog.toml"
    bad.write_text('[providers.x]\nkind = "replicate"\n')
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--redis-url", redis_url, "--catalog", str(bad), "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert f"{bad}: providers.x: a replicate provider needs base_url" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_empty_admin_token_instead_of_opening_the_admin_api(redis_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "GATEWAY_ADMIN_TOKEN": "", "GATEWAY_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "gateway", "--redis-url", redis_url, "serve", "--port", str(free_port())]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode != 0
    assert "GATEWAY_ADMIN_TOKEN must be at least 16 characters" in result.stderr and "Traceback" not in result.stderr


def test_two_processes_polling_a_stale_prediction_ask_the_upstream_once_between_them(
    gateway: Gateway, second_gateway: str, replicate_upstream: Upstream
) -> None:
    replicate_upstream.controls.configure(run_seconds=30)
    replicate_upstream.controls.drop_webhooks(True)
    token, _ = gateway.new_key()
    headers = {"Authorization": f"Bearer {token}"}
    for root in (gateway.url, second_gateway):  # the key is cached in both, so both reads go straight to the record
        assert httpx.get(f"{root}/v1/account", headers=headers).status_code == 200
    created = httpx.post(
        f"{gateway.url}/v1/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}, headers=headers
    ).json()
    time.sleep(2 * SECOND_REFRESH_AFTER_SECONDS)  # stale for both processes now
    upstream_delay = 0.5
    replicate_upstream.controls.inject(Fault(route="get", delay=upstream_delay, times=10))
    together = threading.Barrier(2)

    def read(root: str) -> tuple[int, float]:
        together.wait()
        start = time.monotonic()
        status = httpx.get(f"{root}/v1/predictions/{created['id']}", headers=headers).status_code
        return status, time.monotonic() - start

    with ThreadPoolExecutor(max_workers=2) as pool:
        (first_status, first_took), (second_status, second_took) = pool.map(read, [gateway.url, second_gateway])
    assert (first_status, second_status) == (200, 200)
    [upstream] = replicate_upstream.controls.predictions()
    assert len(replicate_upstream.requests("GET", f"/predictions/{upstream['id']}")) == 1
    # One process waited for the slow upstream; the other answered the stored record meanwhile.
    assert min(first_took, second_took) < upstream_delay <= max(first_took, second_took)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis://:s3cret@127.0.0.1:1/0", "redis://127.0.0.1:1/0"),
        ("redis+cluster://:s3cret@127.0.0.1:1,127.0.0.1:2", "redis+cluster://127.0.0.1:1,127.0.0.1:2"),
        ("redis+sentinel://:s3cret@127.0.0.1:1/primary", "redis+sentinel://127.0.0.1:1/primary"),
    ],
)
def test_an_unreachable_redis_is_named_without_its_password(url: str, named: str) -> None:
    env = {**os.environ, "GATEWAY_REDIS_URL": url}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "list"], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 1, result.stderr
    assert f"is Redis running at {named}?" in result.stderr and "s3cret" not in result.stderr


def test_the_cli_gives_a_listed_cog_server_its_upload_url(gateway: Gateway, redis_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--redis-url", redis_url, "servers", "upload-url", "http://10.1.2.3:5000"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    upload_path = "/" + result.stdout.strip().split("/", 3)[3]
    assert upload_path.startswith("/uploads/") and upload_path.endswith("/")
    token, _ = gateway.new_key()
    headers = {"Authorization": f"Bearer {token}"}
    created = httpx.post(
        f"{gateway.url}/v1/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}, headers=headers
    ).json()
    put = httpx.put(
        f"{gateway.url}{upload_path}out.png",
        content=b"png bytes",
        headers={"x-prediction-id": created["id"], "content-type": "image/png"},
    )
    assert put.status_code == 201 and httpx.get(put.headers["location"]).content == b"png bytes"
