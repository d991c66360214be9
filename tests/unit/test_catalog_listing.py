"""The catalog's collections, hardware, readmes and examples: their validation, and the search score."""

from pathlib import Path

import pytest

from gateway.catalog import LOCAL_CPU, Catalog
from gateway.config import load_catalog
from gateway.config_listing import HardwareConfig
from gateway.errors import ConfigError
from gateway.search import rank_collections, rank_models, score, terms

VERSION = "a" * 64
MODEL = f'[[models]]\nname = "a/b"\n{{fields}}\n[[models.versions]]\nid = "{VERSION}"\nroutes = [{{provider = "up", version = "x"}}]\n'
PROVIDER = '[providers.up]\nkind = "replicate"\nbase_url = "https://up.example/v1"\n'


def _load(tmp_path: Path, text: str) -> Catalog:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return Catalog(load_catalog(path, {}))


@pytest.mark.parametrize(
    "body,message",
    [
        (
            '[[collections]]\nslug = "c"\nname = "C"\nmodels = ["a/missing"]\n',
            "collections[0].models[0]: unknown model 'a/missing'",
        ),
        ('[[collections]]\nslug = "c"\nname = "C"\n[[collections]]\nslug = "c"\nname = "D"\n', "a slug is declared twice"),
        ('[[collections]]\nslug = "Not A Slug"\nname = "C"\n', "collections[0].slug: String should match pattern"),
        ('[[collections]]\nslug = "c"\nname = "C"\ncolour = "red"\n', "collections[0].colour: Extra inputs are not permitted"),
    ],
)
def test_bad_collections_stop_the_catalog_naming_the_field(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, PROVIDER + MODEL.replace("{fields}", "") + body)
    assert message in str(caught.value)


def test_a_model_has_at_most_one_readme_and_a_readme_file_is_read_next_to_the_catalog(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# B\n")
    assert _load(tmp_path, PROVIDER + MODEL.replace("{fields}", 'readme_file = "b.md"')).model("a/b").readme == "# B\n"
    with pytest.raises(ConfigError, match="at most one of readme and readme_file"):
        _load(tmp_path, PROVIDER + MODEL.replace("{fields}", 'readme = "x"\nreadme_file = "b.md"'))
    with pytest.raises(ConfigError, match=r"models\[0\]\.readme_file: cannot read missing\.md"):
        _load(tmp_path, PROVIDER + MODEL.replace("{fields}", 'readme_file = "missing.md"'))


def test_hardware_is_each_sku_once_and_a_cog_provider_without_any_is_the_local_cpu(tmp_path: Path) -> None:
    catalog = _load(
        tmp_path,
        '[providers.cog]\nkind = "cog"\nservers = ["http://127.0.0.1:5000"]\n'
        '[providers.gpu]\nkind = "cog"\nservers = ["http://127.0.0.1:5001"]\nhardware = [{sku = "gpu-l40s", name = "L40S"}]\n'
        '[providers.up]\nkind = "replicate"\nbase_url = "https://up.example/v1"\n'
        'hardware = [{sku = "cpu", name = "CPU upstream"}, {sku = "gpu-t4", name = "T4"}]\n'
        '[providers.bare]\nkind = "replicate"\nbase_url = "https://bare.example/v1"\n',
    )
    assert catalog.hardware() == [LOCAL_CPU, HardwareConfig(sku="gpu-l40s", name="L40S"), HardwareConfig(sku="gpu-t4", name="T4")]


def test_search_terms_are_lowercase_distinct_and_scored_by_their_best_field(tmp_path: Path) -> None:
    assert terms("  Cat cat  DOG ") == ["cat", "dog"]
    assert score([(3.0, "acme/Cat"), (1.0, "a dog and a cat")], ["cat", "dog"]) == 2.0
    assert score([(3.0, "acme/cat")], ["bird"]) == 0.0
    assert score([(3.0, "acme/cat")], []) == 0.0


def test_models_and_collections_rank_by_score_then_name(tmp_path: Path) -> None:
    models = (
        f'[[models]]\nname = "z/cat"\n[[models.versions]]\nid = "{"b" * 64}"\nroutes = [{{provider = "up", version = "x"}}]\n'
        f'[[models]]\nname = "a/dog"\ndescription = "Not a cat"\n[[models.versions]]\nid = "{"c" * 64}"\nroutes = [{{provider = "up", version = "x"}}]\n'
        f'[[models]]\nname = "m/tagged"\ntags = ["cat"]\n[[models.versions]]\nid = "{"d" * 64}"\nroutes = [{{provider = "up", version = "x"}}]\n'
    )
    collections = (
        '[[collections]]\nslug = "pets"\nname = "Pets"\ndescription = "cats"\n[[collections]]\nslug = "cats"\nname = "C"\n'
    )
    catalog = _load(tmp_path, PROVIDER + MODEL.replace("{fields}", "") + models + collections)
    assert [(m.name, s) for m, s in rank_models(catalog.models(), "CAT")] == [("z/cat", 3.0), ("m/tagged", 2.0), ("a/dog", 1.0)]
    assert [(c.slug, s) for c, s in rank_collections(catalog.collections(), "cat")] == [("cats", 3.0), ("pets", 1.0)]


def test_the_shipped_catalog_has_the_demo_collection_readmes_and_the_local_cpu() -> None:
    catalog = Catalog(load_catalog(Path(__file__).parents[2] / "config" / "catalog.toml", {}))
    assert [(c.slug, c.models) for c in catalog.collections()] == [
        ("gateway-demos", ["gateway-demo/opencv-inpainting", "gateway-demo/typewriter"])
    ]
    assert (catalog.model("gateway-demo/typewriter").readme or "").startswith("# typewriter")
    assert catalog.model("gateway-demo/typewriter").examples[0].output == ["hello", " world"]
    assert catalog.hardware() == [LOCAL_CPU]
