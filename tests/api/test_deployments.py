"""Tenants' own deployments beside the catalog's: CRUD, releases, predictions through them, isolation, refusals,
and the official Python client's deployment helpers."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import replicate

from tests.conftest import INPAINTING, INPAINTING_VERSION, STORY, STORY_MUTED_VERSION, STORY_VERSION, Gateway, Upstream
from tests.conftest import inpainting_input as full_input

PREFIXES = ["/v1", "/replicate/v1"]
CATALOG_DEPLOYMENT = "acme/inpaint-prod"


def _body(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "model": INPAINTING,
        "version": INPAINTING_VERSION,
        "hardware": "gpu-t4",
        "min_instances": 0,
        "max_instances": 3,
        **extra,
    }


@pytest.fixture
def tenant(gateway: Gateway) -> Iterator[tuple[str, httpx.Client]]:
    token, key = gateway.new_key()
    with gateway.client(token) as client:
        yield key["tenant"], client


def test_a_deployment_is_created_read_listed_updated_and_deleted_on_both_prefixes(gateway: Gateway) -> None:
    token, key = gateway.new_key()
    tenant = key["tenant"]
    for prefix in PREFIXES:
        name = f"app{prefix.count('/')}"
        with gateway.client(token, prefix) as api:
            created = api.post("/deployments", json=_body(name))
            assert created.status_code == 200, created.text
            doc = created.json()
            assert doc["owner"] == tenant and doc["name"] == name
            release = doc["current_release"]
            assert release.pop("created_at").endswith("Z")
            assert release == {
                "number": 1,
                "model": INPAINTING,
                "version": INPAINTING_VERSION,
                "created_by": {"type": "organization", "username": tenant, "name": tenant},
                "configuration": {"hardware": "gpu-t4", "min_instances": 0, "max_instances": 3, "input_defaults": {}},
            }
            assert api.get(f"/deployments/{tenant}/{name}").json() == created.json()
            listed = api.get("/deployments").json()
            assert listed["next"] is None and listed["previous"] is None
            assert [f"{d['owner']}/{d['name']}" for d in listed["results"]][-1] == CATALOG_DEPLOYMENT
            assert listed["results"][0] == created.json()
            updated = api.patch(f"/deployments/{tenant}/{name}", json={"min_instances": 1, "max_instances": 5})
            assert updated.status_code == 200
            assert updated.json()["current_release"]["number"] == 2
            assert updated.json()["current_release"]["configuration"]["max_instances"] == 5
            deleted = api.delete(f"/deployments/{tenant}/{name}")
            assert (deleted.status_code, deleted.content) == (204, b"")
            assert api.get(f"/deployments/{tenant}/{name}").status_code == 404
            assert api.delete(f"/deployments/{tenant}/{name}").status_code == 404


def test_each_change_is_a_new_release_and_a_change_to_nothing_is_not(tenant: tuple[str, httpx.Client]) -> None:
    owner, api = tenant
    created = api.post("/deployments", json={**_body("story"), "model": STORY, "version": STORY_VERSION}).json()
    assert created["current_release"]["number"] == 1
    path = f"/deployments/{owner}/story"
    numbers, versions = [], []
    for change in (
        {"version": STORY_MUTED_VERSION},
        {"hardware": "gpu-a40-large"},
        {"min_instances": 2},
        {"input_defaults": {"prompt": "x"}},
    ):
        release = api.patch(path, json=change).json()["current_release"]
        numbers.append(release["number"])
        versions.append(release["version"])
    assert numbers == [2, 3, 4, 5]
    assert versions == [STORY_MUTED_VERSION] * 4
    assert api.patch(path, json={"min_instances": 2}).json()["current_release"]["number"] == 5
    assert api.patch(path).json()["current_release"]["number"] == 5
    final = api.get(path).json()["current_release"]
    assert final["configuration"] == {
        "hardware": "gpu-a40-large",
        "min_instances": 2,
        "max_instances": 3,
        "input_defaults": {"prompt": "x"},
    }


def test_a_prediction_through_a_tenant_deployment_runs_its_pinned_version_with_its_defaults_under_the_input(
    tenant: tuple[str, httpx.Client], replicate_upstream: Upstream
) -> None:
    owner, api = tenant
    defaults = {"prompt": "a default prompt", "steps": 7}  # `steps`: the catalog's alias of num_inference_steps
    assert api.post("/deployments", json=_body("painter", input_defaults=defaults)).status_code == 200
    created = api.post(f"/deployments/{owner}/painter/predictions", json={"input": full_input(prompt="a cat")})
    assert created.status_code == 201, created.text
    doc = created.json()
    assert (doc["deployment"], doc["model"], doc["version"]) == (f"{owner}/painter", INPAINTING, INPAINTING_VERSION)
    assert doc["input"]["prompt"] == "a cat" and doc["input"]["num_inference_steps"] == 7
    [sent] = replicate_upstream.requests("POST", "/v1/predictions")
    assert sent.json["version"] == INPAINTING_VERSION
    assert sent.json["input"]["prompt"] == "a cat"
    assert sent.json["input"]["num_inference_steps"] == 7
    assert api.get(f"/predictions/{doc['id']}").json()["deployment"] == f"{owner}/painter"


def test_a_catalog_deployment_still_runs_through_its_own_route(
    tenant: tuple[str, httpx.Client], replicate_upstream: Upstream
) -> None:
    _, api = tenant
    created = api.post(f"/deployments/{CATALOG_DEPLOYMENT}/predictions", json={"input": full_input()})
    assert created.status_code == 201 and created.json()["deployment"] == CATALOG_DEPLOYMENT
    assert len(replicate_upstream.requests("POST", "/v1/deployments/stability-ai/inpaint-deploy/predictions")) == 1


def test_tenants_never_see_use_change_or_delete_each_others_deployments(gateway: Gateway, replicate_upstream: Upstream) -> None:
    owner_token, owner_key = gateway.new_key()
    other_token, other_key = gateway.new_key()
    owner, other = owner_key["tenant"], other_key["tenant"]
    path = f"/deployments/{owner}/private"
    with gateway.client(owner_token) as mine, gateway.client(other_token) as theirs:
        assert mine.post("/deployments", json=_body("private")).status_code == 200
        refused = [
            theirs.get(path),
            theirs.patch(path, json={"hardware": "cpu"}),
            theirs.delete(path),
            theirs.post(f"{path}/predictions", json={"input": full_input()}),
        ]
        assert [r.status_code for r in refused] == [404] * 4
        assert refused[0].json()["detail"] == f"Deployment {owner}/private not found"
        assert refused[0].json() == theirs.get(f"/deployments/{owner}/never-made").json() | {
            "detail": f"Deployment {owner}/private not found"
        }
        assert all(d["owner"] != owner for d in theirs.get("/deployments").json()["results"])
        assert replicate_upstream.asked_to_start_work() == []
        # The same name under the other tenant is its own deployment.
        assert theirs.post("/deployments", json=_body("private", hardware="cpu")).json()["owner"] == other
        assert theirs.get(f"/deployments/{other}/private").json()["current_release"]["configuration"]["hardware"] == "cpu"
        assert mine.get(path).json()["current_release"]["number"] == 1
        assert mine.get(path).json()["current_release"]["configuration"]["hardware"] == "gpu-t4"
        assert mine.get(f"/deployments/{other}/private").status_code == 404


def test_catalog_deployments_are_shown_but_managed_by_the_operator(tenant: tuple[str, httpx.Client]) -> None:
    _, api = tenant
    shown = api.get(f"/deployments/{CATALOG_DEPLOYMENT}")
    assert shown.status_code == 200
    assert shown.json()["owner"] == "acme" and shown.json()["current_release"]["model"] == INPAINTING
    for refused in (
        api.patch(f"/deployments/{CATALOG_DEPLOYMENT}", json={"hardware": "cpu"}),
        api.delete(f"/deployments/{CATALOG_DEPLOYMENT}"),
    ):
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert "managed by its operator" in refused.json()["detail"]


def test_a_catalog_deployment_the_key_may_not_use_is_not_there(gateway: Gateway) -> None:
    token, _ = gateway.new_key(models=[STORY])
    with gateway.client(token) as api:
        assert api.get(f"/deployments/{CATALOG_DEPLOYMENT}").status_code == 404
        assert api.delete(f"/deployments/{CATALOG_DEPLOYMENT}").status_code == 404
        assert api.get("/deployments").json()["results"] == []


@pytest.mark.parametrize("name", ["Upper", "-dash-first", "dot-last.", "with space", "a" * 101, "", "ü"])
def test_a_name_outside_replicates_rules_is_a_422(tenant: tuple[str, httpx.Client], name: str) -> None:
    _, api = tenant
    refused = api.post("/deployments", json=_body(name))
    assert refused.status_code == 422
    assert [f["field"] for f in refused.json()["invalid_fields"]] == ["name"]


def test_a_create_under_another_owner_is_refused_and_one_under_its_own_is_not(tenant: tuple[str, httpx.Client]) -> None:
    owner, api = tenant
    refused = api.post("/deployments", json=_body("someone-else/app"))
    assert refused.status_code == 403
    assert api.post("/deployments", json=_body(f"{owner}/app")).json()["name"] == "app"
    assert api.post("/deployments", json=_body("app")).json()["invalid_fields"] == [
        {"type": "unique", "field": "name", "description": f"A deployment {owner}/app already exists"}
    ]


def test_bodies_are_checked_field_by_field(tenant: tuple[str, httpx.Client]) -> None:
    owner, api = tenant
    missing = api.post("/deployments", json={"name": "x"})
    assert missing.status_code == 422
    assert {f["field"] for f in missing.json()["invalid_fields"]} == {
        "model",
        "version",
        "hardware",
        "min_instances",
        "max_instances",
    }
    wrong = api.post("/deployments", json=_body("x", min_instances=True, max_instances=21, extra=1, input_defaults=[]))
    assert [f["field"] for f in wrong.json()["invalid_fields"]] == ["extra", "min_instances", "max_instances", "input_defaults"]
    upside_down = api.post("/deployments", json=_body("x", min_instances=4, max_instances=2))
    assert upside_down.json()["invalid_fields"][0]["field"] == "min_instances"
    assert api.post("/deployments", json=_body("x")).status_code == 200
    assert api.patch(f"/deployments/{owner}/x", json={"name": "y"}).status_code == 422
    assert api.patch(f"/deployments/{owner}/x", json={"min_instances": 5, "max_instances": 4}).status_code == 422


def test_a_version_the_key_may_not_use_or_that_does_not_exist_is_a_422(gateway: Gateway) -> None:
    token, key = gateway.new_key(models=[STORY])
    with gateway.client(token) as api:
        for body in (_body("x"), _body("x", version="00" * 32), {**_body("x"), "model": STORY, "version": INPAINTING_VERSION}):
            refused = api.post("/deployments", json=body)
            assert refused.status_code == 422
            assert refused.json()["title"] == "Invalid version or not permitted"
        assert api.post("/deployments", json={**_body("x"), "model": STORY, "version": STORY_VERSION}).status_code == 200
        assert api.patch(f"/deployments/{key['tenant']}/x", json={"version": INPAINTING_VERSION}).status_code == 422


def test_the_list_is_paged_newest_first_with_absolute_cursors(gateway: Gateway, tenant: tuple[str, httpx.Client]) -> None:
    _, api = tenant
    for number in range(5):
        assert api.post("/deployments", json=_body(f"d{number}")).status_code == 200
    deployments = gateway.services.deployments
    size, deployments._page_size = deployments._page_size, 2  # a small page, on the running service
    try:
        first = api.get("/deployments").json()
        second = httpx.get(first["next"], headers=api.headers).json()
        third = httpx.get(second["next"], headers=api.headers).json()
        back = httpx.get(second["previous"], headers=api.headers).json()
    finally:
        deployments._page_size = size
    names = [[d["name"] for d in page["results"]] for page in (first, second, third)]
    assert names == [["d4", "d3", "inpaint-prod"], ["d2", "d1"], ["d0"]]
    assert first["next"].startswith(f"{gateway.url}/v1/deployments?cursor=")
    assert third["next"] is None
    assert [d["name"] for d in back["results"]] == ["d4", "d3", "inpaint-prod"]
    assert back["previous"] is None


@pytest.mark.parametrize("root", ["", "/replicate"])
def test_the_official_python_client_manages_and_runs_deployments(gateway: Gateway, root: str) -> None:
    token, key = gateway.new_key()
    owner = key["tenant"]
    client = replicate.Client(api_token=token, base_url=gateway.url + root)
    created = client.deployments.create(
        name="client-app", model=INPAINTING, version=INPAINTING_VERSION, hardware="gpu-t4", min_instances=0, max_instances=1
    )
    assert created.id == f"{owner}/client-app"
    assert created.current_release is not None and created.current_release.number == 1
    got = client.deployments.get(f"{owner}/client-app")
    assert got.current_release is not None and got.current_release.configuration.max_instances == 1
    assert [d.id for d in client.deployments.list().results] == [f"{owner}/client-app", CATALOG_DEPLOYMENT]
    updated = client.deployments.update(owner, "client-app", max_instances=4)
    assert updated.current_release is not None and updated.current_release.number == 2
    by_name = client.deployments.predictions.create(f"{owner}/client-app", input=full_input())
    by_object = got.predictions.create(input=full_input())
    for prediction in (by_name, by_object):
        assert client.predictions.get(prediction.id).version == INPAINTING_VERSION
    with gateway.client(token) as api:
        assert api.get(f"/predictions/{by_name.id}").json()["deployment"] == f"{owner}/client-app"
    assert client.deployments.delete(owner, "client-app") is True
    with pytest.raises(replicate.exceptions.ReplicateError) as missing:
        client.deployments.get(f"{owner}/client-app")
    assert missing.value.status == 404


def test_a_tenant_named_like_a_catalog_owner_cannot_take_or_change_its_deployments(gateway: Gateway) -> None:
    token, _ = gateway.new_key(tenant="acme")
    with gateway.client(token) as api:
        assert api.post("/deployments", json=_body("inpaint-prod")).json()["invalid_fields"] == [
            {"type": "unique", "field": "name", "description": f"A deployment {CATALOG_DEPLOYMENT} already exists"}
        ]
        assert api.patch(f"/deployments/{CATALOG_DEPLOYMENT}", json={"hardware": "cpu"}).status_code == 403
        assert api.get(f"/deployments/{CATALOG_DEPLOYMENT}").json()["current_release"]["configuration"]["hardware"] == "upstream"


def test_a_read_only_key_reads_deployments_but_does_not_change_them(gateway: Gateway) -> None:
    writer, key = gateway.new_key()
    reader, _ = gateway.new_key(tenant=key["tenant"], scopes=["read"])
    path = f"/deployments/{key['tenant']}/app"
    with gateway.client(writer) as api, gateway.client(reader) as read_only:
        assert api.post("/deployments", json=_body("app")).status_code == 200
        assert read_only.get(path).status_code == 200
        assert read_only.post("/deployments", json=_body("other")).status_code == 403
        assert read_only.patch(path, json={"hardware": "cpu"}).status_code == 403
        assert read_only.delete(path).status_code == 403
        assert api.get(path).json()["current_release"]["number"] == 1


def test_concurrent_changes_each_make_their_own_release(gateway: Gateway, tenant: tuple[str, httpx.Client]) -> None:
    owner, api = tenant
    assert api.post("/deployments", json=_body("busy")).status_code == 200
    changes = [{"hardware": f"gpu-{n}"} for n in range(5)]  # five at once: each loses at most four races

    def change(body: dict[str, Any]) -> httpx.Response:
        return httpx.patch(f"{gateway.url}/v1/deployments/{owner}/busy", json=body, headers=api.headers)

    with ThreadPoolExecutor(len(changes)) as pool:
        answers = list(pool.map(change, changes))
    assert sorted(a.json()["current_release"]["number"] for a in answers) == [2, 3, 4, 5, 6]
    final = api.get(f"/deployments/{owner}/busy").json()["current_release"]
    [last] = [a.json() for a in answers if a.json()["current_release"]["number"] == 6]
    assert final == last["current_release"]


def test_each_change_is_in_the_audit_log_with_the_key_that_made_it(gateway: Gateway) -> None:
    token, key = gateway.new_key()
    tenant, path = key["tenant"], f"/deployments/{key['tenant']}/audited"
    with gateway.client(token) as api:
        assert api.post("/deployments", json=_body("audited"), headers={"X-Request-Id": "req-deploy-1"}).status_code == 200
        assert api.patch(path, json={"hardware": "cpu"}).status_code == 200
        assert api.patch(path, json={"hardware": "cpu"}).status_code == 200  # no change: no release, no entry
        assert api.delete(path).status_code == 204
    results = gateway.admin.get("/audit", params={"tenant": tenant}).json()["results"]
    entries = [e for e in results if e["subject"]["kind"] == "deployment"]  # the key's creation is there too
    assert [e["action"] for e in entries] == ["deployment.delete", "deployment.update", "deployment.create"]
    delete, update, create = entries
    for entry in entries:
        assert entry["subject"] == {"kind": "deployment", "id": f"{tenant}/audited"} and entry["tenants"] == [tenant]
        assert entry["actor"] == {"kind": "tenant-key", "source": key["key_id"]}
    assert create["request_id"] == "req-deploy-1" and create["before"] is None and create["after"]["number"] == 1
    assert (update["before"]["hardware"], update["after"]["hardware"], update["after"]["number"]) == ("gpu-t4", "cpu", 2)
    assert delete["before"]["number"] == 2 and delete["after"] is None
