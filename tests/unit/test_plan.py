"""A reconcile pass as a plan: which Jobs are created, what status is written, which Events are
told after the write, from the QuantEval, its Jobs and pods and the status written last."""

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from quanteval.api.result import RunMetrics
from quanteval.api.spec import parse_manifest
from quanteval.api.states import EventReason, RunState
from quanteval.api.termination import run_message
from quanteval.matrix import expand, legacy_hash
from quanteval_operator.jobs import REPORT
from quanteval_operator.plan import Observations, Plan, plan_pass
from quanteval_operator.settings import Settings
from quanteval_operator.status import JobObservation, PodObservation
from tests.builders import T0

from .conftest import Manifest


@pytest.fixture
def quickstart_dict(quickstart_dict: Manifest) -> Manifest:
    """The quickstart at its four transformers precisions: the scenarios here count four runs."""
    quickstart_dict["spec"]["precisions"] = ["fp32", "bf16", "int8", "nf4"]
    return quickstart_dict


NOW = datetime(2025, 3, 1, 10, 5, tzinfo=UTC)  # five minutes after T0
RUNS = [f"smollm2-135m-{p}" for p in ("fp32", "bf16", "int8", "nf4")]


@pytest.fixture
def body(quickstart_dict: Manifest) -> Manifest:
    """The quickstart as the API server holds it: 4 runs, parallelism 2."""
    quickstart_dict["metadata"] |= {"namespace": "team", "uid": "uid-1", "generation": 1}
    return quickstart_dict


def observe(body: Manifest, **kwargs: Any) -> Observations:
    return replace(Observations(body=body, jobs=[], pods=[], previous={}, now=NOW), **kwargs)


def running(run_id: str) -> JobObservation:
    return JobObservation(name=f"job-{run_id}", active=1, uid=f"uid-{run_id}", created=T0)


def succeeded(run_id: str) -> JobObservation:
    return JobObservation(name=f"job-{run_id}", succeeded=1, complete=True, uid=f"uid-{run_id}")


def pod(run_id: str, phase: str = "Running") -> PodObservation:
    return PodObservation(name=f"pod-{run_id}", created=T0, phase=phase)


def runs_of(plan: Plan) -> dict[str, dict[str, Any]]:
    assert plan.status is not None
    return {r["id"]: r for r in plan.status["runs"]}


def carry_out(observations: Observations, settings: Settings, refuse: set[str]) -> Plan:
    """What the handlers do with a plan: create (the API server refusing the runs in `refuse`),
    then plan again with the answers until nothing is left to create."""
    plan = plan_pass(observations, settings)
    while plan.create:
        created = dict(observations.created)
        refused = dict(observations.refused)
        for todo in plan.create:
            if todo.run_id in refuse:
                refused[todo.run_id] = "CreateFailed: exceeded quota: jobs=2"
            else:
                created[todo.run_id] = JobObservation(name=todo.name, active=1)
        observations = replace(observations, created=created, refused=refused)
        plan = plan_pass(observations, settings)
    return plan


def test_a_new_quanteval_gets_the_jobs_parallelism_allows(body: Manifest) -> None:
    plan = plan_pass(observe(body), Settings())
    assert [c.run_id for c in plan.create] == RUNS[:2]
    assert {c.reason for c in plan.create} == {EventReason.RUN_STARTED}
    assert all(c.job["metadata"]["namespace"] == "team" for c in plan.create)
    assert plan.status is not None and plan.status["progress"] == "0/4"


def test_the_status_written_after_creating_counts_the_new_jobs(body: Manifest) -> None:
    plan = carry_out(observe(body), Settings(), refuse=set())
    assert plan.create == []
    assert [runs_of(plan)[r]["attempts"] for r in RUNS] == [1, 1, 0, 0]


def first_jobs(body: Manifest) -> list[Any]:
    return plan_pass(observe(body), Settings()).create


def test_a_suspended_quanteval_creates_nothing(body: Manifest) -> None:
    body["spec"]["suspend"] = True
    assert plan_pass(observe(body), Settings()).create == []


def test_a_refused_create_becomes_the_runs_reason_and_the_next_run_goes_on(
    body: Manifest,
) -> None:
    plan = carry_out(observe(body), Settings(), refuse={RUNS[0]})
    runs = runs_of(plan)
    assert runs[RUNS[0]]["state"] == RunState.PENDING
    assert runs[RUNS[0]]["reason"] == "CreateFailed: exceeded quota: jobs=2"
    assert [runs[r]["attempts"] for r in RUNS] == [0, 1, 1, 0]  # int8 took fp32's place
    warnings = [e for e in plan.events if e.warning]
    assert [e.reason for e in warnings] == [EventReason.RUN_WAITING]
    assert "exceeded quota" in warnings[0].message


def test_no_run_is_created_twice_while_its_job_is_indexed(body: Manifest) -> None:
    jobs = [(r, running(r)) for r in RUNS[:2]]
    pods = [(r, pod(r)) for r in RUNS[:2]]
    plan = plan_pass(observe(body, jobs=jobs, pods=pods), Settings())
    assert plan.create == []


def test_when_every_run_has_ended_the_report_job_is_created(body: Manifest) -> None:
    jobs = [(r, succeeded(r)) for r in RUNS]
    pods = [(r, pod(r, "Succeeded")) for r in RUNS]
    plan = plan_pass(observe(body, jobs=jobs, pods=pods), Settings())
    assert [(c.run_id, c.kind, c.reason) for c in plan.create] == [
        (REPORT, "report", EventReason.REPORT_STARTED)
    ]
    after = carry_out(observe(body, jobs=jobs, pods=pods), Settings(), refuse=set())
    assert after.create == []


def test_a_job_without_a_pod_after_a_minute_asks_why(body: Manifest) -> None:
    jobs = [(RUNS[0], running(RUNS[0])), (RUNS[1], running(RUNS[1]))]
    pods = [(RUNS[1], pod(RUNS[1]))]
    plan = plan_pass(observe(body, jobs=jobs, pods=pods), Settings())
    assert list(plan.podless) == [RUNS[0]]  # created at T0, five minutes ago, and no pod
    soon = replace(
        observe(body, jobs=jobs, pods=pods), now=datetime(2025, 3, 1, 10, 0, 30, tzinfo=UTC)
    )
    assert plan_pass(soon, Settings()).podless == {}  # 30 s: under the default minute
    assert list(plan_pass(soon, Settings(podless_seconds=20.0)).podless) == [RUNS[0]]
    # No event comes when the minute is up: the plan says when to look again.
    assert plan.recheck_seconds is None  # already podless; RUNS[1] has its pod
    assert plan_pass(soon, Settings()).recheck_seconds == 30.0
    assert plan_pass(soon, Settings(podless_seconds=45.0)).recheck_seconds == 15.0
    told = plan_pass(
        observe(body, jobs=jobs, pods=pods, refused={RUNS[0]: "FailedCreate: pods exceeded quota"}),
        Settings(),
    )
    assert runs_of(told)[RUNS[0]]["reason"] == "FailedCreate: pods exceeded quota"


def test_a_finished_evaluation_keeps_its_status_and_creates_nothing_once_its_jobs_are_gone(
    body: Manifest,
) -> None:
    jobs = [(r, succeeded(r)) for r in RUNS]
    pods = [(r, pod(r, "Succeeded")) for r in RUNS]
    report = JobObservation(name="report", succeeded=1, complete=True, uid="uid-report")
    ended = carry_out(
        observe(body, jobs=[*jobs, (REPORT, report)], pods=pods), Settings(), refuse=set()
    )
    assert ended.merged["conditions"][-1]["status"] in ("True", "False")
    gone = plan_pass(observe(body, previous=ended.merged), Settings())
    assert (gone.create, gone.status, gone.events) == ([], None, [])
    assert gone.merged == ended.merged


def test_nothing_is_written_or_told_when_nothing_changed(body: Manifest) -> None:
    first = carry_out(observe(body), Settings(), refuse=set())
    jobs = [
        (r, JobObservation(name=c.name, active=1))
        for r, c in zip(RUNS, first_jobs(body), strict=False)
    ]
    again = plan_pass(observe(body, jobs=jobs, previous=first.merged), Settings())
    assert (again.create, again.status, again.events) == ([], None, [])
    later = replace(
        observe(body, jobs=jobs, previous=first.merged), now=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert plan_pass(later, Settings()).status is None  # time alone changes nothing


def test_changed_emotions_make_it_invalid_once_and_stop_new_jobs(body: Manifest) -> None:
    first = carry_out(observe(body), Settings(), refuse=set())
    body["spec"]["emotions"] = "ekman7"
    jobs = [(r, running(r)) for r in RUNS[:2]]
    plan = plan_pass(observe(body, jobs=jobs, previous=first.merged), Settings())
    assert plan.create == []
    assert plan.status is not None
    valid = next(c for c in plan.status["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "False" and "spec.emotions changed" in valid["message"]
    assert [(e.reason, e.warning) for e in plan.events] == [(EventReason.INVALID_SPEC, True)]
    told = plan_pass(observe(body, jobs=jobs, previous=plan.merged), Settings())
    assert (told.status, told.events) == (None, [])  # the Warning once


def test_a_job_an_older_operator_started_under_the_old_hash_is_the_run_not_a_changed_spec(
    body: Manifest,
) -> None:
    """Raw prompts' special tokens entered a raw run's hash (schema 3) with an operator upgrade:
    the running Jobs carry the hash from before, which is not the user changing the spec."""
    body["spec"]["generation"] = {"preset": "paper"}  # raw prompts
    first = carry_out(observe(body), Settings(), refuse=set())
    spec = parse_manifest(body).spec
    old = {r.id: legacy_hash(spec, r) for r in expand(spec)}
    jobs = [(r, replace(running(r), content_hash=old[r])) for r in RUNS[:2]]
    plan = plan_pass(observe(body, jobs=jobs, previous=first.merged), Settings())
    assert next(c for c in plan.merged["conditions"] if c["type"] == "Valid")["status"] == "True"
    assert not plan.events
    changed = [(r, replace(running(r), content_hash="0123456789abcdef")) for r in RUNS[:2]]
    refused = plan_pass(observe(body, jobs=changed, previous=first.merged), Settings())
    assert refused.status is not None
    valid = next(c for c in refused.status["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "False" and "were started with the old value" in valid["message"]


def test_a_tenancy_refusal_names_the_field_and_the_setting(body: Manifest) -> None:
    body["spec"]["workerImage"] = "evil.example.com/miner:1"
    plan = plan_pass(observe(body), Settings(allowed_worker_images=("registry.example.com/qe/*",)))
    assert plan.create == [] and plan.status is not None
    message = next(c for c in plan.status["conditions"] if c["type"] == "Valid")["message"]
    assert "spec.workerImage" in message and "tenancy.allowedWorkerImages" in message


def _done(run_id: str, f1: float, peak: int, seconds: float) -> PodObservation:
    """A run's pod that succeeded, with the metrics its termination message carries."""
    metrics = RunMetrics(
        f1_macro=f1, accuracy=f1, intensity=50.0, distinct1=0.4, distinct2=0.8,
        weights_bytes=peak // 2, peak_memory_bytes=peak, load_peak_memory_bytes=peak,
        generation_peak_memory_bytes=peak, load_seconds=1.0, generation_seconds=seconds,
        tokens_per_second=10.0, latency_p50_ms=1.0, latency_p95_ms=2.0, generated_tokens=100,
        samples=70, dollars=seconds / 100,
    )  # fmt: skip
    message = run_message(run_id, RunState.SUCCEEDED, metrics).to_text()
    return PodObservation(f"pod-{run_id}", T0, "Succeeded", termination_message=message)


def test_a_gguf_file_at_native_computes_on_the_cpu_and_is_compared_as_such(
    body: Manifest,
) -> None:
    body["spec"]["models"] = [{"name": "g", "source": "/models/g-q4_1.gguf"}]  # no size
    body["spec"]["precisions"] = ["bf16", "native"]

    started = runs_of(plan_pass(observe(body), Settings()))
    jobs = [(r, succeeded(r)) for r in ("g-bf16", "g-native")]
    pods = [
        ("g-bf16", _done("g-bf16", 0.6, 4000, 10.0)),
        ("g-native", _done("g-native", 0.55, 1000, 40.0)),
    ]
    ended = plan_pass(observe(body, jobs=jobs, pods=pods), Settings())

    # llama.cpp computes on the CPU: said in place of GPUs, and not among the unsized GPU runs.
    assert started["g-native"]["device"] == "CPU: llama.cpp"
    assert "device" not in started["g-bf16"]
    assert ended.status is not None
    estimated = next(c for c in ended.status["conditions"] if c["type"] == "GPUsEstimated")
    assert estimated["message"].startswith("runs g-bf16 get 1 GPU")
    # Against a GPU run, its memory, time and dollars are another machine's: F1 alone is shown.
    assert ended.status["summary"]["comparisons"] == [{"id": "g-native", "f1DeltaPp": -5.0}]
