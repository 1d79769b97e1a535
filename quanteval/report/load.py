"""Reading an evaluation's runs from storage (a local directory or an S3 prefix): the I/O edge."""

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from quanteval.api.errors import InvalidSpecError
from quanteval.api.layout import (
    GENERATIONS_FILE,
    RATINGS_FILE,
    RESULT_FILE,
    RUN_SPEC_FILE,
    RUNS_DIR,
    run_dir,
)
from quanteval.api.records import RatingRecord, SampleRecord
from quanteval.api.result import RunResult
from quanteval.api.runspec import RunSpec
from quanteval.api.states import RunState
from quanteval.engines import Engine
from quanteval.fidelity import TokenDistributions
from quanteval.precisions import Precision
from quanteval.report.data import (
    ExpectedRun,
    RunRecord,
    parse_records,
    parse_run_id,
)
from quanteval.storage import Storage


@dataclass(frozen=True)
class LoadedEvaluation:
    runs: list[RunRecord]
    ignored: list[str]  # names under runs/ that are not runs


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "document"
    return f"{where}: {first['msg']}"


Identity = tuple[str, Precision, Engine, int]  # model, precision, engine, replicate


def _identity(directory: Storage, name: str, expected: ExpectedRun | None) -> Identity | None:
    """What run `runs/<name>/` is, when it has no valid result.json: its run spec (written as it
    starts), else the caller's expectation, else an auto run's id; None when nothing says."""
    text = directory.read_text(RUN_SPEC_FILE)
    if text is not None:
        try:
            spec = RunSpec.model_validate_json(text)
            return spec.model.name, spec.precision, spec.engine, spec.replicate
        except ValidationError:
            pass
    if expected is not None:
        return expected.model, expected.precision, expected.engine, expected.replicate
    parsed = parse_run_id(name)
    return (parsed[0], parsed[1], Engine.AUTO, 1) if parsed is not None else None


def _result(text: str | None) -> RunResult | str | None:
    """The run's result, or why result.json is invalid; None when there is none."""
    if text is None:
        return None
    try:
        return RunResult.model_validate_json(text)
    except ValidationError as error:
        return f"invalid {RESULT_FILE}: {_first_error(error)}"


def load_run(storage: Storage, name: str, expected: ExpectedRun | None = None) -> RunRecord | None:
    """The record of `runs/<name>/`; None when nothing says it is a run."""
    directory = storage.child(run_dir(name))
    result_text = directory.read_text(RESULT_FILE)
    result = _result(result_text)
    if isinstance(result, RunResult):
        identity: Identity | None = (
            result.model,
            result.precision,
            result.engine,
            result.replicate,
        )
    else:
        identity = _identity(directory, name, expected)
    if identity is None:
        return None
    model, precision, engine, replicate = identity
    text = directory.read_text(GENERATIONS_FILE)
    generations, bad = parse_records(text.splitlines() if text is not None else [], SampleRecord)
    notes = [f"{bad} unreadable lines in {GENERATIONS_FILE} skipped"] if bad else []
    failure = expected.reason if expected is not None else ""
    if result is None:
        files = directory.list_children("")
        state = RunState.FAILED if files else RunState.MISSING
        default = f"no {RESULT_FILE}: the run " + ("did not finish" if files else "wrote nothing")
        return RunRecord(
            name, model, precision, state, "; ".join([failure or default, *notes]),
            generations=tuple(generations), engine=engine, replicate=replicate,
        )  # fmt: skip
    if isinstance(result, str):
        return RunRecord(
            name, model, precision, RunState.FAILED, "; ".join([result, *notes]), engine=engine,
            replicate=replicate,
        )  # fmt: skip
    fidelity = None
    if result.fidelity is not None:
        data = directory.read_bytes(result.fidelity.file)
        try:
            fidelity = TokenDistributions.from_bytes(data) if data is not None else None
        except (ValueError, KeyError, OSError) as error:
            notes.append(f"unreadable {result.fidelity.file} ({error}): no fidelity figures")
        if data is None:
            notes.append(f"no {result.fidelity.file}: no fidelity figures")
    ratings_text = directory.read_text(RATINGS_FILE)
    ratings, bad_ratings = parse_records(
        ratings_text.splitlines() if ratings_text else [], RatingRecord
    )
    if bad_ratings:
        notes.append(f"{bad_ratings} unreadable lines in {RATINGS_FILE} skipped")
    return RunRecord(
        run_id=name,
        model=result.model,
        precision=result.precision,
        state=RunState.SUCCEEDED,
        reason="; ".join(notes),
        result=result,
        generations=tuple(generations),
        ratings=tuple(ratings),
        fidelity=fidelity,
        engine=result.engine,
        replicate=result.replicate,
    )


def load_evaluation(storage: Storage, expected: Sequence[ExpectedRun] = ()) -> LoadedEvaluation:
    """Every run under `runs/`, plus each expected run that left nothing there (as Missing).

    Raises InvalidSpecError when there is no `runs/` at all and no run was expected.
    """
    names = storage.list_children(RUNS_DIR)
    if not names and not expected:
        raise InvalidSpecError(
            f"{storage.uri}: no {RUNS_DIR}/ here, so nothing to report: give the evaluation's "
            f"directory or S3 prefix (the one holding {run_dir('<run>')}/{RESULT_FILE})"
        )
    by_id = {e.run_id: e for e in expected}
    runs: list[RunRecord] = []
    ignored: list[str] = []
    for name in names:
        record = load_run(storage, name, by_id.get(name))
        if record is None:
            ignored.append(name)
        else:
            runs.append(record)
    seen = {r.run_id for r in runs}
    for run in expected:
        if run.run_id not in seen:
            reason = run.reason or f"no {run_dir(run.run_id)}/: the run wrote nothing"
            runs.append(
                RunRecord(
                    run.run_id, run.model, run.precision, RunState.MISSING, reason,
                    engine=run.engine, replicate=run.replicate,
                )
            )  # fmt: skip
    return LoadedEvaluation(runs, ignored)
