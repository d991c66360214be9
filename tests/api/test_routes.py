"""A version's routes are tried in order, and one whose provider has no credentials is skipped; with none left,
the create is a 503 problem that leaves nothing behind."""

from pathlib import Path

from tests.conftest import INPAINTING_VERSION, TEST_CATALOG, Upstream, gateway_settings, inpainting_input, run_gateway
from tests.servers import free_port

BODY = {"version": INPAINTING_VERSION, "input": inpainting_input()}


def _catalog(tmp_path: Path, replicate: Upstream, aggregator: Upstream) -> Path:
    """The suite's catalog, with inpainting routed to Replicate first (its token in REPLICATE_TOKEN) and then to
    the aggregator."""
    text = TEST_CATALOG.replace("{replicate}", replicate.url).replace("{aggregator}", aggregator.url)
    text = text.replace(
        '[providers.replicate]\nkind = "replicate"\nbase_url = "' + replicate.url + '/v1"\ntoken_env = ["UPSTREAM_TOKEN"]',
        '[providers.replicate]\nkind = "replicate"\nbase_url = "' + replicate.url + '/v1"\ntoken_env = ["REPLICATE_TOKEN"]',
    )
    route = f'routes = [{{ provider = "replicate", version = "{INPAINTING_VERSION}" }}]'
    assert route in text
    text = text.replace(
        route,
        f'routes = [{{ provider = "replicate", version = "{INPAINTING_VERSION}" }}, '
        f'{{ provider = "aggregator", version = "{INPAINTING_VERSION}" }}]',
        1,
    )
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return path


def test_a_route_without_credentials_is_skipped(
    tmp_path: Path, redis_url: str, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    catalog = _catalog(tmp_path, replicate_upstream, aggregator_upstream)
    settings = gateway_settings(redis_url, catalog, free_port())
    environ = {"UPSTREAM_TOKEN": "r8_upstream_secret_token"}
    with run_gateway(settings, environ=environ) as gateway, gateway.client(gateway.new_key()[0]) as api:
        assert api.post("/predictions", json=BODY).status_code == 201
    assert replicate_upstream.requests("POST", "/predictions") == []
    assert len(aggregator_upstream.requests("POST", "/predictions")) == 1


def test_the_first_route_with_credentials_serves(
    tmp_path: Path, redis_url: str, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    catalog = _catalog(tmp_path, replicate_upstream, aggregator_upstream)
    settings = gateway_settings(redis_url, catalog, free_port())
    tokens = {"UPSTREAM_TOKEN": "r8_upstream_secret_token", "REPLICATE_TOKEN": "r8_upstream_secret_token"}
    with run_gateway(settings, environ=tokens) as gateway, gateway.client(gateway.new_key()[0]) as api:
        assert api.post("/predictions", json=BODY).status_code == 201
    assert len(replicate_upstream.requests("POST", "/predictions")) == 1
    assert aggregator_upstream.requests("POST", "/predictions") == []


def test_no_route_with_credentials_is_a_503_that_leaves_nothing(
    tmp_path: Path, redis_url: str, replicate_upstream: Upstream, aggregator_upstream: Upstream
) -> None:
    catalog = _catalog(tmp_path, replicate_upstream, aggregator_upstream)
    settings = gateway_settings(redis_url, catalog, free_port())
    with run_gateway(settings, environ={}) as gateway, gateway.client(gateway.new_key()[0]) as api:
        refused = api.post("/predictions", json=BODY)
        assert refused.status_code == 503 and "no credentials configured" in refused.json()["detail"]
        assert api.get("/predictions").json()["results"] == []
