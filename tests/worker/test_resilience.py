"""Runs cut off and stores gone away, as a user meets them:

- `quanteval run --local` killed with its worker (SIGKILL), run again and stopped with Ctrl-C
  (SIGINT), and run a third time goes on from `partial/` each time and ends with the texts of an
  uninterrupted run, its attempts recorded;
- the worker, as a process, while its S3 store (a MinIO of the module's own, halted and resumed
  on its port and data) goes down as it generates: within the retry budget the run goes on, its
  writes wait on its disk and it succeeds, having generated once; past the budget it exits 6
  naming the endpoint, and what it had written stays as it was.

The scenarios run at once, in one module-scoped fixture (as test_worker_runs runs its workers):
a store's minute-long outage leaves the CPU idle, and the cut-off runs use it. Each test reads
its own scenario's outcome, so a failure is its scenario's alone.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.minio import MinioServer, MinioUnavailableError, ensure_minio
from quanteval.api.errors import ExitCode
from quanteval.api.layout import GENERATIONS_FILE, RESULT_FILE, RUN_SPEC_FILE
from quanteval.api.records import SampleRecord
from quanteval.api.result import EnergyFigures, RunResult
from quanteval.api.runspec import RunSpec
from quanteval.api.spec import parse_manifest
from quanteval.api.termination import TERMINATION_LOG_ENV, RunMessage
from quanteval.api.worker_log import WorkerEvent
from quanteval.matrix import build_run_spec, expand, s3_evaluation_root
from quanteval.storage import RETRY_BUDGET_ENV, SPOOL_DIR_ENV, Patience, S3Storage
from tests.builders import make_manifest

from .local_runs import run_locally

pytestmark = pytest.mark.slow  # one fixture of about 80 s: the outage's minute, and the rest

SAMPLES = 20  # 2 emotions x 5 prompts x 2 samples, in batches of 2
PROGRESS = re.compile(r"tiny-fp32: (\d+)/20 samples")
BUCKET = "outage"
EMOTIONS = ["joy", "anger"]
PROMPTS = ["<class> sentence", "Write a text that expresses <class>"]


# -- cut off and resumed ------------------------------------------------------------------


def _resume_manifest(model: Path) -> dict[str, Any]:
    return make_manifest(
        "resume",
        [{"name": "tiny", "source": str(model)}],
        precisions=["fp32"],
        emotions=["joy", "anger"],
        prompts=[f"Prompt {i} about <class>" for i in range(5)],
        generation={
            "preset": "paper",  # sampled: every sample's seed is its own, whatever its batch
            "promptFormat": "chat",
            "maxNewTokens": 48,
            "samplesPerPrompt": 2,
            "batchSize": 2,
        },
    )


def _texts(out: Path) -> dict[str, str]:
    lines = (out / "runs" / "tiny-fp32" / "generations.jsonl").read_text().splitlines()
    return {record["key"]: record["text"] for record in map(json.loads, lines)}


def _ctrl_c_heard() -> None:
    """SIGINT as a terminal sends it, heard: a suite started in the background (`cmd &`) runs
    with SIGINT ignored, which its children inherit, and Python then installs no
    KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cut_off(manifest: Path, out: Path, how: signal.Signals, past: int = 0) -> tuple[int, int]:
    """`quanteval run --local` and its worker stopped by `how` once more than `past` samples,
    not all, are done: the first progress it printed, and the samples done when it was cut."""
    command = [sys.executable, "-m", "quanteval_cli.main", "run", str(manifest), "--local"]
    with subprocess.Popen(
        [*command, "--out", str(out)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # a group of its own: the signal reaches the worker too
        preexec_fn=_ctrl_c_heard,
    ) as process:
        assert process.stderr is not None
        first: int | None = None
        for line in process.stderr:
            found = PROGRESS.search(line)
            if found is None:
                continue
            done = int(found.group(1))
            first = done if first is None else first
            if past < done < SAMPLES:
                os.killpg(process.pid, how)
                break
        else:
            pytest.fail("the run ended before it could be cut off")
        process.wait(timeout=120)
        assert process.returncode != 0
        assert first is not None
        return first, done


def _finished(out: Path) -> tuple[int, int]:
    """The batches and samples partial/ holds."""
    plan = json.loads((out / "runs/tiny-fp32/partial/generation-plan.json").read_text())
    return len(plan["batches"]), sum(len(batch) for batch in plan["batches"])


@dataclass(frozen=True)
class CutTwice:
    """What each of the three runs showed: the first progress it printed and the samples done
    when it was cut, and the batches and samples partial/ held after it."""

    out: Path
    killed: tuple[int, int]
    after_kill: tuple[int, int]
    interrupted: tuple[int, int]
    after_interrupt: tuple[int, int]
    finished: subprocess.CompletedProcess[str]


def _cut_twice(model: Path, directory: Path) -> CutTwice:
    manifest = directory / "eval.yaml"
    manifest.write_text(yaml.safe_dump(_resume_manifest(model)))
    out = directory / "cut"
    killed = _cut_off(manifest, out, signal.SIGKILL)
    after_kill = _finished(out)
    interrupted = _cut_off(manifest, out, signal.SIGINT, past=after_kill[1])
    after_interrupt = _finished(out)
    finished = subprocess.run(
        [sys.executable, "-m", "quanteval_cli.main", "run", str(manifest), "--local",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return CutTwice(out, killed, after_kill, interrupted, after_interrupt, finished)


# -- a store gone away --------------------------------------------------------------------


def _outage_spec(model: Path) -> RunSpec:
    parsed = parse_manifest(
        make_manifest(
            "outage",
            [{"name": "tiny", "source": str(model)}],
            precisions=["fp32"],
            emotions=EMOTIONS,
            prompts=PROMPTS,
            generation={"preset": "greedy", "maxNewTokens": 8},
            output={"s3": {"bucket": BUCKET, "prefix": "qe"}},
        )
    )
    (run,) = expand(parsed.spec)
    return build_run_spec(parsed, run, s3_evaluation_root(parsed))


@dataclass(frozen=True)
class Outage:
    """A worker's run through its store's outage: its exit code, its events, and how long after
    the halt it exited."""

    code: int
    events: list[WorkerEvent]
    exited: float


def _run_through_an_outage(
    spec: RunSpec,
    server: MinioServer,
    tmp_path: Path,
    down_seconds: float | None,
    budget: float,
    down: threading.Event | None = None,
) -> Outage:
    """The worker run on `server` with the store halted as generation begins (`down` set
    then) and resumed `down_seconds` later (None: once the worker has exited)."""
    tmp_path.mkdir()
    spec_file = tmp_path / "runspec.json"
    spec_file.write_text(spec.to_json())
    env = (
        os.environ
        | server.env()
        | {
            TERMINATION_LOG_ENV: str(tmp_path / "termination"),
            RETRY_BUDGET_ENV: str(budget),
            SPOOL_DIR_ENV: str(tmp_path / "spool"),
        }
    )
    command = [sys.executable, "-m", "quanteval_worker.main", "--spec", str(spec_file)]
    events: list[WorkerEvent] = []
    timer: threading.Timer | None = None
    halted: float | None = None
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as process:
        assert process.stderr is not None
        for line in process.stderr:
            event = WorkerEvent.parse(line)
            if event is None:
                continue
            events.append(event)
            if halted is None and event.event == "progress" and event.task == "generation":
                server.halt()  # the store goes down as the run begins to generate
                halted = time.monotonic()
                if down is not None:
                    down.set()
                if down_seconds is not None:
                    timer = threading.Timer(down_seconds, server.resume)
                    timer.start()
    assert halted is not None, "the worker never began to generate"
    exited = time.monotonic() - halted
    if timer is None:
        server.resume()
    else:
        timer.join()
    return Outage(process.returncode, events, exited)


def _stored(server: MinioServer, spec: RunSpec) -> S3Storage:
    storage = S3Storage(spec.output_uri, server.endpoint, patience=Patience(10))
    storage._client = server.client()  # its keys, whatever the environment holds
    return storage


# -- the scenarios, at once ---------------------------------------------------------------


@dataclass(frozen=True)
class Disrupted:
    tmp: Path  # each scenario's folder
    spec: RunSpec
    within: MinioServer  # down 60 s, within a 600 s budget
    past: MinioServer  # down past a 3 s budget
    whole: "Future[dict[str, str]]"  # the texts of the run never cut off
    cut_twice: "Future[CutTwice]"
    waited_out: "Future[Outage]"
    overrun: "Future[Outage]"


@pytest.fixture(scope="module")
def disrupted(
    tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Disrupted]:
    try:
        binary = ensure_minio()
    except MinioUnavailableError as exc:
        pytest.skip(str(exc))
    tmp = tmp_path_factory.mktemp("disrupted")
    spec = _outage_spec(tiny_llama_dir)
    with (
        MinioServer(binary) as within,
        MinioServer(binary, secret_key=within.secret_key) as past,
        ThreadPoolExecutor(max_workers=4) as pool,
    ):
        within.create_bucket(BUCKET)
        past.create_bucket(BUCKET)
        down = threading.Event()
        waited_out = pool.submit(
            _run_through_an_outage, spec, within, tmp / "within", 60, 600, down
        )
        overrun = pool.submit(_run_through_an_outage, spec, past, tmp / "past", None, 3)
        # The cut-off runs start once the minute's outage has begun: they fill its idle CPU
        # rather than slow the workers' start (a worker that never gets there fails its test).
        down.wait(timeout=300)
        (tmp / "whole").mkdir()
        whole = pool.submit(
            lambda: _texts(run_locally(_resume_manifest(tiny_llama_dir), tmp / "whole").out)
        )
        cut_twice = pool.submit(_cut_twice, tiny_llama_dir, tmp)
        yield Disrupted(tmp, spec, within, past, whole, cut_twice, waited_out, overrun)


def test_a_run_cut_off_twice_while_generating_resumes_after_its_last_batch_each_time(
    disrupted: Disrupted,
) -> None:
    """Killed with its worker (SIGKILL, a crash), then the run that resumed stopped with
    Ctrl-C's SIGINT: each run again goes on after the last complete batch, and the third ends
    with the texts of the run never cut off, its three attempts recorded."""
    cut = disrupted.cut_twice.result()
    began, done = cut.killed
    batches, finished = cut.after_kill
    assert began == 0 and done <= finished < SAMPLES  # every batch it reported, not all
    resumed_at, done = cut.interrupted
    assert resumed_at == finished  # "N/20 samples" first: resumed, not begun again
    batches_then, finished_then = cut.after_interrupt
    assert finished < done <= finished_then < SAMPLES

    again = cut.finished
    assert again.returncode == 0, again.stderr[-3000:]
    progress = [int(m.group(1)) for m in PROGRESS.finditer(again.stderr)]
    assert progress[0] == finished_then
    assert _texts(cut.out) == disrupted.whole.result()  # as if never cut off
    result = RunResult.model_validate_json((cut.out / "runs/tiny-fp32/result.json").read_text())
    assert [a.attempt for a in result.attempts] == [1, 2, 3]
    assert result.metrics.resumed_samples == finished_then
    assert result.metrics.attempt_count == 3
    assert f"resumed: {finished_then} of 20 samples" in (cut.out / "report.md").read_text()
    first, second, third = result.attempts
    assert len(first.batches) == batches and first.peak_memory_bytes is None
    assert second.batches == list(range(batches, batches_then))
    assert second.peak_memory_bytes is None
    assert third.batches == list(range(batches_then, SAMPLES // 2))
    assert result.metrics.cpu_seconds is not None
    assert result.metrics.cpu_seconds > third.cpu_seconds  # summed over the attempts
    if isinstance(result.energy, EnergyFigures):  # where the machine has a counter (RAPL here)
        joules = [a.generation_joules for a in result.attempts]
        assert None not in joules
        assert result.energy.phases["generation"] == pytest.approx(sum(j or 0 for j in joules))
    assert not (cut.out / "runs/tiny-fp32/partial").exists()  # removed with result.json


def test_a_store_down_60_s_within_the_budget_is_waited_out_having_generated_once(
    disrupted: Disrupted,
) -> None:
    run = disrupted.waited_out.result()
    assert run.code == ExitCode.OK, [e.message for e in run.events if e.level == "error"]
    assert run.exited >= 60  # result.json went up only once the store was back
    samples = len(EMOTIONS) * len(PROMPTS)
    finished = [e for e in run.events if e.event == "progress" and e.done == samples]
    assert len([e for e in finished if e.task == "generation"]) == 1  # generated once
    waited = [e for e in run.events if e.message and "waits on this pod's disk" in e.message]
    assert waited, "no write waited for the store"
    storage = _stored(disrupted.within, disrupted.spec)
    assert storage.read_text(RESULT_FILE) is not None
    lines = (storage.read_text(GENERATIONS_FILE) or "").splitlines()
    records = [SampleRecord.from_line(line) for line in lines]
    assert sorted(r.key for r in records) == sorted(
        f"p{p}-{e}-s0" for e in EMOTIONS for p in range(1, len(PROMPTS) + 1)
    )
    assert all(r.predicted is not None for r in records)  # the scored file, not the first
    assert not any((disrupted.tmp / "within" / "spool").iterdir())  # the spool emptied and removed


def test_a_store_down_past_the_budget_ends_in_exit_6_naming_the_endpoint_and_loses_nothing(
    disrupted: Disrupted,
) -> None:
    run = disrupted.overrun.result()
    assert run.code == ExitCode.STORAGE
    message = RunMessage.parse((disrupted.tmp / "past" / "termination").read_text())
    assert message is not None and message.message is not None
    assert disrupted.past.endpoint in message.message
    assert "retry budget" in message.message and "not written:" in message.message
    storage = _stored(disrupted.past, disrupted.spec)
    assert RunSpec.model_validate_json(storage.read_text(RUN_SPEC_FILE) or "") == disrupted.spec
    assert storage.read_text(RESULT_FILE) is None  # never a commit mark over missing files
