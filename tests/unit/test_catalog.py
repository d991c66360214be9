from pathlib import Path

import pytest

from gateway.catalog import Catalog, TargetKind
from gateway.config import load_catalog
from gateway.errors import InvalidInput, InvalidVersion, NotFound

V1 = "95b7223104132402a9ae91cc677285bc5eb997834bd2349fa486f53910fd68b3"
V2 = "a" * 64

CATALOG = f"""
[providers.replicate]
kind = "replicate"
base_url = "https://api.example.com/v1/"
token_env = ["TOKEN_A", "TOKEN_B"]

[[models]]
name = "stability-ai/stable-diffusion-inpainting"
aliases = {{ steps = "num_inference_steps", cfg_scale = "guidance_scale" }}
defaults = {{ num_inference_steps = 25 }}

[[models.versions]]
id = "{V2}"
routes = [{{ provider = "replicate", model = "upstream/newer" }}]

[[models.versions]]
id = "{V1}"
routes = [{{ provider = "replicate", version = "{"b" * 64}" }}]

[[deployments]]
name = "acme/inpaint-prod"
model = "stability-ai/stable-diffusion-inpainting"
version = "{V1}"
routes = [{{ provider = "replicate", deployment = "acme/upstream-deploy" }}]
"""


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG)
    return Catalog(load_catalog(path, {"TOKEN_A": "secret-a"}))


def test_bare_and_qualified_version_ids_resolve_to_their_upstream_route(catalog: Catalog) -> None:
    for ref in (V1, f"stability-ai/stable-diffusion-inpainting:{V1}"):
        resolved = catalog.resolve_version(ref)
        assert resolved.model.name == "stability-ai/stable-diffusion-inpainting"
        assert resolved.version.id == V1
        assert [(r.provider, r.kind, r.target) for r in resolved.routes] == [("replicate", TargetKind.VERSION, "b" * 64)]


@pytest.mark.parametrize(
    "ref", ["c" * 64, f"other/model:{V1}", "stability-ai/stable-diffusion-inpainting", V1[:-1], V1.upper(), ""]
)
def test_unknown_or_mismatched_versions_are_replicates_422(catalog: Catalog, ref: str) -> None:
    with pytest.raises(InvalidVersion) as caught:
        catalog.resolve_version(ref)
    assert caught.value.problem() == {
        "title": "Invalid version or not permitted",
        "detail": "The specified version does not exist (or perhaps you don't have permission to use it?)",
        "status": 422,
    }


def test_model_resolves_to_its_newest_version_and_deployments_to_their_own_route(catalog: Catalog) -> None:
    latest = catalog.resolve_model("stability-ai/stable-diffusion-inpainting")
    assert latest.version.id == V2 and latest.routes[0].kind is TargetKind.MODEL
    deployed = catalog.resolve_deployment("acme/inpaint-prod")
    assert deployed.version.id == V1 and deployed.deployment == "acme/inpaint-prod"
    assert (deployed.routes[0].kind, deployed.routes[0].target) == (TargetKind.DEPLOYMENT, "acme/upstream-deploy")
    with pytest.raises(NotFound):
        catalog.resolve_model("nobody/nothing")
    with pytest.raises(NotFound):
        catalog.resolve_deployment("acme/missing")


def test_aliases_are_renamed_and_defaults_filled_without_overriding(catalog: Catalog) -> None:
    resolved = catalog.resolve_version(V1)
    assert resolved.prepare_input({"steps": 10, "cfg_scale": 7, "prompt": "x"}) == {
        "num_inference_steps": 10,
        "guidance_scale": 7,
        "prompt": "x",
    }
    assert resolved.prepare_input({"prompt": "x"}) == {"prompt": "x", "num_inference_steps": 25}


def test_an_alias_sent_with_its_real_name_is_refused(catalog: Catalog) -> None:
    with pytest.raises(InvalidInput) as caught:
        catalog.resolve_version(V1).prepare_input({"steps": 10, "num_inference_steps": 20})
    assert caught.value.invalid_fields == [
        {
            "type": "alias_conflict",
            "field": "input.steps",
            "description": "steps is an alias of num_inference_steps; send only one of them",
        }
    ]


def test_tokens_come_from_the_named_environment_variables_only(catalog: Catalog) -> None:
    provider = catalog.providers["replicate"]
    assert [t.get_secret_value() for t in provider.tokens] == ["secret-a"]
    assert provider.token_names == ("TOKEN_A",)  # TOKEN_B is unset: each token keeps its variable's name
    assert provider.base_url == "https://api.example.com/v1"
    assert "secret-a" not in repr(provider)
