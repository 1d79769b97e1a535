"""`quanteval`: run an evaluation locally, report on one, validate or plan a manifest, try a
classifier.

Exit codes: 0 done; 3 invalid input; 4 a model or precision cannot load here; 5 out of memory;
6 storage failure; 2 bad command line (argparse).
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from quanteval.api.errors import ExitCode, InvalidSpecError, QuantEvalError
from quanteval.api.spec import QuantEval, QuantEvalSpec, load_manifest
from quanteval.api.termination import TERMINATION_LOG_ENV
from quanteval.cost import with_default_cost
from quanteval.engines import ON_CPU, Engine, computes_on_cpu
from quanteval.intensity import intensity_run
from quanteval.matrix import Run, comparison_count, expand
from quanteval.precisions import Precision
from quanteval.sizing import DEFAULT_GPU_MEMORY_GIB, estimate_weights_bytes, run_gpus
from quanteval.storage import RETRY_BUDGET_ENV
from quanteval_cli import worker

if TYPE_CHECKING:
    from quanteval.report import ExpectedRun
    from quanteval.report.schema import Report
    from quanteval_cli.local import LocalRunOutcome

DEFAULT_OUT = "quanteval-out"


def _gguf_note(manifest: QuantEval) -> list[str]:
    """A warning for models that come from a GGUF file: their 'fp32' is dequantized weights."""
    notes = []
    for model in manifest.spec.models:
        location = model.source
        if model.source.startswith("package:"):
            try:
                found = worker.package_location(model.source.removeprefix("package:"))
            except QuantEvalError:
                continue
            if found is None:
                continue
            location = str(found)
        if location.endswith(".gguf"):
            notes.append(
                f"note: {model.name} comes from the GGUF file {Path(location).name}: its weights "
                "were quantized before we got them, so every precision here starts from "
                "dequantized low-bit weights. Compare real checkpoints for real conclusions."
            )
    return notes


def _local_path_problems(manifest: QuantEval) -> list[str]:
    problems = []
    for index, model in enumerate(manifest.spec.models):
        source = model.source
        if source.startswith("package:"):
            import importlib.util

            name = source.removeprefix("package:")
            if importlib.util.find_spec(name) is None:
                problems.append(
                    f"spec.models[{index}].source: no installed Python package named {name!r}"
                )
        elif (source.startswith(("/", "./", "../", "~")) or source.endswith(".gguf")) and not Path(
            source
        ).expanduser().exists():
            problems.append(f"spec.models[{index}].source: {source} does not exist")
    texts_from = manifest.spec.intensity.texts_from
    if "intensity" in manifest.spec.tasks and texts_from and not texts_from.startswith("s3://"):
        try:
            _local_texts(manifest)
        except InvalidSpecError as error:
            problems.append(error.message)
    return problems


def _local_texts(manifest: QuantEval) -> int:
    """How many texts a local textsFrom file holds (InvalidSpecError when it cannot be read)."""
    from quanteval.intensity import items_from_lines

    path = Path(manifest.spec.intensity.texts_from or "").expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidSpecError(
            f"spec.intensity.textsFrom: cannot read {path}: {error.strerror}"
        ) from None
    return len(items_from_lines(text, manifest.spec.emotion_names))


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    manifest = load_manifest(args.file)
    problems = _local_path_problems(manifest)
    if problems:
        raise InvalidSpecError(f"{args.file}: invalid QuantEval\n" + "\n".join(problems))
    runs = expand(manifest.spec)
    console.print(f"{args.file}: valid ({len(runs)} runs: {', '.join(r.id for r in runs)})")
    return ExitCode.OK


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from quanteval.fmt import human_bytes

    manifest = load_manifest(args.file)
    spec = manifest.spec
    gpu_memory = args.gpu_memory_gib or spec.resources.gpu_memory_gib or DEFAULT_GPU_MEMORY_GIB
    samples = len(spec.prompt_templates) * len(spec.emotion_names)
    samples *= spec.generation.samples_per_prompt
    work = f"{samples} samples"
    if "intensity" in spec.tasks:
        if spec.intensity.texts_from is None:
            work += f" and {len(intensity_run(spec.intensity, spec.emotion_names).items)} ratings"
        elif spec.intensity.texts_from.startswith("s3://"):
            work += f" and a rating of each text in {spec.intensity.texts_from}"
        else:
            work += f" and {_local_texts(manifest)} ratings"
    table = Table(title=f"{manifest.metadata.name}: {work} a run, {gpu_memory:g} GiB GPUs")
    for header in ("run", "model", "precision", "parameters", "weights (est.)", "GPUs", "vLLM"):
        table.add_column(header)
    counted: dict[str, int | None] = {}
    runs = expand(spec)
    for run in runs:
        on_cpu = _on_cpu_cell(spec, run)
        params = run.model.parameters
        if params is None:
            if run.model.name not in counted:
                counted[run.model.name] = worker.count_parameters(run.model.source)
            params = counted[run.model.name]
        if params is None:
            table.add_row(
                run.id, run.model.name, run.precision.value, "unknown", "-", on_cpu or "1 (?)", "-"
            )  # fmt: skip
            continue
        checkpoint = None
        if run.precision == Precision.NATIVE:
            checkpoint = worker.checkpoint_quantization(run.model.source)
        weights = estimate_weights_bytes(params, run.precision, checkpoint)
        if weights is None:
            table.add_row(
                run.id, run.model.name, run.precision.value, f"{params / 1e9:.2f}B",
                "unknown (native: no quantization config read)", on_cpu or "1 (?)", "-",
            )  # fmt: skip
            continue
        gpus = (
            spec.resources.gpus
            if spec.resources.gpus != "auto"
            else run_gpus(weights, run.engine, gpu_memory, spec.vllm)
        )
        baseline = " (baseline)" if run.is_baseline else ""
        table.add_row(
            run.id, run.model.name, run.precision.value + baseline, f"{params / 1e9:.2f}B",
            human_bytes(weights), on_cpu or str(gpus), _vllm_cell(spec, run, gpus),
        )  # fmt: skip
    out = Console(width=160)
    out.print(table)
    if any(v is None for v in counted.values()):
        console.print("unknown sizes: set spec.models[].parameters (hub models are not fetched)")
    if spec.replicates > 1:
        out.print(_replicates_line(spec.replicates, len(runs)), highlight=False)
    for line in _power_lines(spec, args.design_effect):
        out.print(line, highlight=False)
    return ExitCode.OK


def _replicates_line(replicates: int, runs: int) -> str:
    """What spec.replicates costs: every run made that many times."""
    return (
        f"replicates: {replicates}: each run is made {replicates} times with other seeds "
        f"({runs} runs in all: {replicates}x the GPU time and dollars of one), for run-to-run "
        "intervals of time, memory and dollars and a verdict on the study's time figure"
    )


def _on_cpu_cell(spec: QuantEvalSpec, run: Run) -> str | None:
    """In place of the GPU count, for a run that computes on the CPU (llama.cpp): the GPUs its
    Job holds unused where spec.resources.gpus names some; None for any other run."""
    if not computes_on_cpu(run.engine, run.precision, run.model.source):
        return None
    held = spec.resources.gpus
    if isinstance(held, str) or held == 0:
        return ON_CPU
    return f"{ON_CPU} ({held} GPU{'s' if held > 1 else ''} held, unused)"


def _vllm_cell(spec: QuantEvalSpec, run: Run, gpus: int) -> str:
    """A vllm run's KV budget (in the GPU share vLLM takes) and tensor-parallel size."""
    if run.engine != Engine.VLLM:
        return "-"
    share = f"{spec.vllm.gpu_memory_utilization:.0%}"
    return f"KV {spec.vllm.kv_cache_gib} GiB in {share} of each GPU, TP {max(gpus, 1)}"


def _power_lines(spec: QuantEvalSpec, assumed_effect: float | None) -> list[str]:
    """What each comparison against the baseline can detect, with the prompt template as the
    unit, before anything has run: its assumptions stated, and how the detectable change moves
    with more templates against more samples per prompt (quanteval.power)."""
    from dataclasses import replace

    from quanteval.power import (
        ASSUMED_DISCORDANCE,
        ASSUMED_FROM,
        ASSUMED_INTRACLASS,
        DETECT_PP,
        Design,
        design_effect,
        detectable_change,
        intraclass_of,
        planned_se,
        projected_se,
        samples_per_prompt_for,
        templates_for,
    )

    design = Design(
        len(spec.prompt_templates), len(spec.emotion_names), spec.generation.samples_per_prompt
    )
    k = comparison_count(expand(spec))
    if k == 0:
        return ["power: no comparison (every run is a baseline)"]
    if design.templates < 2:
        return ["power: one prompt template cannot tell a precision's effect from the template's"]
    if assumed_effect is None:
        effect = design_effect(design.per_template, ASSUMED_INTRACLASS)
        source = f"rho {ASSUMED_INTRACLASS:g}, from {ASSUMED_FROM}; --design-effect to set"
    else:
        effect, source = assumed_effect, "--design-effect"
    rho = intraclass_of(effect, design.per_template)
    se = planned_se(design, effect)

    def detects(then: Design) -> str:
        projected = projected_se(se, design, then, rho)
        return f"{detectable_change(projected, then.templates, k):.1f}"

    more_templates = replace(design, templates=2 * design.templates)
    more_samples = replace(design, samples_per_prompt=2 * design.samples_per_prompt)
    templates = templates_for(DETECT_PP, se, design, rho, k)
    per_prompt = samples_per_prompt_for(DETECT_PP, se, design, rho, k)
    return [
        f"power: each of {k} comparisons, tested together (intervals at 1-0.05/{k}), with "
        f"{design.templates} templates x {design.emotions} emotions x samplesPerPrompt "
        f"{design.samples_per_prompt}, detects a macro-F1 change of about {detects(design)} "
        "points (80% power; the prompt template is the unit); "
        f"with {more_templates.templates} templates: {detects(more_templates)}; with "
        f"samplesPerPrompt {more_samples.samples_per_prompt}: {detects(more_samples)}.",
        f"  {DETECT_PP:g} points needs "
        + (f"{templates} templates" if templates else "more templates than we project")
        + " at this samplesPerPrompt, or "
        + (
            f"samplesPerPrompt {per_prompt} with these templates."
            if per_prompt
            else "more templates: no samplesPerPrompt reaches it with these."
        ),
        f"  assumed: design effect {effect:.2f} at {design.per_template} samples a template "
        f"({source}); {100 * ASSUMED_DISCORDANCE:.0f}% of samples right under one precision only.",
    ]


def _number(what: str, unit: str, low: float, high: float, *, above: bool = False) -> Any:
    """An argparse type: a number from `low` (excluded where `above`) to `high`; else an error
    that says what it should be."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not (low < value if above else low <= value) or value > high:
            start = f"above {low:g}" if above else f"from {low:g}"
            raise argparse.ArgumentTypeError(f"{what} {start} to {high:g}{unit}, not {text}")
        return value

    return parse


_design_effect = _number("a design effect", "", 1, 1000)
_margin = _number("a margin of F1", " points", 0, 50, above=True)
_price = _number("a price", " US dollars", 0, 10000)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from quanteval.comparison import compare
    from quanteval.report import build_report
    from quanteval.report.tables import not_like_for_like
    from quanteval_cli.local import run_local
    from quanteval_cli.table import (
        comparison_json,
        comparison_table,
        decision_tables,
        energy_notes,
        memory_notes,
        paired_note,
    )

    if not args.local:
        raise InvalidSpecError(
            "to run in a cluster, `kubectl apply -f FILE` with the operator installed; "
            "pass --local to evaluate on this machine"
        )
    manifest = with_default_cost(load_manifest(args.file), args.gpu_hour_usd, args.cpu_hour_usd)
    problems = _local_path_problems(manifest)
    if problems:
        raise InvalidSpecError(f"{args.file}: invalid QuantEval\n" + "\n".join(problems))
    out = args.out or f"{DEFAULT_OUT}/{manifest.metadata.name}"
    s3 = manifest.spec.output.s3
    if s3 is not None and s3.retry_budget_seconds is not None:  # this process and its workers
        os.environ.setdefault(RETRY_BUDGET_ENV, str(s3.retry_budget_seconds))
    results = run_local(manifest, out, args.only, args.force, console, args.keep_partial)
    firsts = [r.outcome for r in results if not r.run.is_repeat]  # repeats: the report's
    rows = compare(firsts, manifest.spec.baseline_precision)
    built = build_report(
        out,
        _expected_runs(manifest, results),
        equivalence_margin_pp=manifest.spec.report.equivalence_margin_pp,
    )
    against = {r.run_id: r.vs_baseline for r in built.report.runs if r.vs_baseline is not None}
    title = f"{manifest.metadata.name} ({out})"
    if args.output == "json":
        print(json.dumps(comparison_json(rows, against), indent=2))
    else:
        if args.wide:
            Console(width=300).print(comparison_table(rows, title=title, against=against))
        else:
            Console(width=max(100, console.width)).print(
                decision_tables(rows, title=title, against=against)
            )
        _print_ratings(built.report)
    console.print(paired_note(against.values()))
    console.print(
        "KL: mean KL(baseline || run) per token on the reference corpus (a lower bound); "
        "top-1: most likely tokens agree"
    )
    legend = not_like_for_like(built.report)  # what ‡ marks ("" where nothing is marked)
    for note in [*energy_notes(rows), *memory_notes(rows), legend, *_gguf_note(manifest)]:
        if note:
            console.print(note)
    console.print(
        f"report: {escape(built.files.html)} (also report.json, .csv, .md, .png)", soft_wrap=True
    )
    failures = [r.exit_code for r in results if r.exit_code != ExitCode.OK]
    return failures[0] if failures else ExitCode.OK


def _print_ratings(report: "Report") -> None:
    """The intensity task's table and the cost of nuance in words, where the task ran."""
    from rich.table import Table

    from quanteval.report.tables import RATINGS_HEADERS, nuance_lines, ratings_rows

    rows = ratings_rows(report)
    if not rows:
        return
    wide = Console(width=300)
    table = Table(title="intensity ratings (0-100, by the model under test)")
    for header in RATINGS_HEADERS:
        table.add_column(header, justify="left" if header in ("run", "against") else "right")
    for row in rows:
        table.add_row(*row)
    wide.print(table)
    for line in nuance_lines(report):
        wide.print(line, highlight=False, soft_wrap=True)


def _expected_runs(manifest: QuantEval, results: "list[LocalRunOutcome]") -> "list[ExpectedRun]":
    """Every run of the manifest, with the failure reason of those that failed here."""
    from quanteval.report import ExpectedRun

    reasons = {r.run.id: r.outcome.reason for r in results if r.exit_code != ExitCode.OK}
    return [
        ExpectedRun(run.id, run.model.name, run.precision, reasons.get(run.id, ""), run.engine)
        for run in expand(manifest.spec)
    ]


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from quanteval.report import ExpectedRun, build_report

    try:
        expected = [ExpectedRun.from_arg(item) for item in args.expect]
    except ValueError as error:
        raise InvalidSpecError(f"--expect: {error}") from None
    built = build_report(args.path, expected, equivalence_margin_pp=args.equivalence_margin_pp)
    termination_log = os.environ.get(TERMINATION_LOG_ENV)
    if termination_log:  # the report Job: the verdicts reach the status through it
        from quanteval.report.verdicts import report_termination_message

        Path(termination_log).write_text(report_termination_message(built.report))
    print(built.files.markdown)
    console.print(
        "report written to:\n" + "\n".join(f"  {escape(uri)}" for uri in built.files.uris),
        soft_wrap=True,
    )
    return ExitCode.OK


def cmd_classify(args: argparse.Namespace, console: Console) -> int:
    from quanteval.api.spec import ClassifierSpec
    from quanteval.emotions import resolve_emotions

    try:
        emotions = list(
            resolve_emotions(args.emotions.split(",") if "," in args.emotions else args.emotions)
        )
    except ValueError as error:
        raise InvalidSpecError(f"--emotions: {error}") from None
    spec = (
        ClassifierSpec(source=args.classifier, accept_missing_emotions=True)
        if args.classifier
        else ClassifierSpec(builtin="minilm")
    )
    if args.input == "-":
        lines = sys.stdin.read().splitlines()
    else:
        try:
            lines = Path(args.input).read_text().splitlines()
        except OSError as error:
            raise InvalidSpecError(f"{args.input}: cannot read: {error.strerror}") from None
    texts = [line.strip() for line in lines if line.strip()]
    for text, (label, probabilities) in zip(
        texts, worker.classify(spec, emotions, texts), strict=True
    ):
        rounded = {k: round(v, 4) for k, v in probabilities.items()}
        print(json.dumps({"text": text, "label": label, "probabilities": rounded}))
    return ExitCode.OK


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("quanteval")
    except PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    description = " ".join(__doc__.split("\n\n")[0].split())  # the first paragraph, whole
    parser = argparse.ArgumentParser(prog="quanteval", description=description)
    parser.add_argument("--version", action="version", version=f"quanteval {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="evaluate a QuantEval manifest")
    run.add_argument("file", help="a QuantEval manifest (YAML)")
    run.add_argument("--local", action="store_true", help="evaluate on this machine")
    run.add_argument(
        "--out", help=f"results directory or s3://bucket/prefix (default {DEFAULT_OUT}/NAME)"
    )
    run.add_argument(
        "--only", action="append", metavar="RUN", help="run only this run id (repeatable)"
    )
    run.add_argument(
        "--force", action="store_true", help="replace results of another configuration"
    )
    run.add_argument(
        "--keep-partial",
        action="store_true",
        help="keep each run's finished batches (runs/<id>/partial/) once it is complete",
    )
    for resource in ("gpu", "cpu"):
        run.add_argument(
            f"--{resource}-hour-usd",
            type=_price,
            metavar="USD",
            help=f"price of a {resource.upper()}-hour, where spec.cost.{resource}HourUSD is unset",
        )
    run.add_argument(
        "--output",
        choices=("table", "json"),
        default="table",
        help="the comparison as a table (default) or as JSON on standard output, for scripts",
    )
    run.add_argument(
        "--wide",
        action="store_true",
        help="every figure of each run in one table (300 columns), not only what decides",
    )
    run.set_defaults(handler=cmd_run)

    validate = commands.add_parser("validate", help="check a manifest offline")
    validate.add_argument("file")
    validate.set_defaults(handler=cmd_validate)

    plan = commands.add_parser("plan", help="list the runs with estimated weights memory and GPUs")
    plan.add_argument("file")
    plan.add_argument(
        "--gpu-memory-gib",
        type=float,
        help=f"memory of one GPU (default {DEFAULT_GPU_MEMORY_GIB:g})",
    )
    plan.add_argument(
        "--design-effect",
        type=_design_effect,
        metavar="D",
        help="how much sharing prompt templates widens a comparison's variance, at this spec's "
        "samples a template (default: from the quick start's measured intraclass correlation)",
    )
    plan.set_defaults(handler=cmd_plan)

    report = commands.add_parser(
        "report", help="compare an evaluation's runs: report.{json,csv,md,html,png} next to them"
    )
    report.add_argument(
        "path", help="the evaluation's directory or s3://bucket/prefix/<ns>/<eval>-<uid>"
    )
    report.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="RUN=MODEL/PRECISION/ENGINE[:REASON]",
        help="a run the evaluation has (repeatable): reported as Missing if it left nothing, "
        "with REASON where it failed",
    )
    report.add_argument(
        "--equivalence-margin-pp",
        type=_margin,
        metavar="POINTS",
        help="spec.report.equivalenceMarginPp: a comparison whose interval lies within ±POINTS "
        "reads 'equivalent' (unset: never)",
    )
    report.set_defaults(handler=cmd_report)

    classify = commands.add_parser("classify", help="classify texts, one a line, into emotions")
    classify.add_argument("input", help="a file with one text a line, or - for standard input")
    classify.add_argument("--classifier", help="a sequence-classification model (default: builtin)")
    classify.add_argument(
        "--emotions", default="isear", help="a set name or a comma-separated list"
    )
    classify.set_defaults(handler=cmd_classify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        return int(args.handler(args, console))
    except QuantEvalError as error:
        console.print(f"[red]error:[/red] {escape(error.message)}", highlight=False)
        return int(error.exit_code)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
