"""The Helm chart, rendered by the real helm (no cluster): lint, the Deployment's security settings,
probe and environment, RBAC in both scopes, the values schema rejecting bad values, NOTES, the CRD
copy and manifests/install.yaml being current."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.helm import ensure_helm, helm
from quanteval.api.spec import IMAGE_REFERENCE
from quanteval_operator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "quanteval-operator"
CRD = ROOT / "crds" / "quantevals.quanteval.io.yaml"
CHART_CRD = CHART / "crds" / CRD.name
INSTALL = ROOT / "manifests" / "install.yaml"
RENDER_INSTALL = ROOT / "scripts" / "render-install.sh"
RELEASE = "qe"
NAMESPACE = "quanteval-system"
FULLNAME = f"{RELEASE}-quanteval-operator"

JSON = dict[str, Any]

# The rules the operator needs in each namespace it watches (ClusterRole or Role alike).
NAMESPACED_RULES: list[JSON] = [
    {"apiGroups": ["quanteval.io"], "resources": ["quantevals"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["quanteval.io"],
        "resources": ["quantevals/status"],
        "verbs": ["get", "patch", "update"],
    },
    {"apiGroups": ["quanteval.io"], "resources": ["quantevals/finalizers"], "verbs": ["update"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
]
# kopf's cluster scanning, only in the cluster scope.
SCANNING_RULES: list[JSON] = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["list", "watch"],
    },
]
SELECTOR_LABELS = {
    "app.kubernetes.io/name": "quanteval-operator",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "operator",
}


def _set_args(values: JSON | None, tmp_dir: Path | None, sets: tuple[str, ...]) -> list[str]:
    args: list[str] = []
    if values is not None:
        assert tmp_dir is not None
        path = tmp_dir / f"values-{len(list(tmp_dir.glob('values-*')))}.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["--values", str(path)]
    for item in sets:
        args += ["--set", item]
    return args


def render(
    *sets: str,
    values: JSON | None = None,
    tmp_dir: Path | None = None,
    api_versions: tuple[str, ...] = (),
) -> list[JSON]:
    """Every object `helm template` renders (CRDs left out) with these values, on a cluster that
    serves `api_versions` beyond the built-in ones."""
    result = helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        *_set_args(values, tmp_dir, sets),
        *(f"--api-versions={api}" for api in api_versions),
        check=False,
    )
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def rejection(*sets: str) -> str:
    """The error of `helm template` with values it must refuse."""
    result = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *sets, check=False)
    assert result.returncode != 0, f"helm template accepted {sets}:\n{result.stdout[:2000]}"
    return result.stderr


def only(objects: list[JSON], kind: str) -> JSON:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(objects: list[JSON]) -> JSON:
    (main,) = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(main)


def env_of(objects: list[JSON]) -> dict[str, str]:
    items = container(objects)["env"]
    assert all(set(item) == {"name", "value"} for item in items), "only literal env values"
    env = {item["name"]: item["value"] for item in items}
    assert len(env) == len(items), "an env variable is set twice"
    return env


# -- lint, the Deployment ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sets",
    [(), ("rbac.scope=namespaces", "watchNamespaces={team-a,team-b}")],
    ids=["cluster", "namespaces"],
)
def test_helm_lint_passes(sets: tuple[str, ...]) -> None:
    args = [a for s in sets for a in ("--set", s)]
    result = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_deployment_is_one_standalone_replica_replaced_not_rolled() -> None:
    deployment = only(render(), "Deployment")
    spec = deployment["spec"]
    assert deployment["metadata"]["name"] == FULLNAME
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"] == SELECTOR_LABELS
    pod = spec["template"]
    assert pod["metadata"]["labels"].items() >= SELECTOR_LABELS.items()
    assert pod["spec"]["serviceAccountName"] == FULLNAME
    main = container([deployment])
    assert main["command"] == ["quanteval-operator"]
    assert main["image"] == "ghcr.io/quanteval/quanteval-operator:0.1.0"  # the appVersion
    assert main["imagePullPolicy"] == "IfNotPresent"


def test_deployment_security_settings() -> None:
    pod = only(render(), "Deployment")["spec"]["template"]["spec"]
    pod_security = pod["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == 65532
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    security = pod["containers"][0]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in security
    # A writable /tmp on the read-only root filesystem.
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]
    (tmp,) = (v for v in pod["volumes"] if v["name"] == "tmp")
    assert "emptyDir" in tmp
    assert not any("hostPath" in v for v in pod["volumes"])
    assert not pod.get("hostNetwork") and not pod.get("hostPID")


def test_liveness_probe_on_kopfs_endpoint_and_the_metrics_port() -> None:
    main = container(render())
    assert "--liveness=http://0.0.0.0:8080/healthz" in main["args"]
    assert "--metrics-port=8000" in main["args"]
    probe = main["livenessProbe"]["httpGet"]
    assert probe == {"path": "/healthz", "port": "healthz"}
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"healthz": 8080, "metrics": 8000}

    main = container(render("metrics.port=9100", "liveness.port=9101"))
    assert "--metrics-port=9100" in main["args"]
    assert "--liveness=http://0.0.0.0:9101/healthz" in main["args"]
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"healthz": 9101, "metrics": 9100}

    main = container(render("metrics.enabled=false"))
    assert "--metrics-port=0" in main["args"]
    assert [p["name"] for p in main["ports"]] == ["healthz"]


def test_a_pod_monitor_scrapes_the_operators_metrics_port_when_asked() -> None:
    assert not [o for o in render() if o["kind"] == "PodMonitor"]
    objects = render(
        "metrics.podMonitor.enabled=true",
        "metrics.podMonitor.labels.release=kube-prometheus-stack",
        api_versions=("monitoring.coreos.com/v1/PodMonitor",),
    )
    monitor = only(objects, "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    pod = only(objects, "Deployment")["spec"]["template"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "30s")

    # Without the Prometheus Operator's CRD, helm says so instead of failing at apply time.
    message = rejection("--set", "metrics.podMonitor.enabled=true")
    assert "metrics.podMonitor.enabled" in message and "monitoring.coreos.com/v1" in message


def test_resources_come_from_values(tmp_path: Path) -> None:
    assert container(render())["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
        "limits": {"cpu": "1", "memory": "512Mi", "ephemeral-storage": "256Mi"},
    }
    resources = {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    objects = render(values={"resources": resources}, tmp_dir=tmp_path)
    # Helm merges maps with the defaults: the default cpu and disk stay.
    assert container(objects)["resources"] == {
        "requests": {"cpu": "200m", "memory": "256Mi", "ephemeral-storage": "64Mi"},
        "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "256Mi"},
    }


def test_image_tag_defaults_to_the_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    image = container(render())["image"]
    assert image == f"ghcr.io/quanteval/quanteval-operator:{chart['appVersion']}"
    image = container(render("image.repository=registry.example.com:5000/qe/op", "image.tag=v2"))[
        "image"
    ]
    assert image == "registry.example.com:5000/qe/op:v2"


def test_default_env_is_the_operators_own_defaults() -> None:
    env = env_of(render())
    assert "QUANTEVAL_NAMESPACES" not in env  # cluster scope: every namespace
    assert Settings.from_env(env) == Settings()


def test_the_worker_image_is_checked_as_a_quanteval_checks_it() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["worker"]["properties"]["image"]["pattern"] == IMAGE_REFERENCE


def test_env_from_values(tmp_path: Path) -> None:
    worker = {
        "image": "registry.example.com/qe/worker:2@sha256:" + "a" * 64,
        "pullPolicy": "Always",
        "command": ["python", "-m", "quanteval_worker.main", "--spec=/run/spec json"],
        "reportCommand": ["quanteval", "report", "--quiet"],
        "runAsUser": 4242,
        "gpuResourceName": "amd.com/gpu",
        "gpuMemoryGiB": 141.5,
        "s3": {"endpoint": "http://minio.storage:9000", "bucket": "evals", "secretName": "s3"},
        "hfCacheClaim": "hf-cache",
        "cost": {"gpuHourUSD": 2.5, "cpuHourUSD": "0.05"},
    }
    env = env_of(render(values={"worker": worker}, tmp_dir=tmp_path))
    assert env["QUANTEVAL_WORKER_IMAGE"] == worker["image"]
    assert json.loads(env["QUANTEVAL_WORKER_COMMAND"]) == worker["command"]
    assert json.loads(env["QUANTEVAL_REPORT_COMMAND"]) == worker["reportCommand"]
    assert env["QUANTEVAL_GPU_RESOURCE_NAME"] == "amd.com/gpu"
    assert env["QUANTEVAL_GPU_MEMORY_GIB"] == "141.5"
    assert env["QUANTEVAL_S3_ENDPOINT"] == "http://minio.storage:9000"
    assert env["QUANTEVAL_S3_BUCKET"] == "evals"
    assert env["QUANTEVAL_S3_SECRET_NAME"] == "s3"
    assert env["QUANTEVAL_HF_CACHE_CLAIM"] == "hf-cache"
    # ... and the operator reads them as meant.
    settings = Settings.from_env(env)
    assert settings.worker_image == worker["image"]
    assert settings.worker_command == worker["command"]
    assert settings.report_command == worker["reportCommand"]
    assert settings.image_pull_policy == "Always"
    assert settings.run_as_user == 4242
    assert settings.gpu_resource_name == "amd.com/gpu"
    assert settings.gpu_memory_gib == 141.5
    assert (settings.s3_endpoint, settings.s3_bucket, settings.s3_secret_name) == (
        "http://minio.storage:9000",
        "evals",
        "s3",
    )
    assert settings.hf_cache_claim == "hf-cache"
    assert (settings.gpu_hour_usd, settings.cpu_hour_usd) == (2.5, 0.05)


def test_tenancy_values_reach_the_operator(tmp_path: Path) -> None:
    images = ["registry.example.com/qe/*", "ghcr.io/quanteval/worker:0.1.0"]
    tenancy = {
        "allowWorkerImage": True,
        "allowedWorkerImages": images,
        "allowSecretRefs": True,
        "allowedSecrets": ["team-s3", "team-hf"],
        "allowVolumeClaims": False,
    }
    settings = Settings.from_env(env_of(render(values={"tenancy": tenancy}, tmp_dir=tmp_path)))
    assert settings.allowed_worker_images == tuple(images)
    assert settings.allowed_secrets == ("team-s3", "team-hf")
    assert (settings.allow_worker_image, settings.allow_volume_claims) == (True, False)


def test_every_variable_the_chart_sets_is_one_the_operator_reads() -> None:
    sources = "".join(
        (ROOT / "operator" / "quanteval_operator" / name).read_text()
        for name in ("settings.py", "main.py")
    )
    env = env_of(render("rbac.scope=namespaces", "watchNamespaces={a}"))
    unread = [name for name in env if f'"{name}"' not in sources]
    assert not unread, f"the chart sets variables the operator never reads: {unread}"


def test_gpu_memory_given_on_the_command_line() -> None:
    env = env_of(render("worker.gpuMemoryGiB=40"))
    assert env["QUANTEVAL_GPU_MEMORY_GIB"] == "40"
    assert Settings.from_env(env).gpu_memory_gib == 40.0


def test_every_object_has_the_charts_labels() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    expected = SELECTOR_LABELS | {
        "app.kubernetes.io/version": chart["appVersion"],
        "app.kubernetes.io/part-of": "quanteval",
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": f"quanteval-operator-{chart['version']}",
    }
    for objects in (render(), render("rbac.scope=namespaces", "watchNamespaces={a,b}")):
        for obj in objects:
            labels = obj["metadata"]["labels"]
            assert labels.items() >= expected.items(), f"{obj['kind']}: {labels}"


# -- the CRD ---------------------------------------------------------------------------------------


def test_chart_crd_is_the_generated_crd() -> None:
    fix = f"cp {CRD.relative_to(ROOT)} {CHART_CRD.relative_to(ROOT)} && scripts/render-install.sh"
    assert CHART_CRD.read_bytes() == CRD.read_bytes(), (
        f"{CHART_CRD.relative_to(ROOT)} differs from {CRD.relative_to(ROOT)} (the generated CRD); "
        f"fix: {fix}"
    )
    assert sorted(p.name for p in CHART_CRD.parent.iterdir()) == [CRD.name]


# -- RBAC -----------------------------------------------------------------------------------------


def _no_secrets_no_wildcards(rules: list[JSON]) -> None:
    for rule in rules:
        assert "secrets" not in rule["resources"], rule
        assert "*" not in rule["resources"] + rule["verbs"] + rule["apiGroups"], rule
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(
            rule["verbs"]
        ), rule


def test_rbac_cluster_scope() -> None:
    objects = render()
    role = only(objects, "ClusterRole")
    assert role["metadata"]["name"] == FULLNAME
    assert role["rules"] == NAMESPACED_RULES + SCANNING_RULES
    _no_secrets_no_wildcards(role["rules"])
    binding = only(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": FULLNAME,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    account = only(objects, "ServiceAccount")
    assert account["metadata"] == account["metadata"] | {"name": FULLNAME, "namespace": NAMESPACE}
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding")]


def test_rbac_templates_the_operator_tests_apply() -> None:
    """tests/operator/harness.py applies exactly these two templates with the defaults."""
    result = helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--show-only",
        "templates/serviceaccount.yaml",
        "--show-only",
        "templates/rbac.yaml",
    )
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(result.stdout) if d)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ServiceAccount"]


def test_rbac_namespaces_scope() -> None:
    objects = render("rbac.scope=namespaces", "watchNamespaces={team-a,team-b}")
    kinds = [o["kind"] for o in objects]
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    roles = [o for o in objects if o["kind"] == "Role"]
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for role in roles:
        assert role["metadata"]["name"] == FULLNAME
        assert role["rules"] == NAMESPACED_RULES
        _no_secrets_no_wildcards(role["rules"])
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": FULLNAME,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
        ]
    assert env_of(objects)["QUANTEVAL_NAMESPACES"] == "team-a,team-b"


def test_no_rbac_and_an_existing_service_account() -> None:
    objects = render("rbac.create=false", "serviceAccount.create=false", "serviceAccount.name=ops")
    assert sorted(o["kind"] for o in objects) == ["Deployment"]
    assert only(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


# -- values the chart refuses ----------------------------------------------------------------------

BAD_VALUES: list[tuple[str, list[str], list[str]]] = [
    ("unknown-key", ["--set", "replicas=2"], ["additional properties 'replicas' not allowed"]),
    ("unknown-nested-key", ["--set", "image.name=x"], ["/image", "'name' not allowed"]),
    ("unknown-worker-key", ["--set", "worker.gpus=2"], ["/worker", "'gpus' not allowed"]),
    ("two-replicas", ["--set", "replicaCount=2"], ["/replicaCount", "must be 1"]),
    ("zero-replicas", ["--set", "replicaCount=0"], ["/replicaCount", "must be 1"]),
    ("negative-replicas", ["--set", "replicaCount=-1"], ["/replicaCount", "must be 1"]),
    ("replicas-not-a-number", ["--set-string", "replicaCount=one"], ["/replicaCount"]),
    ("uppercase-image", ["--set", "image.repository=GHCR.io/Q/Op"], ["/image/repository"]),
    ("image-with-space", ["--set", "image.repository=ghcr.io/q op"], ["/image/repository"]),
    ("image-with-tag", ["--set", "image.repository=ghcr.io/q/op:1"], ["/image/repository"]),
    ("bad-tag", ["--set", "image.tag=v1 beta"], ["/image/tag"]),
    ("bad-pull-policy", ["--set", "image.pullPolicy=Sometimes"], ["/image/pullPolicy"]),
    ("bad-scope", ["--set", "rbac.scope=namespace"], ["/rbac/scope", "'cluster', 'namespaces'"]),
    ("namespaces-without-any", ["--set", "rbac.scope=namespaces"], ["/watchNamespaces"]),
    (
        "namespace-not-dns-1123",
        ["--set", "rbac.scope=namespaces", "--set", "watchNamespaces={Team_A}"],
        ["/watchNamespaces/0", "Team_A"],
    ),
    (
        "watch-namespaces-in-cluster-scope",
        ["--set", "watchNamespaces={team-a}"],
        ["watchNamespaces", "rbac.scope=namespaces"],
    ),
    ("zero-gpu-memory", ["--set", "worker.gpuMemoryGiB=0"], ["/worker/gpuMemoryGiB"]),
    ("negative-gpu-memory", ["--set", "worker.gpuMemoryGiB=-8"], ["/worker/gpuMemoryGiB"]),
    ("gpu-memory-not-a-number", ["--set", "worker.gpuMemoryGiB=lots"], ["/worker/gpuMemoryGiB"]),
    ("gpu-memory-string-zero", ["--set", "worker.gpuMemoryGiB=0.0"], ["/worker/gpuMemoryGiB"]),
    ("command-not-a-list", ["--set", "worker.command=quanteval-worker"], ["/worker/command"]),
    ("command-not-strings", ["--set", "worker.command[0]=1"], ["/worker/command/0"]),
    ("bad-worker-image", ["--set", "worker.image=Worker Image"], ["/worker/image"]),
    ("bad-resource", ["--set", "resources.requests.gpu=1"], ["/resources/requests", "'gpu'"]),
    ("bad-quantity", ["--set", "resources.limits.memory=lots"], ["/resources/limits/memory"]),
    ("metrics-on-liveness-port", ["--set", "metrics.port=8080"], ["metrics.port", "8080"]),
    (
        "metrics-on-a-moved-liveness-port",
        ["--set", "liveness.port=9000", "--set", "metrics.port=9000"],
        ["metrics.port: 9000 is liveness.port"],
    ),
    ("liveness-port-out-of-range", ["--set", "liveness.port=70000"], ["/liveness/port"]),
    (
        "bad-scrape-interval",
        ["--set", "metrics.podMonitor.interval=often"],
        ["/metrics/podMonitor/interval"],
    ),
    (
        "no-service-account",
        ["--set", "serviceAccount.create=false"],
        ["serviceAccount.name", "required"],
    ),
]


@pytest.mark.parametrize(
    ("sets", "expected"), [b[1:] for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES]
)
def test_bad_values_are_rejected(sets: list[str], expected: list[str]) -> None:
    message = rejection(*sets)
    for part in expected:
        assert part in message, f"{part!r} not in helm's message:\n{message}"


@pytest.mark.parametrize(
    "sets",
    [
        ["image.repository=localhost:5000/quanteval-operator"],
        ["image.repository=registry.example.com/team/sub__path/op.v2", "image.tag=1.2.3-rc_1"],
        ["worker.image=localhost:5000/worker"],
        ["worker.gpuMemoryGiB=0.5", "worker.s3.endpoint=https://s3.example.com"],
        ["rbac.scope=namespaces", "watchNamespaces={a}", "metrics.enabled=false"],
        ["resources.requests.cpu=0.25", "resources.limits.memory=1Gi"],
    ],
    ids=["registry-port", "nested-path-and-tag", "worker-no-tag", "small-gpu", "ns", "quantities"],
)
def test_good_values_are_accepted(sets: list[str]) -> None:
    assert only(render(*sets), "Deployment")


def _object_schemas(node: Any, where: str = "#") -> list[tuple[str, JSON]]:
    found: list[tuple[str, JSON]] = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append((where, node))
        for key, value in node.items():
            found += _object_schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _object_schemas(value, f"{where}/{i}")
    return found


def test_values_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    objects = _object_schemas(schema)
    assert len(objects) > 10
    for where, node in objects:
        closed = node.get("additionalProperties")
        # Closed objects; free-form maps (annotations, nodeSelector) only of strings; maps keyed
        # by a named set (worker.images, worker.commands: by engine).
        keyed = "enum" in node.get("propertyNames", {})
        assert closed is False or closed == {"type": "string"} or keyed, where
    replicas = schema["properties"]["replicaCount"]
    assert replicas["const"] == 1
    assert "standalone" in replicas["description"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"]), "values.yaml and the schema disagree"


# -- NOTES ---------------------------------------------------------------------------------------


def notes(tmp_path: Path, *sets: str) -> str:
    """templates/NOTES.txt rendered (helm template leaves it out: render it as a ConfigMap)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    text = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "notes-probe.yaml").write_text(
        '{{- define "notes-probe" }}' + text + "{{ end -}}\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ include "notes-probe" . | toJson }}\n'
    )
    args = [a for s in sets for a in ("--set", s)]
    result = helm(
        "template",
        RELEASE,
        str(chart),
        "--namespace",
        NAMESPACE,
        "--show-only",
        "templates/notes-probe.yaml",
        *args,
    )
    return str(yaml.safe_load(result.stdout)["data"]["notes"])


def test_notes_tell_the_next_commands(tmp_path: Path) -> None:
    text = notes(tmp_path / "cluster")
    assert "Mode: cluster" in text
    assert "kubectl -n default create secret generic quanteval-s3" in text
    assert "kubectl -n default apply -f manifests/examples/quickstart.yaml" in text
    assert "kubectl -n default get quantevals" in text
    assert f"rollout status deployment/{FULLNAME}" in text

    text = notes(
        tmp_path / "namespaces",
        "rbac.scope=namespaces",
        "watchNamespaces={team-a,team-b}",
        "worker.s3.secretName=team-s3",
    )
    assert "Mode: namespaces" in text
    assert "team-a, team-b" in text
    assert "kubectl -n team-a apply -f manifests/examples/quickstart.yaml" in text
    assert "kubectl -n team-a get quantevals" in text
    assert "team-s3" in text


# -- manifests/install.yaml ------------------------------------------------------------------------


def test_install_yaml_is_current(tmp_path: Path) -> None:
    fresh = tmp_path / "install.yaml"
    subprocess.run(
        ["bash", str(RENDER_INSTALL), str(fresh)],
        env=os.environ | {"HELM": str(ensure_helm())},
        check=True,
        capture_output=True,
        text=True,
    )
    assert INSTALL.is_file(), "manifests/install.yaml is missing: run scripts/render-install.sh"
    assert INSTALL.read_text() == fresh.read_text(), (
        "manifests/install.yaml is stale (the chart or the CRD changed): run "
        "scripts/render-install.sh and commit the result"
    )


def test_install_yaml_contents() -> None:
    objects = [d for d in yaml.safe_load_all(INSTALL.read_text()) if d]
    kinds = [o["kind"] for o in objects]
    assert kinds[:2] == ["Namespace", "CustomResourceDefinition"]
    assert objects[0]["metadata"]["name"] == NAMESPACE
    assert objects[1] == yaml.safe_load(CRD.read_text())
    assert sorted(kinds[2:]) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "ServiceAccount",
    ]
    for obj in objects:
        if obj["kind"] in ("ServiceAccount", "Deployment"):
            assert obj["metadata"]["namespace"] == NAMESPACE
    (deployment,) = (o for o in objects if o["kind"] == "Deployment")
    assert deployment["metadata"]["name"] == "quanteval-operator"  # release "quanteval"
