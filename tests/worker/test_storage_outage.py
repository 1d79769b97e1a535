"""The worker, as a process, while its S3 store goes down as it generates (a MinIO of the test's
own, halted and resumed on its port and data): within the retry budget the run goes on, its
writes wait on its disk and it succeeds, having generated once; past the budget it exits 6 naming
the endpoint, and what it had written stays as it was."""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devcluster.minio import MinioServer, ensure_minio
from quanteval.api.errors import ExitCode
from quanteval.api.layout import GENERATIONS_FILE, RESULT_FILE, RUN_SPEC_FILE
from quanteval.api.records import SampleRecord
from quanteval.api.runspec import RunSpec
from quanteval.api.spec import parse_manifest
from quanteval.api.termination import TERMINATION_LOG_ENV, RunMessage
from quanteval.api.worker_log import WorkerEvent
from quanteval.matrix import build_run_spec, expand, s3_evaluation_root
from quanteval.storage import RETRY_BUDGET_ENV, SPOOL_DIR_ENV, Patience, S3Storage
from tests.builders import make_manifest

BUCKET = "outage"
EMOTIONS = ["joy", "anger"]
PROMPTS = ["<class> sentence", "Write a text that expresses <class>"]


def _run_spec(model: Path) -> RunSpec:
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


def _run_through_an_outage(
    spec: RunSpec, server: MinioServer, tmp_path: Path, down_seconds: float | None, budget: float
) -> tuple[int, list[WorkerEvent], float]:
    """The worker run on `server` with the store halted as generation begins and resumed
    `down_seconds` later (None: once the worker has exited): its exit code, its events, and how
    long after the halt it exited."""
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
                if down_seconds is not None:
                    timer = threading.Timer(down_seconds, server.resume)
                    timer.start()
    assert halted is not None, "the worker never began to generate"
    exited = time.monotonic() - halted
    if timer is None:
        server.resume()
    else:
        timer.join()
    return process.returncode, events, exited


@pytest.fixture
def other_s3_server(own_s3_server: MinioServer) -> Iterator[MinioServer]:
    """A second MinIO of the test's own, to be down on a schedule of its own (the first's keys,
    which the test's environment holds)."""
    with MinioServer(ensure_minio(), secret_key=own_s3_server.secret_key) as server:
        yield server


@pytest.mark.slow
def test_a_store_down_60_s_is_waited_out_and_one_down_past_the_budget_ends_in_exit_6(
    tiny_llama_dir: Path,
    own_s3_server: MinioServer,
    other_s3_server: MinioServer,
    tmp_path: Path,
) -> None:
    """Two runs at once, each on a store of its own that goes down as it begins to generate:
    one back after 60 s within a 600 s budget (the run succeeds, having generated once), one
    down past a 3 s budget (exit 6 naming the endpoint and what was not written; what it had
    written stays as it was, and there is no result.json). At once, not one after the other:
    the second's few seconds pass inside the first's minute."""
    stores = {"within": own_s3_server, "past": other_s3_server}
    for server in stores.values():
        server.create_bucket(BUCKET)
    spec = _run_spec(tiny_llama_dir)
    (tmp_path / "within").mkdir()
    (tmp_path / "past").mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:
        within = pool.submit(
            _run_through_an_outage, spec, own_s3_server, tmp_path / "within", 60, 600
        )
        past = pool.submit(
            _run_through_an_outage, spec, other_s3_server, tmp_path / "past", None, 3
        )
        (code, events, exited), (past_code, _, _) = within.result(), past.result()

    assert code == ExitCode.OK, [e.message for e in events if e.level == "error"]
    assert exited >= 60  # result.json went up only once the store was back
    samples = len(EMOTIONS) * len(PROMPTS)
    finished = [e for e in events if e.event == "progress" and e.done == samples]
    assert len([e for e in finished if e.task == "generation"]) == 1  # generated once
    waited = [e for e in events if e.message and "waits on this pod's disk" in e.message]
    assert waited, "no write waited for the store"
    storage = S3Storage(spec.output_uri, own_s3_server.endpoint, patience=Patience(10))
    assert storage.read_text(RESULT_FILE) is not None
    lines = (storage.read_text(GENERATIONS_FILE) or "").splitlines()
    records = [SampleRecord.from_line(line) for line in lines]
    assert sorted(r.key for r in records) == sorted(
        f"p{p}-{e}-s0" for e in EMOTIONS for p in range(1, len(PROMPTS) + 1)
    )
    assert all(r.predicted is not None for r in records)  # the scored file, not the first
    assert not any((tmp_path / "within" / "spool").iterdir())  # the spool emptied and removed

    assert past_code == ExitCode.STORAGE
    message = RunMessage.parse((tmp_path / "past" / "termination").read_text())
    assert message is not None and message.message is not None
    assert other_s3_server.endpoint in message.message
    assert "retry budget" in message.message and "not written:" in message.message
    kept = S3Storage(spec.output_uri, other_s3_server.endpoint, patience=Patience(10))
    assert RunSpec.model_validate_json(kept.read_text(RUN_SPEC_FILE) or "") == spec
    assert kept.read_text(RESULT_FILE) is None  # never a commit mark over missing files
