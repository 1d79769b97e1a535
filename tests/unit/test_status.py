"""Status aggregation from Job and pod bodies as the API returns them: runs, conditions, summary."""

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from quanteval.api.result import IntensityFigures, RunMetrics
from quanteval.api.spec import MAX_RUNS, parse_manifest
from quanteval.api.states import RunState
from quanteval.api.status import EvaluationStatus
from quanteval.api.termination import run_message
from quanteval.engines import RUNS, Engine
from quanteval.matrix import Run, expand
from quanteval.precisions import PRECISION_ORDER, Precision
from quanteval_operator.observe import observe_job, observe_pod
from quanteval_operator.status import (
    STATUS_METRICS,
    JobObservation,
    PodObservation,
    ReportObservation,
    aggregate,
    finished_status,
    invalid_status,
    podless_jobs,
    refused_runs,
    run_status,
    set_condition,
    status_metrics,
    summarize,
)
from tests.builders import T0, T1, T2, job_body, pod_body, terminated

from .conftest import Manifest


@pytest.fixture
def quickstart_dict(quickstart_dict: Manifest) -> Manifest:
    """The quickstart at its four transformers precisions: the scenarios here count four runs."""
    quickstart_dict["spec"]["precisions"] = ["fp32", "bf16", "int8", "nf4"]
    return quickstart_dict


GIB = 2**30
T3 = "2025-03-01T10:15:00Z"
T4 = "2025-03-01T10:20:00Z"


def _job(body: dict[str, Any]) -> JobObservation:
    return observe_job(
        body["metadata"]["name"],
        body["metadata"].get("annotations", {}),
        body["spec"],
        body["status"],
    )


def _pod(body: dict[str, Any]) -> PodObservation:
    return observe_pod(body["metadata"]["name"], body["metadata"], body["status"])


COMPLETE = [
    {"type": "SuccessCriteriaMet", "status": "True"},
    {"type": "Complete", "status": "True"},
]


def _metrics(
    f1: float = 0.5,
    peak: int = 10 * GIB,
    seconds: float = 20.0,
    weights: int = 8 * GIB,
) -> RunMetrics:
    return RunMetrics(
        f1_macro=f1,
        accuracy=0.612345,
        intensity=0.734567,
        distinct1=0.41,
        distinct2=0.83,
        weights_bytes=weights,
        peak_memory_bytes=peak,
        load_peak_memory_bytes=peak - GIB,
        generation_peak_memory_bytes=peak,
        load_seconds=12.5,
        generation_seconds=seconds,
        tokens_per_second=123.456789,
        latency_p50_ms=45.6789,
        latency_p95_ms=98.7654,
        generated_tokens=4480,
        samples=70,
        ttft_p50_ms=210.456,
        tpot_p50_ms=18.2345,
        joules_per_token=0.123456,
        gpu_seconds=seconds,
        dollars=seconds / 3600 * 2.5,  # $2.5 a GPU-hour: the dollar ratio is the time ratio
        dollars_per_1k_generations=seconds / 3600 * 2.5 / 70 * 1000,
    )


def _succeeded_pod(run: Run, metrics: RunMetrics, created: str = T1) -> PodObservation:
    message = run_message(run.id, RunState.SUCCEEDED, metrics).to_text()
    return _pod(pod_body(f"{run.id}-pod", created, "Succeeded", state=terminated(0, message)))


def _complete_job(run: Run) -> JobObservation:
    return _job(job_body(f"job-{run.id}", conditions=COMPLETE, succeeded=1))


def _runs(document: Manifest, models: int = 1) -> list[Run]:
    if models > 1:
        document["spec"]["models"] = [
            {"name": f"model-{i}", "source": f"org/model-{i}"} for i in range(models)
        ]
    return expand(parse_manifest(document).spec)


def _by_id(runs: list[Run]) -> dict[str, Run]:
    return {r.id: r for r in runs}


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    matches = [c for c in status["conditions"] if c["type"] == type_]
    assert len(matches) == 1, status["conditions"]
    condition: dict[str, Any] = matches[0]
    return condition


# observe_job / observe_pod


def test_observe_complete_job() -> None:
    job = _job(job_body("j", conditions=COMPLETE, succeeded=1))

    assert job == JobObservation(name="j", succeeded=1, complete=True)


def test_observe_failed_job() -> None:
    body = job_body(
        "j",
        failed=2,
        conditions=[
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            },
        ],
    )

    job = _job(body)

    assert job.failed_condition is True
    assert job.complete is False
    assert job.failed == 2
    assert job.condition_reason == "BackoffLimitExceeded"
    assert job.condition_message == "Job has reached the specified backoff limit"


def test_observe_job_ignores_false_conditions_and_missing_counts() -> None:
    body = job_body("j", suspend=True)
    body["status"] = {"conditions": [{"type": "Complete", "status": "False"}]}

    job = _job(body)

    assert job == JobObservation(name="j", suspended=True)


def test_observe_new_job_without_status() -> None:
    assert observe_job("j", {}, {}, {}) == JobObservation(name="j")


def test_observe_terminated_pod() -> None:
    pod = _pod(pod_body("p", T1, "Failed", state=terminated(4, '{"a":1}', reason="Error")))

    assert pod == PodObservation(
        name="p",
        created=T1,
        phase="Failed",
        exit_code=4,
        terminated_reason="Error",
        termination_message='{"a":1}',
    )


def test_observe_waiting_pod() -> None:
    waiting = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
    pod = _pod(pod_body("p", T1, "Pending", state=waiting))

    assert pod.waiting_reason == "ImagePullBackOff"
    assert pod.waiting_message == "Back-off pulling image"
    assert pod.exit_code is None
    assert pod.unschedulable_message == ""


def test_observe_unschedulable_pod() -> None:
    scheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        "lastProbeTime": None,
        "lastTransitionTime": T1,
    }
    pod = _pod(pod_body("p", T1, "Pending", conditions=[scheduled]))

    assert pod.unschedulable_message == "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    assert pod.waiting_reason == ""


def test_observe_scheduled_pod_has_no_unschedulable_message() -> None:
    scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": T1}
    running = {"running": {"startedAt": T1}}
    pod = _pod(pod_body("p", T1, "Running", state=running, conditions=[scheduled]))

    assert pod == PodObservation(name="p", created=T1, phase="Running")


# run_status


def test_no_job_is_pending(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]

    assert run_status(run, None, [], suspended=False) == {
        "id": "smollm2-135m-fp32",
        "state": "Pending",
        "attempts": 0,
    }


def test_a_gguf_file_at_native_says_it_computes_on_the_cpu(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["models"] = [{"name": "g", "source": "/models/g-q4_1.gguf"}]
    quickstart_dict["spec"]["precisions"] = ["bf16", "native"]
    bf16, native = _runs(quickstart_dict)

    assert run_status(native, None, [], suspended=False) == {
        "id": "g-native", "device": "CPU: llama.cpp", "state": "Pending", "attempts": 0,
    }  # fmt: skip
    assert "device" not in run_status(bf16, None, [], suspended=False)  # a GPU run, as before
    assert EvaluationStatus.checked({"runs": [run_status(native, None, [], suspended=False)]})


def test_no_job_while_suspended(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]

    entry = run_status(run, None, [], suspended=True)

    assert entry["state"] == "Pending"
    assert entry["attempts"] == 0
    assert entry["reason"].startswith("Suspended")


def test_complete_job_succeeds_with_rounded_status_metrics(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]
    pod = _succeeded_pod(run, _metrics(f1=0.512345, peak=10 * GIB + 7, seconds=20.0567))

    entry = run_status(run, _complete_job(run), [pod], suspended=False)

    assert entry["state"] == "Succeeded"
    assert entry["attempts"] == 1
    assert "reason" not in entry
    assert entry["metrics"] == {
        "f1Macro": 0.5123,
        "accuracy": 0.6123,
        "intensity": 0.73,
        "peakMemoryBytes": 10 * GIB + 7,
        "weightsBytes": 8 * GIB,
        "generationSeconds": 20.06,
        "tokensPerSecond": 123.46,
        "ttftP50Ms": 210.5,
        "tpotP50Ms": 18.23,
        "joulesPerToken": 0.123,
        "dollars": 0.0139,  # 20.0567 s at $2.5 an hour
        "dollarsPer1kGenerations": 0.199,
    }
    assert isinstance(entry["metrics"]["peakMemoryBytes"], int)


def test_the_intensity_tasks_figures_reach_the_status_metrics(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]
    figures = IntensityFigures(
        texts=45, parse_failures=7, parse_failure_rate=7 / 45, spearman_rho=0.612345,
        spearman_rho_ci95=(0.4, 0.8), mae_vs_gold=None, mae_vs_gold_ci95=None, seconds=9.0,
        ratings_per_second=5.0012, latency_p50_ms=190.0, latency_p95_ms=240.0,
        rule="first number", dollars_per_1k_ratings=0.0045213,
    )  # fmt: skip
    message = run_message(run.id, RunState.SUCCEEDED, _metrics(), intensity=figures).to_text()
    pod = _pod(pod_body("p", T1, "Succeeded", state=terminated(0, message)))

    entry = run_status(run, _complete_job(run), [pod], suspended=False)

    # Every figure a transformers run has (vLLM's KV budget: vllm runs only).
    # kvCacheBudgetBytes: vLLM only; resumedSamples: a resumed run only
    assert set(entry["metrics"]) == set(STATUS_METRICS) - {"kvCacheBudgetBytes", "resumedSamples"}
    assert entry["metrics"]["ratingParseFailureRate"] == 0.1556
    assert entry["metrics"]["ratingSpearmanRho"] == 0.612
    assert entry["metrics"]["ratingsPerSecond"] == 5.0
    assert entry["metrics"]["dollarsPer1kRatings"] == 0.004521


def test_a_run_resumed_after_an_eviction_counts_the_attempt_its_job_does_not(
    quickstart_dict: Manifest,
) -> None:
    """The Job ignores an evicted pod (DisruptionTarget): succeeded 1, failed 0. The worker
    counted two attempts, and the status says so."""
    run = _runs(quickstart_dict)[0]
    metrics = _metrics().model_copy(update={"resumed_samples": 4, "attempt_count": 2})
    message = run_message(run.id, RunState.SUCCEEDED, metrics).to_text()
    pod = _pod(pod_body("p", T1, "Succeeded", state=terminated(0, message)))

    entry = run_status(run, _complete_job(run), [pod], suspended=False)

    assert entry["attempts"] == 2 and entry["metrics"]["resumedSamples"] == 4
    assert "attemptCount" not in entry["metrics"]  # said once, as attempts


def test_complete_job_without_a_message_has_no_metrics(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]
    pod = _pod(pod_body("p", T1, "Succeeded", state=terminated(0)))

    entry = run_status(run, _complete_job(run), [pod], suspended=False)

    assert entry["state"] == "Succeeded"
    assert "metrics" not in entry


def test_complete_job_takes_metrics_from_the_newest_succeeded_pod(
    quickstart_dict: Manifest,
) -> None:
    run = _runs(quickstart_dict)[0]
    old = _succeeded_pod(run, _metrics(f1=0.1), created=T1)
    new = _succeeded_pod(run, _metrics(f1=0.2), created=T2)
    failed = _pod(pod_body("f", T3, "Failed", state=terminated(137, reason="OOMKilled")))

    entry = run_status(run, _complete_job(run), [new, failed, old], suspended=False)

    assert entry["metrics"]["f1Macro"] == 0.2


def test_failed_job_with_the_workers_json_message(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]
    message = run_message(
        run.id, RunState.FAILED, reason="CannotLoad", message="package llm_x is not installed"
    ).to_text()
    pod = _pod(pod_body("p", T1, "Failed", state=terminated(4, message, reason="Error")))
    job = _job(
        job_body(
            "j",
            failed=1,
            conditions=[
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "PodFailurePolicy",
                    "message": "Container worker for pod default/p failed with exit code 4 "
                    "matching FailJob rule at index 0",
                }
            ],
        )
    )

    entry = run_status(run, job, [pod], suspended=False)

    assert entry["state"] == "Failed"
    assert entry["attempts"] == 1
    assert entry["reason"] == "CannotLoad: package llm_x is not installed"


def test_failed_job_with_logs_as_the_message(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]
    logs = (
        "Traceback (most recent call last):\n"
        '  File "/app/worker.py", line 10, in <module>\n'
        "RuntimeError: CUDA error: an illegal memory access was encountered\n"
    )
    pod = _pod(pod_body("p", T1, "Failed", state=terminated(1, logs, reason="Error")))
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
    job = _job(job_body("j", failed=2, conditions=[failed]))

    entry = run_status(run, job, [pod], suspended=False)

    assert entry["state"] == "Failed"
    assert entry["attempts"] == 2
    assert entry["reason"] == (
        "ExitCode1: RuntimeError: CUDA error: an illegal memory access was encountered"
    )


def test_failed_job_reason_is_short(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]
    message = run_message(
        run.id, RunState.FAILED, reason="CannotLoad", message="x" * 3000
    ).to_text()
    pod = _pod(pod_body("p", T1, "Failed", state=terminated(4, message, reason="Error")))
    job = _job(job_body("j", failed=1, conditions=[{"type": "Failed", "status": "True"}]))

    entry = run_status(run, job, [pod], suspended=False)

    assert entry["reason"].startswith("CannotLoad: xxx")
    assert len(entry["reason"]) <= 300


def test_failed_job_without_pods_uses_its_condition(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]
    failed = {
        "type": "Failed",
        "status": "True",
        "reason": "DeadlineExceeded",
        "message": "Job was active longer than specified deadline",
    }
    job = _job(job_body("j", failed=1, conditions=[failed]))

    entry = run_status(run, job, [], suspended=False)

    assert entry["state"] == "Failed"
    assert entry["reason"] == "DeadlineExceeded: Job was active longer than specified deadline"


def test_suspended_job_is_queued(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]
    suspended = {"type": "Suspended", "status": "True", "reason": "JobSuspended"}
    job = _job(job_body("j", suspend=True, conditions=[suspended]))

    entry = run_status(run, job, [], suspended=False)

    assert entry["state"] == "Queued"
    assert entry["attempts"] == 0
    assert entry["reason"]


def test_running_pod_is_running(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]
    job = _job(job_body("j", active=1))
    pod = _pod(pod_body("p", T1, "Running", state={"running": {"startedAt": T1}}))

    entry = run_status(run, job, [pod], suspended=False)

    assert entry["state"] == "Running"
    assert entry["attempts"] == 1
    assert "reason" not in entry


def test_pending_pod_with_a_config_error(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]
    job = _job(job_body("j", active=1))
    waiting = {
        "waiting": {
            "reason": "CreateContainerConfigError",
            "message": 'secret "quanteval-s3" not found',
        }
    }
    pod = _pod(pod_body("p", T1, "Pending", state=waiting))

    entry = run_status(run, job, [pod], suspended=False)

    assert entry["state"] == "Pending"
    assert entry["reason"] == 'CreateContainerConfigError: secret "quanteval-s3" not found'


def test_unschedulable_pod(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]
    job = _job(job_body("j", active=1))
    scheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 "
        "nodes are available: 4 No preemption victims found for incoming pod.",
    }
    pod = _pod(pod_body("p", T1, "Pending", conditions=[scheduled]))

    entry = run_status(run, job, [pod], suspended=False)

    assert entry["state"] == "Pending"
    assert entry["reason"].startswith("Unschedulable: 0/4 nodes are available: 4 Insufficient")


def test_attempts_count_active_succeeded_and_failed(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]
    job = _job(job_body("j", active=1, failed=2))
    pod = _pod(pod_body("p", T3, "Running", state={"running": {"startedAt": T3}}))

    assert run_status(run, job, [pod], suspended=False)["attempts"] == 3


def test_the_newest_pod_wins(quickstart_dict: Manifest) -> None:
    run = _runs(quickstart_dict)[0]
    job = _job(job_body("j", active=1, failed=1))
    old = _pod(pod_body("p-old", T1, "Failed", state=terminated(1, "boom", reason="Error")))
    new = _pod(pod_body("p-new", T2, "Running", state={"running": {"startedAt": T2}}))
    newer_pending = _pod(
        pod_body("p-newer", T3, "Pending", state={"waiting": {"reason": "ContainerCreating"}})
    )

    assert run_status(run, job, [new, old], suspended=False)["state"] == "Running"
    assert run_status(run, job, [old, new], suspended=False)["state"] == "Running"
    entry = run_status(run, job, [new, newer_pending, old], suspended=False)
    assert entry["state"] == "Pending"
    assert entry["reason"] == "ContainerCreating"


def test_status_metrics_keeps_only_known_numbers() -> None:
    kept = status_metrics(
        {"f1Macro": 0.123456, "samples": 70, "weightsBytes": 1.0e9, "accuracy": True, "x": 1}
    )

    assert kept == {"f1Macro": 0.1235, "weightsBytes": 1000000000}
    assert isinstance(kept["weightsBytes"], int)


# set_condition


def test_set_condition_keeps_the_transition_time_while_status_holds() -> None:
    first = set_condition([], "Progressing", "True", "RunsActive", "0 of 4", 1, T0)
    again = set_condition(first, "Progressing", "True", "RunsActive", "2 of 4", 2, T1)
    changed = set_condition(again, "Progressing", "False", "AllRunsFinished", "", 2, T2)

    assert again == [
        {
            "type": "Progressing",
            "status": "True",
            "reason": "RunsActive",
            "message": "2 of 4",
            "lastTransitionTime": T0,
            "observedGeneration": 2,
        }
    ]
    assert changed[0]["lastTransitionTime"] == T2
    assert changed[0]["status"] == "False"
    assert len(changed) == 1


# aggregate


REPORT_URI = "s3://bucket/quanteval/ns/eval-uid/report.html"
WRITTEN_REPORT = ReportObservation(
    JobObservation("eval-report", succeeded=1, complete=True), [], REPORT_URI
)


def _aggregate(
    runs: list[Run],
    jobs: dict[str, JobObservation],
    pods: dict[str, list[PodObservation]],
    previous: dict[str, Any] | None = None,
    *,
    now: str = T1,
    generation: int = 1,
    suspended: bool = False,
    unsized: list[str] | None = None,
    report: ReportObservation = WRITTEN_REPORT,
    refused: dict[str, str] | None = None,
    devices: dict[str, str] | None = None,
) -> dict[str, Any]:
    return aggregate(
        runs,
        jobs,
        pods,
        previous or {},
        generation,
        suspended,
        now,
        runs[0].baseline,
        report,
        unsized,
        refused,
        devices=devices,
    )


def _succeed(run: Run, metrics: RunMetrics | None = None) -> tuple[JobObservation, PodObservation]:
    return _complete_job(run), _succeeded_pod(run, metrics or _metrics())


def _fail(run: Run, reason: str = "CannotLoad") -> tuple[JobObservation, PodObservation]:
    message = run_message(run.id, RunState.FAILED, reason=reason, message="cannot load").to_text()
    pod = _pod(pod_body(f"{run.id}-p", T1, "Failed", state=terminated(4, message, "Error")))
    failed = {"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}
    return _job(job_body(f"job-{run.id}", failed=1, conditions=[failed])), pod


def _running(run: Run) -> tuple[JobObservation, PodObservation]:
    pod = _pod(pod_body(f"{run.id}-p", T1, "Running", state={"running": {"startedAt": T1}}))
    return _job(job_body(f"job-{run.id}", active=1)), pod


def _observations(
    pairs: dict[str, tuple[JobObservation, PodObservation]],
) -> tuple[dict[str, JobObservation], dict[str, list[PodObservation]]]:
    return {k: v[0] for k, v in pairs.items()}, {k: [v[1]] for k, v in pairs.items()}


def test_aggregate_before_any_job(quickstart_dict: Manifest) -> None:
    runs = _runs(quickstart_dict)

    status = _aggregate(runs, {}, {}, now=T0, generation=1)

    assert status["progress"] == "0/4"
    assert status["observedGeneration"] == 1
    assert [e["state"] for e in status["runs"]] == ["Pending"] * 4
    assert "startTime" not in status
    assert "completionTime" not in status
    assert _condition(status, "Valid")["status"] == "True"
    assert _condition(status, "Progressing")["status"] == "True"
    assert _condition(status, "Succeeded")["status"] == "Unknown"
    assert {c["type"] for c in status["conditions"]} == {"Valid", "Progressing", "Succeeded"}
    assert status["summary"] == {"baseline": "fp32", "comparisons": []}


def test_aggregate_while_suspended(quickstart_dict: Manifest) -> None:
    runs = _runs(quickstart_dict)

    status = _aggregate(runs, {}, {}, suspended=True)

    assert _condition(status, "Progressing")["reason"] == "Suspended"
    assert all(e["reason"].startswith("Suspended") for e in status["runs"])


def test_aggregate_progress_and_conditions_over_time(quickstart_dict: Manifest) -> None:
    runs = _runs(quickstart_dict)
    ids = [r.id for r in runs]
    by_id = _by_id(runs)

    # T1: one succeeded, one running, two without Jobs.
    jobs, pods = _observations({ids[0]: _succeed(by_id[ids[0]]), ids[1]: _running(by_id[ids[1]])})
    first = _aggregate(runs, jobs, pods, now=T1, generation=1)

    assert first["progress"] == "1/4"
    assert first["startTime"] == T1
    assert "completionTime" not in first
    assert _condition(first, "Progressing")["status"] == "True"
    assert _condition(first, "Progressing")["reason"] == "RunsActive"
    assert _condition(first, "Succeeded")["status"] == "Unknown"
    for condition in first["conditions"]:
        assert condition["observedGeneration"] == 1
        assert condition["lastTransitionTime"] == T1

    # T2, generation 2 (parallelism changed): three finished.
    jobs, pods = _observations(
        {
            ids[0]: _succeed(by_id[ids[0]]),
            ids[1]: _succeed(by_id[ids[1]]),
            ids[2]: _succeed(by_id[ids[2]]),
            ids[3]: _running(by_id[ids[3]]),
        }
    )
    second = _aggregate(runs, jobs, pods, first, now=T2, generation=2)

    assert second["progress"] == "3/4"
    assert second["observedGeneration"] == 2
    assert second["startTime"] == T1
    for condition in second["conditions"]:
        assert condition["observedGeneration"] == 2
        assert condition["lastTransitionTime"] == T1  # no status changed

    # T3: all succeeded.
    jobs, pods = _observations({i: _succeed(by_id[i]) for i in ids})
    third = _aggregate(runs, jobs, pods, second, now=T3, generation=2)

    assert third["progress"] == "4/4"
    assert third["startTime"] == T1
    assert third["completionTime"] == T3
    progressing = _condition(third, "Progressing")
    succeeded = _condition(third, "Succeeded")
    assert (progressing["status"], progressing["lastTransitionTime"]) == ("False", T3)
    assert (succeeded["status"], succeeded["reason"]) == ("True", "AllRunsSucceeded")
    assert succeeded["lastTransitionTime"] == T3
    assert _condition(third, "Valid")["lastTransitionTime"] == T1

    # T4: nothing changes; completionTime and transition times stay.
    fourth = _aggregate(runs, jobs, pods, third, now=T4, generation=2)

    assert fourth["completionTime"] == T3
    assert fourth["startTime"] == T1
    assert _condition(fourth, "Succeeded")["lastTransitionTime"] == T3
    assert _condition(fourth, "Progressing")["lastTransitionTime"] == T3


def test_aggregate_with_a_failed_run(quickstart_dict: Manifest) -> None:
    runs = _runs(quickstart_dict)
    ids = [r.id for r in runs]
    by_id = _by_id(runs)
    pairs = {i: _succeed(by_id[i]) for i in ids}
    pairs["smollm2-135m-int8"] = _fail(by_id["smollm2-135m-int8"])
    jobs, pods = _observations(pairs)

    status = _aggregate(runs, jobs, pods, now=T2)

    assert status["progress"] == "4/4"
    assert status["completionTime"] == T2
    assert _condition(status, "Progressing")["status"] == "False"
    succeeded = _condition(status, "Succeeded")
    assert succeeded["status"] == "False"
    assert succeeded["reason"] == "RunsFailed"
    assert "smollm2-135m-int8 (CannotLoad)" in succeeded["message"]
    assert "3 of 4" in succeeded["message"]
    failed = [e for e in status["runs"] if e["state"] == "Failed"]
    assert [e["id"] for e in failed] == ["smollm2-135m-int8"]
    assert failed[0]["reason"] == "CannotLoad: cannot load"


def test_gpus_estimated_condition(quickstart_dict: Manifest) -> None:
    runs = _runs(quickstart_dict)

    unsized = _aggregate(runs, {}, {}, now=T1, unsized=["smollm2-135m-fp32"])
    condition = _condition(unsized, "GPUsEstimated")
    sized = _aggregate(runs, {}, {}, unsized, now=T2, unsized=[])

    assert condition["status"] == "False"
    assert condition["reason"] == "ParametersUnknown"
    assert "runs smollm2-135m-fp32 get 1 GPU" in condition["message"]
    assert "GPUsEstimated" not in {c["type"] for c in sized["conditions"]}
    assert "GPUsEstimated" not in {
        c["type"] for c in _aggregate(runs, {}, {}, unsized=None)["conditions"]
    }


def test_summary_from_status_metrics(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["precisions"] = ["fp32", "bf16", "int8", "nf4"]
    runs = _runs(quickstart_dict)
    by_id = _by_id(runs)
    metrics = {
        "smollm2-135m-fp32": _metrics(f1=0.5, peak=10 * GIB, seconds=20.0),
        "smollm2-135m-bf16": _metrics(f1=0.52, peak=6 * GIB, seconds=10.0),
        "smollm2-135m-int8": _metrics(f1=0.51237, peak=5 * GIB, seconds=30.0),
        "smollm2-135m-nf4": _metrics(f1=0.431, peak=3 * GIB, seconds=50.0),
    }
    jobs, pods = _observations({i: _succeed(by_id[i], m) for i, m in metrics.items()})

    summary = _aggregate(runs, jobs, pods)["summary"]

    assert summary["baseline"] == "fp32"
    assert summary["bestRun"] == "smollm2-135m-bf16"
    comparisons = {c["id"]: c for c in summary["comparisons"]}
    assert set(comparisons) == {"smollm2-135m-bf16", "smollm2-135m-int8", "smollm2-135m-nf4"}
    assert comparisons["smollm2-135m-bf16"] == {
        "id": "smollm2-135m-bf16",
        "memorySavingPct": 40.0,
        "f1DeltaPp": 2.0,
        "timeRatio": 0.5,
        "dollarRatio": 0.5,
    }
    assert comparisons["smollm2-135m-int8"] == {
        "id": "smollm2-135m-int8",
        "memorySavingPct": 50.0,
        "f1DeltaPp": 1.2,
        "timeRatio": 1.5,
        "dollarRatio": 1.5,
    }
    assert comparisons["smollm2-135m-nf4"] == {
        "id": "smollm2-135m-nf4",
        "memorySavingPct": 70.0,
        "f1DeltaPp": -6.9,
        "timeRatio": 2.5,
        "dollarRatio": 2.5,
    }


def test_a_native_checkpoint_is_compared_with_its_baseline_models_run(
    quickstart_dict: Manifest,
) -> None:
    quickstart_dict["spec"]["precisions"] = ["fp32"]
    quickstart_dict["spec"]["models"].append(
        {
            "name": "smollm2-gptq",
            "source": "org/smollm2-gptq",
            "precisions": ["native"],
            "baselineModel": "smollm2-135m",
        }
    )
    runs = _runs(quickstart_dict)
    by_id = _by_id(runs)
    metrics = {
        "smollm2-135m-fp32": _metrics(f1=0.5, peak=10 * GIB, seconds=20.0),
        "smollm2-gptq-native": _metrics(f1=0.45, peak=2 * GIB, seconds=30.0),
    }
    jobs, pods = _observations({i: _succeed(by_id[i], m) for i, m in metrics.items()})

    summary = _aggregate(runs, jobs, pods)["summary"]

    assert summary["comparisons"] == [
        {
            "id": "smollm2-gptq-native",
            "against": "smollm2-135m-fp32",
            "memorySavingPct": 80.0,
            "f1DeltaPp": -5.0,
            "timeRatio": 1.5,
            "dollarRatio": 1.5,
        }
    ]


def test_the_reports_verdicts_replace_the_unpaired_figures_once_it_is_written(
    quickstart_dict: Manifest,
) -> None:
    quickstart_dict["spec"]["precisions"] = ["fp32", "bf16", "nf4"]
    runs = _runs(quickstart_dict)
    by_id = _by_id(runs)
    metrics = {
        "smollm2-135m-fp32": _metrics(f1=0.5, peak=10 * GIB, seconds=20.0),
        "smollm2-135m-bf16": _metrics(f1=0.52, peak=6 * GIB, seconds=10.0),
        "smollm2-135m-nf4": _metrics(f1=0.431, peak=3 * GIB, seconds=50.0),
    }
    jobs, pods = _observations({i: _succeed(by_id[i], m) for i, m in metrics.items()})
    message = json.dumps({
        "kind": "report", "state": "Succeeded", "truncated": True,
        "comparisons": [{"id": "smollm2-135m-nf4", "f1DeltaPp": -6.8,
                         "f1DeltaCi95": [-12.1, -1.5], "verdict": "significantly worse"}],
    })  # fmt: skip
    report_pod = PodObservation("eval-report-x", T1, "Succeeded", termination_message=message)
    written = ReportObservation(WRITTEN_REPORT.job, [report_pod], REPORT_URI)
    writing = ReportObservation(JobObservation("eval-report", active=1), [], REPORT_URI)

    before = {
        c["id"]: c for c in _aggregate(runs, jobs, pods, report=writing)["summary"]["comparisons"]
    }
    after = _aggregate(runs, jobs, pods, report=written)["summary"]
    comparisons = {c["id"]: c for c in after["comparisons"]}

    assert (
        before["smollm2-135m-nf4"]["f1DeltaPp"] == -6.9
        and "verdict" not in before["smollm2-135m-nf4"]
    )
    assert comparisons["smollm2-135m-nf4"]["f1DeltaPp"] == -6.8  # paired, from the report
    assert comparisons["smollm2-135m-nf4"]["f1DeltaCi95"] == [-12.1, -1.5]
    assert comparisons["smollm2-135m-nf4"]["verdict"] == "significantly worse"
    assert "verdict" not in comparisons["smollm2-135m-bf16"]  # not in the message: as before
    assert after["verdictsTruncated"] is True
    # A message that is not the report's (a crash's log tail) changes nothing.
    crashed = PodObservation("eval-report-x", T1, "Succeeded", termination_message="Traceback")
    plain = _aggregate(
        runs, jobs, pods, report=ReportObservation(WRITTEN_REPORT.job, [crashed], REPORT_URI)
    )
    assert plain["summary"]["comparisons"] == list(before.values())


def test_summary_skips_failed_runs_and_models_without_a_baseline(
    quickstart_dict: Manifest,
) -> None:
    quickstart_dict["spec"]["precisions"] = ["fp32", "nf4"]
    runs = _runs(quickstart_dict, models=2)
    by_id = _by_id(runs)
    pairs = {
        "model-0-fp32": _succeed(by_id["model-0-fp32"], _metrics(f1=0.6, peak=8 * GIB)),
        "model-0-nf4": _fail(by_id["model-0-nf4"]),
        "model-1-fp32": _fail(by_id["model-1-fp32"]),
        "model-1-nf4": _succeed(by_id["model-1-nf4"], _metrics(f1=0.7, peak=2 * GIB)),
    }
    jobs, pods = _observations(pairs)

    summary = _aggregate(runs, jobs, pods)["summary"]

    assert summary["bestRun"] == "model-1-nf4"
    assert summary["comparisons"] == [{"id": "model-1-nf4"}]


def test_the_summary_compares_each_engine_with_its_own_baseline(
    quickstart_dict: Manifest,
) -> None:
    quickstart_dict["spec"]["precisions"] = ["bf16"]
    quickstart_dict["spec"]["engines"] = ["auto", "vllm"]
    quickstart_dict["spec"]["models"].append(
        {
            "name": "gguf", "source": "/m.gguf", "precisions": ["native"],
            "engines": ["llama.cpp", "vllm"], "baselineModel": "smollm2-135m",
        }
    )  # fmt: skip
    runs = _runs(quickstart_dict)
    by_id = _by_id(runs)
    pairs = {
        "smollm2-135m-bf16": _succeed(by_id["smollm2-135m-bf16"], _metrics(peak=4 * GIB)),
        "smollm2-135m-bf16-vllm": _succeed(
            by_id["smollm2-135m-bf16-vllm"], _metrics(peak=6 * GIB, seconds=10.0)
        ),
        "gguf-native-llamacpp": _succeed(by_id["gguf-native-llamacpp"], _metrics(peak=GIB)),
        "gguf-native-vllm": _succeed(by_id["gguf-native-vllm"], _metrics(peak=3 * GIB)),
    }
    jobs, pods = _observations(pairs)

    comparisons = _aggregate(runs, jobs, pods)["summary"]["comparisons"]

    by_run = {c["id"]: c for c in comparisons}
    assert set(by_run) == {"gguf-native-llamacpp", "gguf-native-vllm", "smollm2-135m-bf16-vllm"}
    # The engine effect: vllm's baseline run against the default engine's, named as such.
    assert by_run["smollm2-135m-bf16-vllm"] == {
        "id": "smollm2-135m-bf16-vllm", "against": "smollm2-135m-bf16", "engineEffect": True,
        "f1DeltaPp": 0.0, "timeRatio": 0.5,
    }  # fmt: skip
    # vLLM against vLLM's baseline: memory like for like.
    assert by_run["gguf-native-vllm"]["against"] == "smollm2-135m-bf16-vllm"
    assert by_run["gguf-native-vllm"]["memorySavingPct"] == 50.0
    # llama.cpp runs no bf16: against the default engine's run, and no memory % across engines.
    assert by_run["gguf-native-llamacpp"]["against"] == "smollm2-135m-bf16"
    assert "memorySavingPct" not in by_run["gguf-native-llamacpp"]


def test_the_summary_leaves_out_memory_time_and_dollars_across_devices(
    quickstart_dict: Manifest,
) -> None:
    quickstart_dict["spec"]["models"] = [{"name": "g", "source": "/models/g-q4_1.gguf"}]
    quickstart_dict["spec"]["precisions"] = ["bf16", "native"]
    runs = _runs(quickstart_dict)
    by_id = _by_id(runs)
    metrics = {"g-bf16": _metrics(f1=0.6, peak=4 * GIB), "g-native": _metrics(f1=0.55, peak=GIB)}
    jobs, pods = _observations({i: _succeed(by_id[i], m) for i, m in metrics.items()})

    def native(devices: dict[str, str]) -> Any:
        [row] = _aggregate(runs, jobs, pods, devices=devices)["summary"]["comparisons"]
        return row

    # On one device (resources.gpus: 0): across engines, only the memory % is left out.
    assert native({"g-bf16": "cpu", "g-native": "cpu"}) == {
        "id": "g-native", "f1DeltaPp": -5.0, "timeRatio": 1.0, "dollarRatio": 1.0,
    }  # fmt: skip
    # llama.cpp on the CPU against transformers on a GPU: every cost is another machine's.
    assert native({"g-bf16": "cuda", "g-native": "cpu"}) == {"id": "g-native", "f1DeltaPp": -5.0}


def test_summarize_without_succeeded_runs_has_no_best_run(quickstart_dict: Manifest) -> None:
    runs = _runs(quickstart_dict)[:2]
    entries = [
        {"id": runs[0].id, "state": "Failed", "attempts": 1},
        {"id": runs[1].id, "state": "Pending", "attempts": 0},
    ]

    assert summarize(runs, entries, Precision.FP32) == {"baseline": "fp32", "comparisons": []}


def test_invalid_status(quickstart_dict: Manifest) -> None:
    runs = _runs(quickstart_dict)
    previous = _aggregate(runs, {}, {}, now=T1, generation=1)
    message = "spec: invalid QuantEval\nspec.models[0].name: String should match pattern"

    status = invalid_status(previous, 2, T2, message)

    assert status["observedGeneration"] == 2
    assert status["progress"] == "0/0"
    valid = _condition(status, "Valid")
    assert valid["status"] == "False"
    assert valid["reason"] == "InvalidSpec"
    assert valid["message"] == " ".join(message.split())
    assert valid["lastTransitionTime"] == T2
    assert valid["observedGeneration"] == 2
    assert _condition(status, "Succeeded")["status"] == "False"
    assert _condition(status, "Progressing")["status"] == "False"


def test_invalid_status_from_nothing() -> None:
    status = invalid_status({}, 1, T0, "spec.output.s3.bucket: not set")

    assert _condition(status, "Valid")["message"] == "spec.output.s3.bucket: not set"
    assert len(status["conditions"]) == 3


# Size


def test_status_of_the_largest_matrix_a_spec_allows_stays_under_512_kib(
    quickstart_dict: Manifest,
) -> None:
    # The largest matrix a spec allows (MAX_RUNS): models x every precision of the two engines
    # that run the most (auto and transformers), with the longest names whose run ids are labels.
    precisions = [p.value for p in PRECISION_ORDER if p in RUNS[Engine.TRANSFORMERS]]
    models = MAX_RUNS // (2 * len(precisions))
    quickstart_dict["spec"]["models"] = [
        {"name": f"model-{i:02d}-" + "x" * 26, "source": f"org/model-{i}"} for i in range(models)
    ]
    quickstart_dict["spec"]["precisions"] = precisions
    quickstart_dict["spec"]["engines"] = ["auto", "transformers"]
    runs = _runs(quickstart_dict)
    assert len(runs) == MAX_RUNS
    assert max(len(r.id) for r in runs) == 63
    pairs = {
        r.id: _succeed(
            r,
            _metrics(
                f1=0.123456789 + i * 1e-3,
                peak=123_456_789_012 - i,
                seconds=12345.678901 + i,
                weights=98_765_432_109,
            ),
        )
        for i, r in enumerate(runs)
    }
    jobs, pods = _observations(pairs)

    status = _aggregate(runs, jobs, pods, unsized=[f"model-{i:02d}" for i in range(models)])
    size = len(json.dumps(status).encode())
    per_run = size / len(runs)

    assert status["progress"] == f"{len(runs)}/{len(runs)}"
    # Each run but the baselines, and each model's engine effect (transformers against auto).
    assert len(status["summary"]["comparisons"]) == len(runs) - 2 * models + models
    # etcd holds 1.5 MiB an object; half of that leaves room for conditions and managedFields.
    assert size < 512 * 1024, f"{len(runs)} runs: {size} bytes ({per_run:.0f} a run)"


@pytest.mark.parametrize("state", ["Succeeded", "Failed"])
def test_terminal_entries_count_as_finished(quickstart_dict: Manifest, state: str) -> None:
    runs = _runs(quickstart_dict)[:1]
    pair = _succeed(runs[0]) if state == "Succeeded" else _fail(runs[0])
    jobs, pods = _observations({runs[0].id: pair})

    status = _aggregate(runs, jobs, pods)

    assert status["progress"] == "1/1"
    assert status["runs"][0]["state"] == state


def test_succeeded_waits_for_the_report(quickstart_dict: Manifest) -> None:
    runs = _runs(quickstart_dict)
    done = dict(_succeed(r) for r in runs)
    jobs = {r.id: done_job for r, done_job in zip(runs, done, strict=True)}
    pods = {r.id: [pod] for r, pod in zip(runs, done.values(), strict=True)}
    writing = ReportObservation(JobObservation("eval-report", active=1), [], REPORT_URI)

    status = _aggregate(runs, jobs, pods, report=writing)

    assert _condition(status, "Succeeded")["status"] == "Unknown"
    assert _condition(status, "Succeeded")["reason"] == "Reporting"
    assert "reportUri" not in status["summary"]
    written = _aggregate(runs, jobs, pods, status, now=T2)
    assert _condition(written, "Succeeded")["status"] == "True"
    assert _condition(written, "ReportReady")["reason"] == "ReportWritten"
    assert written["summary"]["reportUri"] == REPORT_URI


def test_a_failed_report_is_a_condition_and_the_runs_stay(quickstart_dict: Manifest) -> None:
    runs = _runs(quickstart_dict)
    done = dict(_succeed(r) for r in runs)
    jobs = {r.id: done_job for r, done_job in zip(runs, done, strict=True)}
    pods = {r.id: [pod] for r, pod in zip(runs, done.values(), strict=True)}
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
    report_job = _job(job_body("eval-report", failed=2, conditions=[failed]))
    logs = "Traceback ...\nquanteval.api.errors.StorageError: cannot write report.html"
    pod = _pod(pod_body("eval-report-p", T1, "Failed", state=terminated(6, logs, "Error")))

    status = _aggregate(runs, jobs, pods, report=ReportObservation(report_job, [pod], REPORT_URI))

    ready = _condition(status, "ReportReady")
    assert (ready["status"], ready["reason"]) == ("False", "ReportFailed")
    assert "cannot write report.html" in ready["message"]
    assert _condition(status, "Succeeded")["reason"] == "ReportFailed"
    assert all(r["state"] == "Succeeded" and r["metrics"] for r in status["runs"])
    assert "reportUri" not in status["summary"]


def test_a_status_the_models_do_not_know_is_refused_before_it_is_written() -> None:
    good = {"runs": [{"id": "m-fp32", "state": "Succeeded", "metrics": {"peakMemoryBytes": 5}}]}
    assert EvaluationStatus.checked(good) == good  # an integer stays one
    for bad in (
        {"runs": [{"id": "m-fp32", "state": "Done"}]},  # not a run state
        {"summary": {"bestrun": "m-fp32"}},  # misspelled: the API server would prune it
    ):
        with pytest.raises(ValidationError):
            EvaluationStatus.checked(bad)


# What a finished run or evaluation learned stays, whatever becomes of its Jobs and pods


def test_a_finished_runs_entry_outlives_its_pods_and_its_job(quickstart_dict: Manifest) -> None:
    runs = _runs(quickstart_dict)
    ids = [r.id for r in runs]
    by_id = _by_id(runs)
    pairs = {ids[0]: _succeed(by_id[ids[0]]), ids[1]: _fail(by_id[ids[1]])}
    pairs[ids[2]] = _running(by_id[ids[2]])
    jobs, pods = _observations(pairs)
    first = _aggregate(runs, jobs, pods, now=T1)

    # The finished runs' pods are collected (pod GC, a node scaled down), then their Jobs.
    without_pods = _aggregate(runs, jobs, {ids[2]: pods[ids[2]]}, first, now=T2)
    running_only = {ids[2]: jobs[ids[2]]}
    without_jobs = _aggregate(runs, running_only, {ids[2]: pods[ids[2]]}, without_pods, now=T3)

    for later in (without_pods, without_jobs):
        assert later["runs"][:2] == first["runs"][:2]  # metrics, reason, attempts as they were
        assert later["summary"] == first["summary"] and later["progress"] == "2/4"
    assert first["runs"][0]["metrics"]["f1Macro"] == 0.5
    assert first["runs"][1]["reason"] == "CannotLoad: cannot load"


def test_a_pod_seen_after_its_job_completed_adds_its_metrics(quickstart_dict: Manifest) -> None:
    runs = _runs(quickstart_dict)
    run = runs[0]
    job, pod = _succeed(run)
    early = _aggregate(runs, {run.id: job}, {run.id: [_pod(pod_body("p", T1, "Running"))]})
    assert early["runs"][0]["state"] == "Succeeded" and "metrics" not in early["runs"][0]

    later = _aggregate(runs, {run.id: job}, {run.id: [pod]}, early, now=T2)

    assert later["runs"][0]["metrics"]["f1Macro"] == 0.5


def test_a_finished_evaluation_keeps_its_status_and_follows_the_generation(
    quickstart_dict: Manifest,
) -> None:
    runs = _runs(quickstart_dict)
    jobs, pods = _observations({r.id: _succeed(r) for r in runs})
    running = _aggregate(runs, jobs, pods, now=T1, report=ReportObservation(None, [], REPORT_URI))
    assert finished_status(running, 1) is None  # writing the report: not finished
    done = _aggregate(runs, jobs, pods, running, now=T2)

    kept = finished_status(done, 2)  # spec.parallelism changed; every Job and pod since gone

    assert kept is not None
    assert kept["runs"] == done["runs"] and kept["summary"] == done["summary"]
    assert kept["observedGeneration"] == 2
    assert {c["observedGeneration"] for c in kept["conditions"]} == {2}
    assert _condition(kept, "Succeeded") | {"observedGeneration": 1} == _condition(
        done, "Succeeded"
    )
    invalid = invalid_status(done, 3, T3, "spec.emotions changed")
    assert finished_status(invalid, 3) is None  # invalid: not a finished evaluation


def test_a_refused_job_create_is_the_runs_reason_and_the_others_go_on(
    quickstart_dict: Manifest,
) -> None:
    runs = _runs(quickstart_dict)
    jobs, pods = _observations({runs[0].id: _running(runs[0])})
    why = 'CreateFailed: jobs "x" is forbidden: exceeded quota: jobs, requested: count/jobs.batch=1'

    status = _aggregate(runs, jobs, pods, refused={runs[1].id: why})

    by_id = {e["id"]: e for e in status["runs"]}
    assert by_id[runs[0].id]["state"] == "Running"
    assert by_id[runs[1].id] == {"id": runs[1].id, "state": "Pending", "attempts": 0, "reason": why}
    assert refused_runs(status) == [runs[1].id]
    assert refused_runs(_aggregate(runs, jobs, pods)) == []  # allowed next time: nothing refused


def test_a_job_that_has_no_pod_after_a_while_is_one_to_ask_why() -> None:
    now = datetime(2025, 3, 1, 10, 1, tzinfo=UTC)
    old = JobObservation("old", uid="u1", created="2025-03-01T10:00:00Z")
    jobs = {
        "podless": old,
        "young": JobObservation("young", uid="u2", created="2025-03-01T10:00:50Z"),
        "with-pod": JobObservation("with-pod", uid="u3", created="2025-03-01T10:00:00Z"),
        "done": JobObservation("done", uid="u4", created="2025-03-01T10:00:00Z", complete=True),
        "queued": JobObservation(
            "queued", uid="u5", created="2025-03-01T10:00:00Z", suspended=True
        ),
    }
    pods = {"with-pod": [_pod(pod_body("p", T1, "Pending"))]}

    assert podless_jobs(jobs, pods, now, after_seconds=20)[0] == {"podless": old}
