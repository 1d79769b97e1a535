"""The GitOps health checks in manifests/gitops/ run against the statuses the operator writes:
the Argo CD Lua in Lua 5.1 (Argo CD's gopher-lua speaks 5.1), the Flux CEL with cel-python."""

from typing import Any

import celpy
import lupa.lua51 as lua51
import pytest
import yaml
from celpy.adapter import json_to_cel

from quanteval.api.spec import parse_manifest
from quanteval.matrix import expand
from quanteval_operator.status import (
    JobObservation,
    PodObservation,
    ReportObservation,
    aggregate,
    invalid_status,
)
from tests.plugins.manifests import REPO_ROOT, Manifest


@pytest.fixture
def quickstart_dict(quickstart_dict: Manifest) -> Manifest:
    """The quickstart at its four transformers precisions: the scenarios here count four runs."""
    quickstart_dict["spec"]["precisions"] = ["fp32", "bf16", "int8", "nf4"]
    return quickstart_dict


GITOPS = REPO_ROOT / "manifests" / "gitops"
ARGOCD = GITOPS / "argocd-health.lua"
FLUX = GITOPS / "flux-health-checks.yaml"
NOW = "2025-03-01T10:00:00Z"
URI = "s3://quanteval/results/ns/quickstart-uid/report.html"
OOM = PodObservation("p", NOW, "Failed", exit_code=137, terminated_reason="OOMKilled")

JSON = dict[str, Any]


def _status(document: Manifest, case: str) -> JSON | None:
    """The status the operator writes for a quickstart evaluation in the situation `case`."""
    if case == "new":
        return None
    manifest = parse_manifest(document)
    runs = expand(manifest.spec)
    if case == "invalid":
        return invalid_status({}, 1, NOW, "spec.emotions: unknown emotion 'awe'")
    done = {r.id: JobObservation(r.id, succeeded=1, complete=True) for r in runs}
    jobs, pods, report = {}, {}, ReportObservation(None, [], URI)
    if case == "halfway":
        jobs = dict(list(done.items())[:2])
    elif case in ("reporting", "succeeded", "failed"):
        jobs = done
    if case == "failed":
        first = runs[0].id
        jobs[first] = JobObservation(first, failed=1, failed_condition=True)
        pods = {first: [OOM]}
    if case in ("succeeded", "failed"):
        report = ReportObservation(JobObservation("report", succeeded=1, complete=True), [], URI)
    suspended = case == "suspended"
    baseline = manifest.spec.baseline_precision
    return aggregate(runs, jobs, pods, {}, 1, suspended, NOW, baseline, report)


def _object(document: Manifest, case: str) -> JSON:
    body: JSON = dict(document) | {"metadata": {"name": "quickstart", "generation": 1}}
    status = _status(document, case)
    if status is not None:
        body["status"] = status
    return body


def _argocd(body: JSON) -> tuple[str, str]:
    lua = lua51.LuaRuntime()
    check = lua.eval(f"function(obj)\n{ARGOCD.read_text()}\nend")
    health = check(lua.table_from(body, recursive=True))
    return str(health["status"]), str(health["message"])


def _flux(body: JSON) -> str:
    """Flux's verdict: Failed when `failed` holds, Current when `current` does, else InProgress."""
    (check,) = yaml.safe_load(FLUX.read_text())["healthCheckExprs"]
    env = celpy.Environment()
    activation = {k: json_to_cel(v) for k, v in body.items()}
    for verdict in ("failed", "current"):
        if env.program(env.compile(check[verdict])).evaluate(activation):
            return verdict.capitalize()
    return "InProgress"


CASES = [
    ("new", "Progressing", "waiting for the operator", "n/a"),
    ("halfway", "Progressing", "2 of 4 runs finished", "InProgress"),
    ("suspended", "Suspended", "spec.suspend is true", "InProgress"),
    ("reporting", "Progressing", "writing the report", "InProgress"),
    ("succeeded", "Healthy", "4 runs succeeded", "Current"),
    ("failed", "Degraded", "OOMKilled", "Failed"),
    ("invalid", "Degraded", "spec.emotions", "Failed"),
]


@pytest.mark.parametrize(("case", "argocd", "message", "flux"), CASES, ids=[c[0] for c in CASES])
def test_health_of_each_situation(
    quickstart_dict: Manifest, case: str, argocd: str, message: str, flux: str
) -> None:
    body = _object(quickstart_dict, case)
    status, said = _argocd(body)
    assert status == argocd
    assert message in said
    if "status" in body:  # Flux waits on an object without status (a CEL error): in progress
        assert _flux(body) == flux


def test_a_status_older_than_the_spec_is_progressing(quickstart_dict: Manifest) -> None:
    body = _object(quickstart_dict, "succeeded")
    body["metadata"]["generation"] = 2  # e.g. parallelism changed, not yet seen
    assert _argocd(body)[0] == "Progressing"


def test_the_docs_show_the_files_as_they_are() -> None:
    readme = (REPO_ROOT / "docs" / "operating.md").read_text()
    lua = "".join(
        f"    {line}" if line.strip() else line for line in ARGOCD.read_text().splitlines(True)
    )
    assert lua in readme
    for line in FLUX.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert f"  {line}\n" in readme, line
