"""Prometheus metrics of the operator, served on /metrics by `prometheus_client`'s own HTTP server.

- `quanteval_runs{state}`: runs of all QuantEvals by state, from the status each reconcile pass
  computed (every state always present, 0 when no run is in it);
- `quanteval_run_duration_seconds`: a histogram of run Jobs that succeeded while this operator
  watched, from the Job's `status.startTime` to its `status.completionTime` (Kubernetes sets
  `completionTime` only on success, so failed runs are not in it);
- `quanteval_jobs_created_total{kind="run"|"report"}`: Jobs this operator created;
- `quanteval_reconcile_errors_total`: reconcile passes that ended in an exception.

Everything is kept in one `Metrics` object per registry: the operator uses `METRICS` on the default
registry (with the process collectors); tests make their own with a fresh `CollectorRegistry`.
"""

import time
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import start_http_server as _start_http_server

from quanteval.api.states import RunState

# Every state but Missing, which only the report gives (a run that left nothing).
RUN_STATES = tuple(s for s in RunState if s != RunState.MISSING)
# Runs take from minutes (a small model at one precision) to many hours.
DURATION_BUCKETS = (60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
                    86400.0)  # fmt: skip


def run_states(runs: Iterable[Any] | None) -> dict[str, int]:
    """How many of a status's `runs` are in each state: every known state, then any other seen."""
    counts: dict[str, int] = dict.fromkeys(RUN_STATES, 0)
    for run in runs or []:
        if isinstance(run, Mapping) and isinstance(run.get("state"), str):
            counts[run["state"]] = counts.get(run["state"], 0) + 1
    return counts


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch of a Kubernetes timestamp (`2024-05-01T12:00:00Z`); None if none."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def job_duration(status: Mapping[str, Any]) -> float | None:
    """A finished Job's run time from its status: completionTime - startTime, None if unknown."""
    start = parse_time(status.get("startTime"))
    end = parse_time(status.get("completionTime"))
    if start is None or end is None or end < start:
        return None
    return end - start


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY, since: float | None = None) -> None:
        self.registry = registry
        # Jobs that completed before this (the operator's start) are history: not observed again.
        self.since = time.time() if since is None else since
        self.runs = Gauge(
            "quanteval_runs", "Runs of all QuantEvals by state", ["state"], registry=registry
        )
        self.run_duration = Histogram(
            "quanteval_run_duration_seconds",
            "Seconds from a run Job's start to its completion (succeeded runs)",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.jobs_created = Counter(
            "quanteval_jobs_created", "Jobs created by the operator", ["kind"], registry=registry
        )
        self.reconcile_errors = Counter(
            "quanteval_reconcile_errors",
            "Reconcile passes that raised an exception",
            registry=registry,
        )
        for kind in ("run", "report"):
            self.jobs_created.labels(kind=kind)
        self._states: dict[str, dict[str, int]] = {}
        self._observed_jobs: set[str] = set()
        self._published: set[str] = set()
        self._publish()

    def record_runs(self, eval_uid: str, runs: Iterable[Any] | None) -> None:
        """Set the runs of one QuantEval (from its status) and update the per-state gauge."""
        self._states[eval_uid] = run_states(runs)
        self._publish()

    def forget(self, eval_uid: str) -> None:
        """A deleted QuantEval: its runs leave the gauge."""
        if self._states.pop(eval_uid, None) is not None:
            self._publish()

    def _publish(self) -> None:
        totals: Tally[str] = Tally(dict.fromkeys(RUN_STATES, 0))
        for counts in self._states.values():
            totals.update(counts)
        # Known states first; a state no run is in any more drops to 0 rather than going stale.
        self._published.update(totals)
        for state in sorted(self._published, key=lambda s: (s not in RUN_STATES, s)):
            self.runs.labels(state=state).set(totals[state])

    def job_created(self, kind: str) -> None:
        self.jobs_created.labels(kind=kind).inc()

    def job_seen(self, job_uid: str, status: Mapping[str, Any], deleted: bool = False) -> None:
        """A run Job's event: its duration is observed once, when it has completed since start."""
        if deleted:
            self._observed_jobs.discard(job_uid)
            return
        if job_uid in self._observed_jobs:
            return
        completed = parse_time(status.get("completionTime"))
        duration = job_duration(status)
        if completed is None or duration is None or completed < self.since:
            return
        self._observed_jobs.add(job_uid)
        self.run_duration.observe(duration)


METRICS = Metrics()


def serve(port: int, registry: CollectorRegistry = REGISTRY, addr: str = "0.0.0.0") -> WSGIServer:
    """Serve /metrics on `port` in a daemon thread; a clear error when the port cannot be bound."""
    try:
        server, _thread = _start_http_server(port, addr=addr, registry=registry)
    except OSError as error:
        raise RuntimeError(
            f"cannot serve metrics on {addr}:{port}: {error.strerror or error}; choose another "
            "port with --metrics-port or QUANTEVAL_METRICS_PORT (0 disables the metrics server)"
        ) from error
    return server
