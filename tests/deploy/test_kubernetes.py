"""deploy/k8s, checked without a cluster or kustomize: every file a kustomization lists exists, every manifest is
valid against the Kubernetes API schemas (kubernetes-validate), and the objects of each overlay fit together and
fit the gateway (probe paths it serves, settings it reads, names that are defined)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.api.predictions import MAX_WAIT_SECONDS
from gateway.config import CatalogConfig
from tests.deploy.dockerfile import ROOT, stages
from tests.deploy.routes import serves_get
from tests.deploy.settings import unknown_variables

K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = sorted(K8S.rglob("kustomization.yaml"))
OVERLAYS = sorted(p.parent for p in KUSTOMIZATIONS if p.parent.parent.name == "overlays")
KUBERNETES_VERSION = "1.33.0"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kustomization(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return loaded


def _generator_inputs(generator: dict[str, Any]) -> list[str]:
    return [entry.split("=", 1)[-1] for entry in generator.get("files", [])] + generator.get("envs", [])


@dataclass
class Rendered:
    """What a kustomization puts together, without kustomize: its resources and the names its generators make."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    catalogs: list[Path] = field(default_factory=list)  # configMapGenerator inputs named *.toml
    generated: dict[str, set[str]] = field(default_factory=lambda: {"ConfigMap": set(), "Secret": set()})

    def add(self, directory: Path) -> None:
        kustomization = _kustomization(directory)
        for entry in kustomization.get("resources", []) + kustomization.get("components", []):
            path = directory / entry
            if path.is_dir():
                self.add(path)
            else:
                self.objects += _documents(path)
        for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
            for generator in kustomization.get(key, []):
                self.generated[kind].add(generator["name"])
                self.catalogs += [directory / f for f in _generator_inputs(generator) if f.endswith(".toml")]
        for patch in kustomization.get("patches", []):
            self._patch(_documents(directory / patch["path"])[0])

    def _patch(self, patch: dict[str, Any]) -> None:
        """A strategic-merge patch of containers' env, merged by name as Kubernetes does (the only kind the overlays
        use: any other field fails here rather than being skipped)."""
        [target] = self.named(patch["kind"], patch["metadata"]["name"])
        containers = {c["name"]: c for c in target["spec"]["template"]["spec"]["containers"]}
        for container in patch["spec"]["template"]["spec"]["containers"]:
            assert container.keys() <= {"name", "env"}, f"a patch this reader does not apply: {container}"
            env = containers[container["name"]].setdefault("env", [])
            for entry in container["env"]:
                env[:] = [e for e in env if e["name"] != entry["name"]] + [entry]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind: str, name: str) -> list[dict[str, Any]]:
        return [o for o in self.all(kind) if o["metadata"]["name"] == name]

    def defines(self, kind: str, name: str) -> bool:
        return name in self.generated[kind] or bool(self.named(kind, name))


def _render(directory: Path) -> Rendered:
    rendered = Rendered()
    rendered.add(directory)
    return rendered


def _pod_specs(rendered: Rendered) -> list[dict[str, Any]]:
    return [o["spec"]["template"]["spec"] for kind in ("Deployment", "StatefulSet") for o in rendered.all(kind)]


def _gateway(rendered: Rendered) -> dict[str, Any]:
    [deployment] = rendered.named("Deployment", "gateway")
    return deployment


def _gateway_container(rendered: Rendered) -> dict[str, Any]:
    [container] = _gateway(rendered)["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: str(p.parent.relative_to(K8S)))
def test_every_file_a_kustomization_lists_exists(path: Path) -> None:
    directory, kustomization = path.parent, _kustomization(path.parent)
    missing = []
    for entry in kustomization.get("resources", []) + kustomization.get("components", []):
        target = directory / entry
        missing += [] if target.is_file() or (target / "kustomization.yaml").is_file() else [entry]
    for entry in (p["path"] for p in kustomization.get("patches", [])):
        missing += [] if (directory / entry).is_file() else [entry]
    for generator in kustomization.get("configMapGenerator", []):
        missing += [f for f in _generator_inputs(generator) if not (directory / f).is_file()]
    for generator in kustomization.get("secretGenerator", []):
        # The operator writes the secret values; what must be committed is the documented example.
        missing += [f for f in _generator_inputs(generator) if not (directory / f"{f}.example").is_file()]
    assert missing == []


def _listed_manifests() -> list[Path]:
    """Every file some kustomization lists under `resources` (patches are partial: checked once applied)."""
    listed = {k.parent / entry for k in KUSTOMIZATIONS for entry in _kustomization(k.parent).get("resources", [])}
    return sorted(path.resolve() for path in listed if path.is_file())


@pytest.mark.parametrize("path", _listed_manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_is_valid_for_the_kubernetes_api(path: Path) -> None:
    for document in _documents(path):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
class TestOverlay:
    def test_the_patched_gateway_is_still_valid(self, overlay: Path) -> None:
        kubernetes_validate.validate(_gateway(_render(overlay)), KUBERNETES_VERSION, strict=True)

    def test_probes_ask_paths_the_gateway_serves(self, overlay: Path) -> None:
        container = _gateway_container(_render(overlay))
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert all(serves_get(container[probe]["httpGet"]["path"]) for probe in ("readinessProbe", "livenessProbe"))

    def test_the_service_selects_the_gateway_pods_on_their_port(self, overlay: Path) -> None:
        rendered = _render(overlay)
        [service] = rendered.named("Service", "gateway")
        labels = _gateway(rendered)["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        ports = {p["name"]: p["containerPort"] for p in _gateway_container(rendered)["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports or port["targetPort"] in ports.values(), port
        for probe in ("readinessProbe", "livenessProbe"):
            assert _gateway_container(rendered)[probe]["httpGet"]["port"] in ports

    def test_autoscaler_and_disruption_budget_target_the_gateway(self, overlay: Path) -> None:
        rendered = _render(overlay)
        gateway = _gateway(rendered)
        [hpa] = rendered.all("HorizontalPodAutoscaler")
        assert (hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"]) == ("Deployment", "gateway")
        assert hpa["spec"]["minReplicas"] >= 2
        [pdb] = rendered.all("PodDisruptionBudget")
        assert pdb["spec"]["selector"]["matchLabels"] == gateway["spec"]["selector"]["matchLabels"]
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # a node drain can always proceed

    def test_the_gateway_is_given_only_settings_it_reads_and_its_catalog_secrets(self, overlay: Path) -> None:
        rendered = _render(overlay)
        [catalog] = rendered.catalogs
        names = {variable["name"] for variable in _gateway_container(rendered)["env"]}
        assert unknown_variables(names, catalog) == set()

    def test_every_secret_and_config_map_it_references_is_defined(self, overlay: Path) -> None:
        rendered = _render(overlay)
        for spec in _pod_specs(rendered):
            for container in spec["containers"]:
                for variable in container.get("env", []):
                    ref = variable.get("valueFrom", {}).get("secretKeyRef")
                    assert ref is None or rendered.defines("Secret", ref["name"]), ref
            for volume in spec.get("volumes", []):
                assert "configMap" not in volume or rendered.defines("ConfigMap", volume["configMap"]["name"]), volume
                assert "secret" not in volume or rendered.defines("Secret", volume["secret"]["secretName"]), volume

    def test_the_secret_values_are_documented_for_every_key_referenced(self, overlay: Path) -> None:
        rendered = _render(overlay)
        documented = {}
        for generator in _kustomization(overlay).get("secretGenerator", []):
            for env in generator.get("envs", []):
                lines = (overlay / f"{env}.example").read_text().splitlines()
                documented[generator["name"]] = {
                    line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")
                }
        refs = [
            v["valueFrom"]["secretKeyRef"]
            for s in _pod_specs(rendered)
            for c in s["containers"]
            for v in c.get("env", [])
            if "secretKeyRef" in v.get("valueFrom", {})
        ]
        assert refs and all(ref["key"] in documented.get(ref["name"], set()) for ref in refs), refs

    def test_pods_run_unprivileged_with_bounded_resources(self, overlay: Path) -> None:
        for spec in _pod_specs(_render(overlay)):
            assert spec["securityContext"]["runAsNonRoot"] is True
            for container in spec["containers"]:
                assert container["securityContext"]["readOnlyRootFilesystem"] is True
                assert container["securityContext"]["allowPrivilegeEscalation"] is False
                assert {"cpu", "memory"} <= container["resources"]["requests"].keys() & container["resources"]["limits"].keys()

    def test_termination_grace_outlasts_the_longest_wait(self, overlay: Path) -> None:
        """SIGTERM drains: the longest `Prefer: wait` must be answered before the kubelet kills the Pod."""
        spec = _gateway(_render(overlay))["spec"]["template"]["spec"]
        pause = _gateway_container(_render(overlay))["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert spec["terminationGracePeriodSeconds"] > pause + MAX_WAIT_SECONDS

    def test_the_gateway_runs_as_the_images_user(self, overlay: Path) -> None:
        user = stages()["gateway"].all("USER")[-1]
        context = _gateway(_render(overlay))["spec"]["template"]["spec"]["securityContext"]
        assert f"{context['runAsUser']}:{context['runAsGroup']}" == user


def test_the_base_catalog_is_valid_and_its_schemas_are_in_the_image() -> None:
    [catalog] = _render(K8S / "base").catalogs
    config = CatalogConfig.model_validate(tomllib.loads(catalog.read_text()))
    copies = stages()["gateway"].copies()
    for model in config.models:
        for version in model.versions:
            if version.schema_file is not None:
                origins = [c.origin(version.schema_file) for c in copies]
                assert any(o is not None and o.is_file() for o in origins), version.schema_file
