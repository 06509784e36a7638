"""deploy/ is accepted by the tools that will read it: docker compose, kubeconform, promtool.

The tools come from `make deploy-tools` (Debian's prometheus and docker-compose, kubeconform
from the Go module proxy with schemas made from Kubernetes' own OpenAPI document); a test
whose tool is missing is skipped and says which target installs it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).parents[2] / "deploy"
TOOLS = Path.home() / ".cache" / "learnright"
KUBECONFORM = TOOLS / "bin" / "kubeconform"
K8S_SCHEMAS = TOOLS / "kubernetes-json-schema" / "v1.33.5-standalone-strict"


def compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin) when it answers, else Debian's docker-compose 1.29."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.skipif(compose_command() is None, reason="needs docker compose or docker-compose (make compose)")
def test_docker_compose_accepts_the_compose_file_with_every_service():
    command = compose_command()
    answer = subprocess.run([*command, "-f", str(DEPLOY / "compose.yaml"), "config"], capture_output=True, text=True)
    assert answer.returncode == 0, answer.stderr
    services = yaml.safe_load(answer.stdout)["services"]
    assert set(services) == {"kafka", "postgres", "ledger", "prometheus", "grafana"}
    assert services["kafka"]["image"] == "apache/kafka:4.4.0"  # the broker version ground/settings.py pins


def test_the_compose_kafka_is_the_pinned_broker_version():
    from ground.settings import BrokerSettings

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{BrokerSettings().kafka_version}"


def kubeconform(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(KUBECONFORM), "-strict", "-summary", "-schema-location",
         str(K8S_SCHEMAS / "{{ .ResourceKind }}{{ .KindSuffix }}.json"),
         "-ignore-filename-pattern", r"kustomization\.yaml$", "-ignore-filename-pattern", r"\.py$",
         *map(str, paths)], capture_output=True, text=True)


needs_kubeconform = pytest.mark.skipif(not (KUBECONFORM.exists() and K8S_SCHEMAS.is_dir()),
                                       reason="needs kubeconform and its schemas (make kubeconform)")


@needs_kubeconform
def test_the_kubernetes_manifests_pass_kubeconform_strict():
    answer = kubeconform(DEPLOY / "k8s")
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "Valid: 3, Invalid: 0, Errors: 0, Skipped: 0" in answer.stdout


@needs_kubeconform
def test_kubeconform_refuses_a_field_the_api_does_not_know(tmp_path):
    """The schemas are strict: a misspelt field is an error, not silently ignored."""
    text = (DEPLOY / "k8s" / "statefulset.yaml").read_text().replace("readinessProbe:", "readynessProbe:")
    (tmp_path / "statefulset.yaml").write_text(text)
    answer = kubeconform(tmp_path / "statefulset.yaml")
    assert answer.returncode == 1 and "readynessProbe" in answer.stdout, answer.stdout


def test_the_statefulset_probes_mounts_and_resources():
    documents = {doc["kind"]: doc for path in (DEPLOY / "k8s").glob("*.yaml") for doc in yaml.safe_load_all(path.read_text())}
    pod = documents["StatefulSet"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    secret = next(v for v in pod["volumes"] if v["name"] == "signing-key")["secret"]["secretName"]
    settings = documents["ConfigMap"]["data"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "signing-key")["mountPath"]
    assert secret == "learnright-signing-key" and settings["LEARNRIGHT_SIGNING_KEY"].startswith(mount + "/")
    claim = documents["StatefulSet"]["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    ledger_mount = next(m for m in container["volumeMounts"] if m["name"] == claim)["mountPath"]
    assert settings["LEARNRIGHT_DB"].startswith(ledger_mount + "/")
    assert documents["StatefulSet"]["spec"]["replicas"] == 1  # one writer per ledger file


@pytest.mark.skipif(not shutil.which("promtool"), reason="needs Debian's prometheus package (make prometheus)")
def test_the_alert_rules_pass_their_promtool_unit_tests():
    checked = subprocess.run(["promtool", "check", "rules", "alerts.yml"], cwd=DEPLOY / "prometheus",
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=DEPLOY / "prometheus",
                            capture_output=True, text=True)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    cases = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in cases for case in test["alert_rule_test"] if case.get("exp_alerts")}
    rules = {rule["alert"] for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
             for rule in group["rules"]}
    assert rules <= fired, f"alerts no promtool test shows firing: {rules - fired}"
