import time

import httpx

from tests.conftest import INPAINTING, INPAINTING_VERSION, Gateway, Upstream, inpainting_input


def _sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            series, value = line.rsplit(" ", 1)
            if ",".join(sorted(series[len(name) + 1 : -1].split(","))) == wanted:
                return float(value)
    return 0.0


def test_metrics_count_requests_creations_and_each_terminal_status_once(
    gateway: Gateway, api: httpx.Client, replicate_upstream: Upstream
) -> None:
    before = httpx.get(f"{gateway.url}/metrics").text
    replicate_upstream.controls.fail_next("boom")
    created = api.post("/predictions", json={"version": INPAINTING_VERSION, "input": inpainting_input()}).json()
    deadline = time.monotonic() + 10
    while api.get(f"/predictions/{created['id']}").json()["status"] != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    api.get(f"/predictions/{created['id']}")  # reads after the end change nothing
    assert httpx.get(f"{gateway.url}/no/such/path").status_code == 404
    after = httpx.get(f"{gateway.url}/metrics")
    assert after.headers["content-type"].startswith("text/plain")

    def increase(name: str, **labels: str) -> float:
        return _sample(after.text, name, **labels) - _sample(before, name, **labels)

    labels = {"model": INPAINTING, "provider": "replicate"}
    assert increase("gateway_predictions_created_total", **labels) == 1
    assert increase("gateway_predictions_finished_total", **labels, status="failed") == 1
    assert increase("gateway_http_requests_total", route="/v1/predictions", method="POST", status="201") == 1
    assert increase("gateway_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert "gwk_" not in after.text and "t-" not in after.text  # no keys or tenants in labels
