"""deploy/kubernetes/ (its README.md): every manifest is valid against the Kubernetes API's
own schemas, offline, and they fit the daemon and each other.

- **The validator** is PyPI's `kubernetes-validate` (the test extra): it ships the JSON
  Schemas of every Kubernetes release it supports inside its wheel, so nothing is fetched
  (kubeconform and kubeval download theirs, and no registry here ships them), and its
  strict mode refuses a key the API does not know, which a misspelt field would otherwise
  pass as. Each manifest is checked against the oldest release the README supports
  (`unhealthyPodEvictionPolicy` is GA in 1.31) and the newest the package knows. Missing, the
  test is skipped; under CI=true it fails.
- **The ServiceMonitor** is a custom resource, which kubernetes-validate has no schema for:
  it is checked with jsonschema against tests/schemas/servicemonitor.schema.json, written
  from the Prometheus Operator's CRD (its `$comment` says how far it goes).
- **Broken manifests fail**: a wrong type, an unknown key and a missing required field are
  each refused by the same checks, so the checks are not vacuous.
- **The configuration in the ConfigMaps** passes `fenliu check-config`, written out as the pod
  mounts it, with the environment the pod has (its name, the Secret's keys).
- **They fit together**: the mounts, the `--config` path, the probes on `[http] listen`'s
  port, the grace period against the daemon's 10 s SIGTERM budget, the Secret's keys against
  the `${NAME}`s of fenliu.toml, and the selectors of the Service, ServiceMonitor and budget.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from daemon.cli import main
from daemon.config import load_config

REPO = Path(__file__).resolve().parents[2]
KIT = REPO / "deploy" / "kubernetes"
SERVICE_MONITOR_SCHEMA = REPO / "tests" / "schemas" / "servicemonitor.schema.json"
OLDEST = "1.31"  # deploy/kubernetes/README.md: the oldest Kubernetes the manifests are for
SIGTERM_BUDGET_S = 10  # docs/daemon.md, "Shutdown": exit 0 within 10 s of SIGTERM
SECRET_KEYS_EXAMPLE = "secret.example.yaml"
_NAMED = re.compile(r"\$\{(\w+)\}").findall  # the variables a setting names


def _validator() -> ModuleType:
    """kubernetes_validate; a skip when it is missing, a failure under CI=true."""
    try:
        import kubernetes_validate
    except ImportError:
        reason = "kubernetes-validate is missing: pip install -e '.[test]' (make setup)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return kubernetes_validate


def _documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, resource) for every resource in deploy/kubernetes/*.yaml but the
    Kustomization."""
    return [
        (path.name, doc)
        for path in sorted(KIT.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc and doc["kind"] != "Kustomization"
    ]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    [doc] = [
        d
        for _, d in _documents()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    return doc


def _check(resource: dict[str, Any]) -> None:
    """Raise if `resource` is not valid: the API's schemas (strict) for a built-in kind, the
    written schema for a ServiceMonitor."""
    if resource["kind"] == "ServiceMonitor":
        schema = json.loads(SERVICE_MONITOR_SCHEMA.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.Draft202012Validator(schema).validate(resource)
        return
    validator = _validator()
    for version in (OLDEST, validator.utils.latest_version()):
        validator.validate(resource, version, strict=True)


def _ids(docs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in docs]


DOCUMENTS = _documents()


@pytest.mark.parametrize(("file", "resource"), DOCUMENTS, ids=_ids(DOCUMENTS))
def test_every_manifest_is_valid_against_the_kubernetes_schemas(
    file: str, resource: dict[str, Any]
) -> None:
    _check(resource)


def test_the_kit_has_each_resource_it_needs() -> None:
    kinds = sorted({doc["kind"] for _, doc in DOCUMENTS})
    assert kinds == [
        "ConfigMap",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "ServiceMonitor",
        "StatefulSet",
    ]


def test_the_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    kustomization = yaml.safe_load((KIT / "kustomization.yaml").read_text(encoding="utf-8"))
    files = sorted(p.name for p in KIT.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == [f for f in files if f != SECRET_KEYS_EXAMPLE]


def _broken(resource: dict[str, Any], path: list[str | int], value: object) -> dict[str, Any]:
    """A copy of `resource` with the key at `path` set to `value` (deleted for `...`)."""
    copied = copy.deepcopy(resource)
    parent = copied
    for key in path[:-1]:
        parent = parent[key]
    if value is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copied


POD = ["spec", "template", "spec"]
CONTAINER = [*POD, "containers", 0]


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("StatefulSet", ["spec", "replicas"], "three"),  # a wrong type
        ("StatefulSet", [*POD, "terminationGracePeriod"], 20),  # a key the API does not know
        ("StatefulSet", [*CONTAINER, "livenessProbe", "httpGet", "port"], [9464]),
        ("StatefulSet", [*CONTAINER, "name"], ...),  # a required field missing
        ("Service", ["spec", "ports", 0, "port"], "http"),
        ("PodDisruptionBudget", ["spec", "unhealthyPodEvictionPolicy"], 1),
        ("ConfigMap", ["data", "fenliu.toml"], 42),
        ("ServiceMonitor", ["spec", "endpoints", 0, "intervall"], "15s"),  # misspelt
        ("ServiceMonitor", ["spec", "endpoints", 0, "interval"], "15 seconds"),
        ("ServiceMonitor", ["spec", "selector"], ...),
    ],
)
def test_a_broken_manifest_fails_the_check(kind: str, path: list[str | int], value: object) -> None:
    resource = _one(kind, "fenliu-config" if kind == "ConfigMap" else None)
    _check(resource)  # valid as written
    with pytest.raises(jsonschema.ValidationError):
        _check(_broken(resource, path, value))


def _environment() -> dict[str, str]:
    """The variables the container has for fenliu.toml: its own env (values from the
    downward API stood in for) and the keys of the example Secret."""
    container = _one("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    env = {var["name"]: "fenliu-0" for var in container["env"]}
    [source] = container["envFrom"]
    secret = _one("Secret")
    assert source["secretRef"]["name"] == secret["metadata"]["name"]
    env.update(secret["stringData"])
    return env


def _write_out(root: Path) -> Path:
    """The ConfigMaps written out where the StatefulSet mounts them, under `root`; the path
    of fenliu.toml."""
    pod = _one("StatefulSet")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    maps = {v["name"]: v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    for mount in container["volumeMounts"]:
        if mount["name"] not in maps:
            continue  # an emptyDir (/tmp, for the control socket)
        folder = root / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True)
        for key, text in _one("ConfigMap", maps[mount["name"]])["data"].items():
            (folder / key).write_text(text, encoding="utf-8")
    args = container["args"]
    assert args[:2] == ["run", "--config"]
    return root / args[2].lstrip("/")


def test_the_configmaps_configuration_passes_check_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in _environment().items():
        monkeypatch.setenv(name, value)
    path = _write_out(tmp_path)
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    shops = _one("ConfigMap", "fenliu-shops")["data"]
    assert [line.split(":")[0] for line in out.splitlines()] == [
        f"shop {key.removesuffix('.toml')}" for key in sorted(shops)
    ]
    config = load_config(path)
    assert config.kafka.group_instance_id == "fenliu-0"  # the pod's name
    assert config.http.token.get_secret_value() == _environment()["FENLIU_HTTP_TOKEN"]


def test_the_configuration_takes_every_secret_from_the_environment_the_pod_has() -> None:
    daemon_file = tomllib.loads(_one("ConfigMap", "fenliu-config")["data"]["fenliu.toml"])
    values = [value for table in daemon_file.values() for value in table.values()]
    named = {name for value in values if isinstance(value, str) for name in _NAMED(value)}
    assert named == set(_environment())
    assert daemon_file["shops"]["watch"] == "5s"  # a ConfigMap update reloads by itself
    # each shop file's id is its key's name
    for key, shop in _one("ConfigMap", "fenliu-shops")["data"].items():
        assert tomllib.loads(shop)["id"] == key.removesuffix(".toml")


def test_the_pod_probes_the_daemons_http_port_and_stops_within_its_grace_period() -> None:
    config = tomllib.loads(_one("ConfigMap", "fenliu-config")["data"]["fenliu.toml"])
    host, _, port = config["http"]["listen"].rpartition(":")
    assert host == "0.0.0.0"  # the kubelet and Prometheus reach the pod's address
    assert config["http"]["token"]  # required off loopback, for /api/* and the console
    pod = _one("StatefulSet")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    [http] = container["ports"]
    assert (http["name"], http["containerPort"]) == ("http", int(port))
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert pod["terminationGracePeriodSeconds"] >= 2 * SIGTERM_BUDGET_S
    assert "cpu" not in container["resources"].get("limits", {})  # no throttled loop
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])


def test_the_service_monitor_and_budget_select_the_pods_through_the_service() -> None:
    statefulset, service = _one("StatefulSet"), _one("Service")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"]  # a pod not ready is still scraped
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
    monitor = _one("ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    # deploy/prometheus's FenliuDown matches job="fenliu": the Service's name is the job
    rules = (REPO / "deploy" / "prometheus" / "fenliu.rules.yml").read_text(encoding="utf-8")
    assert f'up{{job="{service["metadata"]["name"]}"}}' in rules
    budget = _one("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] == 1
