"""When passes run: one at a time per QuantEval, a burst as one more pass, backoff on failure.

The pass is a coroutine the test controls and the sleep only records (and yields), so nothing here
depends on timing.
"""

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import kopf
import pytest

from quanteval_operator import handlers
from quanteval_operator.passes import RETRY_SECONDS, Outcome, PassQueue


def in_event_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """The test coroutine run to its end in a fresh event loop."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


class Recorder:
    """A PassQueue whose sleeps are recorded, with a pass that waits until the test lets it end."""

    def __init__(self, outcomes: list[Outcome | Exception] | None = None) -> None:
        self.slept: list[float] = []
        self.queue = PassQueue(coalesce_seconds=0.5, sleep=self.sleep)
        self.passes: list[str] = []
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()
        self.outcomes = list(outcomes or [])
        self.failures: list[tuple[str, float]] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)

    def pass_of(self, key: str) -> Callable[[], Awaitable[Outcome]]:
        async def run() -> Outcome:
            self.passes.append(key)
            self.started.set()
            await self.release.wait()
            outcome = self.outcomes.pop(0) if self.outcomes else Outcome.DONE
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        return run

    async def request(self, key: str) -> None:
        def failed(error: Exception, delay: float) -> None:
            self.failures.append((str(error), delay))

        await self.queue.request(key, self.pass_of(key), failed)


@in_event_loop
async def test_a_burst_during_a_pass_becomes_one_more_pass() -> None:
    recorder = Recorder()
    recorder.release.clear()
    first = asyncio.create_task(recorder.request("ns/a"))
    await recorder.started.wait()
    burst = [asyncio.create_task(recorder.request("ns/a")) for _ in range(100)]
    await asyncio.gather(*burst)  # each returns at once: the pass under way will run once more
    assert recorder.queue.busy("ns/a")
    recorder.release.set()
    await first
    assert recorder.passes == ["ns/a", "ns/a"]
    assert recorder.slept == [0.5, 0.5]  # each pass waits the coalescing moment first
    assert not recorder.queue.busy("ns/a")


@in_event_loop
async def test_a_request_after_the_pass_ends_runs_a_new_pass() -> None:
    recorder = Recorder()
    await recorder.request("ns/a")
    await recorder.request("ns/a")
    assert recorder.passes == ["ns/a", "ns/a"]


@in_event_loop
async def test_passes_of_different_quantevals_run_side_by_side() -> None:
    recorder = Recorder()
    recorder.release.clear()
    tasks = [asyncio.create_task(recorder.request(key)) for key in ("ns/a", "ns/b", "other/a")]
    while len(recorder.passes) < 3:  # all three under way at once, none waiting for another
        await asyncio.sleep(0)
    assert sorted(recorder.passes) == ["ns/a", "ns/b", "other/a"]
    recorder.release.set()
    await asyncio.gather(*tasks)
    assert len(recorder.passes) == 3


@in_event_loop
async def test_a_failed_pass_is_tried_again_with_growing_delays_until_it_succeeds() -> None:
    errors: list[Outcome | Exception] = [ConnectionError("503"), TimeoutError("slow"), OSError("x")]
    recorder = Recorder(errors)
    await recorder.request("ns/a")
    assert recorder.passes == ["ns/a"] * 4
    assert [delay for _, delay in recorder.failures] == list(RETRY_SECONDS[:3])
    assert recorder.failures[0][0] == "503"
    assert recorder.slept == [0.5, 1.0, 0.5, 2.0, 0.5, 5.0, 0.5]


@in_event_loop
async def test_the_delay_stops_growing_at_the_last_step() -> None:
    recorder = Recorder([ConnectionError("down")] * 9)
    await recorder.request("ns/a")
    delays = [delay for _, delay in recorder.failures]
    assert delays == [*RETRY_SECONDS, RETRY_SECONDS[-1], RETRY_SECONDS[-1], RETRY_SECONDS[-1]]


@in_event_loop
async def test_a_refused_pass_backs_off_and_a_success_resets_the_backoff() -> None:
    recorder = Recorder([Outcome.RETRY, Outcome.RETRY, Outcome.DONE])
    await recorder.request("ns/a")
    assert recorder.passes == ["ns/a"] * 3
    assert recorder.slept == [0.5, 1.0, 0.5, 2.0, 0.5]
    recorder.outcomes = [ConnectionError("again")]
    await recorder.request("ns/a")
    assert recorder.failures[-1][1] == RETRY_SECONDS[0]  # counted afresh


@in_event_loop
async def test_a_deleted_quanteval_ends_its_passes_even_with_requests_pending() -> None:
    recorder = Recorder([Outcome.GONE])
    recorder.release.clear()
    first = asyncio.create_task(recorder.request("ns/a"))
    await recorder.started.wait()
    await recorder.request("ns/a")  # pending
    recorder.release.set()
    await first
    assert recorder.passes == ["ns/a"]
    assert not recorder.queue.busy("ns/a")


def test_a_recheck_starts_one_pass_at_the_soonest_time_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pass that sees Jobs waiting for their pods asks for another when the first becomes
    podless; asking again for later changes nothing, for sooner moves it."""
    started: list[str] = []

    async def scenario() -> None:
        first = asyncio.Event()

        def start_pass(key: str, memo: kopf.Memo) -> None:
            started.append(key)
            first.set()

        monkeypatch.setattr(handlers, "start_pass", start_pass)
        memo = kopf.Memo(state=handlers.OperatorState())
        asked = asyncio.get_running_loop().time()
        handlers.recheck("ns/a", memo, 30.0)
        handlers.recheck("ns/a", memo, 60.0)  # later: the 30 s one stays
        assert memo.state.rechecks["ns/a"].when() == pytest.approx(asked + 30.0, abs=1.0)
        handlers.recheck("ns/a", memo, 0.0)  # sooner: it replaces the 30 s one
        await asyncio.wait_for(first.wait(), timeout=10)
        assert memo.state.rechecks == {}

    asyncio.run(scenario())
    assert started == ["ns/a"]
