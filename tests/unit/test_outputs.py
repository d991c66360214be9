from typing import Any

from gateway.api.urls import Links
from gateway.outputs import expand, hide
from gateway.signing import Signer
from gateway.status import Status
from gateway.store import StoredPrediction


def test_hide_replaces_urls_wherever_they_are_and_keeps_other_values() -> None:
    output = {"images": ["https://up.example/a/out-0.png", "data:image/png;base64,AA"], "text": "hi", "n": 2, "u": "http://x/y"}
    public, urls = hide(output)
    assert urls == ["https://up.example/a/out-0.png", "http://x/y"]
    assert public == {
        "images": ["gateway-output:0/out-0.png", "data:image/png;base64,AA"],
        "text": "hi",
        "n": 2,
        "u": "gateway-output:1/y",
    }
    assert hide(None) == (None, [])
    assert hide("https://up.example/") == ("gateway-output:0/output", ["https://up.example/"])


def test_expand_makes_signed_links_under_the_api_root_the_tenant_used() -> None:
    links = Links(Signer(b"secret"), None, "http://127.0.0.1:8000")
    root = "https://gw.example/replicate/v1"
    expanded = expand(["gateway-output:0/out 0.png", "plain"], lambda index, name: links.output(root, "p1", index, name, 1800))
    signature = links.outputs.sign("p1", 0, 1800)
    assert expanded == [f"https://gw.example/replicate/v1/predictions/p1/outputs/0/1800/{signature}/out%200.png", "plain"]
    assert links.outputs.verify("p1", 0, 1800, signature)
    assert not links.outputs.verify("p1", 1, 1800, signature) and not links.outputs.verify("p2", 0, 1800, signature)
    assert not links.outputs.verify("p1", 0, 1801, signature)
    assert Links(Signer(b"other"), None, "http://127.0.0.1:8000").outputs.sign("p1", 0, 1800) != signature


def _record(doc: dict[str, Any]) -> StoredPrediction:
    return StoredPrediction("p1", "acme", "k1", "inpaint-local", "", Status(doc["status"]), doc, 0, 0.0)


def test_the_public_prediction_leaves_out_keys_without_a_value_and_moves_own_file_urls_under_the_api_root() -> None:
    links = Links(Signer(b"secret"), "https://gw.example", "http://127.0.0.1:8000")
    stored = "/v1/files/abc/download/1800/sig/out.png"
    output = [f"https://gw.example{stored}", f"http://127.0.0.1:8000{stored}", f"https://elsewhere.example{stored}", "plain"]
    doc = {"id": "p1", "status": "starting", "output": output, "error": None, "started_at": None, "logs": None}
    shown = links.prediction(_record(doc), "https://gw.example/replicate/v1")
    moved = "https://gw.example/replicate/v1/files/abc/download/1800/sig/out.png"
    assert shown["output"] == [moved, moved, f"https://elsewhere.example{stored}", "plain"]
    assert (shown["error"], "started_at" in shown, "logs" in shown) == (None, False, False)
    assert links.prediction(_record({**doc, "output": None}), "https://gw.example/v1")["output"] is None
