"""What a cluster linter finds: kube-score (built from its Go module) on the chart, with its
NetworkPolicies on, and on the Jobs the operator renders for the paper replication. No critical
finding but the image pull policy (our images are pinned by tag or digest)."""

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from devcluster.helm import helm
from devcluster.kubescore import kube_score
from quanteval.api.spec import QuantEval, load_manifest
from quanteval.matrix import expand
from quanteval_operator.jobs import (
    effective_manifest,
    ephemeral_storage,
    render_job,
    render_report_job,
)
from quanteval_operator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
IGNORED = ("container-image-pull-policy",)
SETTINGS = Settings(s3_bucket="qe-results")


def _paper_replication(cache_claim: bool = True) -> QuantEval:
    """The example (which names a cache claim), or without its claim: the cache an emptyDir."""
    manifest = load_manifest(ROOT / "manifests" / "examples" / "paper-replication.yaml")
    meta = manifest.metadata.model_copy(update={"uid": "6f1c2a9e-3b7d", "namespace": "team"})
    manifest = manifest.model_copy(update={"metadata": meta})
    if not cache_claim:
        hugging_face = manifest.spec.hugging_face.model_copy(update={"cache_volume_claim": ""})
        spec = manifest.spec.model_copy(update={"hugging_face": hugging_face})
        manifest = manifest.model_copy(update={"spec": spec})
    return effective_manifest(manifest, SETTINGS)


def _paper_replication_jobs(cache_claim: bool) -> str:
    manifest = _paper_replication(cache_claim)
    jobs = [render_job(manifest, run, SETTINGS) for run in expand(manifest.spec)[:2]]
    return yaml.safe_dump_all([*jobs, render_report_job(manifest, SETTINGS)])


def _criticals(*documents: str) -> list[str]:
    rendered = "---\n".join(documents)
    ignored = [arg for test in IGNORED for arg in ("--ignore-test", test)]
    result = kube_score("score", "-", "--output-format", "ci", *ignored, stdin=rendered)
    assert "[OK]" in result.stdout, result.stderr  # it scored something
    return [line for line in result.stdout.splitlines() if line.startswith("[CRITICAL]")]


@pytest.mark.parametrize("claim", [False, True], ids=["cache-emptydir", "cache-claim"])
def test_kube_score_finds_nothing_critical_on_the_chart_and_the_jobs(claim: bool) -> None:
    chart = helm(
        "template", "qe", str(ROOT / "charts" / "quanteval-operator"),
        "--namespace", "quanteval-system",
        "--set", "networkPolicy.enabled=true", "--set", "networkPolicy.workerNamespaces={team}",
    ).stdout  # fmt: skip
    assert _criticals(chart, _paper_replication_jobs(claim)) == []


def test_the_worker_disk_is_sized_from_the_model_where_the_cache_is_an_emptydir() -> None:
    with_claim, without = _paper_replication(), _paper_replication(cache_claim=False)
    by_model = {run.model.name: run for run in expand(without.spec)}
    sizes = {name: ephemeral_storage(without, run, SETTINGS) for name, run in by_model.items()}
    # 2 bytes a parameter, a quarter more, 4 GiB of scratch and 2 of spool (what waits out a
    # store's outage): 6.74e9 -> 22Gi, 6.898e10 -> 167Gi
    assert sizes["llama2-7b"] == "22Gi" and sizes["llama2-70b"] == "167Gi"
    assert ephemeral_storage(with_claim, by_model["llama2-7b"], SETTINGS) == "6Gi"
    seven = by_model["llama2-7b"]
    unknown = replace(seven, model=seven.model.model_copy(update={"parameters": None}))
    assert ephemeral_storage(without, unknown, SETTINGS) == SETTINGS.worker_ephemeral_storage


def test_kube_score_finds_nothing_critical_with_a_vllm_image_and_its_jobs() -> None:
    vllm_image = "ghcr.io/quanteval/quanteval-worker-vllm:0.1.0"
    chart = helm(
        "template", "qe", str(ROOT / "charts" / "quanteval-operator"),
        "--namespace", "quanteval-system",
        "--set", "networkPolicy.enabled=true", "--set", "networkPolicy.workerNamespaces={team}",
        "--set-json", f'worker.images={{"vllm": "{vllm_image}"}}',
        "--set-json", 'worker.commands={"vllm": ["quanteval-worker"]}',
    ).stdout  # fmt: skip
    assert "QUANTEVAL_WORKER_IMAGES" in chart
    manifest = load_manifest(ROOT / "manifests" / "examples" / "engines-local.yaml")
    meta = manifest.metadata.model_copy(update={"uid": "6f1c2a9e-3b7d", "namespace": "team"})
    resources = manifest.spec.resources.model_copy(update={"memory": "8Gi"})  # kube-score asks
    spec = manifest.spec.model_copy(update={"resources": resources})
    manifest = manifest.model_copy(update={"metadata": meta, "spec": spec})
    manifest = effective_manifest(manifest, SETTINGS)
    settings = replace(SETTINGS, engine_images={"vllm": vllm_image})
    jobs = [render_job(manifest, run, settings) for run in expand(manifest.spec)]
    assert {job["spec"]["template"]["spec"]["containers"][0]["image"] for job in jobs} == {
        SETTINGS.worker_image,
        vllm_image,
    }
    assert _criticals(chart, yaml.safe_dump_all(jobs)) == []
