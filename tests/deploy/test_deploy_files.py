"""Issue 10, acceptance 4: the files under deploy/ pass their validators offline: the Kubernetes
manifests against the API schemas shipped in `kubernetes-validate` (strict: unknown fields are
errors), the compose file against the Compose Specification's JSON schema (vendored here), and each
file agrees with the product it deploys (tenant file format, search attributes, health port)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from adapters.tenants import TenantConfigError, load_tenants
from workers.cli import parser
from workers.codec_server import UI_PREFIX
from workers.health import HEALTH_PATHS
from workflows import search_attributes as sa

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.37"
COMPOSE_SCHEMA = json.loads((Path(__file__).parent / "compose-spec.json").read_text())


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((f"{path.name}:{doc['kind']}", doc))
    return found


def by_kind(kind: str) -> dict[str, Any]:
    (doc,) = [doc for _name, doc in manifests() if doc["kind"] == kind]
    return doc


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return loaded


@pytest.mark.parametrize(("name", "doc"), manifests(), ids=[name for name, _ in manifests()])
def test_kubernetes_manifest_is_valid_for_the_api(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubernetes_validator_rejects_a_broken_deployment() -> None:
    broken = by_kind("Deployment")
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kubernetes_validator_rejects_an_unknown_field() -> None:
    broken = by_kind("PodDisruptionBudget")
    broken["spec"]["minAvailabel"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_manifests_cover_what_the_workers_need() -> None:
    kinds = {doc["kind"] for _name, doc in manifests()}
    assert {"Deployment", "HorizontalPodAutoscaler", "ConfigMap", "PodDisruptionBudget"} <= kinds


def test_hpa_scales_the_worker_deployment_on_task_queue_backlog() -> None:
    deployment, hpa = by_kind("Deployment"), by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    external = [m["external"] for m in hpa["spec"]["metrics"] if m["type"] == "External"]
    assert [e["metric"]["name"] for e in external] == ["temporal_approximate_backlog_count"]
    assert hpa["spec"]["minReplicas"] > by_kind("PodDisruptionBudget")["spec"]["minAvailable"]


def test_pdb_selects_the_worker_pods() -> None:
    deployment, pdb = by_kind("Deployment"), by_kind("PodDisruptionBudget")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_probes_use_the_paths_the_worker_serves() -> None:
    (container,) = by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == int(env["WRITEBACK_HEALTH_PORT"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in HEALTH_PATHS
        assert container[probe]["httpGet"]["port"] == "health"


def test_workers_get_the_shared_payload_keys_from_a_secret() -> None:
    """No worker makes up keys (workers/keys.py): the keys come from one Secret for all pods."""
    (container,) = by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    (keys,) = [e for e in container["env"] if e["name"] == "WRITEBACK_KEYS"]
    assert keys["valueFrom"]["secretKeyRef"]["name"] == "writeback-payload-keys"


def test_tenants_configmap_is_a_valid_tenant_file(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(by_kind("ConfigMap")["data"]["tenants.toml"])
    assert load_tenants(path).ids


def test_compose_example_tenant_file_is_valid() -> None:
    assert load_tenants(DEPLOY / "tenants.toml").ids


def test_a_broken_tenant_configmap_would_be_caught(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    text = by_kind("ConfigMap")["data"]["tenants.toml"]
    path.write_text(text.replace('vendor = "epic"', 'vendor = "epicc"'))
    with pytest.raises(TenantConfigError):
        load_tenants(path)


def test_compose_file_follows_the_compose_specification() -> None:
    jsonschema.Draft7Validator(COMPOSE_SCHEMA).validate(compose())


def test_compose_schema_rejects_a_broken_service() -> None:
    broken = compose()
    broken["services"]["worker"]["ports"] = {"8081": "8081"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(COMPOSE_SCHEMA).validate(broken)


def test_compose_runs_temporal_on_postgresql_with_ui_workers_codec_and_collector() -> None:
    services = compose()["services"]
    assert services["temporal"]["environment"]["DB"].startswith("postgres")
    assert {"temporal-ui", "worker", "codec-server", "otel-collector"} <= services.keys()
    for name in ("worker", "codec-server", "otel-collector", "temporal"):
        for volume in services[name].get("volumes", []):
            source = volume.split(":")[0]
            assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"


def test_compose_worker_command_is_a_writeback_command() -> None:
    command = compose()["services"]["worker"]["command"]
    assert command[0] == "writeback"
    parser().parse_args(command[1:])  # exits (SystemExit) on an unknown subcommand


def test_compose_registers_exactly_the_search_attributes_of_a_write() -> None:
    script = " ".join(compose()["services"]["temporal-setup"]["command"])
    words = shlex.split(script)
    pairs = {
        words[i + 1]: words[i + 3]
        for i, word in enumerate(words)
        if word == "--name" and words[i + 2] == "--type"
    }
    assert pairs == {key.name: sa.type_name(key) for key in sa.ALL}


def test_dynamic_config_is_a_map_of_constrained_values() -> None:
    config = yaml.safe_load((DEPLOY / "temporal" / "dynamicconfig.yaml").read_text())
    for key, entries in config.items():
        assert re.fullmatch(r"[a-z]+(\.[A-Za-z]+)+", key), key
        for entry in entries:
            assert set(entry) <= {"value", "constraints"}, key
            assert "value" in entry, key


def test_collector_pipelines_use_declared_components() -> None:
    config = yaml.safe_load((DEPLOY / "otel" / "collector.yaml").read_text())
    for pipeline in config["service"]["pipelines"].values():
        for part in ("receivers", "processors", "exporters"):
            assert set(pipeline[part]) <= config[part].keys()


def test_compose_ui_reaches_the_codec_server_the_way_it_authenticates_a_browser() -> None:
    """The UI decodes through the codec server's browser endpoint (its session cookie, so
    cross-origin credentials on; the UI has no access token of its own to pass), from the one
    origin the codec server allows. Before: the UI pointed at the bearer-token root with
    "pass access token" on, and every decode was refused."""
    services = compose()["services"]
    ui = services["temporal-ui"]["environment"]
    codec = services["codec-server"]
    command = codec["command"]
    port = command[command.index("--port") + 1]
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == f"http://localhost:{port}{UI_PREFIX}"
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    assert ui.get("TEMPORAL_CODEC_PASS_ACCESS_TOKEN", "false") == "false"
    ui_port = services["temporal-ui"]["ports"][0].split(":")[0]
    assert ui["TEMPORAL_CORS_ORIGINS"] == f"http://localhost:{ui_port}"
    assert codec["environment"]["WRITEBACK_CODEC_CORS_ORIGIN"] == ui["TEMPORAL_CORS_ORIGINS"]
