"""deploy/compose, checked without a container runtime: it follows the Compose Specification, every file, port
and variable it uses exists, no secret has a default, and nginx, Prometheus and Grafana name services and ports
of the stack."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.deploy.dockerfile import ROOT, stages
from tests.deploy.routes import serves_get
from tests.deploy.settings import catalog_secrets, unknown_variables

COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
CATALOG = ROOT / "deploy" / "catalog.toml"
GATEWAYS = ("gateway-1", "gateway-2")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; `$${` is a literal dollar.
_VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<operator>:?[-?+])?(?P<rest>[^}]*)\}")
_SECRET = re.compile(r"TOKEN|PASSWORD|SECRET|ACCESS_KEY")
_NGINX_SERVER = re.compile(r"^\s*server\s+(?P<host>[A-Za-z0-9_.-]+):(?P<port>\d+)", re.MULTILINE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _interpolated(value: str) -> str:
    """A value with its variables replaced by their defaults (the empty string without one)."""
    return _VARIABLE.sub(lambda m: m["rest"] if m["operator"] in ("-", ":-") else "", value)


def _documented() -> dict[str, str]:
    lines = (line.strip() for line in ENV_EXAMPLE.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _bind_sources(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
        if source.startswith((".", "/")):
            sources.append(source)
    return sources


def _container_ports(service: dict[str, Any], files: dict[str, str]) -> set[int]:
    """Where a service listens: its published container ports, GATEWAY_PORT, and nginx's `listen`."""
    ports = {int(_interpolated(str(p)).rsplit(":", 1)[-1]) for p in service.get("ports", [])}
    if "GATEWAY_PORT" in service.get("environment", {}):
        ports.add(int(service["environment"]["GATEWAY_PORT"]))
    for source in _bind_sources(service):
        if source.endswith("nginx.conf"):
            ports |= {int(port) for port in re.findall(r"^\s*listen\s+(\d+)", files[source], re.MULTILINE)}
    return ports


def _mounted_text(compose: dict[str, Any], service: str, suffix: str) -> tuple[str, str]:
    """(source, text) of the one file the service mounts whose source ends with `suffix`."""
    [source] = [s for s in _bind_sources(compose["services"][service]) if s.endswith(suffix)]
    return source, (COMPOSE_DIR / source).read_text()


def test_it_follows_the_compose_specification() -> None:
    """The Compose Specification's own JSON schema (as check-jsonschema ships it, so no network is needed)."""
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_file_it_mounts_builds_or_reads_exists(compose: dict[str, Any]) -> None:
    missing = []
    for name, service in compose["services"].items():
        missing += [f"{name}: {s}" for s in _bind_sources(service) if not (COMPOSE_DIR / s).exists()]
        for env_file in service.get("env_file", []):
            path = COMPOSE_DIR / env_file["path"]
            # An optional env file is the operator's own (never committed): its example must exist instead.
            expected = path if env_file.get("required", True) else path.with_name(path.name + ".example")
            missing += [] if expected.exists() else [f"{name}: env_file {expected.name}"]
        if "build" in service:
            context = COMPOSE_DIR / service["build"]["context"]
            if service["build"]["target"] not in stages(context / "Dockerfile"):
                missing.append(f"{name}: build target {service['build']['target']}")
    for kind in ("configs", "secrets"):
        missing += [
            f"{kind}.{n}" for n, d in compose.get(kind, {}).items() if "file" in d and not (COMPOSE_DIR / d["file"]).exists()
        ]
    assert missing == []


def test_every_variable_is_documented_in_the_env_example() -> None:
    used = {m["name"] for m in _VARIABLE.finditer(COMPOSE.read_text())}
    assert used - _documented().keys() == set()


def test_no_secret_has_a_default_or_may_be_empty() -> None:
    """`${SECRET:?…}` only: compose refuses to run while the secret is unset or empty (an empty admin token, say)."""
    lax = [m[0] for m in _VARIABLE.finditer(COMPOSE.read_text()) if _SECRET.search(m["name"]) and m["operator"] != ":?"]
    assert lax == []
    committed = {name: value for name, value in _documented().items() if _SECRET.search(name) and value}
    assert committed == {}


def test_compose_secrets_come_from_required_variables(compose: dict[str, Any]) -> None:
    required = {m["name"] for m in _VARIABLE.finditer(COMPOSE.read_text()) if m["operator"] == ":?"}
    sources = {d["environment"] for d in compose["secrets"].values() if "environment" in d}
    assert sources and sources <= required


def test_published_host_ports_are_unique(compose: dict[str, Any]) -> None:
    published = [
        _interpolated(str(p)).rsplit(":", 1)[0].rsplit(":", 1)[-1]
        for s in compose["services"].values()
        for p in s.get("ports", [])
    ]
    assert published and len(published) == len(set(published)), published


def test_the_replicas_set_only_real_settings_and_the_catalog_secrets(compose: dict[str, Any]) -> None:
    for name in GATEWAYS:
        assert unknown_variables(set(compose["services"][name]["environment"]), CATALOG) == set(), name


def test_each_replica_listens_on_its_own_service_name(compose: dict[str, Any]) -> None:
    """The Cog server calls back the replica that dispatched to it, on that replica's local address."""
    assert {name: compose["services"][name]["environment"]["GATEWAY_HOST"] for name in GATEWAYS} == {n: n for n in GATEWAYS}


def test_the_catalogs_cog_servers_are_services_that_share_the_webhook_token(compose: dict[str, Any]) -> None:
    text = CATALOG.read_text()
    hosts = re.findall(r"http://([a-z0-9-]+):(\d+)", text)
    assert hosts and all(host in compose["services"] for host, _ in hosts)
    [token] = [name for name in catalog_secrets(CATALOG) if name != "REPLICATE_API_TOKEN"]
    for host, _ in hosts:
        assert compose["services"][host]["environment"]["WEBHOOK_AUTH_TOKEN"] == f"${{{token}:?set {token}}}"
    assert all(compose["services"][name]["environment"][token] == f"${{{token}:?set {token}}}" for name in GATEWAYS)


def test_nginx_balances_over_the_gateway_services(compose: dict[str, Any]) -> None:
    source, conf = _mounted_text(compose, "lb", "nginx.conf")
    servers = [(m["host"], int(m["port"])) for m in _NGINX_SERVER.finditer(conf)]
    files = {source: conf}
    assert sorted(host for host, _ in servers) == list(GATEWAYS)
    for host, port in servers:
        assert port in _container_ports(compose["services"][host], files), (host, port)
    assert re.search(r"proxy_pass\s+http://(\w+);", conf)[1] in re.findall(r"upstream\s+(\w+)\s*\{", conf)


def test_prometheus_scrapes_services_on_their_ports_and_paths(compose: dict[str, Any]) -> None:
    _, text = _mounted_text(compose, "prometheus", "prometheus.yml")
    lb_source, lb_conf = _mounted_text(compose, "lb", "nginx.conf")
    jobs = yaml.safe_load(text)["scrape_configs"]
    secrets = {f"/run/secrets/{s['target']}" for s in compose["services"]["prometheus"].get("secrets", [])}
    for job in jobs:
        assert serves_get(job.get("metrics_path", "/metrics")), job["job_name"]
        for target in (t for config in job["static_configs"] for t in config["targets"]):
            host, port = target.rsplit(":", 1)
            assert host in compose["services"], target
            assert int(port) in _container_ports(compose["services"][host], {lb_source: lb_conf}), target
        if "authorization" in job:
            assert job["authorization"]["credentials_file"] in secrets
    assert {t for job in jobs if job["job_name"] == "gateway" for c in job["static_configs"] for t in c["targets"]} == {
        f"{name}:8000" for name in GATEWAYS
    }


def test_grafana_provisions_the_dashboard_and_the_prometheus_of_the_stack(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"] if volume.startswith("."))
    [provisioning] = [COMPOSE_DIR / source for source, target in mounts.items() if target == "/etc/grafana/provisioning"]
    [dashboards] = [p for p in yaml.safe_load((provisioning / "dashboards" / "gateway.yaml").read_text())["providers"]]
    dashboard_file = next(
        COMPOSE_DIR / source for source, target in mounts.items() if target.startswith(dashboards["options"]["path"] + "/")
    )
    assert dashboard_file.resolve() == ROOT / "deploy" / "grafana" / "gateway.json"
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    host, port = source["url"].removeprefix("http://").split(":")
    assert source["isDefault"] and int(port) in _container_ports(compose["services"][host], {})
