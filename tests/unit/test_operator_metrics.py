"""The operator's Prometheus metrics (each test on a fresh registry), its /metrics server, and the
command line's say in the startup handler: metrics port, namespaced mode."""

import asyncio
import logging
import socket
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Any, cast

import kopf
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from devcluster.ports import free_port
from quanteval_operator import handlers, metrics
from quanteval_operator import main as operator_main
from quanteval_operator.metrics import RUN_STATES, Metrics, job_duration, run_states, serve

START = "2026-05-01T12:00:00Z"
SINCE = 1_777_636_800.0  # 2026-05-01T12:00:00Z


def fresh(since: float = SINCE) -> tuple[CollectorRegistry, Metrics]:
    registry = CollectorRegistry()
    return registry, Metrics(registry, since=since)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def runs(*states: str) -> list[dict[str, Any]]:
    return [{"id": f"m-{i}", "state": state} for i, state in enumerate(states)]


def test_run_states_counts_every_known_state_and_any_other() -> None:
    assert run_states(None) == dict.fromkeys(RUN_STATES, 0)
    counts = run_states([*runs("Running", "Running", "Succeeded", "Weird"), "not a run", {}])
    assert counts == {"Pending": 0, "Queued": 0, "Running": 2, "Succeeded": 1, "Failed": 0,
                      "Weird": 1}  # fmt: skip


def test_the_runs_gauge_sums_every_evaluation_and_forgets_deleted_ones() -> None:
    registry, m = fresh()
    for state in RUN_STATES:
        assert value(registry, "quanteval_runs", state=state) == 0
    m.record_runs("eval-a", runs("Running", "Pending", "Succeeded"))
    m.record_runs("eval-b", runs("Running", "Failed"))
    assert value(registry, "quanteval_runs", state="Running") == 2
    assert value(registry, "quanteval_runs", state="Pending") == 1
    assert value(registry, "quanteval_runs", state="Failed") == 1
    m.record_runs("eval-a", runs("Succeeded", "Succeeded", "Succeeded"))  # a later pass
    assert value(registry, "quanteval_runs", state="Running") == 1
    assert value(registry, "quanteval_runs", state="Succeeded") == 3
    m.forget("eval-b")
    assert value(registry, "quanteval_runs", state="Running") == 0
    assert value(registry, "quanteval_runs", state="Failed") == 0
    m.forget("never-seen")
    assert value(registry, "quanteval_runs", state="Succeeded") == 3
    m.record_runs("eval-c", runs("Unknown"))  # a state this operator does not know yet
    assert value(registry, "quanteval_runs", state="Unknown") == 1
    m.record_runs("eval-c", runs("Running"))
    assert value(registry, "quanteval_runs", state="Unknown") == 0


def test_job_duration_from_start_to_completion() -> None:
    assert job_duration({"startTime": START, "completionTime": "2026-05-01T12:10:30Z"}) == 630
    assert job_duration({"startTime": START}) is None  # running, or failed (no completionTime)
    assert job_duration({"completionTime": START}) is None
    assert job_duration({"startTime": START, "completionTime": "not a time"}) is None
    assert job_duration({"startTime": "2026-05-01T13:00:00Z", "completionTime": START}) is None


def test_a_run_duration_is_observed_once_per_job_and_only_for_jobs_finished_since_start() -> None:
    registry, m = fresh()
    done = {"startTime": START, "completionTime": "2026-05-01T12:05:00Z", "succeeded": 1}
    m.job_seen("job-1", {"startTime": START, "active": 1})
    assert value(registry, "quanteval_run_duration_seconds_count") == 0
    m.job_seen("job-1", done)
    m.job_seen("job-1", done)  # the same Job again: a later event, a re-listing
    assert value(registry, "quanteval_run_duration_seconds_count") == 1
    assert value(registry, "quanteval_run_duration_seconds_sum") == 300
    assert value(registry, "quanteval_run_duration_seconds_bucket", le="300.0") == 1
    assert value(registry, "quanteval_run_duration_seconds_bucket", le="120.0") == 0
    # Finished before the operator started: history, not observed again after a restart.
    m.job_seen("job-old", {"startTime": "2026-04-30T12:00:00Z",
                           "completionTime": "2026-04-30T13:00:00Z"})  # fmt: skip
    assert value(registry, "quanteval_run_duration_seconds_count") == 1
    m.job_seen("job-1", done, deleted=True)
    m.job_seen("job-2", {"startTime": START, "completionTime": "2026-05-01T13:00:00Z"})
    assert value(registry, "quanteval_run_duration_seconds_count") == 2


def test_jobs_created_and_reconcile_errors_are_counted() -> None:
    registry, m = fresh()
    assert value(registry, "quanteval_jobs_created_total", kind="run") == 0
    assert value(registry, "quanteval_jobs_created_total", kind="report") == 0
    m.job_created("run")
    m.job_created("run")
    m.job_created("report")
    m.reconcile_errors.inc()
    assert value(registry, "quanteval_jobs_created_total", kind="run") == 2
    assert value(registry, "quanteval_jobs_created_total", kind="report") == 1
    assert value(registry, "quanteval_reconcile_errors_total") == 1


def test_the_exposition_names_every_metric() -> None:
    registry, _ = fresh()
    text = generate_latest(registry).decode()
    for name in ("quanteval_runs", "quanteval_run_duration_seconds_bucket",
                 "quanteval_jobs_created_total", "quanteval_reconcile_errors_total"):  # fmt: skip
        assert f"\n{name}{{" in text or f"\n{name} " in text, name
    assert "# TYPE quanteval_runs gauge" in text
    assert "# TYPE quanteval_run_duration_seconds histogram" in text


def test_the_operator_metrics_live_on_the_default_registry() -> None:
    text = generate_latest().decode()
    assert "quanteval_runs{" in text
    assert "quanteval_reconcile_errors_total" in text


def test_serve_answers_on_metrics_and_fails_clearly_on_a_busy_port() -> None:
    registry, m = fresh()
    m.record_runs("eval-a", runs("Running"))
    server = serve(free_port(), registry, addr="127.0.0.1")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            body = response.read().decode()
        assert 'quanteval_runs{state="Running"} 1.0' in body
        with pytest.raises(RuntimeError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            serve(port, CollectorRegistry(), addr="127.0.0.1")
    finally:
        server.shutdown()
        server.server_close()


# --- from the command line to the startup handler ------------------------------------------------


def start_operator(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """main() up to kopf: the arguments kopf.operator() gets; nothing is started."""
    monkeypatch.setattr(handlers, "OPTIONS", handlers.Options())
    monkeypatch.delenv("QUANTEVAL_NAMESPACES", raising=False)
    monkeypatch.delenv("QUANTEVAL_METRICS_PORT", raising=False)
    monkeypatch.setattr(kopf, "configure", lambda **_: None)
    called: dict[str, Any] = {}

    def operator(**kwargs: Any) -> Coroutine[Any, Any, None]:
        called.update(kwargs)

        async def nothing() -> None:
            return None

        return nothing()

    monkeypatch.setattr(kopf, "operator", operator)
    assert operator_main.main(argv) == 0
    return called


def test_cluster_wide_by_default_with_metrics_on_8000(monkeypatch: pytest.MonkeyPatch) -> None:
    called = start_operator([], monkeypatch)
    assert called["clusterwide"] is True
    assert (handlers.OPTIONS.namespaced, handlers.OPTIONS.metrics_port) == (False, 8000)


def test_namespaces_make_it_namespaced(monkeypatch: pytest.MonkeyPatch) -> None:
    called = start_operator(["-n", "team-a", "--namespace", "team-b", "--metrics-port", "0"],
                            monkeypatch)  # fmt: skip
    assert called["clusterwide"] is False
    assert called["namespaces"] == ["team-a", "team-b"]
    assert (handlers.OPTIONS.namespaced, handlers.OPTIONS.metrics_port) == (True, 0)


def test_the_environment_sets_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "OPTIONS", handlers.Options())
    monkeypatch.setattr(kopf, "configure", lambda **_: None)

    def operator(**kwargs: Any) -> Coroutine[Any, Any, None]:
        assert kwargs["namespaces"] == ["a", "b"]

        async def nothing() -> None:
            return None

        return nothing()

    monkeypatch.setattr(kopf, "operator", operator)
    monkeypatch.setenv("QUANTEVAL_NAMESPACES", "a, b,")
    monkeypatch.setenv("QUANTEVAL_METRICS_PORT", "9102")
    assert operator_main.main([]) == 0
    assert (handlers.OPTIONS.namespaced, handlers.OPTIONS.metrics_port) == (True, 9102)


def test_a_bad_metrics_port_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as exit_:
        start_operator(["--metrics-port", "70000"], monkeypatch)
    assert exit_.value.code == 2


class FakeKube:
    @classmethod
    async def connect(cls) -> "FakeKube":
        return cls()


def startup(options: handlers.Options, monkeypatch: pytest.MonkeyPatch) -> kopf.OperatorSettings:
    monkeypatch.setattr(handlers, "OPTIONS", options)
    monkeypatch.setattr(handlers, "KubeClient", FakeKube)
    settings = kopf.OperatorSettings()
    # kopf's decorator types it as a handler; it is the plain coroutine function underneath.
    configure = cast(Callable[..., Coroutine[Any, Any, None]], handlers.configure)
    asyncio.run(configure(settings=settings, memo=kopf.Memo(), logger=logging.getLogger("test")))
    return settings


def test_namespaced_mode_turns_kopf_scanning_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert startup(handlers.Options(namespaced=True), monkeypatch).scanning.disabled is True
    assert startup(handlers.Options(namespaced=False), monkeypatch).scanning.disabled is False


def test_startup_serves_metrics_and_stops_the_operator_on_a_busy_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[int] = []

    def fake_serve(port: int) -> None:
        served.append(port)

    monkeypatch.setattr(metrics, "serve", fake_serve)
    startup(handlers.Options(metrics_port=9100), monkeypatch)
    startup(handlers.Options(metrics_port=0), monkeypatch)
    assert served == [9100]

    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.undo()
        with pytest.raises(kopf.PermanentError, match=f"cannot serve metrics on 0.0.0.0:{port}"):
            startup(handlers.Options(metrics_port=port), monkeypatch)


def test_the_job_and_pod_watches_ask_the_api_server_for_our_children_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kopf's handler filters are client-side; the watch's labelSelector is what keeps every
    other Job and pod of the cluster from reaching the operator."""
    jobs = kopf.Resource("batch", "v1", "jobs", kind="Job", namespaced=True)
    pods = kopf.Resource("", "v1", "pods", kind="Pod", namespaced=True)
    evals = kopf.Resource("quanteval.io", "v1alpha1", "quantevals", kind="QuantEval")
    selectors = startup(handlers.Options(), monkeypatch).watching.label_selectors
    assert selectors.collect(jobs) == ["quanteval.io/eval-uid"]
    assert selectors.collect(pods) == ["quanteval.io/eval-uid"]
    assert selectors.collect(evals) == []  # every QuantEval is ours
    measured = startup(handlers.Options(server_side_selectors=False), monkeypatch)
    assert measured.watching.label_selectors.collect(jobs) == []
