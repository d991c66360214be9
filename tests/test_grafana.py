"""The Grafana dashboard in deploy/grafana: valid, templated, and asking only for series the gateway exports."""

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, Gateway

DASHBOARD = Path(__file__).parents[1] / "deploy" / "grafana" / "gateway.json"
_SAMPLE_SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum"), "counter": ("",), "gauge": ("",)}
_METRIC_NAME = re.compile(r"\bgateway_[a-zA-Z0-9_]+")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found += [panel, *panel.get("panels", [])]  # collapsed rows hold their panels
    return found


def _queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in _panels(dashboard) for target in panel.get("targets", [])]
    variables = [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs + variables


def _exported(exposition: str) -> set[str]:
    """Every sample name /metrics can carry, from its TYPE lines (labelled series without samples yet included)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.update(name + suffix for suffix in _SAMPLE_SUFFIXES.get(kind, ("",)))
    return names


def test_every_panel_has_a_unique_id_and_a_query(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        assert panel["type"] == "row" or panel["targets"], panel["title"]
    assert dashboard["schemaVersion"] >= 38  # Grafana 10


def test_the_datasource_is_an_input_and_a_template_variable_used_everywhere(dashboard: dict[str, Any]) -> None:
    assert [i["name"] for i in dashboard["__inputs"] if i["type"] == "datasource"] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["DS_PROMETHEUS"]["query"] == "prometheus"
    templated = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    for panel in _panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"] == templated, panel["title"]
            assert all(target["datasource"] == templated for target in panel["targets"]), panel["title"]
    for name in ("tenant", "key", "provider"):
        assert variables[name]["datasource"] == templated and variables[name]["allValue"] == ".*"


def test_usage_panels_filter_by_tenant_and_key_and_work_without_the_key_label(dashboard: dict[str, Any]) -> None:
    usage = [e for e in _queries(dashboard) if "gateway_usage_" in e and not e.startswith("label_values")]
    assert usage
    for expr in usage:
        assert 'tenant=~"$tenant"' in expr and 'key_id=~"$key"' in expr, expr  # ".*" also matches no key_id
        assert expr.startswith("sum by ("), expr  # totals per tenant/model/key, never a bare sum over instances
        assert "instance" not in expr, expr


def test_every_query_names_only_series_the_gateway_exports(gateway: Gateway, dashboard: dict[str, Any]) -> None:
    exported = _exported(httpx.get(f"{gateway.url}/metrics").text)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    exported |= _exported(httpx.get(f"{gateway.url}/metrics/usage", headers=admin).text)
    assert "gateway_slot_queue_items" in exported and "gateway_upstream_errors_total" in exported
    assert "gateway_usage_cost_total" in exported and "gateway_limit_rejections_total" in exported
    for query in _queries(dashboard):
        names = set(_METRIC_NAME.findall(query))
        assert names, query
        assert names <= exported, (query, names - exported)
