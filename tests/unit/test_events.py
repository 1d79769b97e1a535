"""The Events `kubectl describe quanteval` shows: each step told once, warnings for trouble."""

from typing import Any

from quanteval_operator.events import StoryEvent, story_events
from quanteval_operator.status import set_condition

URI = "s3://bucket/quanteval/ns/quick-uid/report.html"


def _status(
    *runs: dict[str, Any], conditions: tuple[tuple[str, str, str, str], ...] = ()
) -> dict[str, Any]:
    made: list[dict[str, Any]] = []
    for type_, status, reason, message in conditions:
        made = set_condition(made, type_, status, reason, message, 1, "2025-03-01T10:00:00Z")
    return {"runs": list(runs), "conditions": made, "summary": {"bestRun": "m-int8"}}


def _told(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return [(e.reason, e.message, e.warning) for e in story_events(old, new)]


def test_a_run_that_succeeds_is_told_with_its_figures_once() -> None:
    running = _status({"id": "m-int8", "state": "Running", "attempts": 1})
    done = _status(
        {
            "id": "m-int8",
            "state": "Succeeded",
            "attempts": 1,
            "metrics": {
                "f1Macro": 0.41234,
                "peakMemoryBytes": 3 * 2**30,
                "generationSeconds": 12.34,
            },
        }
    )
    assert _told(running, done) == [
        (
            "RunSucceeded",
            "run m-int8 succeeded: macro-F1 0.412, peak memory 3.0 GiB, generation 12.3 s",
            False,
        )
    ]
    assert _told(done, done) == []


def test_a_run_that_rated_intensities_tells_its_rank_order_and_parse_failures() -> None:
    metrics = {"f1Macro": 0.5, "ratingParseFailureRate": 0.1543, "ratingSpearmanRho": 0.2812}
    done = _status({"id": "m-int8", "state": "Succeeded", "attempts": 1, "metrics": metrics})
    unranked = _status(
        {"id": "m-int8", "state": "Succeeded", "attempts": 1,
         "metrics": {"ratingParseFailureRate": 0.0}}
    )  # fmt: skip
    running = _status({"id": "m-int8", "state": "Running", "attempts": 1})

    assert _told(running, done)[0][1] == (
        "run m-int8 succeeded: macro-F1 0.500, "
        "intensity ratings: rho vs level +0.28, parse failures 15.4%"
    )
    assert _told(running, unranked)[0][1].endswith("rho vs level none, parse failures 0.0%")


def test_a_resumed_run_says_it_went_on_from_an_earlier_attempts_batches() -> None:
    running = _status({"id": "m-int8", "state": "Running", "attempts": 2})
    done = _status(
        {"id": "m-int8", "state": "Succeeded", "attempts": 2,
         "metrics": {"f1Macro": 0.5, "resumedSamples": 40}}
    )  # fmt: skip
    assert _told(running, done)[0][1] == (
        "run m-int8 succeeded: macro-F1 0.500, resumed after 40 samples an earlier attempt "
        "generated"
    )


def test_a_failed_run_is_a_warning_with_its_reason() -> None:
    old = _status({"id": "m-fp32", "state": "Running", "attempts": 1})
    new = _status({"id": "m-fp32", "state": "Failed", "attempts": 1, "reason": "OOMKilled: raise"})
    assert _told(old, new) == [("RunFailed", "run m-fp32: OOMKilled: raise", True)]


def test_a_retry_is_told_when_attempts_grow_past_the_first() -> None:
    first = _status({"id": "m-fp32", "state": "Running", "attempts": 1})
    second = _status({"id": "m-fp32", "state": "Pending", "attempts": 2})
    assert _told({}, first) == []
    assert _told(first, second) == [("RunRetried", "run m-fp32: attempt 2", True)]
    assert _told(second, second) == []


def test_a_pending_run_warns_once_per_new_reason_but_not_for_routine_waits() -> None:
    pulling = _status(
        {"id": "m-fp32", "state": "Pending", "attempts": 1, "reason": "ContainerCreating"}
    )
    stuck = _status(
        {
            "id": "m-fp32",
            "state": "Pending",
            "attempts": 1,
            "reason": "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        }
    )
    suspended = _status(
        {"id": "m-fp32", "state": "Pending", "attempts": 0, "reason": "Suspended: spec.suspend"}
    )
    assert _told({}, pulling) == []
    assert _told({}, suspended) == []
    assert _told(pulling, stuck) == [
        (
            "RunWaiting",
            "run m-fp32: Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            True,
        )
    ]
    assert _told(stuck, stuck) == []


def test_the_end_is_told_once_report_first() -> None:
    reporting = _status(conditions=(("Succeeded", "Unknown", "Reporting", "writing the report"),))
    done = _status(
        conditions=(
            ("ReportReady", "True", "ReportWritten", URI),
            ("Succeeded", "True", "AllRunsSucceeded", "4 runs succeeded"),
        )
    )
    assert _told(reporting, done) == [
        ("ReportWritten", f"report at {URI}", False),
        ("Succeeded", "4 runs succeeded; best run m-int8", False),
    ]
    assert _told(done, done) == []


def test_failures_at_the_end_are_warnings() -> None:
    failed = _status(
        conditions=(
            ("ReportReady", "False", "ReportFailed", "ExitCode1: no results"),
            (
                "Succeeded",
                "False",
                "RunsFailed",
                "1 of 2 runs succeeded; failed: m-fp32 (OOMKilled)",
            ),
        )
    )
    assert story_events({}, failed) == [
        StoryEvent("ReportFailed", "ExitCode1: no results", warning=True),
        StoryEvent("Failed", "1 of 2 runs succeeded; failed: m-fp32 (OOMKilled)", warning=True),
    ]


def test_an_invalid_spec_is_not_told_twice() -> None:
    invalid = _status(conditions=(("Succeeded", "False", "InvalidSpec", "spec.emotions: unknown"),))
    assert story_events({}, invalid) == []
