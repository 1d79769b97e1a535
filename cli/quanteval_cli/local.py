"""`quanteval run --local`: every run as its own worker process, then the comparison table.

A process per run keeps each run's memory peak its own, exactly as one pod per run does.
"""

import os
import subprocess
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from quanteval.api.errors import CannotLoadError, ExitCode, InvalidSpecError
from quanteval.api.layout import RESULT_FILE, run_dir
from quanteval.api.result import RunResult
from quanteval.api.spec import QuantEval
from quanteval.api.states import Reason, RunState
from quanteval.api.termination import TERMINATION_LOG_ENV, RunMessage
from quanteval.api.worker_log import WorkerEvent
from quanteval.comparison import RunOutcome, outcome_of
from quanteval.matrix import Run, build_run_spec, expand
from quanteval.storage import open_storage
from quanteval_cli import worker


@dataclass(frozen=True)
class LocalRunOutcome:
    run: Run
    exit_code: int
    outcome: RunOutcome


class LineProgress:
    """Progress as plain lines, one as a run starts, each time it finishes a batch, and one as it
    ends: for a console that is not a terminal (CI logs, `| tee`), where a live bar stays silent."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._names: list[str] = []
        self._done: dict[int, tuple[str, float]] = {}

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(
        self, description: str, total: float | None = None, what: str = "samples"
    ) -> TaskID:
        self._names.append(description)
        self.console.print(f"{description}: started", highlight=False)
        return TaskID(len(self._names) - 1)

    def update(
        self,
        task_id: TaskID,
        completed: float | None = None,
        total: float | None = None,
        visible: bool | None = None,
        what: str = "samples",
    ) -> None:
        if completed is None or not total or self._done.get(task_id) == (what, completed):
            return
        self._done[task_id] = (what, completed)
        self.console.print(f"{self._names[task_id]}: {completed:g}/{total:g} {what}")


def select_runs(runs: list[Run], only: list[str] | None) -> list[Run]:
    if not only:
        return runs
    known = {r.id for r in runs}
    unknown = [o for o in only if o not in known]
    if unknown:
        raise InvalidSpecError(
            f"--only: no run named {', '.join(unknown)}; the runs are {', '.join(sorted(known))}"
        )
    return [r for r in runs if r.id in only]


PROGRESS_UNITS = {"intensity": "ratings", "expected": "expected ratings"}


def _run_worker(
    run: Run,
    spec_json: str,
    flags: list[str],
    progress: Progress | LineProgress,
    console: Console,
) -> tuple[int, RunMessage]:
    """Run one worker process; follow its progress events; return its exit code and message."""
    with tempfile.TemporaryDirectory(prefix="quanteval-") as tmp:
        spec_file = Path(tmp) / "runspec.json"
        spec_file.write_text(spec_json)
        termination = Path(tmp) / "termination-log"
        env = os.environ | {TERMINATION_LOG_ENV: str(termination)}
        try:
            command = worker.command(spec_file, run.engine)
        except CannotLoadError as error:
            failed = RunMessage(
                run_id=run.id, state=RunState.FAILED, reason=error.reason, message=error.message
            )
            return error.exit_code, failed
        command.extend(flags)
        task = progress.add_task(run.id, total=None, what="samples")
        tail: deque[str] = deque(maxlen=20)
        with subprocess.Popen(
            command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
        ) as process:
            assert process.stderr is not None
            for line in process.stderr:
                event = WorkerEvent.parse(line)
                if event is None:
                    tail.append(line.rstrip())
                elif event.event == "progress":
                    what = PROGRESS_UNITS.get(event.task or "", "samples")
                    progress.update(task, completed=event.done, total=event.total, what=what)
                elif event.level in ("warning", "error"):
                    console.print(f"[yellow]{run.id}: {event.message}[/yellow]")
        progress.update(task, visible=False)
        try:
            text = termination.read_text()
        except OSError:
            text = ""
        message = RunMessage.parse(text) or RunMessage(
            run_id=run.id, state=RunState.FAILED, reason=Reason.CRASHED, message="\n".join(tail)
        )
        return process.returncode, message


def run_local(
    manifest: QuantEval,
    out: str,
    only: list[str] | None = None,
    force: bool = False,
    console: Console | None = None,
    keep_partial: bool = False,
) -> list[LocalRunOutcome]:
    console = console or Console(stderr=True)
    runs = select_runs(expand(manifest.spec), only)
    storage = open_storage(out)
    outcomes = []
    columns = (
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[what]}"),
        TimeElapsedColumn(),
    )
    live = console.is_terminal
    progress = (
        Progress(*columns, console=console, transient=False) if live else LineProgress(console)
    )
    with progress:
        for run in runs:
            spec_json = build_run_spec(manifest, run, storage.uri).to_json()
            flags = ["--force"] * force + ["--keep-partial"] * keep_partial
            exit_code, message = _run_worker(run, spec_json, flags, progress, console)
            outcome = RunOutcome(
                run_id=run.id,
                model=run.model.name,
                precision=run.precision,
                state=RunState.FAILED,
                reason=f"{message.reason or ''}: {message.message or ''}".strip(": "),
                engine=run.engine,
            )
            if exit_code == ExitCode.OK:
                text = storage.child(run_dir(run.id)).read_text(RESULT_FILE)
                try:
                    outcome = outcome_of(RunResult.model_validate_json(text or ""))
                except ValidationError:
                    outcome = RunOutcome(
                        run.id,
                        run.model.name,
                        run.precision,
                        RunState.FAILED,
                        reason=Reason.NO_RESULT,
                        engine=run.engine,
                    )
            else:
                console.print(f"[red]{run.id} failed (exit {exit_code}): {outcome.reason}[/red]")
            if not live:
                console.print(f"{run.id}: {outcome.state}", highlight=False)
            outcomes.append(LocalRunOutcome(run, exit_code, outcome))
    return outcomes
