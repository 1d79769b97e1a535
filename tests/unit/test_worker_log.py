"""The worker's stderr lines: what the local runner reads of them, and what it leaves alone."""

from quanteval.api.worker_log import WorkerEvent


def test_progress_and_log_lines_read_back_with_their_own_fields() -> None:
    line = WorkerEvent(ts=1.5, event="progress", done=35, total=70).to_line()
    assert WorkerEvent.parse(line) == WorkerEvent(ts=1.5, event="progress", done=35, total=70)
    logged = WorkerEvent.model_validate(
        {"ts": 2.0, "event": "log", "level": "info", "message": "model loaded", "seconds": 0.4}
    )
    again = WorkerEvent.parse(logged.to_line())
    assert again is not None and again.model_extra == {"seconds": 0.4}


def test_a_line_that_is_not_an_event_is_none() -> None:
    for line in ("Loading weights: 100%", '{"ts": 1, "event": "party"}', "[1, 2]"):
        assert WorkerEvent.parse(line) is None
