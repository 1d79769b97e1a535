"""Status aggregation: what the Jobs and pods of an evaluation say, as the QuantEval's status.

Plain data in, a status dict out; the handlers only gather observations and patch the result.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from quanteval.api.states import TERMINAL_STATES, ConditionType, Reason, RunState
from quanteval.api.status import EvaluationStatus
from quanteval.api.termination import ReportMessage, RunMessage
from quanteval.comparison import RunOutcome, Terms, best_run, compare, engine_effects
from quanteval.engines import ON_CPU, Engine, computes_on_cpu
from quanteval.engines import run_id as engine_run_id
from quanteval.matrix import Run
from quanteval.precisions import Precision

# The metrics kept in status: a handful of rounded numbers; everything else is in S3.
STATUS_METRICS = {
    "f1Macro": 4,
    "accuracy": 4,
    "intensity": 2,
    "peakMemoryBytes": 0,
    "weightsBytes": 0,
    "generationSeconds": 2,
    "tokensPerSecond": 2,
    "ttftP50Ms": 1,
    "tpotP50Ms": 2,
    "joulesPerToken": 3,
    "dollars": 4,
    "dollarsPer1kGenerations": 4,
    "ratingParseFailureRate": 4,
    "ratingSpearmanRho": 3,
    "ratingsPerSecond": 2,
    "dollarsPer1kRatings": 6,
    "kvCacheBudgetBytes": 0,
    "resumedSamples": 0,  # where a pod went on from an earlier one's batches
}
MAX_REASON = 300


@dataclass(frozen=True)
class JobObservation:
    name: str
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    complete: bool = False
    failed_condition: bool = False
    condition_reason: str = ""
    condition_message: str = ""
    suspended: bool = False
    content_hash: str = ""
    uid: str = ""  # its pods' controller owner reference names it
    created: str = ""  # metadata.creationTimestamp

    @property
    def finished(self) -> bool:
        """Complete or Failed: the Job runs no pod again."""
        return self.complete or self.failed_condition


class PodPhase(StrEnum):
    """Kubernetes' pod phases (core/v1 PodStatus.phase), not our run states."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class PodObservation:
    name: str
    created: str
    phase: str
    waiting_reason: str = ""
    waiting_message: str = ""
    unschedulable_message: str = ""
    exit_code: int | None = None
    terminated_reason: str = ""
    termination_message: str = ""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def status_metrics(metrics: dict[str, Any]) -> dict[str, float | int]:
    kept: dict[str, float | int] = {}
    for name, digits in STATUS_METRICS.items():
        value = metrics.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            kept[name] = int(value) if digits == 0 else round(float(value), digits)
    return kept


def _failure_reason(job: JobObservation, pod: PodObservation | None) -> str:
    if pod is not None and pod.terminated_reason == "OOMKilled":
        return _short("OOMKilled: the worker ran out of memory; raise spec.resources.memory")
    if pod is not None and pod.termination_message:
        message = RunMessage.parse(pod.termination_message)
        if message is not None:
            detail = message.message or ""
            return _short(f"{message.reason or RunState.FAILED}: {detail}".rstrip(": "))
        last_line = pod.termination_message.strip().splitlines()[-1:]
        code = f"ExitCode{pod.exit_code}" if pod.exit_code is not None else "Error"
        return _short(f"{code}: {' '.join(last_line)}")
    detail = f": {job.condition_message}" if job.condition_message else ""
    return _short(f"{job.condition_reason or 'JobFailed'}{detail}")


def run_status(
    run: Run,
    job: JobObservation | None,
    pods: list[PodObservation],
    suspended: bool,
) -> dict[str, Any]:
    """One entry of status.runs."""
    # Model and precision are not repeated: the run id and the spec say them.
    entry: dict[str, Any] = {"id": run.id}
    if computes_on_cpu(run.engine, run.precision, run.model.source):
        entry["device"] = ON_CPU  # in place of GPUs, which its Job asks for only if told to
    latest = max(pods, key=lambda p: (p.created, p.name)) if pods else None
    if job is None:
        entry["state"] = RunState.PENDING
        entry["attempts"] = 0
        if suspended:
            entry["reason"] = "Suspended: spec.suspend is true"
        return entry
    entry["attempts"] = job.active + job.succeeded + job.failed
    if job.complete:
        entry["state"] = RunState.SUCCEEDED
        done = next((p for p in sorted(pods, key=lambda p: p.created, reverse=True)
                     if p.phase == PodPhase.SUCCEEDED), None)  # fmt: skip
        parsed = RunMessage.parse(done.termination_message) if done else None
        if parsed is not None and parsed.metrics is not None:
            entry["metrics"] = status_metrics(parsed.metrics)
            # A pod evicted or preempted is not in the Job's counts; the worker counted it.
            made = parsed.metrics.get("attemptCount")
            if isinstance(made, int) and made > entry["attempts"]:
                entry["attempts"] = made
        return entry
    if job.failed_condition:
        failed = [p for p in pods if p.phase == PodPhase.FAILED]
        last_failed = max(failed, key=lambda p: (p.created, p.name)) if failed else None
        entry["state"] = RunState.FAILED
        entry["reason"] = _failure_reason(job, last_failed)
        return entry
    if job.suspended:
        entry["state"] = RunState.QUEUED
        entry["reason"] = "Suspended until the queue admits it"
        return entry
    if latest is not None and latest.phase == PodPhase.RUNNING:
        entry["state"] = RunState.RUNNING
        return entry
    entry["state"] = RunState.PENDING
    if latest is not None and latest.waiting_reason:
        message = f": {latest.waiting_message}" if latest.waiting_message else ""
        entry["reason"] = _short(f"{latest.waiting_reason}{message}")
    elif latest is not None and latest.unschedulable_message:
        entry["reason"] = _short(f"Unschedulable: {latest.unschedulable_message}")
    return entry


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """Conditions as a map keyed by type; lastTransitionTime moves only when status changes."""
    previous = next((c for c in conditions if c.get("type") == type_), None)
    since = now
    if previous is not None and previous.get("status") == status:
        since = previous.get("lastTransitionTime", now)
    condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": _short(message),
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
    return [c for c in conditions if c.get("type") != type_] + [condition]


def _outcome(run: Run, entry: dict[str, Any], device: str) -> RunOutcome:
    """The run as the comparison reads it; `device`: where it computes ("" unknown)."""
    metrics = entry.get("metrics", {})
    return RunOutcome(
        run_id=entry["id"],
        model=run.model.name,
        precision=run.precision,
        state=entry["state"],
        baseline_model=run.model.baseline_model,
        f1_macro=metrics.get("f1Macro"),
        accuracy=metrics.get("accuracy"),
        intensity=metrics.get("intensity"),
        weights_bytes=metrics.get("weightsBytes"),
        peak_memory_bytes=metrics.get("peakMemoryBytes"),
        generation_seconds=metrics.get("generationSeconds"),
        tokens_per_second=metrics.get("tokensPerSecond"),
        ttft_ms=metrics.get("ttftP50Ms"),
        tpot_ms=metrics.get("tpotP50Ms"),
        dollars=metrics.get("dollars"),
        engine=run.engine,
        terms=Terms(_engine_terms(run), device),
    )


def _engine_terms(run: Run) -> str:
    """The engine a run's memory is measured in ("" where auto may be either: native on a
    source that only the worker can tell holds a GGUF file)."""
    if computes_on_cpu(run.engine, run.precision, run.model.source):
        return Engine.LLAMA_CPP.value
    if run.engine != Engine.AUTO:
        return run.engine.value
    return "" if run.precision == Precision.NATIVE else Engine.TRANSFORMERS.value


def summarize(
    runs: list[Run],
    entries: list[dict[str, Any]],
    baseline: Precision,
    devices: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Baseline, best run and per run the memory saving, F1 change and time ratio (a run's
    repeats, spec.replicates, are compared with nothing: its first replicate is). `devices`:
    by run, where it computes (cpu or cuda); a figure across them, or memory across engines,
    is left out (quanteval.comparison.unlike): the status has no mark to show it with."""
    where = devices or {}
    outcomes = [
        _outcome(r, e, where.get(r.id, ""))
        for r, e in zip(runs, entries, strict=True)
        if not r.is_repeat
    ]
    best = best_run(outcomes)
    rows = []
    for row in compare(outcomes, baseline):
        if row.outcome.state != RunState.SUCCEEDED or row.is_baseline:
            continue
        item: dict[str, Any] = {"id": row.outcome.run_id}
        own = engine_run_id(row.outcome.model, baseline, row.outcome.engine)
        if row.baseline_run_id is not None and row.baseline_run_id != own:
            item["against"] = row.baseline_run_id  # another entry's or engine's run: say which
        if row.memory_saving_pct is not None and row.memory_comparable:
            item["memorySavingPct"] = round(row.memory_saving_pct, 1)
        if row.f1_delta_pp is not None:
            item["f1DeltaPp"] = round(row.f1_delta_pp, 1)
        if row.time_ratio is not None and row.time_comparable:
            item["timeRatio"] = round(row.time_ratio, 2)
        if row.dollar_ratio is not None and row.time_comparable:
            item["dollarRatio"] = round(row.dollar_ratio, 2)
        rows.append(item)
    for row in engine_effects(outcomes, baseline):  # a named engine's baseline vs the default's
        effect: dict[str, Any] = {
            "id": row.outcome.run_id, "against": row.baseline_run_id, "engineEffect": True,
        }  # fmt: skip
        if row.f1_delta_pp is not None:
            effect["f1DeltaPp"] = round(row.f1_delta_pp, 1)
        if row.time_ratio is not None and row.time_comparable:
            effect["timeRatio"] = round(row.time_ratio, 2)
        rows.append(effect)
    summary: dict[str, Any] = {"baseline": baseline.value, "comparisons": rows}
    if best is not None:
        summary["bestRun"] = best.run_id
    return summary


def report_verdicts(pods: list[PodObservation]) -> ReportMessage | None:
    """The paired verdicts the report Job's pod left in its termination message, if any."""
    done = [p for p in pods if p.phase == PodPhase.SUCCEEDED and p.termination_message]
    if not done:
        return None
    return ReportMessage.parse(max(done, key=lambda p: (p.created, p.name)).termination_message)


def with_verdicts(summary: dict[str, Any], verdicts: ReportMessage | None) -> dict[str, Any]:
    """The summary's comparisons with the report's paired ΔF1, its interval and the verdict in
    place of the unpaired difference (which stays where the report has no verdict)."""
    if verdicts is None:
        return summary
    by_id = verdicts.verdicts()
    rows = [row | by_id.get(row["id"], {}) for row in summary["comparisons"]]
    updated = summary | {"comparisons": rows}
    if verdicts.truncated:
        updated["verdictsTruncated"] = True
    return updated


@dataclass(frozen=True)
class ReportObservation:
    """The report Job of an evaluation (None until all runs are terminal) and where it writes."""

    job: JobObservation | None
    pods: list[PodObservation]
    uri: str


def _finished_conditions(
    conditions: list[dict[str, Any]],
    entries: list[dict[str, Any]],
    report: ReportObservation,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """All runs terminal: Succeeded waits for the report (the gate), then says how runs went."""
    job = report.job
    if job is None or not job.finished:
        message = "all runs finished; writing the report"
        conditions = set_condition(
            conditions,
            ConditionType.PROGRESSING,
            "True",
            Reason.REPORTING,
            message,
            generation,
            now,
        )
        return set_condition(
            conditions,
            ConditionType.SUCCEEDED,
            "Unknown",
            Reason.REPORTING,
            message,
            generation,
            now,
        )
    conditions = set_condition(
        conditions,
        ConditionType.PROGRESSING,
        "False",
        Reason.ALL_RUNS_FINISHED,
        "",
        generation,
        now,
    )
    failed = [e for e in entries if e["state"] == RunState.FAILED]
    if job.complete:
        conditions = set_condition(
            conditions,
            ConditionType.REPORT_READY,
            "True",
            Reason.REPORT_WRITTEN,
            report.uri,
            generation,
            now,
        )
    else:
        last = max(report.pods, key=lambda p: (p.created, p.name)) if report.pods else None
        conditions = set_condition(
            conditions,
            ConditionType.REPORT_READY,
            "False",
            Reason.REPORT_FAILED,
            _failure_reason(job, last),
            generation,
            now,
        )
    if failed:
        names = ", ".join(f"{e['id']} ({e.get('reason', '').split(':')[0]})" for e in failed)
        return set_condition(
            conditions,
            ConditionType.SUCCEEDED,
            "False",
            Reason.RUNS_FAILED,
            f"{len(entries) - len(failed)} of {len(entries)} runs succeeded; failed: {names}",
            generation,
            now,
        )
    if not job.complete:
        return set_condition(
            conditions,
            ConditionType.SUCCEEDED,
            "False",
            Reason.REPORT_FAILED,
            "every run succeeded, but the report failed (see ReportReady); "
            "the run results are in S3",
            generation,
            now,
        )
    return set_condition(
        conditions,
        ConditionType.SUCCEEDED,
        "True",
        Reason.ALL_RUNS_SUCCEEDED,
        f"{len(entries)} runs succeeded",
        generation,
        now,
    )


def aggregate(
    runs: list[Run],
    jobs: dict[str, JobObservation],
    pods: dict[str, list[PodObservation]],
    previous: dict[str, Any],
    generation: int,
    suspended: bool,
    now: str,
    baseline: Precision,
    report: ReportObservation,
    unsized_runs: list[str] | None = None,
    refused: Mapping[str, str] | None = None,
    emotions: Sequence[str] = (),
    devices: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The whole status from the observations; `refused`: by run, why the API server refused
    its Job this pass; `devices`: by run, where it computes (jobs.run_device)."""
    entries = run_entries(runs, jobs, pods, previous, suspended)
    for entry in entries:
        why = (refused or {}).get(entry["id"])
        if why:
            entry["reason"] = _short(why)
    finished = [e for e in entries if e["state"] in TERMINAL_STATES]
    conditions: list[dict[str, Any]] = list(previous.get("conditions", []))
    conditions = set_condition(
        conditions,
        ConditionType.VALID,
        "True",
        Reason.SPEC_VALID,
        f"{len(runs)} runs",
        generation,
        now,
    )
    if unsized_runs:
        conditions = set_condition(
            conditions,
            ConditionType.GPUS_ESTIMATED,
            "False",
            Reason.PARAMETERS_UNKNOWN,
            f"runs {', '.join(unsized_runs)} get 1 GPU, their size unknown: set "
            "spec.models[].parameters, or spec.resources.gpus (a native checkpoint's bytes a "
            "weight are in its files, which `quanteval plan` reads)",
            generation,
            now,
        )
    else:
        conditions = [c for c in conditions if c.get("type") != ConditionType.GPUS_ESTIMATED]
    all_done = len(finished) == len(entries)
    if all_done:
        conditions = _finished_conditions(conditions, entries, report, generation, now)
    else:
        if suspended:
            reason, message = Reason.SUSPENDED, "spec.suspend is true: no new run starts"
        else:
            reason, message = Reason.RUNS_ACTIVE, f"{len(finished)} of {len(entries)} runs finished"
        conditions = set_condition(
            conditions, ConditionType.PROGRESSING, "True", reason, message, generation, now
        )
        conditions = set_condition(
            conditions,
            ConditionType.SUCCEEDED,
            "Unknown",
            Reason.RUNS_IN_PROGRESS,
            message,
            generation,
            now,
        )
    started = any(e["attempts"] > 0 for e in entries)
    summary = summarize(runs, entries, baseline, devices)
    if all_done and report.job is not None and report.job.complete:
        summary["reportUri"] = report.uri
        summary = with_verdicts(summary, report_verdicts(report.pods))
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions,
        "progress": f"{len(finished)}/{len(entries)}",
        "runs": entries,
        "summary": summary,
    }
    if emotions:
        status["emotions"] = list(emotions)
    start_time = previous.get("startTime") or (now if started else None)
    if start_time:
        status["startTime"] = start_time
    if all_done:
        status["completionTime"] = previous.get("completionTime") or now
    return EvaluationStatus.checked(status)


def run_entries(
    runs: list[Run],
    jobs: Mapping[str, JobObservation],
    pods: Mapping[str, list[PodObservation]],
    previous: Mapping[str, Any],
    suspended: bool,
) -> list[dict[str, Any]]:
    """status.runs: each run as its Job and pods say, or as recorded once they are gone."""
    before = recorded_runs(previous)
    return [
        remembered(before.get(r.id), jobs.get(r.id), pods.get(r.id, []))
        or run_status(r, jobs.get(r.id), pods.get(r.id, []), suspended)
        for r in runs
    ]


def failure_reasons(entries: list[dict[str, Any]]) -> dict[str, str]:
    """By failed run, its reason (what the report Job is told)."""
    return {e["id"]: str(e.get("reason", "")) for e in entries if e["state"] == RunState.FAILED}


def podless_jobs(
    jobs: Mapping[str, JobObservation],
    pods: Mapping[str, list[PodObservation]],
    now: datetime,
    after_seconds: float,
) -> tuple[dict[str, JobObservation], float | None]:
    """By run, the Jobs that should have a pod by now and have none: not finished, not
    suspended, no pod seen, created more than `after_seconds` ago (the Job controller's
    FailedCreate Event then says why). And the seconds until the next Job still waiting for a
    pod becomes podless (None: none is waiting): no event marks that moment, so a pass must be
    asked for then."""
    stuck: dict[str, JobObservation] = {}
    due_in: float | None = None
    for run_id, job in jobs.items():
        if job.finished or job.suspended or pods.get(run_id):
            continue
        if not job.uid or not job.created:
            continue
        created = datetime.fromisoformat(job.created.replace("Z", "+00:00"))
        age = (now - created).total_seconds()
        if age > after_seconds:
            stuck[run_id] = job
        elif due_in is None or after_seconds - age < due_in:
            due_in = after_seconds - age
    return stuck, due_in


def refused_runs(status: Mapping[str, Any]) -> list[str]:
    """The runs whose Job the API server refused in the pass that wrote `status`."""
    runs = status.get("runs") or []
    return [
        str(r["id"])
        for r in runs
        if isinstance(r, Mapping)
        and r.get("state") == RunState.PENDING
        and str(r.get("reason", "")).startswith(f"{Reason.CREATE_FAILED}:")
    ]


def recorded_runs(previous: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The runs the status written last recorded as Succeeded or Failed, by id."""
    runs = previous.get("runs") or []
    return {
        str(r["id"]): dict(r)
        for r in runs
        if isinstance(r, Mapping) and r.get("state") in TERMINAL_STATES
    }


def remembered(
    recorded: dict[str, Any] | None, job: JobObservation | None, pods: list[PodObservation]
) -> dict[str, Any] | None:
    """A finished run's entry as recorded, once its Job or pods are gone (pod GC, a node scaled
    down, a TTL, a hand): what they said is not lost. While both are there the entry is read
    from them afresh (a pod whose message the last pass had not seen yet adds its metrics)."""
    if recorded is not None and (job is None or not pods):
        return recorded
    return None


def _conditions(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in status.get("conditions") or [] if isinstance(c, Mapping)]


def is_finished(status: Mapping[str, Any]) -> bool:
    """Succeeded is True or False, once every run and the report have ended (not InvalidSpec)."""
    end = next((c for c in _conditions(status) if c.get("type") == ConditionType.SUCCEEDED), {})
    return end.get("status") in ("True", "False") and end.get("reason") != Reason.INVALID_SPEC


def finished_status(previous: Mapping[str, Any], generation: int) -> dict[str, Any] | None:
    """A finished evaluation's status as written, whatever became of its Jobs and pods since:
    its spec cannot change, so neither can its outcome; only observedGeneration follows a change
    of parallelism or suspend. None while it is not finished (or was never valid)."""
    if not is_finished(previous):
        return None
    conditions = _conditions(previous)
    status = dict(previous) | {
        "observedGeneration": generation,
        "conditions": [dict(c) | {"observedGeneration": generation} for c in conditions],
    }
    return EvaluationStatus.checked(status)


def invalid_status(
    previous: dict[str, Any], generation: int, now: str, message: str
) -> dict[str, Any]:
    conditions = set_condition(
        list(previous.get("conditions", [])),
        ConditionType.VALID,
        "False",
        Reason.INVALID_SPEC,
        message,
        generation,
        now,
    )
    conditions = set_condition(
        conditions, ConditionType.SUCCEEDED, "False", Reason.INVALID_SPEC, message, generation, now
    )
    conditions = set_condition(
        conditions,
        ConditionType.PROGRESSING,
        "False",
        Reason.INVALID_SPEC,
        message,
        generation,
        now,
    )
    return EvaluationStatus.checked(
        {"observedGeneration": generation, "conditions": conditions, "progress": "0/0"}
    )
